//! Why a data source could not be read or does not fit the model: the file, where
//! in it (a CSV line and column, an image, a label, an array element) and what is
//! wrong, as data. `Display` renders the message users read; `nnc run --json` and
//! `nnc check` read the fields (the file the `.nn` line names, the row, the column).

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    /// The file (a folder for `mnist(...)`), as the train block or command line gave
    /// it; `None` for data that is no file (rows in memory, a split setting).
    pub file: Option<PathBuf>,
    /// The array inside an `.npz` archive.
    pub array: Option<String>,
    pub place: Option<Place>,
    /// Boxed: results carry the error, and most of them are `Ok`.
    pub kind: Box<DataErrorKind>,
}

/// Where in the file the problem is.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// A CSV row, by its 1-based line in the file.
    Line(u64),
    /// A CSV cell: its line and column.
    Cell { line: u64, column: Column },
    /// Pixel `pixel` of image `image` (both 1-based) of an IDX source; `file` is
    /// its label file, which names the pair.
    Pixel { image: usize, pixel: usize },
    /// Label `label` (1-based) of an IDX label file.
    Label(usize),
    /// The features array's element `[row, column]` (0-based, as NumPy indexes).
    Feature { row: usize, column: usize },
    /// The labels array's element `[row]` (0-based).
    Target(usize),
    /// Feature `feature` of sample `row` (both 1-based) of data in memory, which
    /// `what` names ("the input").
    Sample {
        what: String,
        row: usize,
        feature: usize,
    },
}

/// A CSV column: its header name, and its 1-based position where the message shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub index: Option<usize>,
}

/// Where an IDX file ends before its header says it should.
#[derive(Debug, Clone, PartialEq)]
pub enum Cut {
    /// Inside the 4-byte magic number.
    Magic,
    /// Inside the header of `header_bytes` bytes.
    Header { header_bytes: u64 },
    /// Inside the values: the header (`shape`) needs `expected_bytes` bytes in all.
    Values { shape: String, expected_bytes: u64 },
}

