//! The runtime's data side on real files: the shipped data sets, and the broken
//! inputs of tests/data_errors/ (made by its make.py), each of which must give an
//! error that names the problem.

use std::path::{Path, PathBuf};

use nnc::runtime::checkpoint;
use nnc::runtime::data::error::DataErrorKind;
use nnc::runtime::data::{self, csv, idx, DataError, Dataset, Features};
use nnc::runtime::metrics::Accumulator;
use nnc::sema::model::{
    Activation, DataSource, Initializer, Layer, LayerKind, Loss, Metric, MnistSubset, Model,
    Optimizer, TestSource, TrainConfig,
};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data")
        .join(name)
}

fn broken(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data_errors")
        .join(name)
}

/// `inputs -> dense(units)`: enough of a model for the data checks.
fn model(inputs: usize, units: usize) -> Model {
    Model {
        name: "m".into(),
        input_name: "x".into(),
        input_shape: vec![inputs],
        layers: vec![Layer {
            name: "dense".into(),
            kind: LayerKind::Dense {
                units,
                activation: Activation::Linear,
                use_bias: true,
                kernel_initializer: Initializer::GlorotUniform,
                bias_initializer: Initializer::Zeros,
                kernel_regularizer: None,
            },
            input_shape: vec![inputs],
            output_shape: vec![units],
            span: 0..0,
            inputs: vec![nnc::sema::model::Source::Input],
        }],
        train: None,
    }
}

fn csv_source(path: PathBuf, target: &str, standardize: bool) -> DataSource {
    DataSource::Csv {
        path,
        target: target.into(),
        features: None,
        standardize,
    }
}

fn config(data: DataSource, loss: Loss) -> TrainConfig {
    TrainConfig {
        data,
        test: None,
        validation_split: None,
        validation_data: None,
        loss,
        label_smoothing: 0.0,
        optimizer: Optimizer::Sgd {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
        },
        schedule: None,
        clip: None,
        class_weight: None,
        metrics: vec![],
        epochs: 1,
        batch_size: 32,
        shuffle: true,
        seed: 7,
        spans: Default::default(),
        callbacks: vec![],
    }
}

fn read_csv(name: &str) -> Result<csv::CsvTable, DataError> {
    csv::read(&broken(name), "label", None)
}

#[track_caller]
fn assert_err_contains<T: std::fmt::Debug, E: ToString>(result: Result<T, E>, parts: &[&str]) {
    let err = result.expect_err("expected an error").to_string();
    for part in parts {
        assert!(err.contains(part), "error {err:?} lacks {part:?}");
    }
}

// ---------- CSV ----------

#[test]
fn iris_has_150_rows_4_features_3_classes() {
    let t = csv::read(&shipped("iris.csv"), "species", None).unwrap();
    assert_eq!((t.data.rows, t.data.feature_count), (150, 4));
    assert_eq!(t.data.features.len(), 600);
    assert_eq!(t.feature_names[0], "sepal_length");
    let mut classes: Vec<f32> = t.data.targets.clone();
    classes.sort_by(f32::total_cmp);
    classes.dedup();
    assert_eq!(classes, vec![0.0, 1.0, 2.0]);
    // The first data row of the file, read back.
    assert_eq!(&t.data.features.to_f32()[..4], &[5.1, 3.5, 1.4, 0.2]);
    assert_eq!((t.lines[0], t.lines[149]), (2, 151));
}

#[test]
fn breast_cancer_has_569_rows_30_features() {
    let t = csv::read(&shipped("breast_cancer.csv"), "benign", None).unwrap();
    assert_eq!((t.data.rows, t.data.feature_count), (569, 30));
    assert!(t.data.targets.iter().all(|&v| v == 0.0 || v == 1.0));
    assert!(!t.feature_names.contains(&"benign".to_string()));
}

#[test]
fn named_features_are_read_in_the_listed_order_and_other_columns_may_be_text() {
    let features = vec!["b".to_string(), "a".to_string()];
    let t = csv::read(&broken("with_notes.csv"), "label", Some(&features)).unwrap();
    assert_eq!(t.data.features.to_f32(), vec![2.0, 1.0, 4.0, 3.0, 6.0, 5.0]);
    assert_eq!(t.data.targets, vec![0.0, 1.0, 1.0]);
    // Without a list, the text column `id` is a feature and must fail.
    assert_err_contains(
        read_csv("with_notes.csv"),
        &["with_notes.csv", "line 2", "`id`", "`x1` is not a number"],
    );
}

