//! Data sources (csv, idx, mnist) and their preparation for training.

/// Samples in memory, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// `[rows, feature_count]`; reshaped to the model's input shape by layout only.
    pub features: Features,
    pub feature_count: usize,
    /// `[rows, target_width]`. Class targets of sparse losses are class indices stored
    /// as f32 (`target_width == 1`); `categorical_crossentropy` gets one-hot rows.
    pub targets: Vec<f32>,
    pub target_width: usize,
    pub rows: usize,
}

/// Feature values as their source holds them: image bytes stay bytes (a quarter of
/// the memory of floats) and become floats only as a batch is gathered.
#[derive(Debug, Clone, PartialEq)]
pub enum Features {
    Values(Vec<f32>),
    /// Pixel bytes `p`, whose values are `p / 255` (in `[0, 1]`).
    Pixels(Vec<u8>),
}

impl Default for Features {
    fn default() -> Self {
        Features::Values(Vec::new())
    }
}

/// `p / 255` for every byte, computed in f32 as a division (the values Keras's
/// `x / 255.0` gives), looked up rather than divided per pixel.
const PIXEL_VALUES: [f32; 256] = {
    let mut table = [0.0; 256];
    let mut p = 0;
    while p < 256 {
        table[p] = p as f32 / 255.0;
        p += 1;
    }
    table
};

/// `p / 255` of each byte into `out` (as long as `bytes`).
fn pixels_to_f32(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2, the function's one requirement, was detected just above; it
        // indexes both slices only below their shorter length.
        unsafe { pixels_to_f32_avx2(bytes, out) };
        return;
    }
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = PIXEL_VALUES[usize::from(b)];
    }
}

/// `pixels_to_f32` eight at a time: a vector division, correctly rounded like the
/// scalar one, so the values are the table's to the bit (tested), four times faster.
///
/// # Safety
/// The machine has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pixels_to_f32_avx2(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = bytes.len().min(out.len());
    let full = n / 8 * 8;
    let divisor = _mm256_set1_ps(255.0);
    for i in (0..full).step_by(8) {
        // SAFETY: `i + 8 <= n` for both slices.
        unsafe {
            let eight = _mm_loadl_epi64(bytes.as_ptr().add(i) as *const __m128i);
            let values = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(eight));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_div_ps(values, divisor));
        }
    }
    for i in full..n {
        out[i] = PIXEL_VALUES[usize::from(bytes[i])];
    }
}

impl Features {
    pub fn len(&self) -> usize {
        match self {
            Features::Values(v) => v.len(),
            Features::Pixels(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value as a float (a copy).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Features::Values(v) => v.clone(),
            Features::Pixels(p) => {
                let mut out = vec![0.0; p.len()];
                pixels_to_f32(p, &mut out);
                out
            }
        }
    }

    /// Every value as a float, reusing the buffer when the values are floats already.
    fn into_f32(self) -> Vec<f32> {
        match self {
            Features::Values(v) => v,
            pixels => pixels.to_f32(),
        }
    }

    /// The rows `rows` of `width` values each, in the same representation.
    fn rows(&self, rows: &[usize], width: usize) -> Features {
        match self {
            Features::Values(v) => Features::Values(gather_rows(v, rows, width)),
            Features::Pixels(p) => Features::Pixels(gather_rows(p, rows, width)),
        }
    }

    /// Starts loading every cache line of row `r` of `width` values.
    fn prefetch_row(&self, r: usize, width: usize) {
        match self {
            Features::Values(v) => prefetch_lines(&v[r * width..(r + 1) * width]),
            Features::Pixels(p) => prefetch_lines(&p[r * width..(r + 1) * width]),
        }
    }
}

fn gather_rows<T: Copy>(values: &[T], rows: &[usize], width: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&values[r * width..(r + 1) * width]);
    }
    out
}

pub mod check;
pub mod csv;
pub mod error;
pub mod idx;
pub mod npy;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::RngCore;
use rand::SeedableRng;

pub use error::DataError;
use error::{Column, DataErrorKind as K, Place, SplitProblem};

use std::path::{Path, PathBuf};

