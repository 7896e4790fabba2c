//! The interface between generated code and the Rust helpers it calls, declared
//! once. Each entry of `Helper::spec` names a helper and holds its Rust function
//! pointer; the parameter and return kinds are read off that pointer's type, and both
//! the Cranelift signature the JIT imports and the check of every call's arguments
//! are made from them, so the three cannot disagree.

use cranelift_codegen::ir::{
    types, AbiParam, FuncRef, Function, InstBuilder, Signature, Type, Value,
};
use cranelift_frontend::FunctionBuilder;
use cranelift_jit::JITBuilder;
use cranelift_module::{Linkage, Module};

use super::helpers;

/// How a helper's parameter or result is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A pointer to floats.
    Ptr,
    Usize,
    Isize,
    I64,
    U64,
    F32,
}

impl Kind {
    /// The Cranelift type of the kind on a target whose pointers are `pointer`.
    pub fn clif(self, pointer: Type) -> Type {
        match self {
            Kind::Ptr | Kind::Usize | Kind::Isize => pointer,
            Kind::I64 | Kind::U64 => types::I64,
            Kind::F32 => types::F32,
        }
    }
}

/// A Rust type a helper takes or returns, and its kind.
pub trait Native {
    const KIND: Kind;
}

macro_rules! native {
    ($($t:ty => $k:ident),* $(,)?) => {
        $(impl Native for $t {
            const KIND: Kind = Kind::$k;
        })*
    };
}

native! {
    *const u8 => Ptr,
    *const f32 => Ptr,
    *mut f32 => Ptr,
    usize => Usize,
    isize => Isize,
    i64 => I64,
    u64 => U64,
    f32 => F32,
}

/// What a helper returns: nothing, or one `Native` value.
pub trait Returns {
    const KIND: Option<Kind>;
}

impl Returns for () {
    const KIND: Option<Kind> = None;
}

impl Returns for f32 {
    const KIND: Option<Kind> = Some(Kind::F32);
}

/// An `extern "C"` function pointer generated code may call.
pub trait ExternFn: Copy {
    fn params() -> Vec<Kind>;
    fn returns() -> Option<Kind>;
    fn address(self) -> *const u8;
}

macro_rules! extern_fn {
    ($($a:ident),*) => {
        impl<R: Returns, $($a: Native),*> ExternFn for extern "C" fn($($a),*) -> R {
            fn params() -> Vec<Kind> {
                vec![$($a::KIND),*]
            }
            fn returns() -> Option<Kind> {
                R::KIND
            }
            fn address(self) -> *const u8 {
                self as *const u8
            }
        }
        impl<R: Returns, $($a: Native),*> ExternFn for unsafe extern "C" fn($($a),*) -> R {
            fn params() -> Vec<Kind> {
                vec![$($a::KIND),*]
            }
            fn returns() -> Option<Kind> {
                R::KIND
            }
            fn address(self) -> *const u8 {
                self as *const u8
            }
        }
    };
}

extern_fn!(A);
extern_fn!(A, B);
extern_fn!(A, B, C, D, E, F);
extern_fn!(A, B, C, D, E, F, G, H);
extern_fn!(A, B, C, D, E, F, G, H, I, J, K);
extern_fn!(A, B, C, D, E, F, G, H, I, J, K, L);

/// One helper's declaration.
pub struct Spec {
    pub name: &'static str,
    pub address: *const u8,
    pub params: Vec<Kind>,
    pub returns: Option<Kind>,
}

impl Spec {
    fn of<F: ExternFn>(name: &'static str, f: F) -> Spec {
        Spec {
            name,
            address: f.address(),
            params: F::params(),
            returns: F::returns(),
        }
    }

    /// The Cranelift signature, under `template`'s calling convention.
    pub fn signature(&self, mut template: Signature, pointer: Type) -> Signature {
        let param = |k: Kind| AbiParam::new(k.clif(pointer));
        template
            .params
            .extend(self.params.iter().map(|&k| param(k)));
        template.returns.extend(self.returns.map(param));
        template
    }
}

