//! The Cranelift JIT module: ISA flags, the declaration of the train-step (or
//! predict) function, and the compiled function.

use cranelift_codegen::ir::{types, AbiParam, Function, InstBuilder, UserFuncName, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

use super::abi::{self, Imports};
use super::helpers;
use super::kernels::Emitter;
use super::lower::{Lower, PartBody};
use crate::ir::error::CompileError;
use crate::ir::graph::Graph;
use crate::ir::layout::Layout;
use std::ops::Range;

type StepFn = unsafe extern "C" fn(*mut f32, *const f32, *const f32, u64);

/// Arenas (in floats) from which a function gets Cranelift's optimizer.
///
/// The optimizer (e-graph rewrites: value numbering, loop-invariant code motion,
/// constant folding) is about a third of the compile time. A small network's step is
/// so short that its compile time is most of what it costs: the seed network's step
/// compiles in 2.8 ms instead of 3.9 and runs as fast without it. Larger steps keep
/// it: the MNIST MLP's step was 1-2% slower without it, over hundreds of steps.
const OPTIMIZE_FROM_ARENA_LEN: usize = 1 << 16;

fn optimizes(layout: &Layout) -> bool {
    layout.len >= OPTIMIZE_FROM_ARENA_LEN
}

fn new_module(optimize: bool) -> Result<JITModule, CompileError> {
    let mut flags = settings::builder();
    let verifier = if cfg!(debug_assertions) {
        "true"
    } else {
        "false"
    };
    for (k, v) in [
        ("opt_level", if optimize { "speed" } else { "none" }),
        ("enable_verifier", verifier),
        ("use_colocated_libcalls", "false"),
        ("is_pic", "false"),
    ] {
        flags
            .set(k, v)
            .map_err(|e| CompileError::Cranelift(format!("cranelift flag {k}: {e}")))?;
    }
    let isa = cranelift_native::builder()
        .map_err(|e| {
            CompileError::Unsupported(format!("this machine is not supported by the JIT: {e}"))
        })?
        .finish(settings::Flags::new(flags))
        .map_err(|e| CompileError::Cranelift(format!("cranelift target: {e}")))?;
    // Tensor offsets and loop counters are emitted as 64-bit integers.
    if isa.pointer_type() != types::I64 {
        return Err(CompileError::Unsupported(
            "the JIT needs a 64-bit machine".into(),
        ));
    }
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    abi::register(&mut jb);
    Ok(JITModule::new(jb))
}

/// Declares a local function `name` of `params` i64 parameters and fills it with
/// `body` (which receives the module, the imports and the parameter values).
fn define(
    module: &mut JITModule,
    name: &str,
    params: usize,
    body: impl FnOnce(&mut JITModule, &mut Emitter, Imports, &[Value]) -> Result<(), CompileError>,
) -> Result<(Context, FuncId), CompileError> {
    let mut sig = module.make_signature();
    for _ in 0..params {
        sig.params.push(AbiParam::new(types::I64));
    }
    let fid = module
        .declare_function(name, Linkage::Local, &sig)
        .map_err(|e| CompileError::Cranelift(e.to_string()))?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, fid.as_u32());
    let imports = Imports::declare(module, &mut ctx.func).map_err(CompileError::Cranelift)?;
    let mut fbc = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fbc);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let mut e = Emitter { b };
    body(module, &mut e, imports, &p)?;
    let mut b = e.b;
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    Ok((ctx, fid))
}

/// The functions of a module, built but not yet compiled: the step function, then
/// the functions of the nodes it splits over the batch (see `lower.rs`).
struct Built {
    module: JITModule,
    step: (Context, FuncId),
    parts: Vec<(Context, FuncId)>,
}

/// A new module holding the CLIF functions of `graph`'s `nodes`, built but not yet
/// compiled: what both `compile` and `clif_text` start from. With `profile`, the step
/// function marks each node's start with that function number.
fn build(
    graph: &Graph,
    layout: &Layout,
    nodes: Range<usize>,
    profile: Option<u64>,
    optimize: bool,
) -> Result<Built, CompileError> {
    // The generated code trusts every offset and shape: check them all first (the
    // whole graph, so that a part reads only what the parts before it wrote).
    graph.verify(layout)?;
    if nodes.start > nodes.end || nodes.end > graph.nodes.len() {
        return Err(CompileError::Verify {
            node: None,
            what: format!("nodes {nodes:?} of a graph of {} nodes", graph.nodes.len()),
        });
    }
    let mut module = new_module(optimize)?;
    let mut parts = vec![];
    let step = define(&mut module, "nnc_step", 4, |module, e, imports, p| {
        let mut define_part = |caller: &mut Function, body: &mut PartBody| {
            let name = format!("nnc_part_{}", parts.len());
            // A part's lowering fails as its node's does (`DefinePart` speaks text).
            let lowered = |_: &mut JITModule, e: &mut Emitter, imports, p: &[Value]| {
                body(e, imports, p).map_err(|what| CompileError::Lower { node: None, what })
            };
            let (ctx, fid) = define(module, &name, 5, lowered).map_err(|e| e.to_string())?;
            parts.push((ctx, fid));
            Ok(module.declare_func_in_func(fid, caller))
        };
        Lower {
            e,
            graph,
            layout,
            imports,
            arena: p[0],
            x: p[1],
            y: p[2],
            step: p[3],
            alphas: vec![],
            profile,
            define_part: Some(&mut define_part),
            part: None,
        }
        .lower_nodes(nodes)
    })?;
    Ok(Built {
        module,
        step,
        parts,
    })
}