use crate::ops::random::{mix64, GOLDEN_GAMMA};
use crate::sema::model::{DataSource, Loss, Model, Targets, TestSource, TrainConfig};

/// The data of one `train` block, split and checked against the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub train: Dataset,
    pub validation: Option<Dataset>,
    pub test: Option<Dataset>,
    /// The csv feature columns in input order (empty for images).
    pub feature_names: Vec<String>,
    /// `standardize`'s per-feature (mean, scale), as applied to every set.
    pub standardization: Option<(Vec<f64>, Vec<f64>)>,
    /// The class names, by class index, when the training target column holds words.
    pub class_names: Option<Vec<String>>,
}

/// Loads, splits, standardizes and checks the data of `config` for `model`.
///
/// Splits follow scikit-learn's `train_test_split`: one `StdRng::seed_from_u64(seed)`
/// (rand 0.8) shuffles the row numbers `0..n`; the first `round(f * n)` of that
/// permutation are held out as the test rows and the rest, in permuted order, remain.
/// `validation_split` then shuffles the remaining rows with the same generator and
/// holds out the first `round(f * m)` of them. A split that holds out no row, or
/// leaves no training row, is an error.
///
/// `standardize` (csv only) computes each feature's mean and population standard
/// deviation over the rows trained on (neither validation nor test rows) and applies
/// them to every set; a constant column is only centred.
///
/// Targets become what the loss reads: class indices (sparse categorical), one-hot
/// rows of the output width (categorical), 0/1 labels (binary) or values.
pub fn prepare(model: &Model, config: &TrainConfig) -> Result<Prepared, DataError> {
    let targets = TargetRule::new(model, config.loss)?;
    let data = load(&config.data, None)?;
    check_features(model, &data, &config.data)?;
    check_loaded_ids(model, &data)?;
    if let (
        DataSource::Csv {
            standardize: true, ..
        },
        Some((layer, _)),
    ) = (&config.data, vocabulary(model))
    {
        return Err(standardized_ids(layer));
    }
    let feature_names = data.feature_names.clone();
    let class_names = data.class_names.clone();
    let data = targets.apply(data, None)?;

    let mut rng = StdRng::seed_from_u64(config.seed);
    let all: Vec<usize> = (0..data.rows).collect();
    let (train_rows, test) = match &config.test {
        None => (all, None),
        Some(TestSource::Split(f)) => {
            let (held, kept) = split_rows(all, *f, &mut rng, &format!("test = split({f})"))?;
            (kept, Some(subset(&data, &held)))
        }
        Some(TestSource::Source(source)) => {
            let test = load(source, csv_columns(&feature_names))?;
            check_features(model, &test, source)?;
            check_loaded_ids(model, &test)?;
            (all, Some(targets.apply(test, class_names.as_deref())?))
        }
    };
    let (train_rows, validation_rows) = match config.validation_split {
        None => (train_rows, None),
        Some(f) => {
            let (held, kept) =
                split_rows(train_rows, f, &mut rng, &format!("validation_split = {f}"))?;
            (kept, Some(held))
        }
    };

    let validation = match (&config.validation_data, validation_rows) {
        (Some(source), _) => {
            let set = load(source, csv_columns(&feature_names))?;
            check_features(model, &set, source)?;
            Some(targets.apply(set, class_names.as_deref())?)
        }
        (None, rows) => rows.map(|rows| subset(&data, &rows)),
    };
    // Training on every row in file order (no split): the loaded set itself, not a copy.
    let in_order = train_rows.iter().enumerate().all(|(i, &r)| i == r);
    let train = if in_order && train_rows.len() == data.rows {
        data
    } else {
        subset(&data, &train_rows)
    };
    let mut prepared = Prepared {
        train,
        validation,
        test,
        feature_names,
        standardization: None,
        class_names,
    };
    if let DataSource::Csv {
        standardize: true, ..
    } = config.data
    {
        let (mean, scale) = standardization(&prepared.train);
        standardize(&mut prepared.train, &mean, &scale);
        for set in [&mut prepared.validation, &mut prepared.test]
            .into_iter()
            .flatten()
        {
            standardize(set, &mean, &scale);
        }
        prepared.standardization = Some((mean, scale));
    }
    Ok(prepared)
}

