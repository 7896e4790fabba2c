//! The `callbacks` of a train block, run after every epoch with Keras 3's semantics
//! (`keras.callbacks.EarlyStopping`, `ReduceLROnPlateau`, `ModelCheckpoint`,
//! `TerminateOnNaN`, `CSVLogger`), and their state, which a resume checkpoint keeps.
//!
//! Epochs are counted from 1 here, as nnc prints them; Keras counts from 0, so its
//! `epoch > 0` is `epoch > 1` and its `epoch < start_from_epoch` is
//! `epoch <= start_from_epoch`. Only `csv_logger` writes Keras's 0-based numbers, so
//! that its file has Keras's columns and values.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime::checkpoint;
use crate::sema::model::{Callback, Monitor};

/// The values one epoch logs, in order: `loss`, the metrics, `val_loss`, the
/// validation metrics (Keras's `logs` dictionary).
pub type Logs = Vec<(String, f64)>;

/// Weights a callback keeps, borrowed: its index and the weights.
pub type KeptRef<'a> = (usize, &'a [Vec<f32>]);

/// Something a callback did that the user is told about.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The callback's name in the `.nn` file (`early_stopping`, ...).
    pub callback: &'static str,
    pub epoch: usize,
    /// One sentence for people.
    pub message: String,
    /// Facts for `--json` (e.g. `restored_epoch`, `learning_rate`).
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

/// What the epoch loop lets callbacks read and change.
pub trait Trainee {
    /// The model's weights (every `Role::Param` tensor, in checkpoint order).
    fn weights(&self) -> Vec<Vec<f32>>;
    fn set_weights(&mut self, weights: &[Vec<f32>]);
    /// Writes the current weights as `nnc run --save` does.
    fn save(&self, path: &Path) -> Result<(), String>;
}

/// Every callback of a run, in the order of the `callbacks` setting.
pub struct Callbacks {
    items: Vec<(Callback, State)>,
}

/// What a callback remembers from epoch to epoch; all of it goes into a resume
/// checkpoint (floats as bits, so that they come back exactly, NaN included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Epochs since the monitored value last improved.
    wait: u64,
    /// The best monitored value so far (`f64::to_bits`).
    best: Option<u64>,
    best_epoch: usize,
    /// `early_stopping`: the epoch it stopped training after.
    stopped_epoch: Option<usize>,
    /// `reduce_lr_on_plateau`: epochs left before reductions resume.
    cooldown: u64,
    /// `early_stopping` with `restore_best_weights`: the best epoch's weights.
    #[serde(skip)]
    best_weights: Option<Vec<Vec<f32>>>,
    /// `csv_logger`: the columns (fixed by the first epoch) and the file's text.
    columns: Option<Vec<String>>,
    text: String,
}

impl Callbacks {
    pub fn new(callbacks: &[Callback]) -> Callbacks {
        Callbacks {
            items: callbacks
                .iter()
                .map(|c| (c.clone(), State::default()))
                .collect(),
        }
    }

    pub fn terminates_on_nan(&self) -> bool {
        self.items
            .iter()
            .any(|(c, _)| matches!(c, Callback::TerminateOnNan))
    }

