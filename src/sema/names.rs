//! Known names of the language and "did you mean" suggestions.

use std::sync::LazyLock;

use crate::ops::Activation;
use crate::sema::model::{Initializer, Loss, Metric, Padding};

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
    "add",
    "subtract",
    "multiply",
    "average",
    "maximum",
    "minimum",
    "concatenate",
    "global_avgpool1d",
    "global_maxpool1d",
    "global_avgpool2d",
    "global_maxpool2d",
    "layer_norm",
    "embedding",
    "conv1d",
    "maxpool1d",
    "avgpool1d",
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
/// Every initializer name, from `Initializer::ALL`.
pub static INITIALIZERS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| Initializer::ALL.iter().map(|i| i.keyword()).collect());
/// Every padding name, from `Padding::ALL`.
pub static PADDINGS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| Padding::ALL.iter().map(|p| p.keyword()).collect());
/// Every loss name and alias, from `Loss::ALL`.
pub static LOSSES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    Loss::ALL
        .iter()
        .map(|l| l.keyword())
        .chain(Loss::ALIASES.iter().map(|(alias, _)| *alias))
        .collect()
});
pub const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw", "rmsprop"];
pub const SCHEDULES: &[&str] = &[
    "exponential_decay",
    "cosine_decay",
    "piecewise_constant_decay",
    "inverse_time_decay",
    "polynomial_decay",
];
/// Every metric name, from `Metric::ALL`.
pub static METRICS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| Metric::ALL.iter().map(|m| m.keyword()).collect());
pub const SOURCES: &[&str] = &["csv", "idx", "mnist", "npy", "npz"];
pub const SUBSETS: &[&str] = &["train", "test"];
pub const SETTINGS: &[&str] = &[
    "data",
    "test",
    "validation_split",
    "validation_data",
    "loss",
    "optimizer",
    "metrics",
    "epochs",
    "batch_size",
    "shuffle",
    "seed",
    "callbacks",
    "class_weight",
];
pub const CALLBACKS: &[&str] = &[
    "early_stopping",
    "reduce_lr_on_plateau",
    "model_checkpoint",
    "terminate_on_nan",
    "csv_logger",
];
pub const MODES: &[&str] = &["auto", "min", "max"];

/// Keras spellings that are too far from the nnc name for edit distance to find.
const ALIASES: &[(&str, &str)] = &[
    ("batchnormalization", "batchnorm"),
    ("layernormalization", "layer_norm"),
    ("averagepooling2d", "avgpool2d"),
    ("maxpooling2d", "maxpool2d"),
    ("averagepooling1d", "avgpool1d"),
    ("maxpooling1d", "maxpool1d"),
    ("globalaveragepooling2d", "global_avgpool2d"),
    ("globalmaxpooling2d", "global_maxpool2d"),
    ("globalaveragepooling1d", "global_avgpool1d"),
    ("globalmaxpooling1d", "global_maxpool1d"),
    ("lr", "learning_rate"),
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

/// Keras names nnc does not have (lowercase, without `_`), with what to do instead.
/// Their nearest nnc spelling would be a wrong answer (`kernel_regularizer` is not
/// `kernel_initializer`), so none is offered. An entry whose alias above exists in
/// nnc is never reached.
const KERAS_ONLY: &[(&str, &str)] = &[
    ("kernelregularizer", "nnc has no weight regularizers yet"),
    ("biasregularizer", "nnc has no weight regularizers yet"),
    ("activityregularizer", "nnc has no activity regularizers"),
    ("kernelconstraint", "nnc has no weight constraints"),
    ("biasconstraint", "nnc has no weight constraints"),
    (
        "inputshape",
        "the shape of one sample is the model's first statement, e.g. `input x: [28, 28, 1]`",
    ),
    (
        "inputdim",
        "the shape of one sample is the model's first statement, e.g. `input x: [784]`",
    ),
];

/// What to write instead of a Keras name nnc does not have.
fn keras_only(name: &str) -> Option<&'static str> {
    let squashed = name.to_ascii_lowercase().replace('_', "");
    KERAS_ONLY
        .iter()
        .find(|(from, _)| *from == squashed)
        .map(|(_, help)| *help)
}

/// The known name nearest to `name`, if one is near enough to be a likely typo.
pub fn nearest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let squashed = lower.replace('_', "");
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == squashed) {
        if let Some(k) = known.iter().find(|k| *k == to) {
            return Some(k);
        }
    }
    if keras_only(name).is_some() {
        return None;
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

/// The name among the model's own (`known`) nearest to `name`, if near enough to
/// be a typo of it.
pub fn nearest_user_name<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Damerau-Levenshtein distance (optimal string alignment), on chars: a swap of two
/// neighbours (`rleu`, `tahn`) counts as one edit, as a typo does.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i - 2, i - 1 and i of the table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 0..a.len() {
        let mut cur = vec![i + 1; b.len() + 1];
        for j in 0..b.len() {
            let sub = prev[j] + usize::from(a[i] != b[j]);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                cur[j + 1] = cur[j + 1].min(before[j - 1] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// "did you mean `x`?" when there is a near name, what to do instead for a Keras
/// name nnc lacks, else the list of known names.
pub fn suggestion(name: &str, known: &[&'static str]) -> String {
    let lower = name.to_ascii_lowercase();
    if lower != name {
        if let Some(k) = known.iter().find(|k| **k == lower) {
            return format!("names are lowercase: write `{k}`");
        }
    }
    match (nearest(name, known), keras_only(name)) {
        (Some(k), _) => format!("did you mean `{k}`?"),
        (None, Some(help)) => help.to_string(),
        (None, None) => format!(
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
        // A swap of neighbours is one edit.
        assert_eq!(distance("rleu", "relu"), 1);
        assert_eq!(distance("tahn", "tanh"), 1);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("abc", "ca"), 3);
    }

    #[test]
    fn transposed_letters_find_the_name() {
        for typo in ["rleu", "reul", "erlu"] {
            assert_eq!(nearest(typo, &ACTIVATIONS), Some("relu"), "{typo}");
        }
        assert_eq!(nearest("tahn", &ACTIVATIONS), Some("tanh"));
    }

    #[test]
    fn keras_names_nnc_lacks_get_no_wrong_near_miss() {
        let params = &["units", "activation", "use_bias", "kernel_initializer"];
        assert_eq!(nearest("kernel_regularizer", params), None);
        assert!(suggestion("kernel_regularizer", params).contains("no weight regularizers"));
        assert!(suggestion("input_shape", params).contains("input x: [28, 28, 1]"));
        assert_eq!(nearest("EarlyStopping", CALLBACKS), Some("early_stopping"));
        assert_eq!(
            nearest("ReduceLROnPlateau", CALLBACKS),
            Some("reduce_lr_on_plateau")
        );
        // Keras's class names of the global pools find nnc's layers.
        assert_eq!(
            suggestion("GlobalAveragePooling2D", &LAYERS),
            "did you mean `global_avgpool2d`?"
        );
        assert_eq!(
            nearest("GlobalMaxPooling1D", &LAYERS),
            Some("global_maxpool1d")
        );
        assert_eq!(
            suggestion("lr", &["learning_rate", "momentum"]),
            "did you mean `learning_rate`?"
        );
        assert_eq!(
            suggestion("Dense", &LAYERS),
            "names are lowercase: write `dense`"
        );
    }
}