/// Loads `source` for a trained model (`nnc evaluate --data`): checked against the
/// model, targets made what `config.loss` reads (class words numbered as the
/// training's `classes` were), and standardized with the training statistics
/// `standardization` (mean, scale) when there are any.
pub fn prepare_source(
    model: &Model,
    config: &TrainConfig,
    source: &DataSource,
    standardization: Option<&(Vec<f64>, Vec<f64>)>,
    classes: &[String],
) -> Result<Dataset, DataError> {
    let targets = TargetRule::new(model, config.loss)?;
    let training = training_columns(&config.data);
    let loaded = load(source, training.as_deref().and_then(csv_columns))?;
    check_features(model, &loaded, source)?;
    check_loaded_ids(model, &loaded)?;
    let mut data = targets.apply(loaded, Some(classes))?;
    if let Some((mean, scale)) = standardization {
        standardize(&mut data, mean, scale);
    }
    Ok(data)
}

/// Standardizes raw feature rows (`values.len()` a multiple of `mean.len()`) as
/// `standardize` did in training: in f64, rounded to f32.
pub fn standardize_values(values: &mut [f32], mean: &[f64], scale: &[f64]) {
    for row in values.chunks_exact_mut(mean.len().max(1)) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(scale) {
            *v = ((f64::from(*v) - m) / s) as f32;
        }
    }
}

/// Sets `order` to the training rows' order in `epoch`: a permutation of
/// `0..order.len()` fixed by `seed` and `epoch`, independent of the generator used
/// for the splits. The caller keeps the buffer from epoch to epoch.
///
/// A Fisher-Yates shuffle drawing each index with `uniform_below`: three times
/// faster than rand's `shuffle`, whose range sampling cost more than a small
/// network's whole epoch of steps (1.4 of 6 ms for 100,000 rows).
pub fn shuffle_order(order: &mut [usize], seed: u64, epoch: usize) {
    const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4521;
    let mut rng =
        StdRng::seed_from_u64(splitmix64(splitmix64(seed ^ SHUFFLE_STREAM) ^ epoch as u64));
    for (i, row) in order.iter_mut().enumerate() {
        *row = i;
    }
    for i in (1..order.len()).rev() {
        order.swap(i, uniform_below(&mut rng, i + 1));
    }
}