/// The Rust helpers generated code calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    /// `helpers::nnc_sgemm`, the large matrix products.
    Sgemm,
    /// `powf`, for Adam's bias corrections.
    Powf,
    /// `logf`, for the cross-entropies.
    Logf,
    /// `cosf`, for the cosine learning-rate schedule.
    Cosf,
    /// The class-weighted loss (`ir::loss::weighted_loss`).
    WeightedLoss,
    /// Samples' class weights (`ir::loss::class_weights`).
    ClassWeights,
    /// The profiler's node mark (`compile_profiled`).
    ProfileMark,
    /// Adam's vector update, where the machine has it.
    Adam,
    /// `helpers::nnc_parts`: the parts of a node split over the batch, on the
    /// step's threads.
    Parts,
}

impl Helper {
    pub const ALL: [Helper; 9] = [
        Helper::Sgemm,
        Helper::Powf,
        Helper::Logf,
        Helper::Cosf,
        Helper::WeightedLoss,
        Helper::ClassWeights,
        Helper::ProfileMark,
        Helper::Adam,
        Helper::Parts,
    ];

    /// The helper's declaration, or `None` where this machine lacks it. The casts
    /// only compile when the Rust function has exactly the type written.
    pub fn spec(self) -> Option<Spec> {
        type Sgemm = unsafe extern "C" fn(
            usize,
            usize,
            usize,
            *const f32,
            isize,
            isize,
            *const f32,
            isize,
            isize,
            *mut f32,
            i64,
        );
        type WeightedLoss = unsafe extern "C" fn(
            u64,
            f32,
            *const f32,
            *const f32,
            *const f32,
            usize,
            usize,
            usize,
        ) -> f32;
        type ClassWeights =
            unsafe extern "C" fn(*const f32, usize, usize, *const f32, usize, *mut f32);
        Some(match self {
            Helper::Sgemm => Spec::of("nnc_sgemm", helpers::nnc_sgemm as Sgemm),
            Helper::Powf => Spec::of(
                "nnc_powf",
                helpers::nnc_powf as extern "C" fn(f32, f32) -> f32,
            ),
            Helper::Logf => Spec::of("nnc_logf", helpers::nnc_logf as extern "C" fn(f32) -> f32),
            Helper::Cosf => Spec::of("nnc_cosf", helpers::nnc_cosf as extern "C" fn(f32) -> f32),
            Helper::WeightedLoss => Spec::of(
                "nnc_weighted_loss",
                helpers::nnc_weighted_loss as WeightedLoss,
            ),
            Helper::ClassWeights => Spec::of(
                "nnc_class_weights",
                helpers::nnc_class_weights as ClassWeights,
            ),
            Helper::ProfileMark => Spec::of(
                "nnc_profile_mark",
                helpers::nnc_profile_mark as extern "C" fn(u64, u64),
            ),
            Helper::Adam => return adam_spec(),
            Helper::Parts => Spec::of("nnc_parts", helpers::nnc_parts as helpers::Parts),
        })
    }
}

#[cfg(target_arch = "x86_64")]
fn adam_spec() -> Option<Spec> {
    type Adam = unsafe extern "C" fn(
        *mut f32,
        *const f32,
        *mut f32,
        *mut f32,
        usize,
        f32,
        f32,
        f32,
        f32,
        f32,
        f32,
        i64,
    );
    helpers::vector_adam().then(|| Spec::of("nnc_adam", helpers::nnc_adam as Adam))
}

#[cfg(not(target_arch = "x86_64"))]
fn adam_spec() -> Option<Spec> {
    None
}

/// Makes every helper this machine has callable by name from the JIT's code.
pub fn register(jb: &mut JITBuilder) {
    for spec in Helper::ALL.iter().filter_map(|h| h.spec()) {
        jb.symbol(spec.name, spec.address);
    }
}

/// The helpers imported into one function, as callable references.
pub struct Imports {
    refs: Vec<(Helper, FuncRef, Spec)>,
    pointer: Type,
}