/// What a split setting (`validation_split`, `test = split(...)`) gets wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SplitProblem {
    NotAFraction,
    HoldsOutNothing,
    LeavesNothing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DataErrorKind {
    /// The file cannot be opened or read; `what` names it in the message ("the data
    /// file", "the label file"), when it does.
    CannotRead {
        what: Option<String>,
        reason: String,
    },
    NotCsv {
        reason: String,
    },
    EmptyFile,
    /// The first line holds numbers: there is no header row of `columns` names.
    NoHeader {
        columns: usize,
    },
    /// A column the source names (`role`: "target", "feature") is not in the header.
    MissingColumn {
        role: String,
        name: String,
        nearest: Option<String>,
        columns: Vec<String>,
    },
    DuplicateColumn {
        role: String,
        name: String,
    },
    EmptyFeatureList,
    TargetAsFeature {
        name: String,
    },
    NoFeatureColumns {
        target: String,
    },
    WrongFieldCount {
        expected: usize,
        found: usize,
    },
    EmptyCell,
    NotANumber {
        text: String,
    },
    NotFinite {
        text: String,
    },
    /// A target column of words holds the number `number`.
    MixedTargets {
        number: String,
        word: String,
    },
    NoRows,
    /// Later data lacks columns the model was trained on.
    MissingTrainingColumns {
        missing: Vec<String>,
        training: Vec<String>,
    },
    TrainingFeatureIsTarget {
        name: String,
        target: String,
    },
    /// Later data's own `features` list differs from the training features.
    OtherFeatures {
        listed: Vec<String>,
        training: Vec<String>,
    },
    /// A features array of fewer than two axes.
    NoSampleAxis {
        shape: Vec<usize>,
    },
    /// A labels array that is not one label per sample of the features array
    /// (`x_file`, and `x_array` in it).
    LabelShape {
        shape: Vec<usize>,
        x_file: PathBuf,
        x_array: Option<String>,
        x_shape: Vec<usize>,
    },
    /// A features array whose samples are not the model's input.
    ArrayInput {
        shape: Vec<usize>,
        input: String,
        input_shape: Vec<usize>,
    },
    /// Samples of `found` features for an input of another size.
    FeatureCount {
        found: usize,
        input: String,
        input_shape: Vec<usize>,
    },
    /// `standardize = true` on the token ids the embedding `layer` reads.
    StandardizedIds {
        layer: String,
    },
    /// A one-output loss for a model of several outputs.
    NeedsOneOutput {
        loss: String,
        model: String,
        outputs: usize,
    },
    /// A regression loss for a model of several outputs.
    OneTargetPerSample {
        loss: String,
        model: String,
        outputs: usize,
    },
    NotAClassIndex {
        value: f32,
        classes: usize,
        loss: String,
    },
    NotBinary {
        value: f32,
    },
    /// A target column of class words for a regression loss.
    WordsForRegression {
        words: Vec<String>,
    },
    /// A target column of words naming other than two classes, for binary cross-entropy.
    NotTwoClasses {
        words: Vec<String>,
    },
    /// A target column of words naming another number of classes than the outputs.
    ClassCount {
        words: Vec<String>,
        outputs: usize,
    },
    /// A class word the training data did not have.
    UnknownClass {
        word: String,
        known: Vec<String>,
    },
    /// A feature that is not a token id of the embedding `layer`.
    IdOutOfRange {
        value: f32,
        layer: String,
        input_dim: usize,
    },
    /// A split setting as written (`what`) that cannot split `rows` rows.
    Split {
        what: String,
        rows: usize,
        problem: SplitProblem,
    },
    /// An IDX image file (`file`) and label file that do not pair up.
    ImageLabelCount {
        images: usize,
        labels_file: PathBuf,
        labels: usize,
    },
    NoPixels {
        dims: Vec<usize>,
    },
    NoFolder,
    /// No MNIST file of `kind` ("images", "labels") under any of the `candidates` names.
    NoMnistFile {
        kind: String,
        candidates: Vec<String>,
    },
    BadGzip {
        reason: String,
    },
    /// An IDX file that ends early; offsets count decompressed bytes when `gzip`.
    Truncated {
        ends_at: u64,
        gzip: bool,
        cut: Cut,
    },
    /// An IDX file whose magic number is `found` where a `what` ("image", "label")
    /// file has `expected`.
    BadMagic {
        found: [u8; 4],
        expected: [u8; 4],
        what: String,
    },
    /// An IDX header (`shape`) of more values than the `limit_bytes` nnc loads.
    TooLarge {
        shape: String,
        limit_bytes: u64,
    },
    /// Bytes after the end the IDX header (`shape`) gives.
    TrailingData {
        ends_at: u64,
        gzip: bool,
        shape: String,
    },
    NotNpy {
        reason: String,
    },
    NotNpz {
        reason: String,
    },
    NoArray {
        name: String,
        available: Vec<String>,
    },
    FortranOrder,
    ShapeTooLarge {
        shape: Vec<usize>,
    },
    StructuredArray,
    UnsupportedDtype {
        dtype: String,
    },
    /// An array whose values end early or cannot be read.
    ArrayTruncated {
        reason: String,
        count: u64,
        shape: Vec<usize>,
    },
    ValueCount {
        found: usize,
        count: u64,
        shape: Vec<usize>,
    },
    /// Value `index` (row-major) of an array is not finite.
    NotFiniteValue {
        index: usize,
        value: f32,
    },
}

impl DataError {
    pub fn new(kind: DataErrorKind) -> DataError {
        DataError {
            file: None,
            array: None,
            place: None,
            kind: Box::new(kind),
        }
    }

    /// An error about the file `file`.
    pub fn in_file(file: impl Into<PathBuf>, kind: DataErrorKind) -> DataError {
        DataError {
            file: Some(file.into()),
            ..DataError::new(kind)
        }
    }

