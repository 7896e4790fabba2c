//! The facts `nnc check` prints: per-layer shapes and parameter counts,
//! multiply-adds, and the memory one training step needs.

use serde::Serialize;

use super::model::{Layer, LayerKind, Optimizer};

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// Keras's class name: `Dense`, `Conv2D`, `MaxPooling2D`, ...
    pub kind: &'static str,
    /// Without the batch dimension.
    pub output_shape: Vec<usize>,
    pub params: u64,
    pub trainable_params: u64,
    pub multiply_adds: u128,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub batch_size: usize,
    pub optimizer: &'static str,
    pub parameters: u128,
    pub gradients: u128,
    pub optimizer_state: u128,
    /// Every layer's output for the batch and its gradient, kept for the backward pass.
    pub activations: u128,
    pub total: u128,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub model: String,
    pub input_shape: Vec<usize>,
    pub layers: Vec<Row>,
    pub total_params: u64,
    pub trainable_params: u64,
    pub non_trainable_params: u64,
    pub multiply_adds: u128,
    pub memory: Memory,
}

pub fn keras_kind(kind: &LayerKind) -> &'static str {
    match kind {
        LayerKind::Dense { .. } => "Dense",
        LayerKind::Flatten => "Flatten",
        LayerKind::Dropout { .. } => "Dropout",
        LayerKind::Activation(a) => a.keras_layer(),
        LayerKind::Conv2d { .. } => "Conv2D",
        LayerKind::MaxPool2d { .. } => "MaxPooling2D",
        LayerKind::AvgPool2d { .. } => "AveragePooling2D",
        LayerKind::BatchNorm { .. } => "BatchNormalization",
        LayerKind::Reshape { .. } => "Reshape",
    }
}

fn elements(shape: &[usize]) -> u128 {
    shape
        .iter()
        .fold(1u128, |a, &d| a.saturating_mul(d as u128))
}

/// Multiply-adds of one forward pass for one sample (dense and conv2d; the rest are cheap).
fn multiply_adds(l: &Layer) -> u128 {
    match &l.kind {
        LayerKind::Dense { units, .. } => elements(&l.input_shape).saturating_mul(*units as u128),
        LayerKind::Conv2d { kernel_size, .. } => {
            let c = l.input_shape.last().copied().unwrap_or(1) as u128;
            elements(&l.output_shape)
                .saturating_mul(kernel_size[0] as u128 * kernel_size[1] as u128)
                .saturating_mul(c)
        }
        // Elementwise, pooling and shape layers: a few operations per element.
        LayerKind::Flatten
        | LayerKind::Dropout { .. }
        | LayerKind::Activation(_)
        | LayerKind::MaxPool2d { .. }
        | LayerKind::AvgPool2d { .. }
        | LayerKind::BatchNorm { .. }
        | LayerKind::Reshape { .. } => 0,
    }
}

/// Slots of optimizer state per trainable parameter, as Keras keeps them.
fn optimizer_slots(o: &Optimizer) -> (&'static str, u128) {
    let name = match o {
        Optimizer::Sgd { .. } => "sgd",
        Optimizer::Adam { .. } => "adam",
        Optimizer::AdamW { .. } => "adamw",
        Optimizer::RmsProp { .. } => "rmsprop",
    };
    (name, o.slot_names().len() as u128)
}

/// `optimizer`: the train block's, or `None` (then Adam is assumed, as the most common).
pub fn summarize(
    model: &str,
    input_shape: &[usize],
    layers: &[Layer],
    optimizer: Option<&Optimizer>,
    batch_size: usize,
) -> Summary {
    let rows: Vec<Row> = layers
        .iter()
        .map(|l| {
            let (t, n) = l.param_counts();
            Row {
                name: l.name.clone(),
                kind: keras_kind(&l.kind),
                output_shape: l.output_shape.clone(),
                params: t.saturating_add(n),
                trainable_params: t,
                multiply_adds: multiply_adds(l),
            }
        })
        .collect();
    let trainable = rows
        .iter()
        .fold(0u64, |a, r| a.saturating_add(r.trainable_params));
    let total = rows.iter().fold(0u64, |a, r| a.saturating_add(r.params));
    let (opt_name, slots) = optimizer.map(optimizer_slots).unwrap_or(("adam", 2));
    let act_elems = layers.iter().fold(elements(input_shape), |a, l| {
        a.saturating_add(elements(&l.output_shape))
    });
    let parameters = (total as u128).saturating_mul(4);
    let gradients = (trainable as u128).saturating_mul(4);
    let optimizer_state = gradients.saturating_mul(slots);
    let activations = act_elems
        .saturating_mul(batch_size as u128)
        .saturating_mul(2 * 4);
    Summary {
        model: model.to_string(),
        input_shape: input_shape.to_vec(),
        total_params: total,
        trainable_params: trainable,
        non_trainable_params: total - trainable.min(total),
        multiply_adds: rows
            .iter()
            .fold(0u128, |a, r| a.saturating_add(r.multiply_adds)),
        memory: Memory {
            batch_size,
            optimizer: opt_name,
            parameters,
            gradients,
            optimizer_state,
            activations,
            total: parameters
                .saturating_add(gradients)
                .saturating_add(optimizer_state)
                .saturating_add(activations),
        },
        layers: rows,
    }
}

