//! `class_weight = balanced`: the class weights scikit-learn's
//! `compute_class_weight("balanced", classes=np.unique(y), y=y)` gives the training
//! rows, written into the graph's persistent `class_weights` before training.

use crate::ir::graph::Graph;
use crate::ir::layout::Layout;
use crate::ir::loss::class_of_row;
use crate::runtime::data::Dataset;
use crate::sema::model::{ClassWeight, TrainConfig};

/// `n_samples / (n_classes * count)` for each of `classes` classes, `n_classes`
/// counting the classes present in the targets; a class absent from them weighs 1
/// (Keras's weight for a class `class_weight` does not name).
pub fn balanced(targets: &[f32], width: usize, classes: usize) -> Vec<f32> {
    let mut counts = vec![0u64; classes];
    let mut rows = 0u64;
    for row in targets.chunks(width.max(1)) {
        if let Some(count) = class_of_row(row).and_then(|c| counts.get_mut(c)) {
            *count += 1;
        }
        rows += 1;
    }
    let present = counts.iter().filter(|&&n| n > 0).count() as f64;
    counts
        .iter()
        .map(|&n| {
            if n == 0 {
                1.0
            } else {
                (rows as f64 / (present * n as f64)) as f32
            }
        })
        .collect()
}

/// With `class_weight = balanced`, writes the training set's balanced weights into
/// the arena of `graph` (any graph of the model: they share the persistent tensors).
pub fn apply(
    config: &TrainConfig,
    train: &Dataset,
    graph: &Graph,
    layout: &Layout,
    arena: &mut [f32],
) {
    let (Some(ClassWeight::Balanced), Some(id)) = (&config.class_weight, graph.class_weights)
    else {
        return;
    };
    if let Some(range) = layout.range(graph, id) {
        let weights = balanced(&train.targets, train.target_width, range.len());
        arena[range].copy_from_slice(&weights);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_weights_are_scikit_learns() {
        // 6 rows: class 0 three times, class 1 twice, class 2 once; class 3 absent.
        let sparse = [0.0, 1.0, 0.0, 2.0, 1.0, 0.0];
        let w = balanced(&sparse, 1, 4);
        assert_eq!(w, [6.0 / 9.0, 6.0 / 6.0, 6.0 / 3.0, 1.0]);
        // The same classes as one-hot rows.
        let one_hot: Vec<f32> = sparse
            .iter()
            .flat_map(|&c| (0..4).map(move |k| f32::from(u8::from(k as f32 == c))))
            .collect();
        assert_eq!(balanced(&one_hot, 4, 4), w);
    }
}