impl Imports {
    /// Declares every available helper in `module` and imports it into `func`.
    pub fn declare(module: &mut impl Module, func: &mut Function) -> Result<Imports, String> {
        let pointer = module.target_config().pointer_type();
        let mut refs = vec![];
        for h in Helper::ALL {
            let Some(spec) = h.spec() else {
                continue;
            };
            let sig = spec.signature(module.make_signature(), pointer);
            let id = module
                .declare_function(spec.name, Linkage::Import, &sig)
                .map_err(|e| e.to_string())?;
            refs.push((h, module.declare_func_in_func(id, func), spec));
        }
        Ok(Imports { refs, pointer })
    }

    /// Whether this machine has `h`.
    pub fn has(&self, h: Helper) -> bool {
        self.refs.iter().any(|r| r.0 == h)
    }

    /// Calls `h` with `args` and returns its result, if it has one. The arguments'
    /// count and Cranelift types must be the helper's declared kinds (checked in
    /// debug builds, which every codegen test runs).
    pub fn call(&self, b: &mut FunctionBuilder, h: Helper, args: &[Value]) -> Option<Value> {
        let Some((_, f, spec)) = self.refs.iter().find(|r| r.0 == h) else {
            panic!("{h:?} is not available on this machine: check `has` first");
        };
        debug_assert_eq!(
            args.len(),
            spec.params.len(),
            "{} takes {} arguments",
            spec.name,
            spec.params.len()
        );
        for (i, (&a, &k)) in args.iter().zip(&spec.params).enumerate() {
            debug_assert_eq!(
                b.func.dfg.value_type(a),
                k.clif(self.pointer),
                "argument {i} of {} is a {k:?}",
                spec.name
            );
        }
        let call = b.ins().call(*f, args);
        b.inst_results(call).first().copied()
    }

    /// Calls `h`, which returns an `f32`, and returns that.
    pub fn call_f32(&self, b: &mut FunctionBuilder, h: Helper, args: &[Value]) -> Value {
        let result = self.call(b, h, args);
        debug_assert_eq!(result.map(|v| b.func.dfg.value_type(v)), Some(types::F32));
        result.expect("only helpers declared to return an f32 are called for one")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::isa::CallConv;

    #[test]
    fn every_signature_follows_its_declared_kinds() {
        let isa = cranelift_native::builder()
            .expect("host ISA")
            .finish(cranelift_codegen::settings::Flags::new(
                cranelift_codegen::settings::builder(),
            ))
            .expect("host ISA");
        let pointer = isa.pointer_type();
        let mut checked = 0;
        for spec in Helper::ALL.iter().filter_map(|h| h.spec()) {
            let sig = spec.signature(Signature::new(CallConv::SystemV), pointer);
            let params: Vec<Type> = sig.params.iter().map(|p| p.value_type).collect();
            let want: Vec<Type> = spec.params.iter().map(|k| k.clif(pointer)).collect();
            assert_eq!(params, want, "{}", spec.name);
            let returns: Vec<Type> = sig.returns.iter().map(|p| p.value_type).collect();
            let want: Vec<Type> = spec.returns.iter().map(|k| k.clif(pointer)).collect();
            assert_eq!(returns, want, "{}", spec.name);
            checked += 1;
        }
        // Every helper but Adam's exists everywhere.
        assert!(checked >= Helper::ALL.len() - 1);
    }

    #[test]
    fn kinds_are_read_off_the_rust_types() {
        let spec = |h: Helper| h.spec().expect("available");
        let powf = spec(Helper::Powf);
        assert_eq!(
            (powf.params, powf.returns),
            (vec![Kind::F32; 2], Some(Kind::F32))
        );
        let mark = spec(Helper::ProfileMark);
        assert_eq!((mark.params, mark.returns), (vec![Kind::U64; 2], None));
        let sgemm = spec(Helper::Sgemm).params;
        assert_eq!(sgemm.len(), 11);
        assert_eq!(
            sgemm[..4],
            [Kind::Usize, Kind::Usize, Kind::Usize, Kind::Ptr]
        );
        assert_eq!(sgemm[9..], [Kind::Ptr, Kind::I64]);
        assert_eq!(Kind::Ptr.clif(types::I32), types::I32);
        assert_eq!(Kind::I64.clif(types::I32), types::I64);
    }
}
