//! A stable text form of a `Graph`, for `nnc emit --ir` and golden tests: the tensors
//! with their shapes and roles, then one line per node.

use std::fmt::Write;

use super::graph::{Graph, LossKind, Op, Role};
use crate::sema::model::{Activation, Optimizer};

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
        let op = op_name(&node.op);
        if let Op::Update(_) = node.op {
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

fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

fn activation(a: Activation) -> String {
    match a {
        Activation::Linear => "linear".into(),
        Activation::Relu => "relu".into(),
        Activation::LeakyRelu { alpha } => format!("leaky_relu{{alpha={alpha}}}"),
        Activation::Elu { alpha } => format!("elu{{alpha={alpha}}}"),
        Activation::Sigmoid => "sigmoid".into(),
        Activation::Tanh => "tanh".into(),
        Activation::Softmax => "softmax".into(),
        Activation::Gelu => "gelu".into(),
        Activation::Silu => "silu".into(),
        Activation::Softplus => "softplus".into(),
    }
}

fn loss(k: LossKind) -> String {
    match k {
        LossKind::Mse => "mse".into(),
        LossKind::Mae => "mae".into(),
        LossKind::Huber { delta } => format!("huber{{delta={delta}}}"),
        LossKind::SigmoidBinaryCrossentropy => "sigmoid_binary_crossentropy".into(),
        LossKind::BinaryCrossentropy => "binary_crossentropy".into(),
        LossKind::SoftmaxCategoricalCrossentropy => "softmax_categorical_crossentropy".into(),
        LossKind::CategoricalCrossentropy => "categorical_crossentropy".into(),
        LossKind::SoftmaxSparseCategoricalCrossentropy => {
            "softmax_sparse_categorical_crossentropy".into()
        }
        LossKind::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy".into(),
    }
}

fn optimizer(o: Optimizer) -> String {
    match o {
        Optimizer::Sgd {
            learning_rate,
            momentum,
            nesterov,
        } => format!("sgd{{lr={learning_rate}, momentum={momentum}, nesterov={nesterov}}}"),
        Optimizer::Adam {
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
        } => format!("adam{{lr={learning_rate}, beta_1={beta_1}, beta_2={beta_2}, epsilon={epsilon:e}}}"),
        Optimizer::AdamW {
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
        } => format!(
            "adamw{{lr={learning_rate}, beta_1={beta_1}, beta_2={beta_2}, epsilon={epsilon:e}, weight_decay={weight_decay}}}"
        ),
        Optimizer::RmsProp {
            learning_rate,
            rho,
            epsilon,
        } => format!("rmsprop{{lr={learning_rate}, rho={rho}, epsilon={epsilon:e}}}"),
    }
}

fn op_name(op: &Op) -> String {
    match op {
        Op::MatMul { trans_a, trans_b } => match (trans_a, trans_b) {
            (false, false) => "matmul".into(),
            (true, false) => "matmul_tn".into(),
            (false, true) => "matmul_nt".into(),
            (true, true) => "matmul_tt".into(),
        },
        Op::AddBias => "add_bias".into(),
        Op::SumRows => "sum_rows".into(),
        Op::Add => "add".into(),
        Op::Activate(a) => activation(*a),
        Op::ActivateGrad(a) => format!("{}_grad", activation(*a)),
        Op::Softmax => "softmax".into(),
        Op::SoftmaxGrad => "softmax_grad".into(),
        Op::Dropout { rate, seed } => format!("dropout{{rate={rate}, seed={seed:#x}}}"),
        Op::DropoutGrad { rate, seed } => format!("dropout_grad{{rate={rate}, seed={seed:#x}}}"),
        Op::Reshape => "reshape".into(),
        Op::Loss(k) => format!("loss.{}", loss(*k)),
        Op::LossGrad(k) => format!("loss_grad.{}", loss(*k)),
        Op::Update(o) => format!("update.{}", optimizer(*o)),
    }
}
