//! Resume checkpoints (`nnc run --checkpoint FILE`, `--resume FILE`): everything
//! the rest of a run depends on, so that a resumed run ends with the same bits as
//! one that was never stopped.
//!
//! That is the persistent part of the arena (weights, optimizer slots, moving
//! statistics, and whatever else the train step keeps from step to step), the step
//! counter (Adam's bias correction and every dropout mask are functions of it), the
//! number of epochs done (each epoch's row order is a function of the seed and the
//! epoch), the seed and batch size, and the callbacks' state. It is a safetensors
//! file: the tensor `state` holds the arena's persistent prefix, `best.I.LAYER.PARAM`
//! the weights the callback at index I keeps, and `__metadata__` the rest, with the
//! nnc version, the `.nn` source's hash and the persistent tensors' names and shapes,
//! which must all match to resume.

use std::path::Path;

use crate::runtime::callbacks::KeptRef;
use crate::runtime::checkpoint::{self, Metadata};

/// Marks a resume checkpoint (a weights file from `--save` has no such key).
const FORMAT: &str = "nnc resume checkpoint 1";

/// What a run is, for telling whether a checkpoint belongs to it.
pub struct Identity {
    /// SHA-256 of the `.nn` file.
    pub source_sha256: Option<String>,
    /// The persistent tensors of the train step, in arena order: name and shape.
    pub layout: Vec<(String, Vec<usize>)>,
    /// Floats of the arena's persistent prefix.
    pub persistent_len: usize,
    /// The model's weights (`LAYER.PARAM`) and their shapes, in checkpoint order.
    pub params: Vec<(String, Vec<usize>)>,
}

/// The state of a run at the end of an epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Epochs completed.
    pub epoch: usize,
    /// Train steps run.
    pub step: u64,
    /// Whether a callback stopped training at `epoch`.
    pub stopped: bool,
    pub seed: u64,
    pub batch_size: usize,
    /// The processes that trained it (1, or mpirun's `-np`): each takes its shard of
    /// every batch, which the sums' rounding and the dropout masks depend on.
    pub processes: usize,
    /// The last epoch's mean training loss.
    pub loss: f32,
    /// The arena's persistent prefix.
    pub persistent: Vec<f32>,
    /// `Callbacks::state`'s JSON.
    pub callbacks: String,
}

/// Weights a callback keeps (`restore_best_weights`): its index and the weights.
pub type Kept = Vec<(usize, Vec<Vec<f32>>)>;

/// Writes `snapshot` to `path` atomically (the previous checkpoint stays whole
/// until the new one replaces it). `kept_weights` are the callbacks' (index,
/// weights in `identity.params` order).
pub fn save(
    path: &Path,
    identity: &Identity,
    snapshot: &Snapshot,
    kept_weights: &[KeptRef],
) -> Result<(), String> {
    let mut meta = Metadata::new();
    let json = |v: serde_json::Value| v.to_string();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("nnc_version".into(), env!("CARGO_PKG_VERSION").into());
    if let Some(hash) = &identity.source_sha256 {
        meta.insert("source_sha256".into(), hash.clone());
    }
    meta.insert("layout".into(), json(serde_json::json!(identity.layout)));
    meta.insert("epoch".into(), snapshot.epoch.to_string());
    meta.insert("step".into(), snapshot.step.to_string());
    meta.insert("stopped".into(), snapshot.stopped.to_string());
    meta.insert("seed".into(), snapshot.seed.to_string());
    meta.insert("batch_size".into(), snapshot.batch_size.to_string());
    meta.insert("processes".into(), snapshot.processes.to_string());
    meta.insert("loss_bits".into(), snapshot.loss.to_bits().to_string());
    meta.insert("callbacks".into(), snapshot.callbacks.clone());
    let kept: Vec<usize> = kept_weights.iter().map(|(i, _)| *i).collect();
    meta.insert("kept_weights".into(), json(serde_json::json!(kept)));

    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = vec![(
        "state".into(),
        vec![snapshot.persistent.len()],
        &snapshot.persistent,
    )];
    for (index, weights) in kept_weights {
        for ((name, shape), values) in identity.params.iter().zip(weights.iter()) {
            tensors.push((format!("best.{index}.{name}"), shape.clone(), values));
        }
    }
    checkpoint::save_with_metadata(path, &tensors, Some(meta))
}

