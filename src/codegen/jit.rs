//! The Cranelift JIT module: ISA flags, the Rust helpers generated code calls, and
//! the compiled train-step (or predict) function.

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, UserFuncName, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::kernels::Emitter;
use super::lower::{Imports, Lower};
use crate::ir::graph::Graph;
use crate::ir::layout::Layout;

type StepFn = unsafe extern "C" fn(*mut f32, *const f32, *const f32, u64);

/// Threads a matrix product may use (`nnc run --threads N`); 1 runs it on the
/// calling thread.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets how many threads matrix products use from now on (at least 1). Products are
/// split by output columns (`nnc_kernels`) or tiles (the `gemm` crate, on machines
/// without AVX2), each element summed by one thread: results are deterministic for
/// a given count, and with `nnc_kernels` do not depend on it at all.
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The thread count matrix products use.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// `c[m, n] = a[m, k] * b[k, n]` with arbitrary element strides, overwriting `c`
/// (row-major, contiguous). `a_is_input` is 1 when `a` is the call's input batch,
/// which no node writes: its nonzeros are then collected once per call.
///
/// # Safety
/// Only called from generated code, with pointers to arena or data buffers that the
/// compiler sized from the same shapes.
pub(super) unsafe extern "C" fn nnc_sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    a_is_input: i64,
) {
    #[cfg(target_arch = "x86_64")]
    if nnc_kernels::sgemm::supported() {
        // SAFETY: as for this function; the input batch stays the same until the
        // next call of generated code, which says `inputs_changed`.
        unsafe {
            nnc_kernels::sgemm::sgemm(
                m,
                k,
                n,
                a,
                rsa,
                csa,
                b,
                rsb,
                csb,
                c,
                threads(),
                a_is_input != 0,
            )
        };
        return;
    }
    // The fallback product collects nothing it could keep.
    let _ = a_is_input;
    let threads = threads();
    let parallelism = if threads > 1 && m * n * k >= nnc_kernels::PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller (generated code) passes buffers of the shapes above;
    // `read_dst = false` means `c` is written, never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            n as isize,
            false,
            a,
            csa,
            rsa,
            b,
            csb,
            rsb,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The node number a profiled function marks its end with.
pub(super) const PROFILE_END: u64 = u64::MAX;

/// Time per (function, node) of the profiled functions run on this thread, and the
/// node running since the last mark.
#[derive(Default)]
struct Profiler {
    running: Option<(u64, u64, Instant)>,
    totals: HashMap<(u64, u64), Duration>,
}

thread_local! {
    static PROFILER: RefCell<Profiler> = RefCell::default();
}

/// Numbers the profiled functions, so that their nodes' times stay apart.
static NEXT_PROFILED: AtomicU64 = AtomicU64::new(0);

/// Called by a profiled function before each node (and with `PROFILE_END` after the
/// last): the time since the previous mark goes to the node that was running.
extern "C" fn nnc_profile_mark(function: u64, node: u64) {
    let now = Instant::now();
    PROFILER.with(|p| {
        let mut p = p.borrow_mut();
        if let Some((f, n, started)) = p.running.take() {
            *p.totals.entry((f, n)).or_default() += now - started;
        }
        if node != PROFILE_END {
            p.running = Some((function, node, now));
        }
    });
}

/// Adam's update of `n` weights (see `nnc_kernels::update`); `has_decay` is 1 for
/// AdamW, whose decay is `weight_decay` times `learning_rate`.
///
/// # Safety
/// Only called from generated code, on machines where `vector_adam()` holds, with
/// four distinct buffers of `n` floats.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn nnc_adam(
    w: *mut f32,
    g: *const f32,
    m: *mut f32,
    v: *mut f32,
    n: usize,
    alpha: f32,
    one_minus_beta_1: f32,
    one_minus_beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    learning_rate: f32,
    has_decay: i64,
) {
    let constants = nnc_kernels::update::Adam {
        alpha,
        one_minus_beta_1,
        one_minus_beta_2,
        epsilon,
        decay: (has_decay != 0).then_some((weight_decay, learning_rate)),
    };
    // SAFETY: as for this function.
    unsafe { nnc_kernels::update::adam(w, g, m, v, n, constants) }
}