#[test]
fn csv_errors_name_file_line_and_column() {
    assert_err_contains(
        read_csv("ragged.csv"),
        &["ragged.csv", "line 4", "2 fields", "3 columns"],
    );
    assert_err_contains(
        read_csv("text_cell.csv"),
        &[
            "text_cell.csv",
            "line 4",
            "column 2 (`b`)",
            "`abc` is not a number",
        ],
    );
    assert_err_contains(
        read_csv("missing_cell.csv"),
        &["missing_cell.csv", "line 3", "column 2 (`b`)", "missing"],
    );
    assert_err_contains(
        read_csv("nan_cell.csv"),
        &["nan_cell.csv", "line 3", "`b`", "not a finite number"],
    );
    assert_err_contains(read_csv("empty.csv"), &["empty.csv", "empty", "header"]);
    assert_err_contains(
        read_csv("header_only.csv"),
        &["header_only.csv", "no data rows"],
    );
    assert_err_contains(
        read_csv("no_header.csv"),
        &["no_header.csv", "line 1", "header row"],
    );
    assert_err_contains(
        read_csv("not_csv.csv"),
        &["not_csv.csv", "not a CSV", "UTF-8"],
    );
    assert_err_contains(
        read_csv("no_such_file.csv"),
        &["no_such_file.csv", "cannot read"],
    );
    assert_err_contains(
        read_csv("duplicate_target.csv"),
        &["`label`", "more than once"],
    );
}

#[test]
fn csv_errors_carry_their_file_row_and_column_as_fields() {
    let e = read_csv("text_cell.csv").unwrap_err();
    assert_eq!(e.file.as_deref(), Some(broken("text_cell.csv").as_path()));
    assert_eq!(e.row(), Some(4));
    assert_eq!(e.column(), Some((Some("b"), Some(2))));
    assert_eq!(*e.kind, DataErrorKind::NotANumber { text: "abc".into() });
    let e = read_csv("ragged.csv").unwrap_err();
    assert_eq!((e.row(), e.column()), (Some(4), None));
    assert_eq!(
        *e.kind,
        DataErrorKind::WrongFieldCount {
            expected: 3,
            found: 2
        }
    );
    let e = csv::read(&shipped("iris.csv"), "colour", None).unwrap_err();
    assert_eq!((e.row(), e.column()), (None, Some((Some("colour"), None))));
    // A class word of a test file that training did not have: the target cell.
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    std::fs::write(&train, "x,kind\n0.1,cat\n0.9,dog\n0.2,cat\n").unwrap();
    std::fs::write(&test, "x,kind\n0.3,cat\n0.7,fish\n").unwrap();
    let mut cfg = config(
        csv_source(train, "kind", false),
        Loss::SparseCategoricalCrossentropy,
    );
    cfg.test = Some(TestSource::Source(csv_source(test.clone(), "kind", false)));
    let e = data::prepare(&model(1, 2), &cfg).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(test.as_path()));
    assert_eq!(e.row(), Some(3));
    assert_eq!(e.column(), Some((Some("kind"), None)));
    assert!(matches!(&*e.kind, DataErrorKind::UnknownClass { word, .. } if word == "fish"));
}

#[test]
fn absent_columns_are_named_with_the_nearest_one() {
    assert_err_contains(
        csv::read(&broken("no_target.csv"), "benign", None),
        &[
            "no_target.csv",
            "no target column `benign`",
            "did you mean `bening`",
        ],
    );
    let features = vec!["sepal_lenght".to_string()];
    assert_err_contains(
        csv::read(&shipped("iris.csv"), "species", Some(&features)),
        &[
            "no feature column `sepal_lenght`",
            "did you mean `sepal_length`",
        ],
    );
    // Nothing close: the columns are listed instead.
    assert_err_contains(
        csv::read(&shipped("iris.csv"), "colour", None),
        &["no target column `colour`", "`petal_width`"],
    );
    let target_as_feature = vec!["species".to_string()];
    assert_err_contains(
        csv::read(&shipped("iris.csv"), "species", Some(&target_as_feature)),
        &["`species` is the target"],
    );
}

// ---------- IDX ----------

