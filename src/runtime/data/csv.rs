//! CSV data sources: a header row names the columns, every used feature cell is a
//! number; the target column holds numbers, or words that name classes.

use std::io::Read;
use std::path::Path;

pub use super::error::list_columns;
use super::error::{Column, DataError, DataErrorKind as K, Place};
use super::{Dataset, Features};
use crate::sema::names::distance;

/// A CSV file read into memory, with the line of each row for later messages.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    /// Features and the raw target value (`target_width == 1`).
    pub data: Dataset,
    /// The 1-based line in the file where each row starts.
    pub lines: Vec<u64>,
    /// The feature columns, in the order of `data.features`.
    pub feature_names: Vec<String>,
    /// When the target column holds words (`setosa`, ...) rather than numbers: the
    /// distinct words in sorted order, and `data.targets` holds each row's index
    /// into them (as scikit-learn's `LabelEncoder` numbers classes).
    pub class_names: Option<Vec<String>>,
}

/// Reads `path`; `features == None` takes every column but `target`, in file order.
///
/// Only the target and feature columns are parsed, so other columns (ids, notes)
/// may hold text. Every error names the file, and the line and column where it can.
pub fn read(path: &Path, target: &str, features: Option<&[String]>) -> Result<CsvTable, DataError> {
    let columns = match features {
        None => Columns::AllButTarget,
        Some(list) => Columns::Named(list),
    };
    read_with(path, target, columns)
}

/// Reads a source that must match data trained on (a test set, rows to predict):
/// the columns `training` named in the training file are found by header name, in
/// whatever order this file has them, and come out in the training order. Matching
/// by position would silently feed one feature's values to another's weights.
pub fn read_matching(
    path: &Path,
    target: &str,
    training: &[String],
) -> Result<CsvTable, DataError> {
    read_with(path, target, Columns::Training(training))
}

/// Which columns are the features.
#[derive(Clone, Copy)]
enum Columns<'a> {
    AllButTarget,
    /// As listed in the `.nn` file.
    Named(&'a [String]),
    /// The training file's feature names, matched by name.
    Training(&'a [String]),
}

type Reader = ::csv::Reader<LineLimit<std::fs::File>>;

/// Opens `path` and reads its header row, which must name the columns.
fn open(path: &Path) -> Result<(Reader, Vec<String>), DataError> {
    let err = |kind| DataError::in_file(path, kind);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        // Ragged rows are reported below with the line and both counts.
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(LineLimit {
            inner: std::fs::File::open(path).map_err(|e| {
                err(K::CannotRead {
                    what: Some("the data file".into()),
                    reason: e.to_string(),
                })
            })?,
            run: 0,
        });

    let header = reader
        .headers()
        .map_err(|e| {
            err(K::NotCsv {
                reason: csv_reason(&e),
            })
        })?
        .clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(err(K::EmptyFile));
    }
    if header.iter().all(|h| h.parse::<f64>().is_ok()) {
        return Err(err(K::NoHeader {
            columns: header.len(),
        }));
    }
    Ok((reader, header.iter().map(str::to_string).collect()))
}

/// The column names of `path`'s header row.
pub fn header(path: &Path) -> Result<Vec<String>, DataError> {
    open(path).map(|(_, names)| names)
}

fn read_with(path: &Path, target: &str, columns: Columns) -> Result<CsvTable, DataError> {
    let err = |kind| DataError::in_file(path, kind);
    let (mut reader, names) = open(path)?;

    let target_col = find_column(&names, target, "target", path)?;
    let feature_cols: Vec<usize> = match columns {
        Columns::AllButTarget => (0..names.len()).filter(|&c| c != target_col).collect(),
        Columns::Training(list) => training_columns(&names, list, target_col, target, path)?,
        Columns::Named(list) => {
            if list.is_empty() {
                return Err(err(K::EmptyFeatureList));
            }
            let mut cols = Vec::with_capacity(list.len());
            for name in list {
                let c = find_column(&names, name, "feature", path)?;
                if c == target_col {
                    return Err(err(K::TargetAsFeature { name: name.clone() }));
                }
                cols.push(c);
            }
            cols
        }
    };
    if feature_cols.is_empty() {
        return Err(err(K::NoFeatureColumns {
            target: target.to_string(),
        }));
    }

    let mut data = Dataset {
        feature_count: feature_cols.len(),
        target_width: 1,
        ..Dataset::default()
    };
    let mut features = Vec::new();
    let mut lines = Vec::new();
    let mut targets = TargetCells::default();
    let mut record = ::csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let error = err(K::NotCsv {
                    reason: csv_reason(&e),
                });
                return Err(match e.position() {
                    Some(p) => error.at(Place::Line(p.line())),
                    None => error,
                });
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != names.len() {
            return Err(err(K::WrongFieldCount {
                expected: names.len(),
                found: record.len(),
            })
            .at(Place::Line(line)));
        }
        for &c in &feature_cols {
            features.push(parse_cell(&record[c], path, line, c, &names[c])?);
        }
        targets.push(&record[target_col], line);
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(err(K::NoRows));
    }
    let (values, class_names) = targets.finish(path, target_col, &names[target_col])?;
    data.targets = values;
    data.rows = lines.len();
    data.features = Features::Values(features);
    Ok(CsvTable {
        data,
        lines,
        feature_names: feature_cols.iter().map(|&c| names[c].clone()).collect(),
        class_names,
    })
}

/// The target column's cells as read: kept as text until the whole column is seen,
/// since a column of numbers and a column of class words are read differently.
#[derive(Default)]
struct TargetCells {
    cells: Vec<(String, u64)>,
}

impl TargetCells {
    fn push(&mut self, cell: &str, line: u64) {
        self.cells.push((cell.to_string(), line));
    }

