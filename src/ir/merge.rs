//! The merge family: the ops of the merge layers of graph models (Keras applies them
//! left to right, so a merge of n inputs is n - 1 binary nodes; `add`'s is `Op::Add`,
//! which also sums gradients) and their gradients. Everything the IR knows about one
//! of them is here: what it computes (its variant's doc), arity, output shape,
//! printed name, reference kernel and gradient rule; `op.rs`, `interp.rs` and
//! `autodiff.rs` only delegate, and its native code is in `codegen/merge.rs`.

use super::graph::{Graph, Op, TensorId};
use crate::ops::Real;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MergeOp {
    /// `out = a - b`, same shapes; inputs `(a, b)`.
    Sub,
    /// `out = a * b` element by element, same shapes; inputs `(a, b)`.
    Mul,
    /// `out = x * factor`; inputs `(x)`. `average`'s division, and `-dy`.
    ScaleBy(f32),
    /// `out = max(a, b)` (`max`) or `min(a, b)` element by element, same shapes;
    /// inputs `(a, b)`.
    Extremum { max: bool },
    /// The gradient of `Extremum` with respect to `a` (`first`) or `b`: `dy` where that
    /// input is the one chosen, else 0. As TF's, a tie goes to `a` (`a >= b` for max,
    /// `a <= b` for min). Inputs `(a, b, dy)`.
    ExtremumGrad { max: bool, first: bool },
    /// Concatenation of `parts` tensors along `axis` (of the batch-first shape; every
    /// other axis equal); inputs: the parts in order.
    Concat { axis: usize, parts: usize },
    /// Elements `start..start + len` along `axis` of `x` (the gradient of a `Concat`
    /// part); inputs `(x)`.
    Slice {
        axis: usize,
        start: usize,
        len: usize,
    },
}

impl MergeOp {
    /// How many inputs the op reads.
    pub fn arity(&self) -> usize {
        match self {
            MergeOp::ScaleBy(_) | MergeOp::Slice { .. } => 1,
            MergeOp::Sub | MergeOp::Mul | MergeOp::Extremum { .. } => 2,
            MergeOp::ExtremumGrad { .. } => 3,
            MergeOp::Concat { parts, .. } => *parts,
        }
    }