/// A uniform integer in `0..n` (`n > 0`): the high half of a 64x64-bit product,
/// redrawn in the rare case that would favour some values (Lemire's method).
fn uniform_below(rng: &mut StdRng, n: usize) -> usize {
    let n = n as u64;
    let mut product = u128::from(rng.next_u64()) * u128::from(n);
    if (product as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (product as u64) < threshold {
            product = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (product >> 64) as usize
}

/// Copies the samples `rows` of `ds` into the front of `x` (features) and `y`
/// (targets), row after row, without allocating.
///
/// # Panics
/// If `x` or `y` is too small for `rows.len()` samples, or a row is out of range:
/// both are bugs of the caller, never of the data.
pub fn gather(ds: &Dataset, rows: &[usize], x: &mut [f32], y: &mut [f32]) {
    let (fc, tw) = (ds.feature_count, ds.target_width);
    assert!(
        x.len() >= rows.len() * fc && y.len() >= rows.len() * tw,
        "gather: batch buffers too small"
    );
    match &ds.features {
        Features::Values(v) => copy_rows(v, rows, fc, x),
        Features::Pixels(p) => {
            for (i, &r) in rows.iter().enumerate() {
                pixels_to_f32(&p[r * fc..(r + 1) * fc], &mut x[i * fc..(i + 1) * fc]);
            }
        }
    }
    copy_rows(&ds.targets, rows, tw, y);
}

/// Copies the rows `rows` of `width` values each from `values` into the front of
/// `out`. Rows of up to eight values (csv features, class targets) are copied by
/// code made for their width: a call to `memcpy` per row of three floats cost more
/// than a small network's train step.
fn copy_rows(values: &[f32], rows: &[usize], width: usize, out: &mut [f32]) {
    fn fixed<const W: usize>(values: &[f32], rows: &[usize], out: &mut [f32]) {
        for (o, &r) in out.chunks_exact_mut(W).zip(rows) {
            o.copy_from_slice(&values[r * W..(r + 1) * W]);
        }
    }
    match width {
        0 => {}
        1 => fixed::<1>(values, rows, out),
        2 => fixed::<2>(values, rows, out),
        3 => fixed::<3>(values, rows, out),
        4 => fixed::<4>(values, rows, out),
        5 => fixed::<5>(values, rows, out),
        6 => fixed::<6>(values, rows, out),
        7 => fixed::<7>(values, rows, out),
        8 => fixed::<8>(values, rows, out),
        _ => {
            for (o, &r) in out.chunks_exact_mut(width).zip(rows) {
                o.copy_from_slice(&values[r * width..(r + 1) * width]);
            }
        }
    }
}

/// Asks the CPU to start loading the samples `rows` of `ds` into its cache, so that
/// the `gather` of the next batch, run after this batch's step, does not wait on
/// memory: the rows of a shuffled epoch are scattered over the whole data set. Every
/// line of a row: converting MNIST's pixels waited on memory with only the first
/// line asked for.
pub fn prefetch(ds: &Dataset, rows: &[usize]) {
    let (fc, tw) = (ds.feature_count, ds.target_width);
    for &r in rows {
        ds.features.prefetch_row(r, fc);
        prefetch_lines(&ds.targets[r * tw..(r + 1) * tw]);
    }
}

/// Prefetches every cache line `values` touches (a hint: it never faults, and does
/// nothing on targets without the instruction).
fn prefetch_lines<T>(values: &[T]) {
    const LINE: usize = 64;
    let first = values.as_ptr().cast::<u8>();
    let end = first.wrapping_add(std::mem::size_of_val(values));
    // From the start of the line holding the first byte, one address per line (a
    // plain loop: this runs for every row of every batch).
    let mut line = first.wrapping_sub(first as usize % LINE);
    while line < end {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: SSE is part of x86_64, and a prefetch never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.cast()) };
        }
        line = line.wrapping_add(LINE);
    }
}

/// A data source in memory, with where its rows came from for messages.
struct Loaded {
    data: Dataset,
    origin: Origin,
    /// The csv feature columns in input order (empty for images).
    feature_names: Vec<String>,
    /// A csv target column of words: the sorted words (`csv::CsvTable::class_names`).
    class_names: Option<Vec<String>>,
}

enum Origin {
    Csv {
        path: PathBuf,
        target: String,
        lines: Vec<u64>,
    },
    Idx {
        labels: PathBuf,
    },
    /// NumPy arrays: `x` and `y` name the features and labels arrays (a file, and
    /// the array in it for an `.npz` archive); `x_shape` is the features array's.
    Array {
        x: Named,
        y: Named,
        x_shape: Vec<usize>,
    },
}

/// A file, and the array in it when it is an `.npz` archive.
type Named = (PathBuf, Option<String>);

impl Loaded {
    /// The error `kind` about feature `col` of `row`, e.g. at "tokens.csv: line 7,
    /// column `t3`".
    fn feature_error(&self, row: usize, col: usize, kind: K) -> DataError {
        match &self.origin {
            Origin::Csv { path, lines, .. } => DataError::in_file(path, kind).at(Place::Cell {
                line: lines[row],
                column: Column {
                    name: self
                        .feature_names
                        .get(col)
                        .map_or("?", String::as_str)
                        .into(),
                    index: None,
                },
            }),
            Origin::Idx { labels } => DataError::in_file(labels, kind).at(Place::Pixel {
                image: row + 1,
                pixel: col + 1,
            }),
            Origin::Array {
                x: (path, array), ..
            } => DataError::in_file(path, kind)
                .in_array(array.as_deref())
                .at(Place::Feature { row, column: col }),
        }
    }

