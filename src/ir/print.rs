//! A stable text form of a `Graph`, for `nnc emit --ir` and golden tests: the tensors
//! with their shapes and roles, then one line per node.

use std::fmt::Write;

use super::graph::{Graph, Node, Op, Role};

pub fn print(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "graph batch={}", g.batch);
    for (id, t) in g.tensors.iter().enumerate() {
        let role = match &t.role {
            Role::Input => "input".to_string(),
            Role::Target => "target".to_string(),
            Role::Param {
                trainable: true, ..
            } => "param".to_string(),
            Role::Param {
                trainable: false, ..
            } => "param (frozen)".to_string(),
            Role::OptimizerSlot => "slot".to_string(),
            Role::Temp => "temp".to_string(),
        };
        let _ = writeln!(s, "  %{id} {} {} {role}", t.name, shape(&t.shape));
    }
    for node in &g.nodes {
        let args: Vec<String> = node.inputs.iter().map(|i| format!("%{i}")).collect();
        let args = args.join(", ");
        let op = &node.op;
        if let Op::Update(_) | Op::MovingAverage { .. } | Op::LearningRate(_) = node.op {
            let _ = writeln!(s, "  {op}({args})");
        } else {
            let _ = writeln!(
                s,
                "  %{} = {op}({args}) : {}",
                node.output,
                shape(&g.tensors[node.output].shape)
            );
        }
    }
    let _ = write!(s, "output %{}", g.output);
    if let Some(l) = g.loss {
        let _ = write!(s, ", loss %{l}");
    }
    s.push('\n');
    s
}

/// One node as `output = op(inputs)` with tensor names, for profiles.
pub fn node_label(g: &Graph, node: &Node) -> String {
    let args: Vec<&str> = node
        .inputs
        .iter()
        .map(|&i| g.tensors[i].name.as_str())
        .collect();
    let call = format!("{}({})", node.op, args.join(", "));
    if let Op::Update(_) | Op::MovingAverage { .. } | Op::LearningRate(_) = node.op {
        call
    } else {
        format!("{} = {call}", g.tensors[node.output].name)
    }
}

fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::build::{predict, train_step};
    use crate::ir::testing::dense_model;
    use crate::sema::model::{Activation, Loss, Optimizer};

    fn model() -> crate::sema::model::Model {
        let sgd = Optimizer::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
            nesterov: false,
        };
        dense_model(
            3,
            &[(5, Activation::Relu), (2, Activation::Softmax)],
            Loss::SparseCategoricalCrossentropy,
            sgd,
        )
    }

    #[test]
    fn train_step_dump() {
        let want = "\
graph batch=4
  %0 dense.kernel [3, 5] param
  %1 dense.bias [5] param
  %2 dense_1.kernel [5, 2] param
  %3 dense_1.bias [2] param
  %4 optimizer.learning_rate [] slot
  %5 x [4, 3] input
  %6 target [4] target
  %7 dense.matmul [4, 5] temp
  %8 dense.biased [4, 5] temp
  %9 dense.out [4, 5] temp
  %10 dense_1.matmul [4, 2] temp
  %11 dense_1.biased [4, 2] temp
  %12 dense_1.out [4, 2] temp
  %13 loss [] temp
  %14 d(dense_1.biased) [4, 2] temp
  %15 d(dense_1.bias) [2] temp
  %16 d(dense.out) [4, 5] temp
  %17 d(dense_1.kernel) [5, 2] temp
  %18 d(dense.biased) [4, 5] temp
  %19 d(dense.bias) [5] temp
  %20 d(dense.kernel) [3, 5] temp
  %7 = matmul(%5, %0) : [4, 5]
  %8 = add_bias(%7, %1) : [4, 5]
  %9 = relu(%8) : [4, 5]
  %10 = matmul(%9, %2) : [4, 2]
  %11 = add_bias(%10, %3) : [4, 2]
  %12 = softmax(%11) : [4, 2]
  %13 = loss.softmax_sparse_categorical_crossentropy(%11, %6) : []
  %14 = loss_grad.softmax_sparse_categorical_crossentropy(%11, %6) : [4, 2]
  %15 = sum_rows(%14) : [2]
  %16 = matmul_nt(%14, %2) : [4, 5]
  %17 = matmul_tn(%9, %14) : [5, 2]
  %18 = relu_grad(%8, %9, %16) : [4, 5]
  %19 = sum_rows(%18) : [5]
  %20 = matmul_tn(%5, %18) : [3, 5]
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%0, %20, %4)
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%1, %19, %4)
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%2, %17, %4)
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%3, %15, %4)
output %12, loss %13
";
        assert_eq!(print(&train_step(&model(), 4).unwrap()), want);
    }

    #[test]
    fn predict_dump_ends_at_the_output() {
        let text = print(&predict(&model(), 2).unwrap());
        assert!(text.contains("  %5 x [2, 3] input\n"), "{text}");
        assert!(text.contains("  %11 = softmax(%10) : [2, 2]\n"), "{text}");
        assert!(text.ends_with("output %11\n"), "{text}");
    }
}
