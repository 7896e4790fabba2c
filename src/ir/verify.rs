//! `Graph::verify`: every fact the native code relies on, checked once before any
//! code is generated, so that no graph or layout reachable from safe code (a
//! hand-built `Layout` has public fields) makes a compiled step read or write
//! outside its buffers.

use super::error::{CompileError, NodeAt};
use super::graph::{Graph, Node, Op, Role, TensorId};
use super::layout::Layout;

impl Graph {
    /// Checks the graph against its layout: ids, arities and shapes of every node;
    /// execution order (a node reads only what is written before it or lives outside
    /// the step); in-place updates that really are in place; and every arena tensor
    /// inside the arena. The input and target, read through their own pointers, must
    /// fit the buffers the graph's `input` and `target` describe.
    pub fn verify(&self, layout: &Layout) -> Result<(), CompileError> {
        let graph_error = |what| CompileError::Verify { node: None, what };
        self.verify_endpoints().map_err(graph_error)?;
        self.verify_layout(layout).map_err(graph_error)?;
        let mut written = vec![false; self.tensors.len()];
        for (index, node) in self.nodes.iter().enumerate() {
            self.verify_node(node, &written)
                .map_err(|what| CompileError::Verify {
                    node: Some(NodeAt {
                        index,
                        op: node.op.to_string(),
                    }),
                    what,
                })?;
            written[node.output] = true;
        }
        Ok(())
    }

    /// An error unless tensor `id` exists.
    fn exists(&self, id: TensorId) -> Result<(), String> {
        let count = self.tensors.len();
        if id < count {
            Ok(())
        } else {
            Err(format!("tensor %{id} does not exist ({count} tensors)"))
        }
    }

    /// Checks `node`, given the tensors `written` by the nodes before it.
    fn verify_node(&self, node: &Node, written: &[bool]) -> Result<(), String> {
        for &i in node.inputs.iter().chain([&node.output]) {
            self.exists(i)?;
        }
        if node.inputs.len() != node.op.arity() {
            return Err(format!(
                "reads {} tensors, takes {}",
                node.inputs.len(),
                node.op.arity()
            ));
        }
        for &i in &node.inputs {
            let t = &self.tensors[i];
            if t.role == Role::Temp && !written[i] {
                return Err(format!("reads `{}` before it is written", t.name));
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
                    return Err("must update a trainable weight in place".into());
                }
                let slots = &node.inputs[3..];
                if slots.len() != optimizer.slot_names().len()
                    || slots
                        .iter()
                        .any(|&s| self.tensors[s].role != Role::OptimizerSlot)
                {
                    return Err("needs its optimizer's slots".into());
                }
                if Some(node.inputs[2]) != self.learning_rate
                    || self.tensors[node.inputs[2]].len() != 1
                {
                    return Err("needs the graph's learning rate".into());
                }
                let mut same = node.inputs[..2].iter().chain(slots);
                if same.any(|&i| shape(i) != shape(param)) {
                    return Err("a gradient or slot of another shape".into());
                }
            }
            Op::LearningRate(_) => {
                let lr = node.inputs[0];
                if node.output != lr || Some(lr) != self.learning_rate || out.len() != 1 {
                    return Err("must set the graph's learning rate".into());
                }
            }
            Op::MovingAverage { .. } => {
                let average = node.inputs[0];
                if node.output != average || !self.tensors[average].role.is_persistent() {
                    return Err("must update a statistic in place".into());
                }
                if shape(node.inputs[1]) != shape(average) {
                    return Err("a value of another shape".into());
                }
            }
            Op::Reshape => {
                if self.tensors[node.inputs[0]].len() != out.len() || out.role != Role::Temp {
                    return Err("changes the element count".into());
                }
            }
            op => {
                let inputs: Vec<&[usize]> = node.inputs.iter().map(|&i| shape(i)).collect();
                let want = op.output_shape(&inputs)?;
                if want != out.shape || out.role != Role::Temp {
                    return Err(format!(
                        "writes `{}` {:?}, a temporary of {want:?} expected",
                        out.name, out.shape
                    ));
                }
                if written[node.output] {
                    return Err(format!("`{}` is written twice", out.name));
                }
            }
        }
        Ok(())
    }

    /// `input`, `target`, `output` and `loss` exist and have their roles; every other
    /// tensor read through the input or target pointer fits inside that buffer.
    fn verify_endpoints(&self) -> Result<(), String> {
        self.exists(self.input)?;
        self.exists(self.output)?;
        if self.tensors[self.input].role != Role::Input {
            return Err("the graph's input is not an input tensor".into());
        }
        let target_len = match self.target {
            Some(t) => {
                self.exists(t)?;
                if self.tensors[t].role != Role::Target {
                    return Err("the graph's target is not a target tensor".into());
                }
                self.tensors[t].len()
            }
            None => 0,
        };
        if let Some(loss) = self.loss {
            self.exists(loss)?;
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
    use crate::ir::error::{CompileError, NodeAt};
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

    #[test]
    fn a_broken_node_is_named_by_index_and_op_and_the_layout_by_none() {
        let g = graph();
        let layout = Layout::planned(&g);
        let mut broken = g.clone();
        let last = broken.nodes.len() - 1;
        let first = broken.nodes[last].inputs[0];
        broken.nodes[last].inputs.push(first);
        let error = broken.verify(&layout).unwrap_err();
        let CompileError::Verify {
            node: Some(NodeAt { index, op }),
            what,
        } = &error
        else {
            panic!("not a node's error: {error:?}");
        };
        assert_eq!(*index, last);
        assert_eq!(*op, g.nodes[last].op.to_string());
        assert!(what.starts_with("reads "), "{what}");
        assert_eq!(error.to_string(), format!("node {last} ({op}): {what}"));

        let small = Layout {
            len: layout.len - 4,
            ..layout.clone()
        };
        assert!(matches!(
            g.verify(&small),
            Err(CompileError::Verify { node: None, .. })
        ));
    }
}
