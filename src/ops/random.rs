//! The counter-based mixing behind every random draw nnc makes without state
//! (dropout masks, per-layer seeds, row orders): SplitMix64's finalizer, so that
//! nearby seeds, steps and indices give unrelated values.

/// SplitMix64's increment: the golden ratio as a 64-bit fraction.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: a bijection of `u64` that mixes every input bit into
/// every output bit.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