#[test]
fn small_idx_pixels_scale_to_unit_range() {
    let d = idx::read(&broken("images3.idx"), &broken("labels3.idx")).unwrap();
    assert_eq!((d.rows, d.feature_count, d.target_width), (3, 4, 1));
    // make.py writes pixels 0, 20, 40, ... 220.
    let expected: Vec<f32> = (0..12).map(|i| (i * 20) as f32 / 255.0).collect();
    assert_eq!(d.features.to_f32(), expected);
    assert_eq!(d.targets, vec![0.0, 1.0, 2.0]);
}

#[test]
fn idx_errors_name_the_problem() {
    let labels = broken("labels3.idx");
    let images = |name: &str| idx::read(&broken(name), &labels);
    assert_err_contains(
        images("bad_magic.idx"),
        &[
            "bad_magic.idx",
            "not an IDX file",
            "0x504B0304",
            "0x00000803",
        ],
    );
    assert_err_contains(
        idx::read(&labels, &labels),
        &["labels3.idx", "label file with 1 dimension", "0x00000803"],
    );
    assert_err_contains(
        idx::read(&broken("images3.idx"), &broken("images3.idx")),
        &["image file with 3 dimensions", "0x00000801"],
    );
    assert_err_contains(images("float_images.idx"), &["float32", "unsigned-byte"]);
    assert_err_contains(
        images("truncated_images.idx"),
        &["truncated", "byte offset 23", "needs 28 bytes", "3 x 2 x 2"],
    );
    assert_err_contains(
        images("truncated_images.idx.gz"),
        &[
            "truncated",
            "byte offset 23 of the decompressed data",
            "needs 28 bytes",
        ],
    );
    assert_err_contains(
        images("short_header.idx"),
        &["truncated", "byte offset 10", "header"],
    );
    assert_err_contains(images("trailing_images.idx"), &["past byte offset 28"]);
    assert_err_contains(images("wrong.gz"), &["wrong.gz", "not a valid gzip file"]);
    assert_err_contains(images("cut.gz"), &["cut.gz", "gzip"]);
    assert_err_contains(
        images("huge_header.idx"),
        &["100000 x 100000 x 1000", "16 GiB", "memory"],
    );
    assert_err_contains(
        idx::read(&broken("images3.idx"), &broken("labels2.idx")),
        &["3 images", "2 labels"],
    );
    assert_err_contains(images("no_such.idx"), &["no_such.idx", "cannot read"]);
    assert_err_contains(
        idx::mnist(&broken("no_such_folder"), MnistSubset::Train),
        &["no_such_folder", "no such folder"],
    );
    assert_err_contains(
        idx::mnist(&broken(""), MnistSubset::Test),
        &["t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"],
    );
}

#[test]
fn mnist_train_has_60000_images_of_784_pixels() {
    let d = idx::mnist(&shipped("mnist"), MnistSubset::Train).unwrap();
    assert_eq!((d.rows, d.feature_count), (60000, 784));
    let features = d.features.to_f32();
    assert_eq!(features.len(), 60000 * 784);
    assert!(features.iter().all(|&p| (0.0..=1.0).contains(&p)));
    // Pixels are v / 255 for a byte v, so both ends of the range occur.
    assert!(features.contains(&1.0) && features.contains(&0.0));
    let mut counts = [0usize; 10];
    for &t in &d.targets {
        counts[t as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c > 5000), "classes: {counts:?}");
}

// ---------- prepare ----------

#[test]
fn prepare_checks_features_against_the_input_shape() {
    let cfg = config(
        csv_source(shipped("iris.csv"), "species", false),
        Loss::SparseCategoricalCrossentropy,
    );
    assert_err_contains(
        data::prepare(&model(5, 3), &cfg),
        &["iris.csv", "4 features", "`x`", "[5]"],
    );
    let p = data::prepare(&model(4, 3), &cfg).unwrap();
    assert_eq!((p.train.rows, p.train.target_width), (150, 1));
    assert!(p.validation.is_none() && p.test.is_none());
}

