//! Known names of the language and "did you mean" suggestions.

use std::sync::LazyLock;

use crate::ops::Activation;

/// Layer kinds other than the activation layers (`relu`, ...), which `LAYERS` adds.
const LAYER_KINDS: &[&str] = &[
    "dense",
    "flatten",
    "dropout",
    "conv2d",
    "maxpool2d",
    "avgpool2d",
    "batchnorm",
    "reshape",
];
/// Every layer name: the layer kinds, then one layer per activation.
pub static LAYERS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    LAYER_KINDS
        .iter()
        .copied()
        .chain(ACTIVATIONS.iter().copied().filter(|&n| n != "linear"))
        .chain(["linear"])
        .collect()
});
/// Every activation name and alias, from `Activation::ALL`.
pub static ACTIVATIONS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    Activation::ALL
        .iter()
        .map(|a| a.name())
        .chain(Activation::ALIASES.iter().map(|(alias, _)| *alias))
        .collect()
});
pub const INITIALIZERS: &[&str] = &[
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "zeros",
    "ones",
];
pub const PADDINGS: &[&str] = &["valid", "same"];
pub const LOSSES: &[&str] = &[
    "mse",
    "mae",
    "huber",
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
];
pub const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw", "rmsprop"];
pub const METRICS: &[&str] = &["accuracy", "mse", "mae"];
pub const SOURCES: &[&str] = &["csv", "idx", "mnist"];
pub const SUBSETS: &[&str] = &["train", "test"];
pub const SETTINGS: &[&str] = &[
    "data",
    "test",
    "validation_split",
    "loss",
    "optimizer",
    "metrics",
    "epochs",
    "batch_size",
    "shuffle",
    "seed",
];

/// Keras spellings that are too far from the nnc name for edit distance to find.
const ALIASES: &[(&str, &str)] = &[
    ("batchnormalization", "batchnorm"),
    ("averagepooling2d", "avgpool2d"),
    ("maxpooling2d", "maxpool2d"),
    ("globalaveragepooling2d", "avgpool2d"),
    ("categoricalcrossentropy", "categorical_crossentropy"),
    (
        "sparsecategoricalcrossentropy",
        "sparse_categorical_crossentropy",
    ),
    ("binarycrossentropy", "binary_crossentropy"),
    ("meansquarederror", "mse"),
    ("meanabsoluteerror", "mae"),
    ("acc", "accuracy"),
];

/// The known name nearest to `name`, if one is near enough to be a likely typo.
pub fn nearest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let squashed = lower.replace('_', "");
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == squashed) {
        if let Some(k) = known.iter().find(|k| *k == to) {
            return Some(k);
        }
    }
    known
        .iter()
        .map(|k| {
            (
                distance(&lower, k).min(distance(&squashed, &k.replace('_', ""))),
                *k,
            )
        })
        .filter(|(d, k)| *d <= (k.len().max(lower.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, on chars.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "did you mean `x`?" when there is a near name, else the list of known names.
pub fn suggestion(name: &str, known: &[&'static str]) -> String {
    match nearest(name, known) {
        Some(k) => format!("did you mean `{k}`?"),
        None => format!(
            "expected one of {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_keras_names() {
        assert_eq!(nearest("relux", &ACTIVATIONS), Some("relu"));
        assert_eq!(nearest("dens", &LAYERS), Some("dense"));
        assert_eq!(nearest("Dense", &LAYERS), Some("dense"));
        assert_eq!(nearest("MaxPooling2D", &LAYERS), Some("maxpool2d"));
        assert_eq!(nearest("BatchNormalization", &LAYERS), Some("batchnorm"));
        assert_eq!(nearest("epoch", SETTINGS), Some("epochs"));
        assert_eq!(nearest("zzzzzz", &LAYERS), None);
    }

    #[test]
    fn distance_basics() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