    /// The output shape for inputs of shapes `inputs` (their count checked).
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = |i: usize| inputs[i].to_vec();
        let same = |a: usize, b: usize| -> Result<(), String> {
            if s(a) == s(b) {
                Ok(())
            } else {
                Err(format!("{self:?}: shapes {:?} and {:?} differ", s(a), s(b)))
            }
        };
        match self {
            MergeOp::Sub | MergeOp::Mul | MergeOp::Extremum { .. } => same(0, 1).map(|_| s(0)),
            MergeOp::ScaleBy(_) => Ok(s(0)),
            MergeOp::ExtremumGrad { .. } => same(0, 1).and(same(1, 2)).map(|_| s(0)),
            MergeOp::Concat { axis, parts } => {
                let first = s(0);
                if *parts == 0 || *axis >= first.len() {
                    return Err(format!(
                        "concat of {parts} parts on axis {axis} of {first:?}"
                    ));
                }
                let mut out = first.clone();
                out[*axis] = 0;
                for part in inputs {
                    let fits = part.len() == first.len()
                        && (0..first.len()).all(|i| i == *axis || part[i] == first[i]);
                    if !fits {
                        return Err(format!(
                            "concat: {part:?} does not fit {first:?} on axis {axis}"
                        ));
                    }
                    out[*axis] += part[*axis];
                }
                Ok(out)
            }
            MergeOp::Slice { axis, start, len } => {
                let mut x = s(0);
                match x.get(*axis) {
                    Some(&n) if start + len <= n && *len > 0 => {
                        x[*axis] = *len;
                        Ok(x)
                    }
                    _ => Err(format!(
                        "slice {start}..{} of axis {axis} of {x:?}",
                        start + len
                    )),
                }
            }
        }
    }

    /// The printed name (`nnc emit --ir`).
    pub fn name(&self) -> String {
        match self {
            MergeOp::Sub => "sub".into(),
            MergeOp::Mul => "mul".into(),
            MergeOp::ScaleBy(factor) => format!("scale{{{factor}}}"),
            MergeOp::Extremum { max: true } => "maximum".into(),
            MergeOp::Extremum { max: false } => "minimum".into(),
            MergeOp::ExtremumGrad { max, first } => format!(
                "{}_grad{{{}}}",
                if *max { "maximum" } else { "minimum" },
                if *first { "a" } else { "b" }
            ),
            MergeOp::Concat { axis, parts } => format!("concat{{axis={axis}, parts={parts}}}"),
            MergeOp::Slice { axis, start, len } => {
                format!("slice{{axis={axis}, {start}..{}}}", start + len)
            }
        }
    }

    /// The reference kernel: the output's elements from the inputs' (`shapes`) into
    /// an output of `out_len` elements.
    pub fn eval<T: Real>(&self, ins: &[Vec<T>], shapes: &[&[usize]], out_len: usize) -> Vec<T> {
        match self {
            MergeOp::Sub => ins[0].iter().zip(&ins[1]).map(|(&a, &b)| a - b).collect(),
            MergeOp::Mul => ins[0].iter().zip(&ins[1]).map(|(&a, &b)| a * b).collect(),
            MergeOp::ScaleBy(factor) => {
                let f = T::from_f32(*factor);
                ins[0].iter().map(|&v| v * f).collect()
            }
            MergeOp::Extremum { max } => ins[0]
                .iter()
                .zip(&ins[1])
                .map(|(&a, &b)| if first_wins(*max, a, b) { a } else { b })
                .collect(),
            MergeOp::ExtremumGrad { max, first } => (0..ins[0].len())
                .map(|i| {
                    if first_wins(*max, ins[0][i], ins[1][i]) == *first {
                        ins[2][i]
                    } else {
                        T::zero()
                    }
                })
                .collect(),
            MergeOp::Concat { axis, .. } => {
                let outer: usize = shapes[0][..*axis].iter().product();
                let mut out = Vec::with_capacity(out_len);
                for o in 0..outer {
                    for part in ins {
                        let block = part.len() / outer.max(1);
                        out.extend_from_slice(&part[o * block..(o + 1) * block]);
                    }
                }
                out
            }
            MergeOp::Slice { axis, start, len } => {
                let x_shape = shapes[0];
                let outer: usize = x_shape[..*axis].iter().product();
                let inner: usize = x_shape[axis + 1..].iter().product();
                let n = x_shape[*axis];
                let mut out = Vec::with_capacity(out_len);
                for o in 0..outer {
                    let from = (o * n + start) * inner;
                    out.extend_from_slice(&ins[0][from..from + len * inner]);
                }
                out
            }
        }
    }

    /// The gradient rule: the contributions `(input, gradient)` to the inputs `ins`
    /// for which `want(i)`, given the output's gradient `dy`; `name(g, i)` names input
    /// `i`'s gradient. The gradient ops themselves have no rule.
    pub fn vjp(
        &self,
        g: &mut Graph,
        ins: &[TensorId],
        dy: TensorId,
        want: &dyn Fn(usize) -> bool,
        name: &dyn Fn(&Graph, usize) -> String,
    ) -> Result<Vec<(TensorId, TensorId)>, String> {
        let mut out = vec![];
        let merge = |m: MergeOp| Op::Merge(m);
        match *self {
            MergeOp::Sub => {
                if want(0) {
                    out.push((ins[0], dy));
                }
                if want(1) {
                    let n = name(g, 1);
                    out.push((ins[1], g.push(merge(MergeOp::ScaleBy(-1.0)), vec![dy], n)?));
                }
            }
            MergeOp::Mul => {
                for (i, other) in [(0, 1), (1, 0)] {
                    if want(i) {
                        let n = name(g, i);
                        let op = merge(MergeOp::Mul);
                        out.push((ins[i], g.push(op, vec![dy, ins[other]], n)?));
                    }
                }
            }
            MergeOp::ScaleBy(factor) => {
                if want(0) {
                    let n = name(g, 0);
                    out.push((
                        ins[0],
                        g.push(merge(MergeOp::ScaleBy(factor)), vec![dy], n)?,
                    ));
                }
            }
            MergeOp::Extremum { max } => {
                for (i, first) in [(0, true), (1, false)] {
                    if want(i) {
                        let n = name(g, i);
                        let op = merge(MergeOp::ExtremumGrad { max, first });
                        out.push((ins[i], g.push(op, vec![ins[0], ins[1], dy], n)?));
                    }
                }
            }
            MergeOp::Concat { axis, .. } => {
                let mut start = 0;
                for (i, &part) in ins.iter().enumerate() {
                    let len = g.tensors[part].shape[axis];
                    if want(i) {
                        let n = name(g, i);
                        let op = merge(MergeOp::Slice { axis, start, len });
                        out.push((part, g.push(op, vec![dy], n)?));
                    }
                    start += len;
                }
            }
            MergeOp::ExtremumGrad { .. } | MergeOp::Slice { .. } => {
                return Err(format!(
                    "{self:?} is a backward op and has no gradient rule"
                ))
            }
        }
        Ok(out)
    }
}

/// Whether `Extremum` chooses `a`: a tie goes to `a`, as in TF.
fn first_wins<T: Real>(max: bool, a: T, b: T) -> bool {
    if max {
        a >= b
    } else {
        a <= b
    }
}
