//! How training talks to the user: one line per epoch for people (with a progress
//! bar on a terminal), or JSON Lines for scripts.

use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::runtime::callbacks::Event;

/// One finished epoch. Metric lists keep the order of the `metrics` setting.
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    pub loss: f64,
    pub metrics: Vec<(String, f64)>,
    /// Validation loss and metrics, when `validation_split` is set.
    pub validation: Option<(f64, Vec<(String, f64)>)>,
    pub seconds: f64,
    pub samples_per_second: f64,
}

pub struct TestReport {
    pub loss: f64,
    pub metrics: Vec<(String, f64)>,
}

/// The rows training will see, known once the data is loaded.
pub struct DataReport {
    pub train_rows: usize,
    pub validation_rows: Option<usize>,
    pub test_rows: Option<usize>,
    pub batch_size: usize,
    pub epochs: usize,
}

pub trait Reporter {
    fn data_loaded(&mut self, _data: &DataReport) {}
    fn compiled(&mut self, seconds: f64);
    fn epoch_started(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    fn batch_done(&mut self, _batch: usize, _mean_loss: f64) {}
    fn epoch_done(&mut self, report: &EpochReport);
    /// A callback acted (stopped training, saved weights, lowered the rate...).
    fn callback(&mut self, _event: &Event) {}
    /// `--resume`: training continues after `epoch` completed epochs.
    fn resumed(&mut self, _epoch: usize, _path: &Path) {}
    fn tested(&mut self, report: &TestReport);
    fn saved(&mut self, path: &Path);
    /// `nnc run --profile`: where the training steps' time went, slowest first.
    fn profiled(&mut self, nodes: &[NodeTime]);
}

/// One node of the train step in a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// What the node computes and into which tensor, as `nnc emit --ir` writes it.
    pub node: String,
    pub shape: Vec<usize>,
    /// Mean time per training step.
    pub seconds_per_step: f64,
    /// Fraction of the step's time.
    pub share: f64,
}

/// Lines for people; the progress bar goes to stderr, only when `progress` is set
/// (the caller sets it when stderr is a terminal).
pub struct HumanReporter<'w> {
    out: &'w mut dyn Write,
    progress: bool,
    bar: Option<ProgressBar>,
}

impl<'w> HumanReporter<'w> {
    pub fn new(out: &'w mut dyn Write, progress: bool) -> HumanReporter<'w> {
        HumanReporter {
            out,
            progress,
            bar: None,
        }
    }
}

/// `12.5 us`, `3.42 ms`: a node of a training step takes micro- to milliseconds.
fn step_time_text(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.1} us", seconds * 1e6)
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

/// `850 ms`, `12.34 s`: an epoch of a small model takes milliseconds.
fn duration_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Drop for HumanReporter<'_> {
    /// Training that stops early (an error, Ctrl-C) must not leave a bar behind.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn metric_text(prefix: &str, loss: f64, metrics: &[(String, f64)]) -> String {
    let mut text = format!("{prefix}loss {loss:.4}");
    for (name, value) in metrics {
        text.push_str(&format!("  {prefix}{name} {value:.4}"));
    }
    text
}