/// Compiles and finalizes the functions `build` (or `define`) made; returns the
/// address of the first (`step`).
fn finish(
    mut module: JITModule,
    step: (Context, FuncId),
    parts: Vec<(Context, FuncId)>,
) -> Result<(JITModule, *const u8), CompileError> {
    let failed = |e: String| CompileError::Cranelift(format!("code generation failed: {e}"));
    let fid = step.1;
    for (mut ctx, id) in parts.into_iter().chain([step]) {
        module
            .define_function(id, &mut ctx)
            .map_err(|e| failed(format!("{e:?}")))?;
        module.clear_context(&mut ctx);
    }
    module
        .finalize_definitions()
        .map_err(|e| failed(e.to_string()))?;
    let ptr = module.get_finalized_function(fid);
    Ok((module, ptr))
}

/// Builds (and drops) a test-only function whose body `body` emits with the helpers
/// imported, for checking the call-site checks of `abi`.
#[cfg(test)]
pub(super) fn with_imports(body: impl FnOnce(&mut Emitter, &Imports)) -> Result<(), CompileError> {
    let mut module = new_module(false)?;
    define(&mut module, "nnc_test", 0, |_, e, imports, _| {
        body(e, &imports);
        Ok(())
    })?;
    // SAFETY: nothing was compiled or handed out from this module.
    unsafe { module.free_memory() };
    Ok(())
}

/// A test-only function `(src: *const f32, dst: *mut f32)` applying `f` to `n`
/// floats, for checking the math emitters directly.
#[cfg(test)]
pub(super) struct Unary {
    module: Option<JITModule>,
    func: unsafe extern "C" fn(*const f32, *mut f32),
    n: usize,
}

#[cfg(test)]
impl Unary {
    pub fn new(n: usize, f: impl Fn(&mut Emitter, Value) -> Value) -> Result<Unary, CompileError> {
        let mut module = new_module(true)?;
        let step = define(&mut module, "nnc_unary", 2, |_, e, _, p| {
            let (src, dst) = (p[0], p[1]);
            e.map(n, |e, ty, i| {
                let v = e.ld(ty, src, i);
                let r = f(e, v);
                e.st(r, dst, i);
            });
            Ok(())
        })?;
        let (module, ptr) = finish(module, step, vec![])?;
        // SAFETY: defined above with two 64-bit integer parameters (the pointers)
        // and no result, under the host's C calling convention.
        let func = unsafe {
            std::mem::transmute::<*const u8, unsafe extern "C" fn(*const f32, *mut f32)>(ptr)
        };
        Ok(Unary {
            module: Some(module),
            func,
            n,
        })
    }

    pub fn apply(&self, src: &[f32]) -> Vec<f32> {
        assert_eq!(src.len(), self.n);
        let mut out = vec![0.0; self.n];
        // SAFETY: both buffers hold the `n` floats the code reads and writes (the
        // length asserted above, `out` made of it).
        unsafe { (self.func)(src.as_ptr(), out.as_mut_ptr()) };
        out
    }
}

#[cfg(test)]
impl Drop for Unary {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: nothing outside `self` holds `func`, which dies with it.
            unsafe { m.free_memory() };
        }
    }
}

/// The Cranelift IR of the function `compile` builds for `graph` over `layout`, before
/// Cranelift optimizes it (for `nnc emit --clif`).
pub fn clif_text(graph: &Graph, layout: &Layout) -> Result<String, CompileError> {
    let all = 0..graph.nodes.len();
    let built = build(graph, layout, all, None, optimizes(layout))?;
    let mut text = built.step.0.func.display().to_string();
    for (ctx, _) in &built.parts {
        text.push('\n');
        text.push_str(&ctx.func.display().to_string());
    }
    // SAFETY: nothing was compiled or handed out from this module.
    unsafe { built.module.free_memory() };
    Ok(text)
}

/// A compiled graph: owns the executable memory of its function.
pub struct Compiled {
    module: Option<JITModule>,
    func: StepFn,
    arena_len: usize,
    x_len: usize,
    y_len: usize,
    /// Set when compiled by `compile_profiled`: the function's number and node count.
    profiled: Option<(u64, usize)>,
}

/// Compiles `graph` over `layout` into one native function.
pub fn compile(graph: &Graph, layout: &Layout) -> Result<Compiled, CompileError> {
    compile_with(graph, layout, 0..graph.nodes.len(), None, optimizes(layout))
}