/// How a checkpointed run was trained, which the resumed run must repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub seed: u64,
    /// The global batch size (all processes' shards together).
    pub batch_size: usize,
    pub processes: usize,
}

/// The settings the checkpoint `path` was trained with; checks first that it is a
/// checkpoint of this nnc version for the `.nn` source of hash `source_sha256`.
pub fn settings(path: &Path, source_sha256: Option<&str>) -> Result<Settings, String> {
    let meta = checked_metadata(path, source_sha256)?;
    let size = |key: &str| {
        usize::try_from(number(path, &meta, key)?)
            .map_err(|_| format!("{}: `{key}` is too large", path.display()))
    };
    Ok(Settings {
        seed: number(path, &meta, "seed")?,
        batch_size: size("batch_size")?,
        processes: processes(path, &meta)?,
    })
}

/// Checkpoints written before nnc trained under mpirun hold one process's run.
fn processes(path: &Path, meta: &Metadata) -> Result<usize, String> {
    match meta.get("processes") {
        None => Ok(1),
        Some(_) => usize::try_from(number(path, meta, "processes")?)
            .map_err(|_| format!("{}: `processes` is too large", path.display())),
    }
}

fn checked_metadata(path: &Path, source_sha256: Option<&str>) -> Result<Metadata, String> {
    let file = path.display();
    let meta = checkpoint::read_metadata(path)?;
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(format!(
            "{file}: not a resume checkpoint of nnc (`nnc run --checkpoint FILE` writes \
             them; weights from --save start a run with --init)"
        ));
    }
    let version = env!("CARGO_PKG_VERSION");
    match meta.get("nnc_version") {
        Some(v) if v == version => {}
        other => {
            return Err(format!(
                "{file}: written by nnc {}, and this is nnc {version}: a checkpoint resumes \
                 only with the nnc that wrote it (its train step may compute differently)",
                other.map_or("of an unknown version", String::as_str)
            ))
        }
    }
    if let (Some(theirs), Some(ours)) = (meta.get("source_sha256"), source_sha256) {
        if theirs != ours {
            return Err(format!(
                "{file}: written for another version of this .nn file (its SHA-256 differs): \
                 a resumed run must train the same model on the same data in the same way"
            ));
        }
    }
    Ok(meta)
}

fn number(path: &Path, meta: &Metadata, key: &str) -> Result<u64, String> {
    meta.get(key)
        .ok_or_else(|| format!("{}: the checkpoint has no `{key}`", path.display()))?
        .parse()
        .map_err(|_| format!("{}: `{key}` is not a whole number", path.display()))
}