    pub fn at(mut self, place: Place) -> DataError {
        self.place = Some(place);
        self
    }

    pub fn in_array(mut self, array: Option<&str>) -> DataError {
        self.array = array.map(str::to_string);
        self
    }

    /// The 1-based row the error is in: a CSV file's line, an image, a label, a sample.
    pub fn row(&self) -> Option<u64> {
        Some(match self.place.as_ref()? {
            Place::Line(line) | Place::Cell { line, .. } => *line,
            Place::Pixel { image: row, .. } | Place::Label(row) | Place::Sample { row, .. } => {
                *row as u64
            }
            Place::Feature { row, .. } | Place::Target(row) => *row as u64 + 1,
        })
    }

    /// The column the error is in: its name (CSV) and its 1-based index, where known.
    pub fn column(&self) -> Option<(Option<&str>, Option<usize>)> {
        match (&self.place, &*self.kind) {
            (Some(Place::Cell { column, .. }), _) => Some((Some(&column.name), column.index)),
            (Some(Place::Pixel { pixel: c, .. } | Place::Sample { feature: c, .. }), _) => {
                Some((None, Some(*c)))
            }
            (Some(Place::Feature { column, .. }), _) => Some((None, Some(column + 1))),
            (
                _,
                DataErrorKind::MissingColumn { name, .. }
                | DataErrorKind::DuplicateColumn { name, .. }
                | DataErrorKind::TargetAsFeature { name }
                | DataErrorKind::TrainingFeatureIsTarget { name, .. },
            ) => Some((Some(name), None)),
            _ => None,
        }
    }

    /// The file, and the array in it: how messages name the source.
    fn source(&self) -> Option<String> {
        Some(named(self.file.as_ref()?, self.array.as_deref()))
    }

    /// The message's opening words up to the first `: `, when it names a place.
    fn location(&self) -> Option<String> {
        let source = self.source();
        let file = || source.clone().unwrap_or_default();
        let Some(place) = &self.place else {
            return source;
        };
        Some(match place {
            Place::Line(line) => format!("{}: line {line}", file()),
            Place::Cell {
                line,
                column:
                    Column {
                        name,
                        index: Some(index),
                    },
            } => format!("{}: line {line}, column {index} (`{name}`)", file()),
            Place::Cell {
                line,
                column: Column { name, index: None },
            } => format!("{}: line {line}, column `{name}`", file()),
            Place::Pixel { image, pixel } => {
                format!("the images of {}: image {image}, pixel {pixel}", file())
            }
            // Labels are one byte each after the 8-byte header.
            Place::Label(label) => format!("{}: label {label} (byte offset {})", file(), 7 + label),
            // The features array has always been named `x` alone here.
            Place::Feature { row, column } => format!("x[{row}, {column}]"),
            Place::Target(row) => format!("{}: y[{row}]", file()),
            Place::Sample { what, row, feature } => {
                format!("{what}: row {row}, feature {feature}")
            }
        })
    }
}

/// A file, or an array in an `.npz` archive, as messages name it.
fn named(file: &Path, array: Option<&str>) -> String {
    match array {
        Some(array) => format!("{}: array `{array}`", file.display()),
        None => file.display().to_string(),
    }
}