/// Whether generated code may call `nnc_adam`.
fn vector_adam() -> bool {
    #[cfg(target_arch = "x86_64")]
    return nnc_kernels::sgemm::supported();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

extern "C" fn nnc_powf(a: f32, b: f32) -> f32 {
    a.powf(b)
}

extern "C" fn nnc_logf(a: f32) -> f32 {
    a.ln()
}

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

fn new_module(optimize: bool) -> Result<JITModule, String> {
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
            .map_err(|e| format!("cranelift flag {k}: {e}"))?;
    }
    let isa = cranelift_native::builder()
        .map_err(|e| format!("this machine is not supported by the JIT: {e}"))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| format!("cranelift target: {e}"))?;
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    jb.symbol("nnc_sgemm", nnc_sgemm as *const u8);
    #[cfg(target_arch = "x86_64")]
    jb.symbol("nnc_adam", nnc_adam as *const u8);
    jb.symbol("nnc_powf", nnc_powf as *const u8);
    jb.symbol("nnc_logf", nnc_logf as *const u8);
    jb.symbol("nnc_profile_mark", nnc_profile_mark as *const u8);
    Ok(JITModule::new(jb))
}

fn import(
    module: &mut JITModule,
    ctx: &mut Context,
    name: &str,
    params: &[types::Type],
    ret: Option<types::Type>,
) -> Result<cranelift_codegen::ir::FuncRef, String> {
    let mut sig = module.make_signature();
    sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
    sig.returns.extend(ret.map(AbiParam::new));
    let id = module
        .declare_function(name, Linkage::Import, &sig)
        .map_err(|e| e.to_string())?;
    Ok(module.declare_func_in_func(id, &mut ctx.func))
}

/// Declares a local function of `params` i64 parameters and fills it with `body`
/// (which receives the imports and the parameter values).
fn define(
    module: &mut JITModule,
    params: usize,
    body: impl FnOnce(&mut Emitter, Imports, &[Value]) -> Result<(), String>,
) -> Result<(Context, FuncId), String> {
    let mut sig = module.make_signature();
    for _ in 0..params {
        sig.params.push(AbiParam::new(types::I64));
    }
    let fid = module
        .declare_function("nnc_step", Linkage::Local, &sig)
        .map_err(|e| e.to_string())?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, fid.as_u32());
    let (f, i) = (types::F32, types::I64);
    let imports = Imports {
        sgemm: import(module, &mut ctx, "nnc_sgemm", &[i; 11], None)?,
        powf: import(module, &mut ctx, "nnc_powf", &[f, f], Some(f))?,
        logf: import(module, &mut ctx, "nnc_logf", &[f], Some(f))?,
        profile_mark: import(module, &mut ctx, "nnc_profile_mark", &[i, i], None)?,
        adam: if vector_adam() {
            let params = [i, i, i, i, i, f, f, f, f, f, f, i];
            Some(import(module, &mut ctx, "nnc_adam", &params, None)?)
        } else {
            None
        },
    };
    let mut fbc = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fbc);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let mut e = Emitter { b };
    body(&mut e, imports, &p)?;
    let mut b = e.b;
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    Ok((ctx, fid))
}

/// Builds the CLIF function for `graph` (not yet compiled).
/// With `profile`, the function marks each node's start with that function number.
fn build(
    module: &mut JITModule,
    graph: &Graph,
    layout: &Layout,
    profile: Option<u64>,
) -> Result<(Context, FuncId), String> {
    if layout.offsets.len() != graph.tensors.len() {
        return Err("the layout was made for another graph".into());
    }
    define(module, 4, |e, imports, p| {
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
        }
        .lower_all()
    })
}