    /// The error `kind` about the target of `row`, e.g. at "iris.csv: line 7, column
    /// `species`".
    fn target_error(&self, row: usize, kind: K) -> DataError {
        match &self.origin {
            Origin::Csv {
                path,
                target,
                lines,
            } => DataError::in_file(path, kind).at(Place::Cell {
                line: lines[row],
                column: Column {
                    name: target.clone(),
                    index: None,
                },
            }),
            Origin::Idx { labels } => DataError::in_file(labels, kind).at(Place::Label(row + 1)),
            Origin::Array {
                y: (path, array), ..
            } => DataError::in_file(path, kind)
                .in_array(array.as_deref())
                .at(Place::Target(row)),
        }
    }
}

/// The first layer's name and `input_dim` when the model starts with an `embedding`:
/// its features are token ids.
pub fn vocabulary(model: &Model) -> Option<(&str, usize)> {
    match model.layers.first()? {
        crate::sema::model::Layer {
            name,
            kind: crate::sema::model::LayerKind::Embedding { input_dim, .. },
            ..
        } => Some((name, *input_dim)),
        _ => None,
    }
}

/// The first feature of `set` that is not a token id of `vocabulary` (a whole
/// number in `[0, input_dim)`), as (row, column, value), in row order.
pub fn bad_token_id(set: &Dataset, input_dim: usize) -> Option<(usize, usize, f32)> {
    let fc = set.feature_count.max(1);
    let bad = |v: f32| !(v >= 0.0 && v < input_dim as f32 && v.fract() == 0.0);
    let found = match &set.features {
        Features::Values(v) => v.iter().position(|&x| bad(x)).map(|i| (i, v[i])),
        Features::Pixels(p) => p
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .enumerate()
            .find(|&(_, x)| bad(x)),
    };
    found.map(|(i, v)| (i / fc, i % fc, v))
}

/// The error kind of `value`, which the embedding `layer` of `input_dim` ids cannot read.
pub fn not_a_token_id(value: f32, layer: &str, input_dim: usize) -> K {
    K::IdOutOfRange {
        value,
        layer: layer.to_string(),
        input_dim,
    }
}

/// Refuses, naming its row and column, a feature of `set` that the model's
/// `embedding` cannot read; `what` names the data (`nnc predict`'s input).
pub fn check_token_ids(model: &Model, set: &Dataset, what: &str) -> Result<(), DataError> {
    let Some((layer, input_dim)) = vocabulary(model) else {
        return Ok(());
    };
    match bad_token_id(set, input_dim) {
        None => Ok(()),
        Some((row, col, v)) => Err(DataError::new(not_a_token_id(v, layer, input_dim)).at(
            Place::Sample {
                what: what.to_string(),
                row: row + 1,
                feature: col + 1,
            },
        )),
    }
}

/// `check_token_ids` for a loaded source, naming the file's line and column.
fn check_loaded_ids(model: &Model, loaded: &Loaded) -> Result<(), DataError> {
    let Some((layer, input_dim)) = vocabulary(model) else {
        return Ok(());
    };
    match bad_token_id(&loaded.data, input_dim) {
        None => Ok(()),
        Some((row, col, v)) => {
            Err(loaded.feature_error(row, col, not_a_token_id(v, layer, input_dim)))
        }
    }
}

/// The training CSV's feature columns, or `None` for images and arrays (whose
/// features are matched by position).
fn csv_columns(names: &[String]) -> Option<&[String]> {
    (!names.is_empty()).then_some(names)
}

/// The feature columns of the training source, when it is a CSV file: its
/// `features` list, or every column of its header but the target. `None` when the
/// header cannot be read (later data is then matched by position).
fn training_columns(source: &DataSource) -> Option<Vec<String>> {
    match source {
        DataSource::Csv {
            features: Some(list),
            ..
        } => Some(list.clone()),
        DataSource::Csv { path, target, .. } => csv::header(path)
            .ok()
            .map(|names| names.into_iter().filter(|n| n != target).collect()),
        _ => None,
    }
}