#[test]
fn prepare_checks_targets_against_loss_and_output() {
    let small = |name: &str, loss| config(csv_source(broken(name), "label", false), loss);
    assert_err_contains(
        data::prepare(
            &model(2, 3),
            &small(
                "label_out_of_range.csv",
                Loss::SparseCategoricalCrossentropy,
            ),
        ),
        &[
            "label_out_of_range.csv",
            "line 4",
            "`label`",
            "target 3",
            "[0, 3)",
        ],
    );
    assert_err_contains(
        data::prepare(
            &model(2, 3),
            &small("label_fraction.csv", Loss::CategoricalCrossentropy),
        ),
        &["line 3", "1.5", "categorical_crossentropy"],
    );
    assert_err_contains(
        data::prepare(
            &model(2, 1),
            &small("label_not_binary.csv", Loss::BinaryCrossentropy),
        ),
        &["label_not_binary.csv", "line 3", "target 2", "0 or 1"],
    );
    assert_err_contains(
        data::prepare(&model(2, 2), &small("ragged.csv", Loss::BinaryCrossentropy)),
        &["binary_crossentropy", "one output unit", "2 values"],
    );
    assert_err_contains(
        data::prepare(&model(2, 3), &small("ragged.csv", Loss::Mse)),
        &["`mse`", "3 values"],
    );
    let idx_source = DataSource::Idx {
        images: broken("images3.idx"),
        labels: broken("labels3.idx"),
    };
    assert_err_contains(
        data::prepare(
            &model(4, 2),
            &config(idx_source, Loss::SparseCategoricalCrossentropy),
        ),
        &[
            "labels3.idx",
            "label 3 (byte offset 10)",
            "target 2",
            "[0, 2)",
        ],
    );
}

#[test]
fn categorical_targets_become_one_hot_rows() {
    let cfg = config(
        csv_source(shipped("iris.csv"), "species", false),
        Loss::CategoricalCrossentropy,
    );
    let p = data::prepare(&model(4, 3), &cfg).unwrap();
    let raw = csv::read(&shipped("iris.csv"), "species", None).unwrap();
    assert_eq!(p.train.target_width, 3);
    assert_eq!(p.train.targets.len(), 150 * 3);
    for (row, &class) in p.train.targets.chunks(3).zip(&raw.data.targets) {
        let mut expected = [0.0; 3];
        expected[class as usize] = 1.0;
        assert_eq!(row, expected);
    }
}

/// Every row of `part`, as (features, targets) bits, to compare sets of rows.
fn rows_of(part: &Dataset) -> Vec<Vec<u32>> {
    let features = part.features.to_f32();
    (0..part.rows)
        .map(|r| {
            let f = &features[r * part.feature_count..(r + 1) * part.feature_count];
            let t = &part.targets[r * part.target_width..(r + 1) * part.target_width];
            f.iter().chain(t).map(|v| v.to_bits()).collect()
        })
        .collect()
}

#[test]
fn splits_are_deterministic_disjoint_and_complete() {
    let mut cfg = config(
        csv_source(shipped("breast_cancer.csv"), "benign", false),
        Loss::BinaryCrossentropy,
    );
    cfg.test = Some(TestSource::Split(0.2));
    cfg.validation_split = Some(0.1);
    let m = model(30, 1);
    let a = data::prepare(&m, &cfg).unwrap();
    let b = data::prepare(&m, &cfg).unwrap();
    assert_eq!(a, b, "same seed, same split");

    let test = a.test.as_ref().unwrap();
    let validation = a.validation.as_ref().unwrap();
    // round(0.2 * 569) = 114 held out; round(0.1 * 455) = 46 of the rest.
    assert_eq!((test.rows, validation.rows, a.train.rows), (114, 46, 409));

    let mut all: Vec<Vec<u32>> = rows_of(&a.train);
    all.extend(rows_of(validation));
    all.extend(rows_of(test));
    let mut original = rows_of(
        &csv::read(&shipped("breast_cancer.csv"), "benign", None)
            .unwrap()
            .data,
    );
    all.sort();
    original.sort();
    assert_eq!(
        all, original,
        "the three parts are a partition of the file's rows"
    );

    cfg.seed = 8;
    let c = data::prepare(&m, &cfg).unwrap();
    assert_ne!(
        rows_of(c.test.as_ref().unwrap()),
        rows_of(test),
        "another seed, another split"
    );
    // Drawn at random: a file sorted by class still gives both classes in the test rows.
    assert!(test.targets.contains(&0.0) && test.targets.contains(&1.0));
}

