//! Training curves as SVG: the loss and each metric per epoch, training and
//! validation, one panel per quantity. The epochs come from a run (`nnc run
//! --plot`), from its `--json` log, or from a Keras-style CSV log (columns `epoch`,
//! `loss`, metrics, `val_loss`, ...; Keras counts epochs from 0).

use std::path::Path;

use plotters::prelude::*;

use crate::runtime::checkpoint;
use crate::runtime::report::EpochReport;

/// Per-epoch values by name (`loss`, `accuracy`, `val_loss`, ...), in the order first
/// seen; a value missing from an epoch is NaN.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Curves {
    /// The epoch numbers, from 1.
    pub epochs: Vec<u64>,
    pub series: Vec<Series>,
}

/// A name and its value per epoch.
pub type Series = (String, Vec<f64>);

impl Curves {
    /// Adds one epoch's values.
    pub fn push(&mut self, epoch: u64, values: &[(String, f64)]) {
        let row = self.epochs.len();
        self.epochs.push(epoch);
        for (name, value) in values {
            let index = match self.series.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    self.series.push((name.clone(), vec![f64::NAN; row]));
                    self.series.len() - 1
                }
            };
            self.series[index].1.push(*value);
        }
        for (_, v) in &mut self.series {
            v.resize(row + 1, f64::NAN);
        }
    }

    /// Adds an epoch as training reports it.
    pub fn push_report(&mut self, r: &EpochReport) {
        let mut values = vec![("loss".to_string(), r.loss)];
        values.extend(r.metrics.iter().cloned());
        if let Some((loss, metrics)) = &r.validation {
            values.push(("val_loss".into(), *loss));
            values.extend(metrics.iter().map(|(n, v)| (format!("val_{n}"), *v)));
        }
        self.push(r.epoch as u64, &values);
    }

    /// The epochs of a `nnc run --json` log (its `epoch` events; other events are
    /// skipped).
    pub fn from_jsonl(text: &str) -> Result<Curves, String> {
        let mut curves = Curves::default();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = || format!("line {}", i + 1);
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("{}: not a JSON object ({e})", at()))?;
            if value["event"] != "epoch" {
                continue;
            }
            let epoch = value["epoch"]
                .as_u64()
                .ok_or_else(|| format!("{}: the epoch event has no `epoch` number", at()))?;
            if !value["loss"].is_number() {
                return Err(format!("{}: the epoch event has no `loss` number", at()));
            }
            let mut values = vec![];
            for (key, prefix) in [
                ("loss", ""),
                ("metrics", ""),
                ("val_loss", "val_"),
                ("val_metrics", "val_"),
            ] {
                let pairs: Vec<(String, &serde_json::Value)> = match &value[key] {
                    serde_json::Value::Null if key != "loss" => vec![],
                    serde_json::Value::Object(map) => map
                        .iter()
                        .map(|(n, v)| (format!("{prefix}{n}"), v))
                        .collect(),
                    v => vec![(key.to_string(), v)],
                };
                for (name, v) in pairs {
                    // `nnc run --json` writes a NaN (a metric with no rows) as null.
                    let v = v
                        .as_f64()
                        .or(v.is_null().then_some(f64::NAN))
                        .ok_or_else(|| format!("{}: `{name}` is not a number", at()))?;
                    values.push((name, v));
                }
            }
            curves.push(epoch, &values);
        }
        if curves.epochs.is_empty() {
            return Err(
                "it holds no `epoch` events (is it the output of `nnc run --json`?)".into(),
            );
        }
        Ok(curves)
    }

    /// The epochs of a CSV log with Keras's columns: `epoch` (from 0), then one
    /// column per value.
    pub fn from_csv(text: &str) -> Result<Curves, String> {
        let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| format!("cannot read its header: {e}"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let Some(epoch_column) = header.iter().position(|h| h == "epoch") else {
            return Err(format!(
                "it has no `epoch` column (its columns: {})",
                header.join(", ")
            ));
        };
        let mut curves = Curves::default();
        for (row, record) in reader.records().enumerate() {
            let at = format!("row {}", row + 2);
            let record = record.map_err(|e| format!("{at}: {e}"))?;
            let mut epoch = None;
            let mut values = vec![];
            for (column, cell) in header.iter().zip(record.iter()) {
                let cell = cell.trim();
                if column == &header[epoch_column] {
                    epoch =
                        Some(cell.parse::<u64>().map_err(|_| {
                            format!("{at}: the epoch `{cell}` is not a whole number")
                        })?);
                } else {
                    let v = cell.parse::<f64>().map_err(|_| {
                        format!("{at}, column `{column}`: `{cell}` is not a number")
                    })?;
                    values.push((column.clone(), v));
                }
            }
            let epoch = epoch.ok_or_else(|| format!("{at}: no epoch"))?;
            curves.push(epoch + 1, &values);
        }
        if curves.epochs.is_empty() {
            return Err("it has a header but no epochs".into());
        }
        Ok(curves)
    }

    /// Parses the log `text` read from `path`: CSV when the file's name ends in
    /// `.csv`, else JSON Lines.
    pub fn parse(path: &Path, text: &str) -> Result<Curves, String> {
        let csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let curves = if csv {
            Curves::from_csv(text)
        } else {
            Curves::from_jsonl(text)
        };
        curves.map_err(|e| format!("`{}`: {e}", path.display()))
    }

    /// The quantities to draw, one panel each: `loss` first, then the metrics, each
    /// with its training and validation series (either may be missing).
    fn panels(&self) -> Vec<(String, Vec<&Series>)> {
        let mut panels: Vec<(String, Vec<&Series>)> = vec![];
        for s in &self.series {
            let base = s.0.strip_prefix("val_").unwrap_or(&s.0).to_string();
            match panels.iter_mut().find(|(b, _)| *b == base) {
                Some((_, list)) => list.push(s),
                None => panels.push((base, vec![s])),
            }
        }
        panels.sort_by_key(|(base, _)| base != "loss");
        panels
    }

    /// The curves as an SVG document.
    pub fn svg(&self) -> Result<String, String> {
        if self.epochs.is_empty() {
            return Err("there are no epochs to draw".into());
        }
        let panels = self.panels();
        let mut text = String::new();
        {
            let height = 320 * panels.len().max(1) as u32;
            let root = SVGBackend::with_string(&mut text, (720, height)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_error)?;
            let areas = root.split_evenly((panels.len().max(1), 1));
            let first = self.epochs.iter().copied().min().unwrap_or(1) as f64;
            let last = self.epochs.iter().copied().max().unwrap_or(1) as f64;
            let x_range = (first - 0.5)..(last + 0.5);
            for ((base, series), area) in panels.iter().zip(&areas) {
                let finite = series
                    .iter()
                    .flat_map(|s| s.1.iter())
                    .filter(|v| v.is_finite());
                let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
                let (lo, hi) = match (lo, hi) {
                    (lo, hi) if lo > hi => (0.0, 1.0),
                    (lo, hi) if hi - lo < 1e-12 => (lo - 0.5, hi + 0.5),
                    (lo, hi) => (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)),
                };
                let mut chart = ChartBuilder::on(area)
                    .caption(
                        format!("{base} (blue: training, orange: validation)"),
                        ("sans-serif", 16),
                    )
                    .margin(12)
                    .x_label_area_size(32)
                    .y_label_area_size(64)
                    .build_cartesian_2d(x_range.clone(), lo..hi)
                    .map_err(draw_error)?;
                chart
                    .configure_mesh()
                    .x_desc("epoch")
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .draw()
                    .map_err(draw_error)?;
                for (name, values) in series {
                    let color = if name.starts_with("val_") {
                        RGBColor(230, 120, 20)
                    } else {
                        RGBColor(30, 90, 200)
                    };
                    let points = self
                        .epochs
                        .iter()
                        .zip(values)
                        .filter(|(_, v)| v.is_finite())
                        .map(|(&e, &v)| (e as f64, v));
                    chart
                        .draw_series(LineSeries::new(points, color.stroke_width(2)))
                        .map_err(draw_error)?;
                }
            }
            root.present().map_err(draw_error)?;
        }
        Ok(text)
    }

    /// Writes the SVG to `path` atomically.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        let svg = self.svg()?;
        checkpoint::write_atomically(path, svg.as_bytes())
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
    }
}

