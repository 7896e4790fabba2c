//! A trained model on disk: its weights and what it learned about its data.
//!
//! `nnc run --save` writes, beside the tensors, string pairs in the safetensors
//! header's `__metadata__`; `nnc predict`, `evaluate` and `export` read them back so
//! that a saved model sees new rows exactly as it saw its test rows:
//!
//! | key | value |
//! | --- | --- |
//! | `nnc_version` | the version of nnc that wrote the file |
//! | `model` | the model's name |
//! | `source_sha256` | SHA-256 of the `.nn` file, hex |
//! | `seed` | the train seed (it drew the `split` rows) |
//! | `features` | JSON list: the csv feature columns in input order (`[]` for images) |
//! | `mean`, `std` | JSON lists: `standardize`'s statistics (absent without it) |
//! | `classes` | JSON list: class names by index (`[]` for regression) |

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ir::{build, init};
use crate::runtime::checkpoint;
use crate::sema::model::{Loss, Model, Targets};

/// What training learned about its data, beyond the weights.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Preparation {
    /// The csv feature columns, in the order the input reads them; empty for images.
    pub features: Vec<String>,
    /// Per-feature (mean, standard deviation) to standardize raw rows with.
    pub standardization: Option<(Vec<f64>, Vec<f64>)>,
    /// Class names by class index; empty for regression.
    pub classes: Vec<String>,
    /// The train seed: `nnc evaluate` draws the same `split` rows with it.
    pub seed: Option<u64>,
}

/// A saved model read back: weights by checkpoint name, in model order, and its
/// preparation.
#[derive(Debug, Clone)]
pub struct Trained {
    pub weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub preparation: Preparation,
}

impl Trained {
    /// The values of tensor `name` (`layer.param`).
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.weights
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.as_slice())
    }
}

/// The class names a model's loss implies: its output units (one-hot or sparse
/// categorical), 0 and 1 (binary), none (regression). Classes are the integer
/// labels of the data.
pub fn classes(model: &Model, loss: Loss) -> Vec<String> {
    match loss.targets() {
        Targets::Sparse | Targets::OneHot => {
            (0..model.output_size()).map(|c| c.to_string()).collect()
        }
        Targets::Binary => vec!["0".into(), "1".into()],
        Targets::Value => vec![],
    }
}

/// SHA-256 of a `.nn` file's bytes, hex.
pub fn source_hash(source: &[u8]) -> String {
    Sha256::digest(source)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `__metadata__` pairs `--save` writes.
pub fn metadata(
    model: &Model,
    preparation: &Preparation,
    source_sha256: Option<&str>,
) -> checkpoint::Metadata {
    let json = |v: serde_json::Value| v.to_string();
    let mut m = checkpoint::Metadata::new();
    m.insert("nnc_version".into(), env!("CARGO_PKG_VERSION").to_string());
    m.insert("model".into(), model.name.clone());
    if let Some(hash) = source_sha256 {
        m.insert("source_sha256".into(), hash.to_string());
    }
    if let Some(seed) = preparation.seed {
        m.insert("seed".into(), seed.to_string());
    }
    m.insert("features".into(), json(preparation.features.clone().into()));
    m.insert("classes".into(), json(preparation.classes.clone().into()));
    if let Some((mean, std)) = &preparation.standardization {
        m.insert("mean".into(), json(mean.clone().into()));
        m.insert("std".into(), json(std.clone().into()));
    }
    m
}

/// Reads `path`'s weights and preparation for `model` (whose `.nn` text is
/// `source`). Tensors and metadata that do not fit the model are an error that says
/// what differs; another model name or source hash is only a note in `notes` (a
/// comment or the epochs may have changed).
pub fn load(
    model: &Model,
    source: &[u8],
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<Trained, String> {
    let file = path.display();
    // The predict graph at batch 1 names every parameter in model order.
    let graph = build::predict(model, 1).map_err(|e| e.to_string())?;
    let expected: Vec<(String, Vec<usize>)> = init::params(&graph)
        .into_iter()
        .map(|(name, id)| (name, graph.tensors[id].shape.clone()))
        .collect();
    let (values, meta) = checkpoint::load_with_metadata(path, &expected)?;
    let list = |key: &str| -> Result<Option<serde_json::Value>, String> {
        meta.get(key)
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|_| format!("{file}: metadata `{key}` is not a JSON list"))
            })
            .transpose()
    };
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match list(key)? {
            None => Ok(vec![]),
            Some(v) => serde_json::from_value(v)
                .map_err(|_| format!("{file}: metadata `{key}` is not a list of names")),
        }
    };
    let numbers = |key: &str| -> Result<Option<Vec<f64>>, String> {
        list(key)?
            .map(|v| {
                serde_json::from_value(v)
                    .map_err(|_| format!("{file}: metadata `{key}` is not a list of numbers"))
            })
            .transpose()
    };
    let features = strings("features")?;
    let classes = strings("classes")?;
    let standardization = match (numbers("mean")?, numbers("std")?) {
        (Some(mean), Some(std)) => Some((mean, std)),
        (None, None) => None,
        _ => return Err(format!("{file}: metadata has only one of `mean` and `std`")),
    };
    let seed = match meta.get("seed") {
        Some(s) => Some(
            s.parse()
                .map_err(|_| format!("{file}: metadata `seed` is not an integer"))?,
        ),
        None => None,
    };

    let mut problems = vec![];
    let inputs = model.input_size();
    if !features.is_empty() && features.len() != inputs {
        problems.push(format!(
            "it was trained on {} features ({}), the model's input `{}` takes {inputs}",
            features.len(),
            features.join(", "),
            model.input_name
        ));
    }
    if let Some((mean, std)) = &standardization {
        if mean.len() != inputs || std.len() != inputs {
            problems.push(format!(
                "its standardization has {} means and {} deviations for {inputs} inputs",
                mean.len(),
                std.len()
            ));
        }
    }
    let outputs = model.output_size();
    if !classes.is_empty() && classes.len() != outputs && !(classes.len() == 2 && outputs == 1) {
        problems.push(format!(
            "it names {} classes, the model outputs {outputs} values per sample",
            classes.len()
        ));
    }
    if !problems.is_empty() {
        return Err(format!(
            "{file}: the weights' metadata does not fit model `{}`:\n  {}",
            model.name,
            problems.join("\n  ")
        ));
    }
    match meta.get("model") {
        Some(name) if *name != model.name => notes.push(format!(
            "{file} was saved by model `{name}`; its tensors fit `{}`",
            model.name
        )),
        _ => {}
    }
    match meta.get("source_sha256") {
        Some(hash) if *hash != source_hash(source) => notes.push(format!(
            "{file} was trained from another version of this .nn file (its tensors fit)"
        )),
        _ => {}
    }

    let weights = expected
        .into_iter()
        .zip(values)
        .map(|((name, shape), v)| (name, shape, v))
        .collect();
    Ok(Trained {
        weights,
        preparation: Preparation {
            features,
            standardization,
            classes,
            seed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_hash_is_sha256() {
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            source_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
