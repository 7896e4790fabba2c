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
        if let Op::Update(_) | Op::MovingAverage { .. } = node.op {
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
    if let Op::Update(_) | Op::MovingAverage { .. } = node.op {
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
  %4 x [4, 3] input
  %5 target [4] target
  %6 dense.matmul [4, 5] temp
  %7 dense.biased [4, 5] temp
  %8 dense.out [4, 5] temp
  %9 dense_1.matmul [4, 2] temp
  %10 dense_1.biased [4, 2] temp
  %11 dense_1.out [4, 2] temp
  %12 loss [] temp
  %13 d(dense_1.biased) [4, 2] temp
  %14 d(dense_1.bias) [2] temp
  %15 d(dense.out) [4, 5] temp
  %16 d(dense_1.kernel) [5, 2] temp
  %17 d(dense.biased) [4, 5] temp
  %18 d(dense.bias) [5] temp
  %19 d(dense.kernel) [3, 5] temp
  %6 = matmul(%4, %0) : [4, 5]
  %7 = add_bias(%6, %1) : [4, 5]
  %8 = relu(%7) : [4, 5]
  %9 = matmul(%8, %2) : [4, 2]
  %10 = add_bias(%9, %3) : [4, 2]
  %11 = softmax(%10) : [4, 2]
  %12 = loss.softmax_sparse_categorical_crossentropy(%10, %5) : []
  %13 = loss_grad.softmax_sparse_categorical_crossentropy(%10, %5) : [4, 2]
  %14 = sum_rows(%13) : [2]
  %15 = matmul_nt(%13, %2) : [4, 5]
  %16 = matmul_tn(%8, %13) : [5, 2]
  %17 = relu_grad(%7, %8, %15) : [4, 5]
  %18 = sum_rows(%17) : [5]
  %19 = matmul_tn(%4, %17) : [3, 5]
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%0, %19)
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%1, %18)
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%2, %16)
  update.sgd{lr=0.1, momentum=0, nesterov=false}(%3, %14)
output %11, loss %12
";
        assert_eq!(print(&train_step(&model(), 4).unwrap()), want);
    }

    #[test]
    fn predict_dump_ends_at_the_output() {
        let text = print(&predict(&model(), 2).unwrap());
        assert!(text.contains("  %4 x [2, 3] input\n"), "{text}");
        assert!(text.contains("  %10 = softmax(%9) : [2, 2]\n"), "{text}");
        assert!(text.ends_with("output %10\n"), "{text}");
    }
}
