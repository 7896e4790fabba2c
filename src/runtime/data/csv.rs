//! CSV data sources: a header row names the columns, every used feature cell is a
//! number; the target column holds numbers, or words that name classes.

use std::io::Read;
use std::path::Path;

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
pub fn read(path: &Path, target: &str, features: Option<&[String]>) -> Result<CsvTable, String> {
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
pub fn read_matching(path: &Path, target: &str, training: &[String]) -> Result<CsvTable, String> {
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
fn open(path: &Path) -> Result<(Reader, Vec<String>), String> {
    let file = path.display().to_string();
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        // Ragged rows are reported below with the line and both counts.
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(LineLimit {
            inner: std::fs::File::open(path)
                .map_err(|e| format!("{file}: cannot read the data file: {e}"))?,
            run: 0,
        });

    let header = reader
        .headers()
        .map_err(|e| format!("{file}: not a CSV text file: {}", csv_reason(&e)))?
        .clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(format!(
            "{file}: the file is empty; a CSV data file starts with a header row naming its columns"
        ));
    }
    if header.iter().all(|h| h.parse::<f64>().is_ok()) {
        return Err(format!(
            "{file}: line 1 holds numbers, not column names; add a header row naming the columns \
             (for example `{}`)",
            example_header(header.len())
        ));
    }
    Ok((reader, header.iter().map(str::to_string).collect()))
}

/// The column names of `path`'s header row.
pub fn header(path: &Path) -> Result<Vec<String>, String> {
    open(path).map(|(_, names)| names)
}

fn read_with(path: &Path, target: &str, columns: Columns) -> Result<CsvTable, String> {
    let file = path.display().to_string();
    let (mut reader, names) = open(path)?;

    let target_col = find_column(&names, target, "target", &file)?;
    let feature_cols: Vec<usize> = match columns {
        Columns::AllButTarget => (0..names.len()).filter(|&c| c != target_col).collect(),
        Columns::Training(list) => training_columns(&names, list, target_col, target, &file)?,
        Columns::Named(list) => {
            if list.is_empty() {
                return Err(format!("{file}: the feature list is empty"));
            }
            let mut cols = Vec::with_capacity(list.len());
            for name in list {
                let c = find_column(&names, name, "feature", &file)?;
                if c == target_col {
                    return Err(format!(
                        "{file}: column `{name}` is the target; it cannot also be a feature"
                    ));
                }
                cols.push(c);
            }
            cols
        }
    };
    if feature_cols.is_empty() {
        return Err(format!(
            "{file}: the only column is the target `{target}`; there are no feature columns"
        ));
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
                let at = e
                    .position()
                    .map(|p| format!("line {}: ", p.line()))
                    .unwrap_or_default();
                return Err(format!(
                    "{file}: {at}not a CSV text file: {}",
                    csv_reason(&e)
                ));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != names.len() {
            return Err(format!(
                "{file}: line {line}: the row has {} field{} but the header has {} columns",
                record.len(),
                if record.len() == 1 { "" } else { "s" },
                names.len()
            ));
        }
        for &c in &feature_cols {
            features.push(parse_cell(&record[c], &file, line, c, &names[c])?);
        }
        targets.push(&record[target_col], line);
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(format!("{file}: the file has a header but no data rows"));
    }
    let (values, class_names) = targets.finish(&file, target_col, &names[target_col])?;
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
        file: &str,
        col: usize,
        name: &str,
    ) -> Result<(Vec<f32>, Option<Vec<String>>), String> {
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
            let at = format!("{file}: line {line}, column {} (`{name}`)", col + 1);
            return Err(if cell.is_empty() {
                format!("{at}: the cell is empty (a missing value)")
            } else {
                format!(
                    "{at}: `{cell}` is a number, but other targets are words such as `{word}`; \
                     a target column holds class names or numbers, not both"
                )
            });
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
    file: &str,
) -> Result<Vec<usize>, String> {
    let missing: Vec<&String> = training.iter().filter(|t| !names.contains(t)).collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
        return Err(format!(
            "{file}: no column {} in the header; the model was trained on {}, and later data is \
             matched to the training columns by name",
            list.join(", "),
            list_columns(training)
        ));
    }
    training
        .iter()
        .map(|name| {
            let c = find_column(names, name, "feature", file)?;
            if c == target_col {
                return Err(format!(
                    "{file}: column `{name}` is the target `{target}` here, but a feature of the \
                     training data"
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

fn parse_cell(cell: &str, file: &str, line: u64, col: usize, name: &str) -> Result<f32, String> {
    let at = || format!("{file}: line {line}, column {} (`{name}`)", col + 1);
    if cell.is_empty() {
        return Err(format!("{}: the cell is empty (a missing value)", at()));
    }
    match cell.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        // Rust also parses "nan" and "inf"; they would poison every weight they touch.
        Ok(_) => Err(format!("{}: `{cell}` is not a finite number", at())),
        Err(_) => Err(format!("{}: `{cell}` is not a number", at())),
    }
}

/// The index of column `name`, or an error that suggests the nearest name.
fn find_column(names: &[String], name: &str, role: &str, file: &str) -> Result<usize, String> {
    let mut found = names.iter().enumerate().filter(|(_, n)| *n == name);
    match (found.next(), found.next()) {
        (Some((c, _)), None) => Ok(c),
        (Some(_), Some(_)) => Err(format!(
            "{file}: the header names column `{name}` more than once; the {role} column is ambiguous"
        )),
        (None, _) => {
            let hint = match nearest(names, name) {
                Some(n) => format!("; did you mean `{n}`?"),
                None => format!("; the columns are {}", list_columns(names)),
            };
            Err(format!("{file}: no {role} column `{name}` in the header{hint}"))
        }
    }
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

pub fn list_columns(names: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut s: Vec<String> = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    if names.len() > SHOWN {
        s.push(format!("... ({} in all)", names.len()));
    }
    s.join(", ")
}

fn example_header(columns: usize) -> String {
    let mut s: Vec<String> = (1..columns.min(4)).map(|i| format!("x{i}")).collect();
    if columns > 4 {
        s.push("...".into());
    }
    s.push("label".into());
    s.join(",")
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