/// Reads the checkpoint `path` for the run `identity`. Another format, nnc
/// version, `.nn` source or model is an error that says which.
pub fn load(path: &Path, identity: &Identity) -> Result<(Snapshot, Kept), String> {
    let file = path.display();
    let meta = checked_metadata(path, identity.source_sha256.as_deref())?;
    let field = |key: &str| -> Result<&String, String> {
        meta.get(key)
            .ok_or_else(|| format!("{file}: the checkpoint has no `{key}`"))
    };
    let number = |key: &str| number(path, &meta, key);
    let layout: Vec<(String, Vec<usize>)> = serde_json::from_str(field("layout")?)
        .map_err(|_| format!("{file}: `layout` is not a list of tensors"))?;
    if layout != identity.layout {
        let ours: Vec<&str> = identity.layout.iter().map(|(n, _)| n.as_str()).collect();
        let theirs: Vec<&str> = layout.iter().map(|(n, _)| n.as_str()).collect();
        let detail = match ours.iter().zip(&theirs).position(|(a, b)| a != b) {
            Some(i) => format!("`{}` where this run has `{}`", theirs[i], ours[i]),
            None if ours.len() != theirs.len() => {
                format!("{} tensors where this run has {}", theirs.len(), ours.len())
            }
            None => "tensors of other shapes".into(),
        };
        return Err(format!(
            "{file}: written for another model: its training state holds {detail}"
        ));
    }
    let kept: Vec<usize> = serde_json::from_str(field("kept_weights")?)
        .map_err(|_| format!("{file}: `kept_weights` is not a list of indices"))?;
    let mut expected = vec![("state".to_string(), vec![identity.persistent_len])];
    for index in &kept {
        for (name, shape) in &identity.params {
            expected.push((format!("best.{index}.{name}"), shape.clone()));
        }
    }
    let mut values = checkpoint::load(path, &expected)?.into_iter();
    let persistent = values.next().unwrap_or_default();
    let per = identity.params.len();
    let rest: Vec<Vec<f32>> = values.collect();
    let kept_weights: Kept = kept
        .iter()
        .zip(rest.chunks(per.max(1)))
        .map(|(i, w)| (*i, w.to_vec()))
        .collect();
    let loss_bits = u32::try_from(number("loss_bits")?)
        .map_err(|_| format!("{file}: `loss_bits` is not a float32's bits"))?;
    let size = |key: &str| {
        usize::try_from(number(key)?).map_err(|_| format!("{file}: `{key}` is too large"))
    };
    let snapshot = Snapshot {
        epoch: size("epoch")?,
        step: number("step")?,
        stopped: field("stopped")? == "true",
        seed: number("seed")?,
        batch_size: size("batch_size")?,
        processes: processes(path, &meta)?,
        loss: f32::from_bits(loss_bits),
        persistent,
        callbacks: field("callbacks")?.clone(),
    };
    Ok((snapshot, kept_weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(tensors: &[(&str, usize)]) -> Identity {
        let layout: Vec<(String, Vec<usize>)> = tensors
            .iter()
            .map(|(n, len)| (n.to_string(), vec![*len]))
            .collect();
        Identity {
            source_sha256: None,
            persistent_len: tensors.iter().map(|(_, len)| len).sum(),
            params: layout.clone(),
            layout,
        }
    }

    #[test]
    fn a_checkpoint_reads_back_only_into_its_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck");
        let ours = identity(&[("dense.kernel", 2), ("dense.bias", 1)]);
        let snapshot = Snapshot {
            epoch: 3,
            step: 12,
            stopped: false,
            seed: 7,
            batch_size: 4,
            processes: 2,
            loss: f32::NAN,
            persistent: vec![1.0, 2.0, 3.0],
            callbacks: "[]".into(),
        };
        let best = vec![vec![5.0, 6.0], vec![7.0]];
        save(&path, &ours, &snapshot, &[(1, &best)]).unwrap();
        let (read, kept) = load(&path, &ours).unwrap();
        // NaN == NaN only bit for bit: compare the loss's bits.
        assert_eq!(read.loss.to_bits(), snapshot.loss.to_bits());
        assert_eq!(
            (read.epoch, read.step, read.persistent.clone()),
            (3, 12, snapshot.persistent.clone())
        );
        assert_eq!(kept, vec![(1, best)]);
        assert_eq!(read.processes, 2);
        let expected = Settings {
            seed: 7,
            batch_size: 4,
            processes: 2,
        };
        assert_eq!(settings(&path, None).unwrap(), expected);

        let other = identity(&[("dense.kernel", 2), ("dense_1.bias", 1)]);
        let err = load(&path, &other).unwrap_err();
        assert!(
            err.contains("written for another model")
                && err.contains("`dense.bias` where this run has `dense_1.bias`"),
            "{err}"
        );
    }
}