/// Keras's size format: 104.00 B, 397.54 KB (powers of 1024).
pub fn human_bytes(bytes: u128) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut x = bytes as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    format!("{x:.2} {}", units[u])
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape_text(shape: &[usize]) -> String {
    let mut parts = vec!["None".to_string()];
    parts.extend(shape.iter().map(usize::to_string));
    format!("({})", parts.join(", "))
}

/// The table, in the spirit of Keras's `model.summary()`, in ASCII.
pub fn render_text(s: &Summary) -> String {
    let header = ["Layer (type)", "Output Shape", "Param #", "Mult-Adds"];
    let cells: Vec<[String; 4]> = s
        .layers
        .iter()
        .map(|r| {
            [
                format!("{} ({})", r.name, r.kind),
                shape_text(&r.output_shape),
                thousands(r.params as u128),
                thousands(r.multiply_adds),
            ]
        })
        .collect();
    let mut widths = [31, 22, 13, 13];
    for row in cells
        .iter()
        .chain(std::iter::once(&header.map(String::from)))
    {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let rule = |c: char| {
        let mut line = String::from("+");
        for w in widths {
            line.push_str(&c.to_string().repeat(w + 2));
            line.push('+');
        }
        line.push('\n');
        line
    };
    // Padded by hand: `format!`'s width is at most 65,535, and a layer name may be
    // longer.
    let pad = |text: &str, width: usize| " ".repeat(width.saturating_sub(text.len()));
    let row = |cells: &[String; 4]| {
        format!(
            "| {}{} | {}{} | {}{} | {}{} |\n",
            cells[0],
            pad(&cells[0], widths[0]),
            cells[1],
            pad(&cells[1], widths[1]),
            pad(&cells[2], widths[2]),
            cells[2],
            pad(&cells[3], widths[3]),
            cells[3],
        )
    };
    let mut out = format!("Model: \"{}\"\n", s.model);
    out += &rule('-');
    out += &row(&header.map(String::from));
    out += &rule('=');
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out += &rule('-');
        }
        out += &row(c);
    }
    out += &rule('-');
    let p = |n: u64| format!("{} ({})", thousands(n as u128), human_bytes(n as u128 * 4));
    out += &format!(" Total params: {}\n", p(s.total_params));
    out += &format!(" Trainable params: {}\n", p(s.trainable_params));
    out += &format!(" Non-trainable params: {}\n", p(s.non_trainable_params));
    out += &format!(
        " Multiply-adds per sample (forward): {}\n",
        thousands(s.multiply_adds)
    );
    let m = &s.memory;
    out += &format!(
        " Training step memory, batch size {}: {}\n",
        m.batch_size,
        human_bytes(m.total)
    );
    out += &format!("   parameters:      {:>12}\n", human_bytes(m.parameters));
    out += &format!("   gradients:       {:>12}\n", human_bytes(m.gradients));
    out += &format!(
        "   optimizer state: {:>12}  ({})\n",
        human_bytes(m.optimizer_state),
        m.optimizer
    );
    out += &format!(
        "   activations:     {:>12}  (outputs and their gradients)\n",
        human_bytes(m.activations)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Activation;

    #[test]
    fn counts_agree_with_the_model_contract() {
        use crate::sema::model::{Initializer, Padding};
        let conv = Layer {
            name: "c".into(),
            kind: LayerKind::Conv2d {
                filters: 64,
                kernel_size: [3, 3],
                strides: [1, 1],
                padding: Padding::Valid,
                activation: Activation::Relu,
                use_bias: true,
                kernel_initializer: Initializer::GlorotUniform,
                bias_initializer: Initializer::Zeros,
            },
            input_shape: vec![13, 13, 32],
            output_shape: vec![11, 11, 64],
            span: 0..0,
        };
        let bn = Layer {
            kind: LayerKind::BatchNorm {
                momentum: 0.99,
                epsilon: 1e-3,
            },
            output_shape: vec![13, 13, 32],
            ..conv.clone()
        };
        assert_eq!(conv.param_counts(), (18_496, 0));
        assert_eq!(bn.param_counts(), (64, 64));
        // 11*11 outputs * 64 filters * 3*3*32 products each.
        assert_eq!(multiply_adds(&conv), 11 * 11 * 64 * 9 * 32);
    }

    #[test]
    fn keras_number_formats() {
        assert_eq!(human_bytes(104), "104.00 B");
        // Keras prints 101,770 float32 parameters as 397.54 KB.
        assert_eq!(human_bytes(101_770 * 4), "397.54 KB");
        assert_eq!(human_bytes(34_826 * 4), "136.04 KB");
        assert_eq!(thousands(101_770), "101,770");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