    /// Runs every callback at the end of `epoch` (from 1); `true` when one stops
    /// training. `learning_rate` is the optimizer's, which `reduce_lr_on_plateau`
    /// may lower. Events are pushed to `events`.
    pub fn epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
        trainee: &mut dyn Trainee,
        learning_rate: &mut f32,
        events: &mut Vec<Event>,
    ) -> Result<bool, String> {
        let mut stop = false;
        let value = |name: &str| logs.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let mut logs = logs.clone();
        for (callback, state) in &mut self.items {
            match callback {
                Callback::EarlyStopping {
                    monitor,
                    patience,
                    min_delta,
                    restore_best_weights,
                    start_from_epoch,
                } => {
                    let Some(current) = value(&monitor.name) else {
                        continue;
                    };
                    if epoch as u64 <= *start_from_epoch {
                        continue;
                    }
                    if *restore_best_weights && state.best_weights.is_none() {
                        state.best_weights = Some(trainee.weights());
                        state.best_epoch = epoch;
                    }
                    state.wait += 1;
                    if improves(monitor, *min_delta, current, state.best) {
                        state.best = Some(current.to_bits());
                        state.best_epoch = epoch;
                        if *restore_best_weights {
                            state.best_weights = Some(trainee.weights());
                        }
                        state.wait = 0;
                        continue;
                    }
                    if state.wait >= *patience && epoch > 1 {
                        stop = true;
                        state.stopped_epoch = Some(epoch);
                        let best = state.best.map_or(f64::NAN, f64::from_bits);
                        let mut message = format!(
                            "stopped after epoch {epoch}: {} has not improved for {} epoch{} \
                             (best {best:.4} in epoch {})",
                            monitor.name,
                            state.wait,
                            plural(state.wait),
                            state.best_epoch
                        );
                        let mut fields = vec![
                            ("monitor", monitor.name.clone().into()),
                            ("best", best.into()),
                            ("best_epoch", state.best_epoch.into()),
                        ];
                        // `train_end` restores them, after every callback has seen
                        // this epoch's weights, as Keras's `on_train_end` does.
                        if state.best_weights.is_some() {
                            message.push_str(&format!(
                                "; restored the weights of epoch {}",
                                state.best_epoch
                            ));
                            fields.push(("restored_epoch", state.best_epoch.into()));
                        }
                        events.push(Event {
                            callback: "early_stopping",
                            epoch,
                            message,
                            fields,
                        });
                    }
                }
                Callback::ReduceLrOnPlateau {
                    monitor,
                    factor,
                    patience,
                    min_delta,
                    cooldown,
                    min_lr,
                } => {
                    // Keras adds the rate to the logs a later `csv_logger` writes.
                    logs.push(("learning_rate".into(), f64::from(*learning_rate)));
                    let Some(current) = value(&monitor.name) else {
                        continue;
                    };
                    if state.cooldown > 0 {
                        state.cooldown -= 1;
                        state.wait = 0;
                    }
                    if improves(monitor, *min_delta, current, state.best) {
                        state.best = Some(current.to_bits());
                        state.wait = 0;
                    } else if state.cooldown == 0 {
                        state.wait += 1;
                        let old = *learning_rate;
                        // Keras: `old_lr > np.float32(min_lr)`, then the new rate
                        // in double precision, stored as float32.
                        if state.wait >= *patience && old > *min_lr as f32 {
                            let new = (f64::from(old) * *factor).max(*min_lr) as f32;
                            *learning_rate = new;
                            state.cooldown = *cooldown;
                            state.wait = 0;
                            events.push(Event {
                                callback: "reduce_lr_on_plateau",
                                epoch,
                                message: format!(
                                    "{} has not improved for {patience} epoch{}: learning rate \
                                     {old} -> {new}",
                                    monitor.name,
                                    plural(*patience)
                                ),
                                fields: vec![
                                    ("monitor", monitor.name.clone().into()),
                                    ("learning_rate", f64::from(new).into()),
                                ],
                            });
                        }
                    }
                }
                Callback::ModelCheckpoint {
                    path,
                    monitor,
                    save_best_only,
                } => {
                    if !*save_best_only {
                        trainee.save(path)?;
                        continue;
                    }
                    let Some(current) = value(&monitor.name) else {
                        continue;
                    };
                    if improves(monitor, 0.0, current, state.best) {
                        let was = state.best.map(f64::from_bits);
                        state.best = Some(current.to_bits());
                        state.best_epoch = epoch;
                        trainee.save(path)?;
                        let from = was.map_or(String::new(), |b| format!(" from {b:.4}"));
                        events.push(Event {
                            callback: "model_checkpoint",
                            epoch,
                            message: format!(
                                "{} improved{from} to {current:.4}; saved the weights of epoch \
                                 {epoch} to {}",
                                monitor.name,
                                path.display()
                            ),
                            fields: vec![
                                ("monitor", monitor.name.clone().into()),
                                ("value", current.into()),
                                ("path", path.display().to_string().into()),
                            ],
                        });
                    }
                }
                Callback::CsvLogger { path } => {
                    csv_row(state, epoch, &logs);
                    checkpoint::write_atomically(path, state.text.as_bytes())
                        .map_err(|e| format!("{}: cannot write the log: {e}", path.display()))?;
                }
                Callback::TerminateOnNan => {}
            }
        }
        Ok(stop)
    }

    /// At the end of training (not after Ctrl-C): `early_stopping` with
    /// `restore_best_weights` puts back the best epoch's weights, as Keras 3 does
    /// whether or not it stopped training. `last` is the last epoch trained.
    pub fn train_end(&mut self, last: usize, trainee: &mut dyn Trainee, events: &mut Vec<Event>) {
        for (callback, state) in &mut self.items {
            let (Callback::EarlyStopping { monitor, .. }, Some(weights)) =
                (&callback, state.best_weights.take())
            else {
                continue;
            };
            trainee.set_weights(&weights);
            // A stop already said so; otherwise say it when it changes the weights.
            if state.stopped_epoch.is_none() && state.best_epoch != last {
                events.push(Event {
                    callback: "early_stopping",
                    epoch: last,
                    message: format!(
                        "restored the weights of epoch {}, the best {} ({:.4})",
                        state.best_epoch,
                        monitor.name,
                        state.best.map_or(f64::NAN, f64::from_bits)
                    ),
                    fields: vec![
                        ("monitor", monitor.name.clone().into()),
                        ("restored_epoch", state.best_epoch.into()),
                    ],
                });
            }
        }
    }

    /// Every callback's state, for a resume checkpoint: the JSON of the plain
    /// state, and the best weights `restore_best_weights` keeps (callback index,
    /// weights).
    pub fn state(&self) -> (String, Vec<KeptRef<'_>>) {
        let states: Vec<&State> = self.items.iter().map(|(_, s)| s).collect();
        let weights = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| s.best_weights.as_deref().map(|w| (i, w)))
            .collect();
        // Plain data of strings and integers: serializing it cannot fail.
        (serde_json::to_string(&states).unwrap_or_default(), weights)
    }

    /// Restores what `state` returned; `weights` holds the best weights of the
    /// callbacks that had them, by index.
    pub fn restore(
        &mut self,
        json: &str,
        mut weights: Vec<(usize, Vec<Vec<f32>>)>,
    ) -> Result<(), String> {
        let states: Vec<State> = serde_json::from_str(json)
            .map_err(|e| format!("the callbacks' state does not read back: {e}"))?;
        if states.len() != self.items.len() {
            return Err(format!(
                "it holds the state of {} callbacks, and the train block has {}",
                states.len(),
                self.items.len()
            ));
        }
        for (i, ((_, state), saved)) in self.items.iter_mut().zip(states).enumerate() {
            *state = saved;
            if let Some(at) = weights.iter().position(|(index, _)| *index == i) {
                state.best_weights = Some(weights.swap_remove(at).1);
            }
        }
        Ok(())
    }

    /// The files callbacks write, with the callback's name and a typical file
    /// name, to check before training that they can be written.
    pub fn paths(&self) -> Vec<(&'static str, &'static str, &PathBuf)> {
        self.items
            .iter()
            .filter_map(|(c, _)| match c {
                Callback::ModelCheckpoint { path, .. } => {
                    Some(("model_checkpoint", "best.safetensors", path))
                }
                Callback::CsvLogger { path } => Some(("csv_logger", "log.csv", path)),
                _ => None,
            })
            .collect()
    }
}