/// Loads `source`. `training` holds the feature columns of the CSV file trained on
/// when `source` comes after it (a test set): a CSV source then finds those columns
/// by name, and its own `features`, if given, must name the same columns.
fn load(source: &DataSource, training: Option<&[String]>) -> Result<Loaded, DataError> {
    match source {
        DataSource::Csv {
            path,
            target,
            features,
            ..
        } => {
            let table = match training {
                None => csv::read(path, target, features.as_deref())?,
                Some(names) => {
                    if let Some(own) = features {
                        same_columns(path, own, names)?;
                    }
                    csv::read_matching(path, target, names)?
                }
            };
            Ok(Loaded {
                feature_names: table.feature_names,
                class_names: table.class_names,
                data: table.data,
                origin: Origin::Csv {
                    path: path.clone(),
                    target: target.clone(),
                    lines: table.lines,
                },
            })
        }
        DataSource::Idx { images, labels } => Ok(Loaded {
            feature_names: vec![],
            class_names: None,
            data: idx::read(images, labels)?,
            origin: Origin::Idx {
                labels: labels.clone(),
            },
        }),
        DataSource::Npy { x, y } => arrays(
            npy::read_npy(x)?,
            npy::read_npy(y)?,
            (x.clone(), None),
            (y.clone(), None),
        ),
        DataSource::Npz { path, x, y } => arrays(
            npy::read_npz(path, x)?,
            npy::read_npz(path, y)?,
            (path.clone(), Some(x.clone())),
            (path.clone(), Some(y.clone())),
        ),
        DataSource::Mnist { folder, subset } => {
            let (images, labels) = idx::mnist_paths(folder, *subset)?;
            Ok(Loaded {
                feature_names: vec![],
                class_names: None,
                data: idx::read(&images, &labels)?,
                origin: Origin::Idx { labels },
            })
        }
    }
}

/// A later source's `features` list must name the training features (in any order):
/// the weights were trained on exactly those.
fn same_columns(path: &Path, own: &[String], training: &[String]) -> Result<(), DataError> {
    let mut a: Vec<&String> = own.iter().collect();
    let mut b: Vec<&String> = training.iter().collect();
    a.sort();
    b.sort();
    if a == b {
        return Ok(());
    }
    Err(DataError::in_file(
        path,
        K::OtherFeatures {
            listed: own.to_vec(),
            training: training.to_vec(),
        },
    ))
}

/// The error `kind` about the array `named`.
fn array_error((path, array): &Named, kind: K) -> DataError {
    DataError::in_file(path, kind).in_array(array.as_deref())
}

/// Features and labels from two NumPy arrays; `x_named` and `y_named` name them.
fn arrays(
    x: npy::Array,
    y: npy::Array,
    x_named: Named,
    y_named: Named,
) -> Result<Loaded, DataError> {
    if x.shape.len() < 2 {
        return Err(array_error(&x_named, K::NoSampleAxis { shape: x.shape }));
    }
    let flat_y = match y.shape[..] {
        [n] | [n, 1] => Some(n),
        _ => None,
    };
    if flat_y != Some(x.shape[0]) {
        return Err(array_error(
            &y_named,
            K::LabelShape {
                shape: y.shape,
                x_file: x_named.0,
                x_array: x_named.1,
                x_shape: x.shape,
            },
        ));
    }
    Ok(Loaded {
        data: Dataset {
            feature_count: x.shape[1..].iter().product(),
            rows: x.shape[0],
            features: Features::Values(x.values),
            targets: y.values,
            target_width: 1,
        },
        origin: Origin::Array {
            x: x_named,
            y: y_named,
            x_shape: x.shape,
        },
        feature_names: vec![],
        class_names: None,
    })
}

/// Why `standardize` and `embedding` do not go together.
pub fn standardized_ids(layer: &str) -> DataError {
    DataError::new(K::StandardizedIds {
        layer: layer.to_string(),
    })
}

/// The file (and array) that holds the features of `source`.
fn features_file(source: &DataSource) -> Named {
    match source {
        DataSource::Csv { path, .. } => (path.clone(), None),
        DataSource::Idx { images, .. } => (images.clone(), None),
        DataSource::Mnist { folder, .. } => (folder.clone(), None),
        DataSource::Npy { x, .. } => (x.clone(), None),
        DataSource::Npz { path, x, .. } => (path.clone(), Some(x.clone())),
    }
}

