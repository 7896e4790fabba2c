//! What `nnc predict` reads and writes: CSV rows (columns found by name), `.npy`
//! and `.npz` arrays, or IDX images in; CSV or `.npy` out.

use std::path::Path;

use crate::runtime::data::{self, idx, npy, Dataset, Features};
use crate::runtime::trained::Preparation;
use crate::sema::model::Model;

/// Reads the samples of `path` for `model`, prepared as in training: csv columns
/// picked by the trained feature names (any order; extra columns are ignored with a
/// note in `notes`), standardized with the trained statistics. `.npy` and `.npz`
/// arrays are standardized too; IDX images become `pixel / 255` as in training.
pub fn read_input(
    model: &Model,
    prep: &Preparation,
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<Dataset, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let width = model.input_size();
    let mut set = match ext.as_deref() {
        Some("csv") => read_csv(path, &prep.features, width, notes)?,
        Some("npy") => from_array(
            model,
            npy::read_npy(path).map_err(|e| e.to_string())?,
            &path.display().to_string(),
        )?,
        Some("npz") => {
            let name = npz_input_name(path)?;
            let what = format!("{}: array `{name}`", path.display());
            let array = npy::read_npz(path, &name).map_err(|e| e.to_string())?;
            from_array(model, array, &what)?
        }
        // MNIST's files are named `t10k-images-idx3-ubyte[.gz]`: anything else is IDX.
        _ => {
            let (rows, count, pixels) = idx::read_images(path).map_err(|e| e.to_string())?;
            check_width(model, count, &path.display().to_string())?;
            return Ok(Dataset {
                features: Features::Pixels(pixels),
                feature_count: count,
                rows,
                ..Dataset::default()
            });
        }
    };
    if let Some((mean, scale)) = &prep.standardization {
        if let Features::Values(values) = &mut set.features {
            data::standardize_values(values, mean, scale);
        }
    }
    Ok(set)
}