/// Refuses, before training, an output path that cannot be a file.
pub fn check_output(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "`{}` is a folder; --plot needs a file name, e.g. {}",
            path.display(),
            path.join("curves.svg").display()
        ));
    }
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(folder) if !folder.is_dir() => Err(format!(
            "cannot write `{}`: the folder `{}` does not exist",
            path.display(),
            folder.display()
        )),
        _ => Ok(()),
    }
}

fn draw_error(e: impl std::fmt::Display) -> String {
    format!("cannot draw the curves: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_first_seen_late_is_nan_before() {
        let mut c = Curves::default();
        c.push(1, &[("loss".into(), 0.5)]);
        c.push(2, &[("loss".into(), 0.4), ("val_loss".into(), 0.45)]);
        c.push(3, &[("val_loss".into(), 0.3)]);
        assert_eq!(c.epochs, vec![1, 2, 3]);
        assert_eq!(c.series[0].0, "loss");
        assert_eq!(c.series[0].1[..2], [0.5, 0.4]);
        assert!(c.series[0].1[2].is_nan());
        assert!(c.series[1].1[0].is_nan());
        assert_eq!(c.series[1].1[1..], [0.45, 0.3]);
    }

    #[test]
    fn panels_put_the_loss_first_and_pair_validation_with_training() {
        let mut c = Curves::default();
        let names = ["accuracy", "loss", "val_accuracy", "val_loss"];
        let values: Vec<(String, f64)> = names.iter().map(|n| (n.to_string(), 0.5)).collect();
        c.push(1, &values);
        let panels: Vec<(String, Vec<&str>)> = c
            .panels()
            .into_iter()
            .map(|(base, s)| (base, s.iter().map(|(n, _)| n.as_str()).collect()))
            .collect();
        assert_eq!(
            panels,
            vec![
                ("loss".to_string(), vec!["loss", "val_loss"]),
                ("accuracy".to_string(), vec!["accuracy", "val_accuracy"]),
            ]
        );
    }

    #[test]
    fn json_nulls_are_missing_values() {
        let log =
            r#"{"event":"epoch","epoch":1,"loss":0.5,"metrics":{"accuracy":null},"val_loss":0.6}"#;
        let c = Curves::from_jsonl(log).unwrap();
        let names: Vec<&str> = c.series.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["loss", "accuracy", "val_loss"]);
        assert!(c.series[1].1[0].is_nan());
    }
}
