//! How training talks to the user: one line per epoch for people (with a progress
//! bar on a terminal), or JSON Lines for scripts.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::json;

use crate::diag::{self, Diagnostic};
use crate::runtime::metrics::Accumulator;

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
    /// After each step: `rows` trained on so far in the epoch, the mean loss over
    /// them, and the metrics' running values (read them only when showing them).
    fn batch_done(
        &mut self,
        _batch: usize,
        _rows: usize,
        _mean_loss: f64,
        _metrics: &[Accumulator],
    ) {
    }
    /// A warning found while training (the loss diverging).
    fn warned(&mut self, _warning: &Diagnostic) {}
    fn epoch_done(&mut self, report: &EpochReport);
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

/// Lines for people, one per epoch; the progress bar goes to stderr, only when
/// `progress` is set (the caller sets it when stderr is a terminal).
pub struct HumanReporter<'w> {
    out: &'w mut dyn Write,
    /// Where each epoch's bar is drawn (stderr), or no bar.
    bar_target: Option<Box<dyn Fn() -> ProgressDrawTarget + 'w>>,
    bar: Option<ProgressBar>,
    /// When the bar's loss and metrics were last formatted.
    shown: Option<std::time::Instant>,
    /// Rows per epoch: the bar counts samples.
    rows: usize,
    warnings: Option<Source<'w>>,
}

/// Where warnings are rendered, and the `.nn` file they point into.
pub struct Source<'w> {
    pub err: &'w mut dyn Write,
    pub file: String,
    pub text: String,
    pub color: bool,
}

impl<'w> HumanReporter<'w> {
    pub fn new(out: &'w mut dyn Write, progress: bool) -> HumanReporter<'w> {
        HumanReporter {
            out,
            bar_target: None,
            bar: None,
            shown: None,
            rows: 0,
            warnings: None,
        }
        .with_bar(progress.then_some(ProgressDrawTarget::stderr))
    }

    /// Draws each epoch's bar on the target `target` makes (none with `None`).
    pub fn with_bar(
        mut self,
        target: Option<impl Fn() -> ProgressDrawTarget + 'w>,
    ) -> HumanReporter<'w> {
        self.bar_target = target.map(|t| Box::new(t) as Box<dyn Fn() -> ProgressDrawTarget>);
        self
    }