/// Up to twelve column names, quoted.
pub fn list_columns(names: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut s: Vec<String> = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    if names.len() > SHOWN {
        s.push(format!("... ({} in all)", names.len()));
    }
    s.join(", ")
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// At most eight class names, quoted.
fn classes(names: &[String]) -> String {
    let more = if names.len() > 8 { ", ..." } else { "" };
    format!("{}{more}", quoted(&names[..names.len().min(8)]))
}

fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DataErrorKind as K;
        // Messages that name their file within the sentence.
        match &*self.kind {
            K::ImageLabelCount {
                images,
                labels_file,
                labels,
            } => {
                return write!(
                    f,
                    "{} holds {images} images but {} holds {labels} labels; they must pair up \
                     one to one",
                    self.source().unwrap_or_default(),
                    labels_file.display()
                )
            }
            K::Split {
                what,
                rows,
                problem,
            } => {
                return match problem {
                    SplitProblem::NotAFraction => {
                        write!(f, "{what}: the fraction must be between 0 and 1")
                    }
                    SplitProblem::HoldsOutNothing => write!(
                        f,
                        "{what} of {rows} rows holds out no row; use a larger fraction or more \
                         data"
                    ),
                    SplitProblem::LeavesNothing => {
                        write!(f, "{what} of {rows} rows leaves no row to train on")
                    }
                }
            }
            _ => {}
        }
        if let Some(at) = self.location() {
            write!(f, "{at}: ")?;
        }
        let offsets = |gzip: bool| {
            if gzip {
                " of the decompressed data"
            } else {
                ""
            }
        };
        match &*self.kind {
            K::ImageLabelCount { .. } | K::Split { .. } => Ok(()),
            K::CannotRead { what, reason } => match what {
                Some(what) => write!(f, "cannot read {what}: {reason}"),
                None => write!(f, "cannot read: {reason}"),
            },
            K::NotCsv { reason } => write!(f, "not a CSV text file: {reason}"),
            K::EmptyFile => f.write_str(
                "the file is empty; a CSV data file starts with a header row naming its columns",
            ),
            K::NoHeader { columns } => {
                let mut names: Vec<String> =
                    (1..(*columns).min(4)).map(|i| format!("x{i}")).collect();
                if *columns > 4 {
                    names.push("...".into());
                }
                names.push("label".into());
                write!(
                    f,
                    "line 1 holds numbers, not column names; add a header row naming the \
                     columns (for example `{}`)",
                    names.join(",")
                )
            }
            K::MissingColumn {
                role,
                name,
                nearest,
                columns,
            } => {
                write!(f, "no {role} column `{name}` in the header")?;
                match nearest {
                    Some(n) => write!(f, "; did you mean `{n}`?"),
                    None => write!(f, "; the columns are {}", list_columns(columns)),
                }
            }
            K::DuplicateColumn { role, name } => write!(
                f,
                "the header names column `{name}` more than once; the {role} column is ambiguous"
            ),
            K::EmptyFeatureList => f.write_str("the feature list is empty"),
            K::TargetAsFeature { name } => write!(
                f,
                "column `{name}` is the target; it cannot also be a feature"
            ),
            K::NoFeatureColumns { target } => write!(
                f,
                "the only column is the target `{target}`; there are no feature columns"
            ),
            K::WrongFieldCount { expected, found } => write!(
                f,
                "the row has {found} field{} but the header has {expected} columns",
                plural(*found, "", "s")
            ),
            K::EmptyCell => f.write_str("the cell is empty (a missing value)"),
            K::NotANumber { text } => write!(f, "`{text}` is not a number"),
            K::NotFinite { text } => write!(f, "`{text}` is not a finite number"),
            K::MixedTargets { number, word } => write!(
                f,
                "`{number}` is a number, but other targets are words such as `{word}`; a target \
                 column holds class names or numbers, not both"
            ),
            K::NoRows => f.write_str("the file has a header but no data rows"),
            K::MissingTrainingColumns { missing, training } => write!(
                f,
                "no column {} in the header; the model was trained on {}, and later data is \
                 matched to the training columns by name",
                quoted(missing),
                list_columns(training)
            ),
            K::TrainingFeatureIsTarget { name, target } => write!(
                f,
                "column `{name}` is the target `{target}` here, but a feature of the training \
                 data"
            ),
            K::OtherFeatures { listed, training } => write!(
                f,
                "its `features` ({}) are not the training features ({}); later data must hold \
                 the columns the model was trained on, which it finds by name",
                quoted(listed),
                quoted(training)
            ),
            K::NoSampleAxis { shape } => write!(
                f,
                "the array has shape {shape:?}; its first axis is the sample, so it needs at \
                 least two axes"
            ),
            K::LabelShape {
                shape,
                x_file,
                x_array,
                x_shape,
            } => write!(
                f,
                "the array has shape {shape:?}, {} has shape {x_shape:?}; the labels need \
                 shape [{}] (one per sample)",
                named(x_file, x_array.as_deref()),
                x_shape.first().copied().unwrap_or(0)
            ),
            K::ArrayInput {
                shape,
                input,
                input_shape,
            } => write!(
                f,
                "the array has shape {shape:?}, but the model's input `{input}` has shape [{}]; \
                 x needs shape [samples, {}] (or [samples, {}])",
                dims(input_shape),
                dims(input_shape),
                input_shape.iter().product::<usize>()
            ),
            K::FeatureCount {
                found,
                input,
                input_shape,
            } => write!(
                f,
                "each sample has {found} features, but the model's input `{input}` has shape \
                 [{}] ({} elements); the counts must agree",
                dims(input_shape),
                input_shape.iter().product::<usize>()
            ),
            K::StandardizedIds { layer } => write!(
                f,
                "`standardize = true` would turn the token ids `{layer}` reads into fractions; \
                 remove it (token ids are used as they are)"
            ),
            K::NeedsOneOutput {
                loss,
                model,
                outputs,
            } => write!(
                f,
                "`{loss}` needs a model with one output unit, but `{model}` outputs {outputs} \
                 values per sample"
            ),
            K::OneTargetPerSample {
                loss,
                model,
                outputs,
            } => write!(
                f,
                "`{loss}` compares each output with a target, but `{model}` outputs {outputs} \
                 values per sample and the data has one target per sample"
            ),
            K::NotAClassIndex {
                value,
                classes,
                loss,
            } => write!(
                f,
                "the target {value} is not a class index in [0, {classes}); `{loss}` needs \
                 integer labels from 0 to {} (the model's output size)",
                classes.saturating_sub(1)
            ),
            K::NotBinary { value } => write!(
                f,
                "the target {value} is not 0 or 1, as `binary_crossentropy` needs"
            ),
            K::WordsForRegression { words } => write!(
                f,
                "the target column holds words ({}), but a regression loss compares the output \
                 with numbers",
                classes(words)
            ),
            K::NotTwoClasses { words } => {
                let n = words.len();
                write!(
                    f,
                    "the target column names {n} class{} ({}); binary_crossentropy needs \
                     exactly two (for {n} classes use sparse_categorical_crossentropy and \
                     `dense({n}, activation = softmax)`)",
                    plural(n, "", "es"),
                    classes(words)
                )
            }
            K::ClassCount { words, outputs } => {
                let n = words.len();
                write!(
                    f,
                    "the target column names {n} class{} ({}), but the model outputs {outputs} \
                     values per sample; end the model with `dense({n}, activation = softmax)`",
                    plural(n, "", "es"),
                    classes(words)
                )
            }
            K::UnknownClass { word, known } => write!(
                f,
                "`{word}` is not one of the classes trained on ({})",
                classes(known)
            ),
            K::IdOutOfRange {
                value,
                layer,
                input_dim,
            } => write!(
                f,
                "{value} is not a token id of `{layer}`, which reads whole numbers from 0 to {}",
                input_dim.saturating_sub(1)
            ),
            K::NoPixels { dims } => write!(
                f,
                "the file holds no pixels (its header says {})",
                dims.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" x ")
            ),
            K::NoFolder => f.write_str(
                "no such folder; mnist(...) needs the folder holding the four MNIST files",
            ),
            K::NoMnistFile { kind, candidates } => write!(
                f,
                "no MNIST {kind} file; looked for {}",
                candidates.join(", ")
            ),
            K::BadGzip { reason } => write!(f, "not a valid gzip file: {reason}"),
            K::Truncated { ends_at, gzip, cut } => {
                let at = format!(
                    "truncated: the data ends at byte offset {ends_at}{}",
                    offsets(*gzip)
                );
                match cut {
                    Cut::Magic => write!(f, "{at}, before the end of the 4-byte IDX magic number"),
                    Cut::Header { header_bytes } => {
                        write!(f, "{at}, inside the header ({header_bytes} bytes)")
                    }
                    Cut::Values {
                        shape,
                        expected_bytes,
                    } => write!(
                        f,
                        "{at}, but the header ({shape}) needs {expected_bytes} bytes"
                    ),
                }
            }
            K::BadMagic {
                found,
                expected,
                what,
            } => bad_magic(f, *found, *expected, what),
            K::TooLarge { shape, limit_bytes } => write!(
                f,
                "the header says {shape} values, more than the {} GiB of float32 data nnc loads \
                 into memory",
                limit_bytes >> 30
            ),
            K::TrailingData {
                ends_at,
                gzip,
                shape,
            } => write!(
                f,
                "the data goes on past byte offset {ends_at}{}, where the header ({shape}) says \
                 it ends; is this the right file?",
                offsets(*gzip)
            ),
            K::NotNpy { reason } => match self.array {
                Some(_) => write!(f, "not a NumPy array: {reason}"),
                None => write!(f, "not a NumPy .npy file: {reason}"),
            },
            K::NotNpz { reason } => write!(f, "not a NumPy .npz archive: {reason}"),
            K::NoArray { name, available } => write!(
                f,
                "no array named `{name}`; the archive holds {}",
                if available.is_empty() {
                    "no arrays".to_string()
                } else {
                    quoted(available)
                }
            ),
            K::FortranOrder => f.write_str(
                "the array is in Fortran order; save it with np.ascontiguousarray first",
            ),
            K::ShapeTooLarge { shape } => write!(f, "the shape {shape:?} is too large to load"),
            K::StructuredArray => {
                f.write_str("a structured array; nnc reads float32, float64, uint8, int32 or int64")
            }
            K::UnsupportedDtype { dtype } => write!(
                f,
                "dtype `{dtype}` is not read by nnc; use float32, float64, uint8, int32 or int64"
            ),
            K::ArrayTruncated {
                reason,
                count,
                shape,
            } => write!(
                f,
                "the data ends early or is unreadable ({reason}); the header promises {count} \
                 values of shape {shape:?}"
            ),
            K::ValueCount {
                found,
                count,
                shape,
            } => write!(
                f,
                "holds {found} values, the header's shape {shape:?} needs {count}"
            ),
            K::NotFiniteValue { index, value } => write!(
                f,
                "value {index} (row-major) is {value}; every value must be a finite number"
            ),
        }
    }
}