#[test]
fn splits_that_leave_a_part_empty_are_errors() {
    let mut cfg = config(
        csv_source(broken("label_not_binary.csv"), "label", false),
        Loss::Mse,
    );
    cfg.test = Some(TestSource::Split(0.1));
    assert_err_contains(
        data::prepare(&model(2, 1), &cfg),
        &["split(0.1)", "2 rows", "no row"],
    );
    cfg.test = Some(TestSource::Split(0.9));
    assert_err_contains(data::prepare(&model(2, 1), &cfg), &["no row to train on"]);
}

#[test]
fn standardize_uses_training_statistics_for_every_part() {
    let mut cfg = config(
        csv_source(shipped("iris.csv"), "species", true),
        Loss::SparseCategoricalCrossentropy,
    );
    cfg.test = Some(TestSource::Split(0.2));
    let p = data::prepare(&model(4, 3), &cfg).unwrap();
    cfg.data = csv_source(shipped("iris.csv"), "species", false);
    let raw = data::prepare(&model(4, 3), &cfg).unwrap();
    let fc = 4;
    for c in 0..fc {
        let column = |d: &Dataset| -> Vec<f64> {
            d.features
                .to_f32()
                .iter()
                .skip(c)
                .step_by(fc)
                .map(|&v| f64::from(v))
                .collect()
        };
        let z = column(&p.train);
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-5, "column {c} mean {mean}");
        assert!((var - 1.0).abs() < 1e-4, "column {c} variance {var}");

        // The test rows are scaled with the training rows' numbers, not their own.
        let raw_train = column(&raw.train);
        let m = raw_train.iter().sum::<f64>() / n;
        let s = (raw_train.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt();
        for (zt, rt) in column(p.test.as_ref().unwrap())
            .iter()
            .zip(column(raw.test.as_ref().unwrap()))
        {
            assert!((zt - (rt - m) / s).abs() < 1e-4);
        }
    }
}

#[test]
fn standardize_only_centres_a_constant_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("constant.csv");
    std::fs::write(&path, "a,k,label\n1,5,0\n2,5,1\n3,5,0\n6,5,1\n").unwrap();
    let cfg = config(csv_source(path, "label", true), Loss::Mse);
    let p = data::prepare(&model(2, 1), &cfg).unwrap();
    let constant: Vec<f32> = p
        .train
        .features
        .to_f32()
        .iter()
        .skip(1)
        .step_by(2)
        .copied()
        .collect();
    assert_eq!(constant, vec![0.0; 4]);
    // a: mean 3, population std sqrt(3.5).
    let a: Vec<f32> = p
        .train
        .features
        .to_f32()
        .iter()
        .step_by(2)
        .copied()
        .collect();
    let s = 3.5f32.sqrt();
    let expected = [-2.0 / s, -1.0 / s, 0.0, 3.0 / s];
    for (got, want) in a.iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "{a:?}");
    }
}

#[test]
fn a_test_source_is_loaded_and_checked_like_data() {
    let mut cfg = config(
        DataSource::Idx {
            images: broken("images3.idx"),
            labels: broken("labels3.idx"),
        },
        Loss::SparseCategoricalCrossentropy,
    );
    cfg.test = Some(TestSource::Source(DataSource::Idx {
        images: broken("images3.idx"),
        labels: broken("labels3.idx"),
    }));
    let p = data::prepare(&model(4, 3), &cfg).unwrap();
    assert_eq!(p.test.as_ref(), Some(&p.train));
    cfg.test = Some(TestSource::Source(csv_source(
        broken("ragged.csv"),
        "label",
        false,
    )));
    assert_err_contains(data::prepare(&model(4, 3), &cfg), &["ragged.csv"]);
}

#[test]
fn a_csv_test_source_finds_the_training_columns_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let train = write("a.csv", "x1,x2,y\n1,10,0\n2,30,1\n4,20,1\n");
    // The same rows with the columns in another order.
    let reordered = write("b.csv", "y,x2,x1\n0,10,1\n1,30,2\n1,20,4\n");
    let mut cfg = config(csv_source(train, "y", true), Loss::BinaryCrossentropy);
    cfg.test = Some(TestSource::Source(csv_source(reordered, "y", false)));
    let p = data::prepare(&model(2, 1), &cfg).unwrap();
    // Same rows, same (training) standardization, whatever the test file's order
    // and its own `standardize`.
    assert_eq!(p.test.as_ref(), Some(&p.train));

    let other = write("c.csv", "a,b,y\n1,2,0\n");
    cfg.test = Some(TestSource::Source(csv_source(other.clone(), "y", false)));
    assert_err_contains(
        data::prepare(&model(2, 1), &cfg),
        &["c.csv", "no column `x1`, `x2`", "by name"],
    );
    // A test `features` list naming other columns than the training ones.
    cfg.test = Some(TestSource::Source(DataSource::Csv {
        path: other,
        target: "y".into(),
        features: Some(vec!["a".into(), "b".into()]),
        standardize: false,
    }));
    assert_err_contains(
        data::prepare(&model(2, 1), &cfg),
        &["c.csv", "`a`, `b`", "not the training features"],
    );
}