    /// Renders warnings as diagnostics into `source.text` (without it they are plain
    /// lines on the output).
    pub fn with_warnings(mut self, source: Source<'w>) -> HumanReporter<'w> {
        self.warnings = Some(source);
        self
    }
}

/// `eta 13 s`, `eta 4 min`: what is left of the epoch at the current rate.
fn eta_text(seconds: u64) -> String {
    if seconds < 100 {
        format!("eta {seconds} s")
    } else {
        format!("eta {} min", seconds.div_ceil(60))
    }
}

/// The bar: samples done, running loss and metrics (the message), speed, time left.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("Epoch {prefix} [{bar:25}] {pos}/{len}  {msg}  {rate}  {left}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{} samples/s", thousands(s.per_sec().round() as u64));
        })
        .with_key("left", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", eta_text(s.eta().as_secs()));
        })
        .progress_chars("=> ")
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
        self.rows = d.train_rows;
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

    fn epoch_started(&mut self, epoch: usize, epochs: usize, _batches: usize) {
        if let Some(target) = &self.bar_target {
            let bar = ProgressBar::with_draw_target(Some(self.rows as u64), target());
            bar.set_style(bar_style());
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }

    fn batch_done(&mut self, batch: usize, rows: usize, mean_loss: f64, metrics: &[Accumulator]) {
        if let Some(bar) = &self.bar {
            // Formatting every batch would cost more than a small model's step:
            // the running values are refreshed ten times a second.
            let now = std::time::Instant::now();
            if batch == 1
                || self
                    .shown
                    .is_none_or(|t| now - t >= Duration::from_millis(100))
            {
                self.shown = Some(now);
                let running: Vec<(String, f64)> = metrics
                    .iter()
                    .map(|m| (m.name().to_string(), m.mean().unwrap_or(f64::NAN)))
                    .collect();
                bar.set_message(metric_text("", mean_loss, &running));
            }
            bar.set_position(rows as u64);
        }
    }

    fn warned(&mut self, warning: &Diagnostic) {
        let text = match &mut self.warnings {
            Some(s) => {
                let text = diag::render(std::slice::from_ref(warning), &s.file, &s.text, s.color);
                let _ = s.err.write_all(text.as_bytes());
                return;
            }
            None => format!("warning[{}]: {}", warning.code, warning.message),
        };
        say(self.out, text);
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

    fn warned(&mut self, d: &Diagnostic) {
        say(
            self.out,
            json!({"event": "warning", "code": d.code, "message": d.message, "help": d.help}),
        );
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

    use crate::sema::model::Metric;
    use indicatif::InMemoryTerm;

    #[test]
    fn the_bar_shows_samples_running_metrics_speed_and_a_labelled_eta() {
        let term = InMemoryTerm::new(4, 200);
        let mut out = Vec::new();
        let screen = term.clone();
        let mut r = HumanReporter::new(&mut out, false).with_bar(Some(move || {
            ProgressDrawTarget::term_like(Box::new(screen.clone()))
        }));
        r.data_loaded(&DataReport {
            train_rows: 100,
            validation_rows: Some(20),
            test_rows: None,
            batch_size: 10,
            epochs: 2,
        });
        r.epoch_started(1, 2, 10);
        let mut accuracy = Accumulator::new(Metric::Accuracy, 1, 1).unwrap();
        accuracy.add(&[0.9, 0.2, 0.7, 0.6], &[1.0, 0.0, 0.0, 1.0]);
        for batch in 1..=4 {
            r.batch_done(batch, batch * 10, 0.25, std::slice::from_ref(&accuracy));
        }
        let bar = term.contents();
        assert!(bar.starts_with("Epoch 1/2 ["), "{bar}");
        assert!(
            bar.contains("] 40/100  loss 0.2500  accuracy 0.7500  "),
            "{bar}"
        );
        let speed = bar.split("  ").find(|f| f.ends_with(" samples/s"));
        let speed = speed.and_then(|f| {
            f.trim_end_matches(" samples/s")
                .replace(',', "")
                .parse::<u64>()
                .ok()
        });
        assert!(speed.is_some(), "{bar}");
        let eta = bar.rsplit("  ").next().unwrap_or("");
        let words: Vec<&str> = eta.split(' ').collect();
        assert!(
            words.len() == 3
                && words[0] == "eta"
                && words[1].parse::<u64>().is_ok()
                && ["s", "min"].contains(&words[2]),
            "{bar}"
        );
        r.epoch_done(&EpochReport {
            epoch: 1,
            epochs: 2,
            loss: 0.25,
            metrics: vec![("accuracy".into(), 0.75)],
            validation: Some((0.5, vec![("accuracy".into(), 0.5)])),
            seconds: 0.5,
            samples_per_second: 200.0,
        });
        // The bar gives way to the epoch's one line, validation included.
        assert_eq!(term.contents(), "");
        drop(r);
        assert_eq!(
            String::from_utf8(out).unwrap().lines().last(),
            Some("Epoch 1/2  loss 0.2500  accuracy 0.7500  val_loss 0.5000  val_accuracy 0.5000  500.0 ms  200 samples/s")
        );
    }

    #[test]
    fn eta_is_labelled_in_seconds_then_minutes() {
        assert_eq!(eta_text(0), "eta 0 s");
        assert_eq!(eta_text(13), "eta 13 s");
        assert_eq!(eta_text(99), "eta 99 s");
        assert_eq!(eta_text(150), "eta 3 min");
    }

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