fn bad_magic(
    f: &mut fmt::Formatter<'_>,
    magic: [u8; 4],
    expected: [u8; 4],
    what: &str,
) -> fmt::Result {
    let hex = |m: [u8; 4]| format!("0x{:08X}", u32::from_be_bytes(m));
    let expected_text = format!("an IDX {what} file starts with {}", hex(expected));
    if magic[0] != 0 || magic[1] != 0 {
        return write!(
            f,
            "not an IDX file: it starts with {}; {expected_text}",
            hex(magic)
        );
    }
    if magic[2] != expected[2] {
        let kind = match magic[2] {
            0x09 => "signed bytes".into(),
            0x0B => "16-bit integers".into(),
            0x0C => "32-bit integers".into(),
            0x0D => "float32".into(),
            0x0E => "float64".into(),
            code => format!("of unknown type 0x{code:02X}"),
        };
        return write!(
            f,
            "the IDX values are {kind} (magic {}); nnc reads unsigned-byte IDX files ({})",
            hex(magic),
            hex(expected)
        );
    }
    let kind = match magic[3] {
        1 => "an IDX label file",
        3 => "an IDX image file",
        _ => "an IDX file",
    };
    write!(
        f,
        "this is {kind} with {} dimension{} (magic {}), but {expected_text}",
        magic[3],
        if magic[3] == 1 { "" } else { "s" },
        hex(magic)
    )
}
