//! Adam's update of a large weight tensor, eight weights at a time.
//!
//! The generated code updates small tensors itself, four weights at a time (Cranelift
//! emits 128-bit vectors); for large ones it calls `adam`, whose 256-bit square roots
//! and divisions, the update's bottleneck, cover twice as many weights. The
//! arithmetic is the generated code's, operation for operation, so that the two
//! give the same weights to the bit (tested in nnc's codegen tests).

/// The constants of one Adam update.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    /// The step size of this step, `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`.
    pub alpha: f32,
    /// `1 - beta_1` and `1 - beta_2`.
    pub one_minus_beta_1: f32,
    pub one_minus_beta_2: f32,
    pub epsilon: f32,
    /// AdamW's decoupled decay: `(weight_decay, learning_rate)`, applied first as
    /// `w -= w * weight_decay * learning_rate`.
    pub decay: Option<(f32, f32)>,
}

impl Adam {
    /// One weight: `w`, its gradient `g`, its moments `m` and `v`; returns the new
    /// `(w, m, v)`.
    fn one(&self, w: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
        let w = match self.decay {
            Some((wd, lr)) => w - w * wd * lr,
            None => w,
        };
        let m = m + (g - m) * self.one_minus_beta_1;
        let v = v + (g * g - v) * self.one_minus_beta_2;
        let w = w - m * self.alpha / (v.sqrt() + self.epsilon);
        (w, m, v)
    }
}

/// Updates the `n` weights `w` with gradients `g` and moments `m`, `v` in place.
///
/// # Safety
/// Each pointer holds `n` floats, `w`, `m` and `v` writable, and no other thread
/// touches them during the call. (They should also be distinct buffers, or the
/// results mix; `crate::sgemm::supported()` is required too, and checked: the call
/// panics without it.)
pub unsafe fn adam(w: *mut f32, g: *const f32, m: *mut f32, v: *mut f32, n: usize, h: Adam) {
    assert!(
        crate::sgemm::supported(),
        "nnc_kernels::update::adam needs a processor with AVX2 and FMA"
    );
    // SAFETY: AVX2 and FMA are checked above; the buffers are this function's
    // contract.
    unsafe { adam_avx2(w, g, m, v, n, h) }
}

/// `adam` once the processor is known to have AVX2 and FMA.
///
/// # Safety
/// As for `adam`, and AVX2 and FMA are available.
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_avx2(w: *mut f32, g: *const f32, m: *mut f32, v: *mut f32, n: usize, h: Adam) {
    use std::arch::x86_64::*;
    let splat = _mm256_set1_ps;
    let (alpha, omb1, omb2, eps) = (
        splat(h.alpha),
        splat(h.one_minus_beta_1),
        splat(h.one_minus_beta_2),
        splat(h.epsilon),
    );
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        // SAFETY: `i + 8 <= full <= n`: eight floats inside each buffer of `n`.
        unsafe {
            let mut wv = _mm256_loadu_ps(w.add(i));
            if let Some((wd, lr)) = h.decay {
                let d = _mm256_mul_ps(_mm256_mul_ps(wv, splat(wd)), splat(lr));
                wv = _mm256_sub_ps(wv, d);
            }
            let gv = _mm256_loadu_ps(g.add(i));
            let mv = _mm256_loadu_ps(m.add(i));
            let mv = _mm256_add_ps(mv, _mm256_mul_ps(_mm256_sub_ps(gv, mv), omb1));
            _mm256_storeu_ps(m.add(i), mv);
            let vv = _mm256_loadu_ps(v.add(i));
            let g2 = _mm256_mul_ps(gv, gv);
            let vv = _mm256_add_ps(vv, _mm256_mul_ps(_mm256_sub_ps(g2, vv), omb2));
            _mm256_storeu_ps(v.add(i), vv);
            let step = _mm256_div_ps(
                _mm256_mul_ps(mv, alpha),
                _mm256_add_ps(_mm256_sqrt_ps(vv), eps),
            );
            _mm256_storeu_ps(w.add(i), _mm256_sub_ps(wv, step));
        }
    }
    for i in full..n {
        // SAFETY: `i < n`: inside each buffer of `n`.
        unsafe {
            let (nw, nm, nv) = h.one(*w.add(i), *g.add(i), *m.add(i), *v.add(i));
            (*w.add(i), *m.add(i), *v.add(i)) = (nw, nm, nv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_at_a_time_equals_one_at_a_time() {
        if !crate::sgemm::supported() {
            return;
        }
        let n = 37;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.013)
            .collect();
        for decay in [None, Some((0.004, 0.001))] {
            let h = Adam {
                alpha: 0.0007,
                one_minus_beta_1: 0.1,
                one_minus_beta_2: 0.001,
                epsilon: 1e-7,
                decay,
            };
            let mut w: Vec<f32> = (0..n).map(|i| (i as f32 - 18.0) * 0.05).collect();
            let mut m: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.01).collect();
            let mut v: Vec<f32> = (0..n).map(|i| (i % 3) as f32 * 0.002).collect();
            let expected: Vec<(f32, f32, f32)> =
                (0..n).map(|i| h.one(w[i], g[i], m[i], v[i])).collect();
            let (pw, pm, pv) = (w.as_mut_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
            // SAFETY: four distinct buffers of `n` floats.
            unsafe { adam(pw, g.as_ptr(), pm, pv, n, h) };
            for i in 0..n {
                assert_eq!(
                    (w[i], m[i], v[i]),
                    expected[i],
                    "weight {i}, decay {decay:?}"
                );
            }
        }
    }
}