#[test]
fn class_words_become_sorted_class_indices_that_later_data_shares() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let train = write("a.csv", "x,animal\n1,dog\n2,cat\n3,emu\n4,cat\n");
    let table = csv::read(&train, "animal", None).unwrap();
    let names: Vec<String> = ["cat", "dog", "emu"].map(String::from).to_vec();
    assert_eq!(table.class_names.as_ref(), Some(&names));
    assert_eq!(table.data.targets, [1.0, 0.0, 2.0, 0.0]);

    // A test file without `dog`: numbered by the training classes, not its own.
    let test = write("b.csv", "x,animal\n5,emu\n6,cat\n");
    let mut cfg = config(
        csv_source(train.clone(), "animal", false),
        Loss::SparseCategoricalCrossentropy,
    );
    cfg.test = Some(TestSource::Source(csv_source(test, "animal", false)));
    let p = data::prepare(&model(1, 3), &cfg).unwrap();
    assert_eq!(p.class_names.as_ref(), Some(&names));
    assert_eq!(p.test.unwrap().targets, [2.0, 0.0]);

    let unknown = write("c.csv", "x,animal\n5,cow\n");
    cfg.test = Some(TestSource::Source(csv_source(unknown, "animal", false)));
    assert_err_contains(
        data::prepare(&model(1, 3), &cfg),
        &[
            "c.csv: line 2",
            "`cow` is not one of the classes trained on",
            "`cat`",
        ],
    );

    // Two classes for binary cross-entropy: 0 and 1 in sorted order.
    let binary = write("d.csv", "x,size\n1,small\n2,large\n");
    let cfg = config(csv_source(binary, "size", false), Loss::BinaryCrossentropy);
    let p = data::prepare(&model(1, 1), &cfg).unwrap();
    assert_eq!(p.train.targets, [1.0, 0.0]);
    assert_eq!(p.class_names, Some(vec!["large".into(), "small".into()]));
}

#[test]
fn class_words_that_do_not_fit_the_model_or_loss_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // A stray word among numbers is not a class of its own.
    let mixed = write("mixed.csv", "x,y\n1,0\n2,NA\n3,1\n");
    assert_err_contains(
        csv::read(&mixed, "y", None),
        &[
            "mixed.csv: line 2",
            "`0` is a number, but other targets are words such as `NA`",
        ],
    );
    let words = write("w.csv", "x,animal\n1,dog\n2,cat\n");
    let source = || csv_source(words.clone(), "animal", false);
    assert_err_contains(
        data::prepare(&model(1, 1), &config(source(), Loss::Mse)),
        &["w.csv: line 2", "holds words (`cat`, `dog`)", "regression"],
    );
    assert_err_contains(
        data::prepare(
            &model(1, 3),
            &config(source(), Loss::SparseCategoricalCrossentropy),
        ),
        &[
            "names 2 classes",
            "outputs 3 values",
            "dense(2, activation = softmax)",
        ],
    );
    let three = write("three.csv", "x,animal\n1,dog\n2,cat\n3,emu\n");
    assert_err_contains(
        data::prepare(
            &model(1, 1),
            &config(csv_source(three, "animal", false), Loss::BinaryCrossentropy),
        ),
        &["names 3 classes", "needs exactly two"],
    );
}

/// `shuffle_order` into a new buffer of `rows` rows.
fn shuffled_order(rows: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = vec![usize::MAX; rows];
    data::shuffle_order(&mut order, seed, epoch);
    order
}

#[test]
fn shuffled_order_is_a_permutation_fixed_by_seed_and_epoch() {
    let a = shuffled_order(100, 1, 0);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_eq!(a, shuffled_order(100, 1, 0));
    assert_ne!(a, shuffled_order(100, 1, 1));
    assert_ne!(a, shuffled_order(100, 2, 0));
    assert!(shuffled_order(0, 1, 0).is_empty());
}