/// The features array of an `.npz` given to `predict`: `x`, `x_test`, or the only one.
fn npz_input_name(path: &Path) -> Result<String, String> {
    let file = path.display();
    let names = npy::npz_names(path).map_err(|e| e.to_string())?;
    for wanted in ["x", "x_test"] {
        if names.iter().any(|n| n == wanted) {
            return Ok(wanted.to_string());
        }
    }
    match names.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(format!(
            "{file}: which array holds the samples? name it `x` (the archive holds {})",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// An array's samples: its first axis is the sample, the rest the model's input
/// shape (or its element count, flattened).
pub fn from_array(model: &Model, a: npy::Array, what: &str) -> Result<Dataset, String> {
    let input = &model.input_shape;
    let fits = a.shape.len() >= 2
        && (a.shape[1..] == input[..] || (a.shape.len() == 2 && a.shape[1] == model.input_size()));
    if !fits {
        return Err(format!(
            "{what}: the array has shape {:?}, the model's input `{}` needs [samples, {}] \
             (or [samples, {}])",
            a.shape,
            model.input_name,
            input
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            model.input_size()
        ));
    }
    if a.shape[0] == 0 {
        return Err(format!("{what}: the array holds no samples"));
    }
    Ok(Dataset {
        rows: a.shape[0],
        feature_count: model.input_size(),
        features: Features::Values(a.values),
        ..Dataset::default()
    })
}

fn check_width(model: &Model, count: usize, what: &str) -> Result<(), String> {
    if count == model.input_size() {
        return Ok(());
    }
    Err(format!(
        "{what}: each sample has {count} values, the model's input `{}` has {}",
        model.input_name,
        model.input_size()
    ))
}

/// The rows of a CSV file: the columns `names` in that order (every column, when
/// the model was trained without names), each cell a finite number.
fn read_csv(
    path: &Path,
    names: &[String],
    width: usize,
    notes: &mut Vec<String>,
) -> Result<Dataset, String> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(data::csv::LineLimit { inner: f, run: 0 });
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{file}: not a CSV text file: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    let columns: Vec<usize> = if names.is_empty() {
        (0..header.len()).collect()
    } else {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !header.contains(n))
            .map(|n| format!("`{n}`"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{file}: the model was trained on column{} {} that the header lacks",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            ));
        }
        let extra: Vec<String> = header
            .iter()
            .filter(|h| !names.contains(h))
            .map(|h| format!("`{h}`"))
            .collect();
        if !extra.is_empty() {
            notes.push(format!(
                "note: {file}: ignoring column{} {} (not a feature of the model)",
                if extra.len() == 1 { "" } else { "s" },
                extra.join(", ")
            ));
        }
        names
            .iter()
            .filter_map(|n| header.iter().position(|h| h == n))
            .collect()
    };
    if columns.len() != width {
        return Err(format!(
            "{file}: {} columns, but the model's input takes {width} values per sample",
            columns.len()
        ));
    }
    let mut values = Vec::new();
    let mut rows = 0;
    for record in reader.records() {
        let record = record.map_err(|e| {
            let at = e
                .position()
                .map(|p| format!("line {}: ", p.line()))
                .unwrap_or_default();
            format!("{file}: {at}not a CSV text file: {e}")
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != header.len() {
            return Err(format!(
                "{file}: line {line}: the row has {} fields but the header has {} columns",
                record.len(),
                header.len()
            ));
        }
        for &c in &columns {
            let cell = &record[c];
            let at = || format!("{file}: line {line}, column {} (`{}`)", c + 1, header[c]);
            match cell.parse::<f32>() {
                Ok(v) if v.is_finite() => values.push(v),
                _ if cell.is_empty() => {
                    return Err(format!("{}: the cell is empty (a missing value)", at()))
                }
                _ => return Err(format!("{}: `{cell}` is not a finite number", at())),
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(format!("{file}: the file has a header but no data rows"));
    }
    Ok(Dataset {
        features: Features::Values(values),
        feature_count: width,
        rows,
        ..Dataset::default()
    })
}

/// Predictions as CSV: for a classifier the predicted class name and one probability
/// per class (`prob_NAME`); otherwise the outputs (`output`, or `output_0`, ...).
pub fn to_csv(outputs: &[f32], width: usize, classes: &[String]) -> String {
    let mut text = String::new();
    let binary = width == 1 && classes.len() == 2;
    if width == classes.len() || binary {
        text.push_str("class");
        for c in classes {
            text.push_str(&format!(",prob_{c}"));
        }
        text.push('\n');
        for row in outputs.chunks_exact(width) {
            // A single sigmoid unit is the probability of the second class.
            let probs: Vec<f32> = if binary {
                vec![1.0 - row[0], row[0]]
            } else {
                row.to_vec()
            };
            let best = probs
                .iter()
                .enumerate()
                .fold(0, |b, (i, &p)| if p > probs[b] { i } else { b });
            text.push_str(&classes[best]);
            for &p in &probs {
                text.push(',');
                text.push_str(&number(p));
            }
            text.push('\n');
        }
    } else {
        let names: Vec<String> = if width == 1 {
            vec!["output".into()]
        } else {
            (0..width).map(|i| format!("output_{i}")).collect()
        };
        text.push_str(&names.join(","));
        text.push('\n');
        for row in outputs.chunks_exact(width) {
            let cells: Vec<String> = row.iter().map(|&v| number(v)).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
    }
    text
}

/// The shortest text that reads back as `v` exactly: plain for everyday sizes,
/// scientific (`8.51901e-10`) for very small or large ones.
fn number(v: f32) -> String {
    if v == 0.0 || (1e-4..1e7).contains(&v.abs()) {
        v.to_string()
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_names_the_argmax_class_and_each_probability() {
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let text = to_csv(&[0.1, 0.7, 0.2, 0.5, 0.25, 0.25], 3, &classes);
        assert_eq!(
            text,
            "class,prob_a,prob_b,prob_c\nb,0.1,0.7,0.2\na,0.5,0.25,0.25\n"
        );
        let binary = to_csv(&[0.75, 0.25], 1, &["0".into(), "1".into()]);
        assert_eq!(binary, "class,prob_0,prob_1\n1,0.25,0.75\n0,0.75,0.25\n");
        assert_eq!(to_csv(&[1.5, -2.0], 1, &[]), "output\n1.5\n-2\n");
        assert_eq!(
            to_csv(&[8.51901e-10, 3e9], 1, &[]),
            "output\n8.51901e-10\n3e9\n"
        );
    }
}