fn check_features(model: &Model, loaded: &Loaded, source: &DataSource) -> Result<(), DataError> {
    let data = &loaded.data;
    if data.feature_count == model.input_size() {
        return Ok(());
    }
    let (input, input_shape) = (model.input_name.clone(), model.input_shape.clone());
    let kind = match &loaded.origin {
        Origin::Array { x_shape, .. } => K::ArrayInput {
            shape: x_shape.clone(),
            input,
            input_shape,
        },
        _ => K::FeatureCount {
            found: data.feature_count,
            input,
            input_shape,
        },
    };
    Err(array_error(&features_file(source), kind))
}

/// How the raw target column becomes the targets a loss reads.
#[derive(Debug, Clone, Copy)]
enum TargetRule {
    /// Class index in `[0, classes)`, kept as an index.
    Sparse { classes: usize },
    /// Class index in `[0, classes)`, turned into a one-hot row.
    OneHot { classes: usize },
    /// 0 or 1.
    Binary,
    /// Any number.
    Value,
}

impl TargetRule {
    fn new(model: &Model, loss: Loss) -> Result<Self, DataError> {
        let outputs = model.output_size();
        let (loss_name, model_name) = (loss.keyword().to_string(), model.name.clone());
        match loss.targets() {
            Targets::Sparse => Ok(Self::Sparse { classes: outputs }),
            Targets::OneHot => Ok(Self::OneHot { classes: outputs }),
            Targets::Binary if outputs == 1 => Ok(Self::Binary),
            Targets::Value if outputs == 1 => Ok(Self::Value),
            Targets::Binary => Err(DataError::new(K::NeedsOneOutput {
                loss: loss_name,
                model: model_name,
                outputs,
            })),
            Targets::Value => Err(DataError::new(K::OneTargetPerSample {
                loss: loss_name,
                model: model_name,
                outputs,
            })),
        }
    }

    /// `known` are the class names of the data trained on, when `loaded` comes after
    /// it: a target column of words is numbered by them, not by its own words (a test
    /// file may lack a class).
    fn apply(self, mut loaded: Loaded, known: Option<&[String]>) -> Result<Dataset, DataError> {
        if let Some(words) = loaded.class_names.take() {
            loaded.data.targets = self.number_classes(&loaded, &words, known)?;
        }
        let data = &loaded.data;
        let class_of = |row: usize, classes: usize, loss: &str| -> Result<usize, DataError> {
            let value = data.targets[row];
            if value.fract() == 0.0 && value >= 0.0 && (value as usize) < classes {
                Ok(value as usize)
            } else {
                Err(loaded.target_error(
                    row,
                    K::NotAClassIndex {
                        value,
                        classes,
                        loss: loss.to_string(),
                    },
                ))
            }
        };
        match self {
            Self::Value => Ok(loaded.data),
            Self::Sparse { classes } => {
                for row in 0..data.rows {
                    class_of(row, classes, "sparse_categorical_crossentropy")?;
                }
                Ok(loaded.data)
            }
            Self::Binary => {
                for (row, &v) in data.targets.iter().enumerate() {
                    if v != 0.0 && v != 1.0 {
                        return Err(loaded.target_error(row, K::NotBinary { value: v }));
                    }
                }
                Ok(loaded.data)
            }
            Self::OneHot { classes } => {
                let mut targets = vec![0.0; data.rows * classes];
                for row in 0..data.rows {
                    let c = class_of(row, classes, "categorical_crossentropy")?;
                    targets[row * classes + c] = 1.0;
                }
                Ok(Dataset {
                    targets,
                    target_width: classes,
                    ..loaded.data
                })
            }
        }
    }
}