    /// Numbers when every cell is one; class indices into the sorted distinct words
    /// when none is. A column that mixes both is an error at its first odd cell: a
    /// stray `NA` among numbers must not become a class of its own.
    fn finish(
        self,
        file: &Path,
        col: usize,
        name: &str,
    ) -> Result<(Vec<f32>, Option<Vec<String>>), DataError> {
        let is_word = |cell: &str| !cell.is_empty() && cell.parse::<f32>().is_err();
        let words = self.cells.iter().filter(|(c, _)| is_word(c)).count();
        if words == 0 {
            let values = self
                .cells
                .iter()
                .map(|(cell, line)| parse_cell(cell, file, *line, col, name));
            return Ok((values.collect::<Result<_, _>>()?, None));
        }
        if let Some((cell, line)) = self.cells.iter().find(|(c, _)| !is_word(c)) {
            let (word, _) = self
                .cells
                .iter()
                .find(|(c, _)| is_word(c))
                .unwrap_or(&self.cells[0]);
            let kind = if cell.is_empty() {
                K::EmptyCell
            } else {
                K::MixedTargets {
                    number: cell.clone(),
                    word: word.clone(),
                }
            };
            return Err(DataError::in_file(file, kind).at(cell_at(*line, col, name)));
        }
        let mut classes: Vec<String> = self.cells.iter().map(|(c, _)| c.clone()).collect();
        classes.sort();
        classes.dedup();
        let values = self
            .cells
            .iter()
            .map(|(cell, _)| classes.binary_search(cell).map_or(f32::NAN, |i| i as f32))
            .collect();
        Ok((values, Some(classes)))
    }
}

/// The columns of `training`'s names in `names`; every missing one is named.
fn training_columns(
    names: &[String],
    training: &[String],
    target_col: usize,
    target: &str,
    file: &Path,
) -> Result<Vec<usize>, DataError> {
    let missing: Vec<String> = training
        .iter()
        .filter(|t| !names.contains(t))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(DataError::in_file(
            file,
            K::MissingTrainingColumns {
                missing,
                training: training.to_vec(),
            },
        ));
    }
    training
        .iter()
        .map(|name| {
            let c = find_column(names, name, "feature", file)?;
            if c == target_col {
                return Err(DataError::in_file(
                    file,
                    K::TrainingFeatureIsTarget {
                        name: name.clone(),
                        target: target.to_string(),
                    },
                ));
            }
            Ok(c)
        })
        .collect()
}

/// The longest line nnc reads from a CSV file: a binary file or a device with no line
/// ends (/dev/zero) would otherwise grow one record until memory runs out.
const MAX_LINE_BYTES: usize = 16 << 20;

/// Fails the read once a line runs past `MAX_LINE_BYTES`.
pub(crate) struct LineLimit<R> {
    pub(crate) inner: R,
    /// Bytes since the last line end.
    pub(crate) run: usize,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.run = match buf[..n].iter().rposition(|&b| b == b'\n') {
            Some(end) => n - end - 1,
            None => self.run + n,
        };
        if self.run > MAX_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a line is longer than {} MiB (is it a binary file?)",
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        Ok(n)
    }
}

/// Cell `col` (0-based) of `line`, whose header name is `name`.
fn cell_at(line: u64, col: usize, name: &str) -> Place {
    Place::Cell {
        line,
        column: Column {
            name: name.to_string(),
            index: Some(col + 1),
        },
    }
}

fn parse_cell(
    cell: &str,
    file: &Path,
    line: u64,
    col: usize,
    name: &str,
) -> Result<f32, DataError> {
    let kind = match cell.parse::<f32>() {
        Ok(v) if v.is_finite() => return Ok(v),
        _ if cell.is_empty() => K::EmptyCell,
        // Rust also parses "nan" and "inf"; they would poison every weight they touch.
        Ok(_) => K::NotFinite { text: cell.into() },
        Err(_) => K::NotANumber { text: cell.into() },
    };
    Err(DataError::in_file(file, kind).at(cell_at(line, col, name)))
}

/// The index of column `name`, or an error that suggests the nearest name.
fn find_column(names: &[String], name: &str, role: &str, file: &Path) -> Result<usize, DataError> {
    let mut found = names.iter().enumerate().filter(|(_, n)| *n == name);
    let kind = match (found.next(), found.next()) {
        (Some((c, _)), None) => return Ok(c),
        (Some(_), Some(_)) => K::DuplicateColumn {
            role: role.into(),
            name: name.into(),
        },
        (None, _) => K::MissingColumn {
            role: role.into(),
            name: name.into(),
            nearest: nearest(names, name).map(str::to_string),
            columns: names.to_vec(),
        },
    };
    Err(DataError::in_file(file, kind))
}

/// The closest column name when it is close enough to be a likely typo.
pub fn nearest<'a>(names: &'a [String], name: &str) -> Option<&'a str> {
    let wanted = name.to_lowercase();
    names
        .iter()
        .map(|n| (distance(&n.to_lowercase(), &wanted), n))
        .filter(|(d, n)| *d <= (n.chars().count().max(name.chars().count()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

fn csv_reason(e: &::csv::Error) -> String {
    match e.kind() {
        ::csv::ErrorKind::Utf8 { .. } => "it is not UTF-8 text (is it a binary file?)".into(),
        ::csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_ignores_far_names() {
        let names: Vec<String> = ["species", "sepal_length"].map(String::from).to_vec();
        assert_eq!(nearest(&names, "specie"), Some("species"));
        assert_eq!(nearest(&names, "Species"), Some("species"));
        assert_eq!(nearest(&names, "zzz"), None);
    }
}