impl Reporter for HumanReporter<'_> {
    fn data_loaded(&mut self, d: &DataReport) {
        let mut line = format!("training on {} rows", thousands(d.train_rows as u64));
        if let Some(n) = d.validation_rows {
            line.push_str(&format!(", validating on {}", thousands(n as u64)));
        }
        if let Some(n) = d.test_rows {
            line.push_str(&format!(", testing on {}", thousands(n as u64)));
        }
        line.push_str(&format!(
            "; batch size {}, {} epoch{}",
            d.batch_size,
            d.epochs,
            if d.epochs == 1 { "" } else { "s" }
        ));
        say(self.out, line);
    }

    fn compiled(&mut self, seconds: f64) {
        say(
            self.out,
            format_args!("compiled in {:.1} ms", seconds * 1e3),
        );
    }

    fn epoch_started(&mut self, epoch: usize, epochs: usize, batches: usize) {
        if self.progress {
            let bar = ProgressBar::new(batches as u64);
            let style =
                ProgressStyle::with_template("Epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }

    fn batch_done(&mut self, batch: usize, mean_loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(batch as u64);
            // Formatting every batch would cost more than a small model's step.
            if batch.is_multiple_of(16) {
                bar.set_message(format!("loss {mean_loss:.4}"));
            }
        }
    }

    fn epoch_done(&mut self, r: &EpochReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let mut line = format!(
            "Epoch {}/{}  {}",
            r.epoch,
            r.epochs,
            metric_text("", r.loss, &r.metrics)
        );
        if let Some((loss, metrics)) = &r.validation {
            line.push_str("  ");
            line.push_str(&metric_text("val_", *loss, metrics));
        }
        line.push_str(&format!(
            "  {}  {} samples/s",
            duration_text(r.seconds),
            thousands(r.samples_per_second.round() as u64)
        ));
        say(self.out, line);
    }

    fn callback(&mut self, e: &Event) {
        say(
            self.out,
            format_args!("{}: {}", e.callback.replace('_', " "), e.message),
        );
    }

    fn resumed(&mut self, epoch: usize, path: &Path) {
        say(
            self.out,
            format_args!("resumed from {} after epoch {epoch}", path.display()),
        );
    }

    fn tested(&mut self, r: &TestReport) {
        say(
            self.out,
            format_args!("Test  {}", metric_text("", r.loss, &r.metrics)),
        );
    }

    fn saved(&mut self, path: &Path) {
        say(
            self.out,
            format_args!("saved weights to {}", path.display()),
        );
    }

    fn profiled(&mut self, nodes: &[NodeTime]) {
        say(self.out, format_args!("Time per training step, by node:"));
        let width = nodes.iter().map(|n| n.node.len()).max().unwrap_or(0);
        for n in nodes {
            let dims: Vec<String> = n.shape.iter().map(|d| d.to_string()).collect();
            // Padded by hand: a node names its layer, which may be longer than the
            // 65,535 characters a `format!` width allows.
            let pad = " ".repeat(width - n.node.len());
            say(
                self.out,
                format_args!(
                    "  {:>10}  {:>5.1}%  {}{pad}  [{}]",
                    step_time_text(n.seconds_per_step),
                    n.share * 100.0,
                    n.node,
                    dims.join(", ")
                ),
            );
        }
    }
}

/// JSON Lines: one object per event.
pub struct JsonReporter<'w> {
    pub out: &'w mut dyn Write,
}

fn object(metrics: &[(String, f64)]) -> serde_json::Value {
    serde_json::Value::Object(metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// Writes one line. A closed stdout (e.g. piped into `head`) must not abort
/// training, so write errors are ignored rather than panicking as `println!` does.
fn say(out: &mut dyn Write, line: impl std::fmt::Display) {
    let _ = writeln!(out, "{line}");
}

impl Reporter for JsonReporter<'_> {
    fn compiled(&mut self, seconds: f64) {
        say(self.out, json!({"event": "compile", "seconds": seconds}));
    }

    fn epoch_done(&mut self, r: &EpochReport) {
        let mut value = json!({
            "event": "epoch",
            "epoch": r.epoch,
            "loss": r.loss,
            "metrics": object(&r.metrics),
            "seconds": r.seconds,
            "samples_per_second": r.samples_per_second,
        });
        if let Some((loss, metrics)) = &r.validation {
            value["val_loss"] = json!(loss);
            value["val_metrics"] = object(metrics);
        }
        say(self.out, value);
    }

    fn callback(&mut self, e: &Event) {
        let mut value = json!({
            "event": "callback",
            "callback": e.callback,
            "epoch": e.epoch,
            "message": e.message,
        });
        for (key, v) in &e.fields {
            value[*key] = v.clone();
        }
        say(self.out, value);
    }

    fn resumed(&mut self, epoch: usize, path: &Path) {
        say(
            self.out,
            json!({"event": "resumed", "epoch": epoch, "path": path.display().to_string()}),
        );
    }

    fn tested(&mut self, r: &TestReport) {
        say(
            self.out,
            json!({"event": "test", "loss": r.loss, "metrics": object(&r.metrics)}),
        );
    }

    fn profiled(&mut self, nodes: &[NodeTime]) {
        let nodes: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                json!({"node": n.node, "shape": n.shape,
                       "seconds_per_step": n.seconds_per_step, "share": n.share})
            })
            .collect();
        say(self.out, json!({"event": "profile", "nodes": nodes}));
    }

    fn saved(&mut self, path: &Path) {
        say(
            self.out,
            json!({"event": "saved", "path": path.display().to_string()}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(duration_text(0.0123), "12.3 ms");
        assert_eq!(duration_text(2.5), "2.50 s");
    }
}