impl TargetRule {
    /// The class index of each row of a target column of `words` (whose indices
    /// into `words` the targets hold): into `known` for data after the training
    /// data, else into `words` itself, which must then name every class.
    fn number_classes(
        self,
        loaded: &Loaded,
        words: &[String],
        known: Option<&[String]>,
    ) -> Result<Vec<f32>, DataError> {
        let words_vec = || words.to_vec();
        let classes = match self {
            Self::Value => {
                return Err(loaded.target_error(0, K::WordsForRegression { words: words_vec() }))
            }
            Self::Binary => 2,
            Self::Sparse { classes } | Self::OneHot { classes } => classes,
        };
        let Some(known) = known else {
            if words.len() != classes {
                let kind = if matches!(self, Self::Binary) {
                    K::NotTwoClasses { words: words_vec() }
                } else {
                    K::ClassCount {
                        words: words_vec(),
                        outputs: classes,
                    }
                };
                return Err(loaded.target_error(0, kind));
            }
            return Ok(loaded.data.targets.clone());
        };
        loaded
            .data
            .targets
            .iter()
            .enumerate()
            .map(|(row, &i)| {
                let word = &words[i as usize];
                match known.iter().position(|k| k == word) {
                    Some(c) => Ok(c as f32),
                    None => Err(loaded.target_error(
                        row,
                        K::UnknownClass {
                            word: word.clone(),
                            known: known.to_vec(),
                        },
                    )),
                }
            })
            .collect()
    }
}

/// Shuffles `rows` and splits off the first `round(fraction * n)`: (held out, kept).
/// `what` is the setting as written, for messages.
fn split_rows(
    mut rows: Vec<usize>,
    fraction: f64,
    rng: &mut StdRng,
    what: &str,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    let n = rows.len();
    let refuse = |problem| {
        Err(DataError::new(K::Split {
            what: what.to_string(),
            rows: n,
            problem,
        }))
    };
    if !(fraction > 0.0 && fraction < 1.0) {
        return refuse(SplitProblem::NotAFraction);
    }
    let held = (fraction * n as f64).round() as usize;
    if held == 0 {
        return refuse(SplitProblem::HoldsOutNothing);
    }
    if held >= n {
        return refuse(SplitProblem::LeavesNothing);
    }
    rows.shuffle(rng);
    let kept = rows.split_off(held);
    Ok((rows, kept))
}

fn subset(data: &Dataset, rows: &[usize]) -> Dataset {
    Dataset {
        features: data.features.rows(rows, data.feature_count),
        feature_count: data.feature_count,
        targets: gather_rows(&data.targets, rows, data.target_width),
        target_width: data.target_width,
        rows: rows.len(),
    }
}

/// Per-feature mean and the scale to divide by (the population standard deviation,
/// or 1 for a constant column, which is then only centred). Sums in f64.
fn standardization(data: &Dataset) -> (Vec<f64>, Vec<f64>) {
    let fc = data.feature_count;
    let n = data.rows.max(1) as f64;
    let mut mean = vec![0.0f64; fc];
    let values = data.features.to_f32();
    for row in values.chunks_exact(fc) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; fc];
    for row in values.chunks_exact(fc) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    let scale = var
        .iter()
        .map(|s| {
            let std = (s / n).sqrt();
            if std > 0.0 {
                std
            } else {
                1.0
            }
        })
        .collect();
    (mean, scale)
}

fn standardize(data: &mut Dataset, mean: &[f64], scale: &[f64]) {
    let mut values = std::mem::take(&mut data.features).into_f32();
    standardize_values(&mut values, mean, scale);
    data.features = Features::Values(values);
}

/// A 64-bit mix (SplitMix64's finalizer): nearby seeds and epochs give unrelated streams.
fn splitmix64(z: u64) -> u64 {
    mix64(z.wrapping_add(GOLDEN_GAMMA))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_convert_to_the_tables_values_to_the_bit() {
        // Every byte value, in a length that leaves a tail after the 8-wide part.
        let bytes: Vec<u8> = (0..=255u8).chain([255, 0, 7]).collect();
        let mut out = vec![f32::NAN; bytes.len()];
        pixels_to_f32(&bytes, &mut out);
        for (&b, &v) in bytes.iter().zip(&out) {
            assert_eq!(v.to_bits(), (f32::from(b) / 255.0).to_bits(), "byte {b}");
        }
    }
}