/// Compiles and finalizes a function defined by `define`.
fn finish(
    mut module: JITModule,
    mut ctx: Context,
    fid: FuncId,
) -> Result<(JITModule, *const u8), String> {
    module
        .define_function(fid, &mut ctx)
        .map_err(|e| format!("code generation failed: {e:?}"))?;
    module.clear_context(&mut ctx);
    module
        .finalize_definitions()
        .map_err(|e| format!("code generation failed: {e}"))?;
    let ptr = module.get_finalized_function(fid);
    Ok((module, ptr))
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
    pub fn new(n: usize, f: impl Fn(&mut Emitter, Value) -> Value) -> Result<Unary, String> {
        let mut module = new_module(true)?;
        let (ctx, fid) = define(&mut module, 2, |e, _, p| {
            let (src, dst) = (p[0], p[1]);
            e.map(n, |e, ty, i| {
                let v = e.ld(ty, src, i);
                let r = f(e, v);
                e.st(r, dst, i);
            });
            Ok(())
        })?;
        let (module, ptr) = finish(module, ctx, fid)?;
        // SAFETY: defined above with two pointer parameters.
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
        // SAFETY: both buffers hold the `n` floats the code was generated for.
        unsafe { (self.func)(src.as_ptr(), out.as_mut_ptr()) };
        out
    }
}

#[cfg(test)]
impl Drop for Unary {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `func` dies with `self`.
            unsafe { m.free_memory() };
        }
    }
}

/// The Cranelift IR of `graph`'s function, before optimisation (for `nnc emit --clif`).
pub fn clif_text(graph: &Graph, layout: &Layout) -> Result<String, String> {
    let mut module = new_module(optimizes(layout))?;
    let (ctx, _) = build(&mut module, graph, layout, None)?;
    let text = ctx.func.display().to_string();
    // SAFETY: nothing was compiled or handed out from this module.
    unsafe { module.free_memory() };
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
pub fn compile(graph: &Graph, layout: &Layout) -> Result<Compiled, String> {
    compile_with(graph, layout, None, optimizes(layout))
}

/// Like `compile`, with or without Cranelift's optimizer whatever the graph's size,
/// so that tests cover both kinds of code on small graphs.
#[cfg(test)]
pub(super) fn compile_optimized(
    graph: &Graph,
    layout: &Layout,
    optimize: bool,
) -> Result<Compiled, String> {
    compile_with(graph, layout, None, optimize)
}

/// Like `compile`, but the function also times each of its nodes (a clock read per
/// node, negligible next to any layer of real size); see `Compiled::node_seconds`.
pub fn compile_profiled(graph: &Graph, layout: &Layout) -> Result<Compiled, String> {
    let id = NEXT_PROFILED.fetch_add(1, Ordering::Relaxed);
    compile_with(graph, layout, Some(id), optimizes(layout))
}

fn compile_with(
    graph: &Graph,
    layout: &Layout,
    profile: Option<u64>,
    optimize: bool,
) -> Result<Compiled, String> {
    // The generated code trusts every offset and shape: check them all first.
    graph.verify(layout)?;
    let mut module = new_module(optimize)?;
    let (ctx, fid) = build(&mut module, graph, layout, profile)?;
    let (module, ptr) = finish(module, ctx, fid)?;
    // SAFETY: the function was declared with `step_signature`, which is this type
    // under the host's C calling convention.
    let func = unsafe { std::mem::transmute::<*const u8, StepFn>(ptr) };
    let len_of = |id: usize| graph.tensors.get(id).map_or(0, |t| t.len());
    Ok(Compiled {
        module: Some(module),
        func,
        arena_len: layout.len,
        x_len: len_of(graph.input),
        y_len: graph.target.map_or(0, len_of),
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
        // SAFETY: forwarded to the caller.
        unsafe { (self.func)(arena, x, y, step) }
    }

    /// Runs the function after checking the buffer sizes.
    pub fn run(&self, arena: &mut [f32], x: &[f32], y: &[f32], step: u64) -> Result<(), String> {
        if arena.len() < self.arena_len || x.len() < self.x_len || y.len() < self.y_len {
            return Err(format!(
                "buffers too small: arena {} (needs {}), x {} (needs {}), y {} (needs {})",
                arena.len(),
                self.arena_len,
                x.len(),
                self.x_len,
                y.len(),
                self.y_len
            ));
        }
        // SAFETY: the sizes match the shapes the code was generated for.
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
        let Some((id, nodes)) = self.profiled else {
            return vec![];
        };
        PROFILER.with(|p| {
            let p = p.borrow();
            (0..nodes as u64)
                .map(|n| p.totals.get(&(id, n)).map_or(0.0, Duration::as_secs_f64))
                .collect()
        })
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
