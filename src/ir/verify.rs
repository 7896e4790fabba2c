//! `Graph::verify`: every fact the native code relies on, checked once before any
//! code is generated, so that no graph or layout reachable from safe code (a
//! hand-built `Layout` has public fields) makes a compiled step read or write
//! outside its buffers.

use super::graph::{Graph, Op, Role, TensorId};
use super::layout::Layout;

impl Graph {
    /// Checks the graph against its layout: ids, arities and shapes of every node;
    /// execution order (a node reads only what is written before it or lives outside
    /// the step); in-place updates that really are in place; and every arena tensor
    /// inside the arena. The input and target, read through their own pointers, must
    /// fit the buffers the graph's `input` and `target` describe.
    pub fn verify(&self, layout: &Layout) -> Result<(), String> {
        let count = self.tensors.len();
        let exists = |id: TensorId| -> Result<(), String> {
            if id < count {
                Ok(())
            } else {
                Err(format!("tensor %{id} does not exist ({count} tensors)"))
            }
        };
        self.verify_endpoints(exists)?;
        self.verify_layout(layout)?;
        let mut written = vec![false; count];
        for (index, node) in self.nodes.iter().enumerate() {
            let at = || format!("node {index} ({})", node.op);
            for &i in node.inputs.iter().chain([&node.output]) {
                exists(i).map_err(|e| format!("{}: {e}", at()))?;
            }
            if node.inputs.len() != node.op.arity() {
                return Err(format!(
                    "{}: reads {} tensors, takes {}",
                    at(),
                    node.inputs.len(),
                    node.op.arity()
                ));
            }
            for &i in &node.inputs {
                let t = &self.tensors[i];
                if t.role == Role::Temp && !written[i] {
                    return Err(format!("{}: reads `{}` before it is written", at(), t.name));
                }
            }
            let shape = |i: TensorId| &self.tensors[i].shape[..];
            let out = &self.tensors[node.output];
            match &node.op {
                Op::Update(optimizer) => {
                    let param = node.inputs[0];
                    let trainable = matches!(
                        self.tensors[param].role,
                        Role::Param {
                            trainable: true,
                            ..
                        }
                    );
                    if node.output != param || !trainable {
                        return Err(format!("{}: must update a trainable weight in place", at()));
                    }
                    let slots = &node.inputs[2..];
                    if slots.len() != optimizer.slot_names().len()
                        || slots
                            .iter()
                            .any(|&s| self.tensors[s].role != Role::OptimizerSlot)
                    {
                        return Err(format!("{}: needs its optimizer's slots", at()));
                    }
                    if node.inputs.iter().any(|&i| shape(i) != shape(param)) {
                        return Err(format!("{}: a gradient or slot of another shape", at()));
                    }
                }
                Op::MovingAverage { .. } => {
                    let average = node.inputs[0];
                    if node.output != average || !self.tensors[average].role.is_persistent() {
                        return Err(format!("{}: must update a statistic in place", at()));
                    }
                    if shape(node.inputs[1]) != shape(average) {
                        return Err(format!("{}: a value of another shape", at()));
                    }
                }
                Op::Reshape => {
                    if self.tensors[node.inputs[0]].len() != out.len() || out.role != Role::Temp {
                        return Err(format!("{}: changes the element count", at()));
                    }
                }
                op => {
                    let inputs: Vec<&[usize]> = node.inputs.iter().map(|&i| shape(i)).collect();
                    let want = op
                        .output_shape(&inputs)
                        .map_err(|e| format!("{}: {e}", at()))?;
                    if want != out.shape || out.role != Role::Temp {
                        return Err(format!(
                            "{}: writes `{}` {:?}, a temporary of {want:?} expected",
                            at(),
                            out.name,
                            out.shape
                        ));
                    }
                    if written[node.output] {
                        return Err(format!("{}: `{}` is written twice", at(), out.name));
                    }
                }
            }
            written[node.output] = true;
        }
        Ok(())
    }

    /// `input`, `target`, `output` and `loss` exist and have their roles; every other
    /// tensor read through the input or target pointer fits inside that buffer.
    fn verify_endpoints(
        &self,
        exists: impl Fn(TensorId) -> Result<(), String>,
    ) -> Result<(), String> {
        exists(self.input)?;
        exists(self.output)?;
        if self.tensors[self.input].role != Role::Input {
            return Err("the graph's input is not an input tensor".into());
        }
        let target_len = match self.target {
            Some(t) => {
                exists(t)?;
                if self.tensors[t].role != Role::Target {
                    return Err("the graph's target is not a target tensor".into());
                }
                self.tensors[t].len()
            }
            None => 0,
        };
        if let Some(loss) = self.loss {
            exists(loss)?;
        }
        let input_len = self.tensors[self.input].len();
        for t in &self.tensors {
            let limit = match t.role {
                Role::Input => input_len,
                Role::Target => target_len,
                _ => continue,
            };
            if t.len() > limit {
                return Err(format!(
                    "`{}` is larger than the buffer it is read from",
                    t.name
                ));
            }
        }
        Ok(())
    }