/// A train step compiled as consecutive functions over the same layout, one per
/// segment of its nodes between the `cuts` (increasing node indices): running them
/// in order is one step, with room in between to change the arena (data-parallel
/// training sums values over the processes there; see `Graph::update_start`). With
/// `profiled`, all of them time their nodes under one number, so any one's
/// `node_seconds` covers the whole graph (and not what runs between them).
pub fn compile_segments(
    graph: &Graph,
    layout: &Layout,
    cuts: &[usize],
    profiled: bool,
) -> Result<Vec<Compiled>, CompileError> {
    let profile = profiled.then(helpers::next_profiled);
    let optimize = optimizes(layout);
    let starts = std::iter::once(0).chain(cuts.iter().copied());
    let ends = cuts.iter().copied().chain([graph.nodes.len()]);
    starts
        .zip(ends)
        .map(|(start, end)| compile_with(graph, layout, start..end, profile, optimize))
        .collect()
}

/// Like `compile`, with or without Cranelift's optimizer whatever the graph's size,
/// so that tests cover both kinds of code on small graphs.
#[cfg(test)]
pub(super) fn compile_optimized(
    graph: &Graph,
    layout: &Layout,
    optimize: bool,
) -> Result<Compiled, CompileError> {
    compile_with(graph, layout, 0..graph.nodes.len(), None, optimize)
}

/// Like `compile`, but the function also times each of its nodes (a clock read per
/// node, negligible next to any layer of real size); see `Compiled::node_seconds`.
pub fn compile_profiled(graph: &Graph, layout: &Layout) -> Result<Compiled, CompileError> {
    let id = helpers::next_profiled();
    compile_with(
        graph,
        layout,
        0..graph.nodes.len(),
        Some(id),
        optimizes(layout),
    )
}

fn compile_with(
    graph: &Graph,
    layout: &Layout,
    nodes: Range<usize>,
    profile: Option<u64>,
    optimize: bool,
) -> Result<Compiled, CompileError> {
    // The buffers a call must hold: those of the tensors these nodes read.
    // (`build` refuses a range outside the graph.)
    let part = graph.nodes.get(nodes.clone()).unwrap_or(&[]);
    let reads = |id: usize| part.iter().any(|n| n.inputs.contains(&id));
    let len_of = |id: usize| match graph.tensors.get(id) {
        Some(t) if reads(id) => t.len(),
        _ => 0,
    };
    let (x_len, y_len) = (len_of(graph.input), graph.target.map_or(0, len_of));
    let built = build(graph, layout, nodes, profile, optimize)?;
    let (module, ptr) = finish(built.module, built.step, built.parts)?;
    // SAFETY: `build` declared the function with four 64-bit integer parameters
    // (three pointers and the step) and no result, under the module's default
    // calling convention, the host's C one: exactly `StepFn` on this 64-bit target
    // (`new_module` refuses others). The module lives as long as `func` in
    // `Compiled`.
    let func = unsafe { std::mem::transmute::<*const u8, StepFn>(ptr) };
    Ok(Compiled {
        module: Some(module),
        func,
        arena_len: layout.len,
        x_len,
        y_len,
        profiled: profile.map(|id| (id, graph.nodes.len())),
    })
}

impl Compiled {
    /// Runs the function.
    ///
    /// # Safety
    /// `arena` must hold the layout's `len` floats, `x` the input batch and `y` the
    /// target batch (unused by predict graphs) of the graph this was compiled from.
    pub unsafe fn call(&self, arena: *mut f32, x: *const f32, y: *const f32, step: u64) {
        #[cfg(target_arch = "x86_64")]
        nnc_kernels::sgemm::inputs_changed();
        // SAFETY: the caller guarantees the buffers, which are all the compiled
        // code touches besides its own stack; `func` points into `self.module`.
        unsafe { (self.func)(arena, x, y, step) }
    }

    /// Runs the function after checking the buffer sizes.
    pub fn run(
        &self,
        arena: &mut [f32],
        x: &[f32],
        y: &[f32],
        step: u64,
    ) -> Result<(), CompileError> {
        if arena.len() < self.arena_len || x.len() < self.x_len || y.len() < self.y_len {
            return Err(CompileError::Buffers {
                arena: (arena.len(), self.arena_len),
                x: (x.len(), self.x_len),
                y: (y.len(), self.y_len),
            });
        }
        // SAFETY: the buffers hold at least the floats the code was generated for
        // (`arena_len` from the layout, `x_len`/`y_len` from the graph), as
        // checked just above.
        unsafe { self.call(arena.as_mut_ptr(), x.as_ptr(), y.as_ptr(), step) };
        Ok(())
    }

    /// Floats the arena must hold.
    pub fn arena_len(&self) -> usize {
        self.arena_len
    }

    /// Seconds spent in each node of the graph over every run so far on this thread;
    /// empty unless compiled by `compile_profiled`.
    pub fn node_seconds(&self) -> Vec<f64> {
        match self.profiled {
            Some((id, nodes)) => helpers::node_seconds(id, nodes),
            None => vec![],
        }
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `func` points into this module and dies with `self`.
            unsafe { m.free_memory() };
        }
    }
}