#[test]
fn gather_copies_rows_into_the_front_of_the_buffers() {
    let ds = Dataset {
        features: Features::Values(vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]),
        feature_count: 2,
        targets: vec![0.0, 1.0, 2.0],
        target_width: 1,
        rows: 3,
    };
    let mut x = [-1.0; 6];
    let mut y = [-1.0; 3];
    data::gather(&ds, &[2, 0], &mut x, &mut y);
    assert_eq!(x, [20.0, 21.0, 0.0, 1.0, -1.0, -1.0]);
    assert_eq!(y, [2.0, 0.0, -1.0]);
}

#[test]
fn gather_copies_rows_of_every_width_and_pixels() {
    // Widths up to eight have their own copy code; nine and ten take the general one.
    for width in 1..=10 {
        let values: Vec<f32> = (0..4 * width).map(|v| v as f32).collect();
        let pixels: Vec<u8> = (0..4 * width).map(|v| v as u8).collect();
        let targets: Vec<f32> = (0..4 * width).map(|v| -(v as f32)).collect();
        let rows = [3, 1, 3];
        let expected = |from: &[f32]| -> Vec<f32> {
            rows.iter()
                .flat_map(|&r| from[r * width..(r + 1) * width].to_vec())
                .collect()
        };
        for features in [Features::Values(values.clone()), Features::Pixels(pixels)] {
            let ds = Dataset {
                features,
                feature_count: width,
                targets: targets.clone(),
                target_width: width,
                rows: 4,
            };
            let (mut x, mut y) = (vec![0.0; 3 * width], vec![0.0; 3 * width]);
            data::gather(&ds, &rows, &mut x, &mut y);
            let want_x = match &ds.features {
                Features::Values(v) => expected(v),
                Features::Pixels(_) => expected(&values).iter().map(|v| v / 255.0).collect(),
            };
            assert_eq!(x, want_x, "width {width}");
            assert_eq!(y, expected(&targets), "width {width}");
        }
    }
}

#[test]
fn shuffled_order_draws_every_permutation_equally_often() {
    // 6,000 shuffles of three rows: each of the 6 orders about 1,000 times (standard
    // deviation 29). An off-by-one in the index draw would leave some order at 0.
    let mut counts = std::collections::HashMap::new();
    for epoch in 0..6000 {
        *counts.entry(shuffled_order(3, 7, epoch)).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 6, "{counts:?}");
    for (order, n) in &counts {
        assert!((850..=1150).contains(n), "{order:?} drawn {n} times");
    }
}

// ---------- metrics ----------

#[test]
fn accuracy_thresholds_one_output_and_argmaxes_several() {
    let mut binary = Accumulator::new(Metric::Accuracy, 1, 1).unwrap();
    binary.add(&[0.9, 0.2, 0.5, 0.7], &[1.0, 0.0, 1.0, 0.0]);
    assert_eq!(binary.mean(), Some(0.5));

    let mut sparse = Accumulator::new(Metric::Accuracy, 3, 1).unwrap();
    sparse.add(&[0.1, 0.8, 0.1, 0.6, 0.3, 0.1], &[1.0, 2.0]);
    sparse.add(&[0.2, 0.2, 0.6], &[2.0]);
    assert_eq!(sparse.mean(), Some(2.0 / 3.0));

    let mut one_hot = Accumulator::new(Metric::Accuracy, 3, 3).unwrap();
    one_hot.add(
        &[0.1, 0.8, 0.1, 0.6, 0.3, 0.1],
        &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    );
    assert_eq!(one_hot.mean(), Some(0.5));
    one_hot.reset();
    assert_eq!(one_hot.mean(), None);
}

#[test]
fn mse_and_mae_average_over_every_output() {
    let mut mse = Accumulator::new(Metric::Mse, 1, 1).unwrap();
    let mut mae = Accumulator::new(Metric::Mae, 1, 1).unwrap();
    for acc in [&mut mse, &mut mae] {
        acc.add(&[1.0, 2.0], &[0.0, 4.0]);
        acc.add(&[3.0], &[3.0]);
    }
    assert_eq!(mse.mean(), Some(5.0 / 3.0));
    assert_eq!(mae.mean(), Some(1.0));

    // A class index against two outputs is compared as its one-hot row.
    let mut sparse = Accumulator::new(Metric::Mse, 2, 1).unwrap();
    sparse.add(&[0.5, 0.5], &[1.0]);
    assert_eq!(sparse.mean(), Some(0.25));
    assert!(Accumulator::new(Metric::Mae, 3, 2).is_err());
}