    /// Every arena tensor has an offset, aligned as the layout promises, and lies
    /// inside the arena; the input and target have none.
    fn verify_layout(&self, layout: &Layout) -> Result<(), String> {
        if layout.offsets.len() != self.tensors.len() {
            return Err(format!(
                "the layout places {} tensors, the graph has {}",
                layout.offsets.len(),
                self.tensors.len()
            ));
        }
        for (t, offset) in self.tensors.iter().zip(&layout.offsets) {
            let outside = matches!(t.role, Role::Input | Role::Target);
            match (outside, offset) {
                (true, None) => {}
                (true, Some(_)) => {
                    return Err(format!(
                        "`{}` is read through a pointer, not the arena",
                        t.name
                    ))
                }
                (false, None) => return Err(format!("`{}` has no place in the arena", t.name)),
                (false, Some(o)) => {
                    let end = o.checked_add(t.len());
                    if o % 4 != 0 || end.is_none_or(|end| end > layout.len) {
                        return Err(format!(
                            "`{}` at {o} (+{}) does not fit an arena of {}",
                            t.name,
                            t.len(),
                            layout.len
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::build::train_step;
    use crate::ir::graph::{Op, Role};
    use crate::ir::layout::Layout;
    use crate::ir::testing::dense_model;
    use crate::ops::Activation;
    use crate::sema::model::{Loss, Optimizer};

    fn graph() -> crate::ir::graph::Graph {
        let adam = Optimizer::Adam {
            learning_rate: 0.01,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        let model = dense_model(
            3,
            &[(4, Activation::Relu), (2, Activation::Softmax)],
            Loss::SparseCategoricalCrossentropy,
            adam,
        );
        train_step(&model, 5).unwrap()
    }

    #[test]
    fn built_graphs_pass_with_either_layout() {
        let g = graph();
        g.verify(&Layout::new(&g)).unwrap();
        g.verify(&Layout::planned(&g)).unwrap();
    }

    #[test]
    fn every_broken_fact_is_caught() {
        let g = graph();
        let layout = Layout::planned(&g);
        let temp = g.tensors.iter().position(|t| t.role == Role::Temp).unwrap();
        let cases: Vec<(&str, crate::ir::graph::Graph, Layout)> = vec![
            (
                "an arena too small",
                g.clone(),
                Layout {
                    len: layout.len - 4,
                    ..layout.clone()
                },
            ),
            ("an offset past the end", g.clone(), {
                let mut l = layout.clone();
                l.offsets[temp] = Some(layout.len);
                l
            }),
            ("a misaligned offset", g.clone(), {
                let mut l = layout.clone();
                l.offsets[temp] = Some(1);
                l
            }),
            ("a missing offset", g.clone(), {
                let mut l = layout.clone();
                l.offsets[temp] = None;
                l
            }),
            (
                "a node reading a missing tensor",
                {
                    let mut b = g.clone();
                    b.nodes[0].inputs[0] = b.tensors.len();
                    b
                },
                layout.clone(),
            ),
            (
                "a wrong output shape",
                {
                    let mut b = g.clone();
                    let out = b.nodes[0].output;
                    b.tensors[out].shape.push(2);
                    b
                },
                layout.clone(),
            ),
            (
                "an extra input",
                {
                    let mut b = g.clone();
                    let first = b.nodes[0].inputs[0];
                    b.nodes[0].inputs.push(first);
                    b
                },
                layout.clone(),
            ),
            (
                "nodes out of order",
                {
                    let mut b = g.clone();
                    b.nodes.swap(0, 1);
                    b
                },
                layout.clone(),
            ),
            (
                "an update that is not in place",
                {
                    let mut b = g.clone();
                    let update = b
                        .nodes
                        .iter()
                        .position(|n| matches!(n.op, Op::Update(_)))
                        .unwrap();
                    b.nodes[update].output = temp;
                    b
                },
                layout.clone(),
            ),
            (
                "an input larger than its buffer",
                {
                    let mut b = g.clone();
                    b.tensors.push(crate::ir::graph::Tensor {
                        name: "big".into(),
                        shape: vec![1000],
                        role: Role::Input,
                        origin: crate::ir::graph::Origin::Data,
                    });
                    b
                },
                {
                    let mut l = layout.clone();
                    l.offsets.push(None);
                    l
                },
            ),
        ];
        for (what, graph, layout) in cases {
            assert!(graph.verify(&layout).is_err(), "{what} passed");
        }
    }
}