/// Keras's `MonitorCallback._is_improvement`: `current - min_delta` beats `best`
/// (`min_delta` counting against the direction), compared as float32 the way
/// `keras.ops` compares Python floats. No best yet is always an improvement.
fn improves(monitor: &Monitor, min_delta: f64, current: f64, best: Option<u64>) -> bool {
    let Some(best) = best.map(f64::from_bits) else {
        return true;
    };
    if monitor.minimize {
        ((current + min_delta) as f32) < best as f32
    } else {
        ((current - min_delta) as f32) > best as f32
    }
}

/// Keras's `CSVLogger.on_epoch_end`: the first epoch fixes the columns (`epoch`,
/// then the logged names sorted; without validation data, `val_` columns of `NA`
/// follow); each epoch appends one row, its epoch numbered from 0.
fn csv_row(state: &mut State, epoch: usize, logs: &Logs) {
    let columns = state.columns.get_or_insert_with(|| {
        let mut keys: Vec<String> = logs.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        if !keys.iter().any(|k| k.starts_with("val_")) {
            let val: Vec<String> = keys.iter().map(|k| format!("val_{k}")).collect();
            keys.extend(val);
        }
        keys
    });
    if state.text.is_empty() {
        state.text = format!("epoch,{}\r\n", columns.join(","));
    }
    let mut row = (epoch - 1).to_string();
    for key in columns.iter() {
        row.push(',');
        match logs.iter().find(|(k, _)| k == key) {
            Some((_, v)) => row.push_str(&v.to_string()),
            None => row.push_str("NA"),
        }
    }
    state.text.push_str(&row);
    state.text.push_str("\r\n");
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights are one number: the epoch they were set in.
    struct Fake {
        weights: f32,
    }

    impl Trainee for Fake {
        fn weights(&self) -> Vec<Vec<f32>> {
            vec![vec![self.weights]]
        }
        fn set_weights(&mut self, w: &[Vec<f32>]) {
            self.weights = w[0][0];
        }
        fn save(&self, _: &Path) -> Result<(), String> {
            Ok(())
        }
    }

    fn val_loss() -> Monitor {
        Monitor {
            name: "val_loss".into(),
            minimize: true,
        }
    }

    /// Runs `callback` over the validation losses `losses`; returns the epoch it
    /// stopped after (if any), the final weights (an epoch number) and the rates.
    fn drive(callback: Callback, losses: &[f64]) -> (Option<usize>, f32, Vec<f32>) {
        let mut cbs = Callbacks::new(&[callback]);
        let mut fake = Fake { weights: 0.0 };
        let mut rate = 1.0f32;
        let mut rates = vec![];
        let mut events = vec![];
        let mut stopped = None;
        for (i, &loss) in losses.iter().enumerate() {
            let epoch = i + 1;
            fake.weights = epoch as f32;
            let logs = vec![("loss".into(), 1.0), ("val_loss".into(), loss)];
            if cbs
                .epoch_end(epoch, &logs, &mut fake, &mut rate, &mut events)
                .unwrap()
            {
                stopped = Some(epoch);
                break;
            }
            rates.push(rate);
        }
        cbs.train_end(stopped.unwrap_or(losses.len()), &mut fake, &mut events);
        (stopped, fake.weights, rates)
    }

    fn early(patience: u64, min_delta: f64, restore: bool, start: u64) -> Callback {
        Callback::EarlyStopping {
            monitor: val_loss(),
            patience,
            min_delta,
            restore_best_weights: restore,
            start_from_epoch: start,
        }
    }

    #[test]
    fn early_stopping_counts_epochs_without_improvement() {
        let losses = [1.0, 0.8, 0.9, 0.85, 0.81, 0.7];
        // Best in epoch 2; epochs 3, 4 do not improve: stops after 4 with patience 2.
        assert_eq!(drive(early(2, 0.0, false, 0), &losses).0, Some(4));
        // Patience 0 stops at the first epoch without improvement.
        assert_eq!(drive(early(0, 0.0, false, 0), &losses).0, Some(3));
        // Restoring puts back epoch 2's weights.
        assert_eq!(drive(early(2, 0.0, true, 0), &losses).1, 2.0);
        // 0.7 improves on 0.8 by 0.1: enough without min_delta, not with 0.15.
        assert_eq!(drive(early(4, 0.0, false, 0), &losses).0, None);
        assert_eq!(drive(early(4, 0.15, false, 0), &losses).0, Some(6));
        // Epoch 3 is worse than epoch 2; unless epochs 1..=2 are not watched, when
        // the values improve from epoch 3 on.
        assert_eq!(drive(early(1, 0.0, false, 0), &losses).0, Some(3));
        assert_eq!(drive(early(1, 0.0, false, 2), &losses).0, None);
        // Not stopped, yet the best weights come back at the end (Keras 3).
        let (stopped, weights, _) = drive(early(9, 0.0, true, 0), &[1.0, 0.5, 0.6]);
        assert_eq!((stopped, weights), (None, 2.0));
    }

    #[test]
    fn reduce_lr_waits_then_cools_down() {
        let plateau = Callback::ReduceLrOnPlateau {
            monitor: val_loss(),
            factor: 0.5,
            patience: 2,
            min_delta: 0.0,
            cooldown: 1,
            min_lr: 0.2,
        };
        let losses = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let (_, _, rates) = drive(plateau, &losses);
        // Reduced after epochs 3, 5, 7. The cooldown epoch after each reduction
        // resets the wait, but Keras tests `in_cooldown()` after counting the
        // cooldown down, so that epoch already counts towards the next reduction.
        // 0.125 is below min_lr: 0.2, and no reduction after that.
        assert_eq!(
            rates,
            vec![1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2]
        );
    }

    #[test]
    fn csv_logger_writes_keras_columns() {
        let mut state = State::default();
        let logs = vec![("loss".into(), 0.5), ("accuracy".into(), 0.75)];
        csv_row(&mut state, 1, &logs);
        csv_row(&mut state, 2, &logs);
        assert_eq!(
            state.text,
            "epoch,accuracy,loss,val_accuracy,val_loss\r\n0,0.75,0.5,NA,NA\r\n\
             1,0.75,0.5,NA,NA\r\n"
        );
    }

    #[test]
    fn state_reads_back() {
        let mut a = Callbacks::new(&[early(5, 0.0, true, 0)]);
        let mut fake = Fake { weights: 3.0 };
        let logs = vec![("val_loss".into(), f64::NAN)];
        a.epoch_end(1, &logs, &mut fake, &mut 1.0, &mut vec![])
            .unwrap();
        let (json, weights) = a.state();
        let weights: Vec<(usize, Vec<Vec<f32>>)> =
            weights.into_iter().map(|(i, w)| (i, w.to_vec())).collect();
        let mut b = Callbacks::new(&[early(5, 0.0, true, 0)]);
        b.restore(&json, weights).unwrap();
        assert_eq!(a.items, b.items);
        assert!(b.restore("[]", vec![]).is_err());
    }
}