// ---------- checkpoints ----------

fn weights() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    vec![
        (
            "dense.kernel".into(),
            vec![3, 2],
            vec![0.5, -1.0, 2.25, 1e-8, -0.0, 7.0],
        ),
        ("dense.bias".into(), vec![2], vec![0.1, -0.2]),
    ]
}

fn borrowed(w: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<(String, Vec<usize>, &[f32])> {
    w.iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), d.as_slice()))
        .collect()
}

fn expected(w: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<(String, Vec<usize>)> {
    w.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect()
}

#[test]
fn checkpoints_round_trip_and_replace_only_with_a_complete_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let w = weights();
    checkpoint::save(&path, &borrowed(&w)).unwrap();
    let back = checkpoint::load(&path, &expected(&w)).unwrap();
    let values: Vec<Vec<f32>> = w.iter().map(|(_, _, d)| d.clone()).collect();
    assert_eq!(back, values);

    // A save that fails leaves the old file whole, and no temporary file behind.
    let bad = vec![("dense.kernel".to_string(), vec![4, 4], &[1.0f32][..])];
    assert!(checkpoint::save(&path, &bad).is_err());
    assert_eq!(checkpoint::load(&path, &expected(&w)).unwrap(), values);

    let mut w2 = weights();
    w2[1].2 = vec![9.0, 9.5];
    checkpoint::save(&path, &borrowed(&w2)).unwrap();
    assert_eq!(
        checkpoint::load(&path, &expected(&w2)).unwrap()[1],
        vec![9.0, 9.5]
    );
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "only the checkpoint remains: {files:?}");
}

#[test]
fn a_failed_rename_leaves_the_destination_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A non-empty folder cannot be replaced by a file.
    let path = dir.path().join("w.safetensors");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), "x").unwrap();
    assert_err_contains(
        checkpoint::save(&path, &borrowed(&weights())),
        &["w.safetensors", "cannot write"],
    );
    assert!(path.join("keep").is_file());
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "no temporary file left: {files:?}");
}

#[test]
fn a_save_into_a_missing_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/w.safetensors");
    assert_err_contains(
        checkpoint::save(&path, &borrowed(&weights())),
        &["w.safetensors", "cannot write"],
    );
}

#[test]
fn loading_refuses_non_finite_weights_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut w = weights();
        let last = w[1].2.len() - 1;
        w[1].2[last] = bad;
        checkpoint::save(&path, &borrowed(&w)).unwrap();
        assert_err_contains(
            checkpoint::load(&path, &expected(&w)),
            &[
                "w.safetensors",
                &format!("tensor `{}` holds {bad} at element {last}", w[1].0),
                "finite",
            ],
        );
    }
}

#[test]
fn loading_names_missing_extra_and_misshapen_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    checkpoint::save(&path, &borrowed(&weights())).unwrap();
    let want = vec![
        ("dense.kernel".to_string(), vec![2, 3]),
        ("dense_1.kernel".to_string(), vec![2, 1]),
    ];
    assert_err_contains(
        checkpoint::load(&path, &want),
        &[
            "`dense.kernel` has shape [3, 2], the model expects [2, 3]",
            "`dense_1.kernel` [2, 1] is missing",
            "`dense.bias` is not a weight of the model",
        ],
    );
}

#[test]
fn broken_checkpoints_are_refused_clearly() {
    let want = vec![("dense.kernel".to_string(), vec![2, 2])];
    assert_err_contains(
        checkpoint::load(&broken("f16.safetensors"), &want),
        &["f16.safetensors", "`dense.kernel` is F16", "float32"],
    );
    assert_err_contains(
        checkpoint::load(&broken("torn.safetensors"), &want),
        &["torn.safetensors", "truncated or corrupt"],
    );
    assert_err_contains(
        checkpoint::load(&broken("garbage.safetensors"), &want),
        &[
            "garbage.safetensors",
            "not a valid safetensors file",
            "header length",
        ],
    );
    assert_err_contains(
        checkpoint::load(&broken("none.safetensors"), &want),
        &["none.safetensors", "cannot read"],
    );
}
