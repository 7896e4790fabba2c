//! The single-precision matrix product behind every large product of the
//! generated code, on x86-64 with AVX2 and FMA (256-bit vectors, which Cranelift
//! cannot emit). Two paths:
//!
//! - dense: `b` packed in panels, a 6x16 register tile of `c` per kernel call;
//! - sparse, when at most `SPARSE_MAX_DENSITY` of `a` is nonzero (image pixels,
//!   one-hot columns): only the nonzeros of `a` are multiplied. MNIST images are
//!   ~18% nonzero, and their products take about half the dense time.
//!
//! Each element of `c` is summed in increasing `k` on either path, whatever the
//! caller's thread, so results depend only on the operands.

use std::cell::RefCell;

use crate::PARALLEL_MIN_MACS;

/// Rows of `a` (and of `c`) one kernel call computes.
const MR: usize = 6;
/// Columns of `b` (and of `c`) one kernel call computes: two 8-lane vectors.
const NR: usize = 16;
/// Longest `k` slice packed at once: a 16-column panel of it (16 KB) stays in L1.
const KC: usize = 256;
/// The longest slice when `c` is larger than `LARGE_C_BYTES`: each further slice
/// reads and writes all of `c` again from memory, which costs more than the panel
/// spilling from L1 (a convnet's 15488 x 288 x 64 product: 11.1 -> 9.2 ms; an MLP's
/// 128 x 784 x 128 one, whose `c` stays in cache, is 10% faster at `KC`).
const KC_LARGE_C: usize = 320;
/// An output larger than this does not stay in L2 between `k` slices.
const LARGE_C_BYTES: usize = 1 << 20;
/// Columns of `b` packed at once (`KC x NC`, 2 MB, in L3).
const NC: usize = 2048;
/// The shortest `k` slice whose rows of `a` `Ahead` prefetches.
const AHEAD_MIN_KC: usize = 128;
/// Rows of `a` one pass over the packed panels of `b` covers (a multiple of `MR`):
/// `MC x KC` of `a` (72 KB) stays in L2.
const MC: usize = 72;

/// Parts of a product per thread: with one part per thread, a thread that gets its
/// core late (the machine's other processes) makes the others wait for its whole
/// share; with several, they take its parts meanwhile.
const PARTS_PER_THREAD: usize = 4;
/// Rows or columns of `c` per part below which a product has one part per thread
/// (a convnet's 288 x 15488 x 64 weight gradient in 8 parts packed its 4 MB `b`
/// 8 times: 1.3x the time of 2 parts).
const MIN_PART_LEN: usize = 512;

/// A product takes the sparse path when at most this share of `a` is nonzero.
const SPARSE_MAX_DENSITY: f64 = 0.3;
/// Columns of `c` one sparse pass keeps in registers (eight vectors).
const SPARSE_SLAB: usize = 64;
/// Rows of `b` one sparse pass works on: a `SPARSE_BLOCK x SPARSE_SLAB` block
/// (16 KB) stays in L1.
const SPARSE_BLOCK: usize = 64;

thread_local! {
    /// Packed blocks of `b` of the products (parts) run on this thread.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The nonzeros of the sparse operand of a product called on this thread.
    static SPARSE: RefCell<SparseLines> = RefCell::default();
}

/// Forgets the operands `sgemm` was told were fixed: their values may change now.
pub fn inputs_changed() {
    SPARSE.with(|sparse| sparse.borrow_mut().fixed = None);
}

/// `c`, shared by the parts of a product, which write disjoint tiles of it.
#[derive(Clone, Copy)]
struct Output(*mut f32);
// SAFETY: an `Output` only crosses threads inside `run_parts`, which returns after
// every part, so the pointer is never used after `sgemm` returns; the parts write
// the disjoint row or column ranges `split` gives them and nothing reads `c`
// meanwhile, so no element is accessed by two threads.
unsafe impl Send for Output {}
// SAFETY: as for `Send`: shared, the pointer is only used for disjoint writes.
unsafe impl Sync for Output {}

impl Output {
    /// The pointer (a method, so that closures capture the `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Splits `0..len` (rows or columns of `c`) into up to `PARTS_PER_THREAD` ranges of
/// whole `unit`s per thread (the last takes the remainder) and runs `work(range)` on
/// each, on `threads` threads. The ranges are disjoint, increasing and cover
/// `0..len` exactly: the unsafe code of the parts relies on it.
fn split(len: usize, unit: usize, threads: usize, work: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    let units = (len / unit).max(1);
    // Each part packs its own `b` (a row split) or reads all of `a` (a column
    // split): only long ranges take more parts than threads.
    let parts = if threads > 1 {
        (len / MIN_PART_LEN)
            .clamp(threads, threads * PARTS_PER_THREAD)
            .min(units)
    } else {
        1
    };
    crate::parallel::run_parts_on(threads, parts, &|part| {
        let begin = units * part / parts * unit;
        let end = if part + 1 == parts {
            len
        } else {
            units * (part + 1) / parts * unit
        };
        work(begin..end);
    });
}

/// A strided read-only matrix.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    rows: isize,
    cols: isize,
}

// SAFETY: a `Strided` only crosses threads inside `run_parts`, which returns before
// `sgemm` does, and the matrices behind it are only read while a product runs
// (`sgemm`'s callers write neither operand meanwhile).
unsafe impl Send for Strided {}
// SAFETY: as for `Send`: shared, the pointer is only read.
unsafe impl Sync for Strided {}

impl Strided {
    /// Element `(i, j)`.
    ///
    /// # Safety
    /// `(i, j)` lies inside the matrix the pointer was made for.
    unsafe fn at(self, i: usize, j: usize) -> f32 {
        // SAFETY: the caller's promise: the element is inside the matrix, so the
        // offset stays in its allocation and points at an initialized `f32`.
        unsafe {
            *self
                .ptr
                .offset(i as isize * self.rows + j as isize * self.cols)
        }
    }

    /// Row `i` (only an address: dereferencing it is the caller's business).
    fn row(self, i: usize) -> *const f32 {
        self.ptr.wrapping_offset(i as isize * self.rows)
    }
}

/// Whether this machine runs the products of this module.
pub fn supported() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `c[m, n] = a[m, k] * b[k, n]`, `a` and `b` with arbitrary element strides, `c`
/// row-major and contiguous (overwritten, never read before written). Large
/// products are split over `threads` threads, by rows of `c` when it has more rows
/// than columns (each thread then reads only its rows of `a`, the larger operand),
/// by columns otherwise: every element is computed the same way whatever the split,
/// so results do not depend on the thread count.
///
/// `a_fixed` promises that `a` keeps its values until the next `inputs_changed` on
/// this thread: a sparse `a` is then collected once for every product that reads the
/// same lines (a train step's input batch, read by the first layer forward and by its
/// weight gradient transposed).
///
/// # Safety
/// For every `i < m`, `p < k` and `j < n`, `a.offset(i * rsa + p * csa)` and
/// `b.offset(p * rsb + j * csb)` point at readable floats (each operand inside one
/// allocation), and `c.add(i * n + j)` at a writable one; `c` overlaps neither
/// operand, and no other thread writes the operands or touches `c` during the call.
/// (`supported()` is required too, and checked: the call panics without it.)
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
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
    threads: usize,
    a_fixed: bool,
) {
    // Everything below runs AVX2 and FMA instructions; one cached flag test.
    assert!(
        supported(),
        "nnc_kernels::sgemm needs a processor with AVX2 and FMA"
    );
    let a = Strided {
        ptr: a,
        rows: rsa,
        cols: csa,
    };
    let b = Strided {
        ptr: b,
        rows: rsb,
        cols: csb,
    };
    let threads = if m.saturating_mul(k).saturating_mul(n) >= PARALLEL_MIN_MACS {
        threads
    } else {
        1
    };
    let c = Output(c);
    SPARSE.with(|sparse| {
        let sparse = &mut *sparse.borrow_mut();
        // The sparse path reads rows of `b` whole and skips `0 * b`, exact only for
        // finite `b` (`0 * inf` is NaN).
        let sparse_ready = csb == 1
            && n >= SPARSE_SLAB
            // SAFETY: AVX2 is checked above, and `a` is `m x k` (this function's
            // contract).
            && unsafe { sparse.gather(a, m, k, a_fixed) }
            // SAFETY: AVX2 is checked above; `b` is `k x n` and `csb == 1` (tested
            // just before) makes its rows contiguous.
            && unsafe { all_finite(b, k, n) };
        if sparse_ready {
            if let Lines::Columns = sparse.kind {
                sparse.columns_to_rows();
            }
            let sparse = &*sparse;
            split(n, SPARSE_SLAB, threads, &|columns| {
                // SAFETY: AVX2 and FMA are checked above; `sparse` holds the rows of
                // `a` (`gather` succeeded, and columns were sorted into rows);
                // `b` is `k x n` with contiguous rows (`csb == 1`), `c` is `m x n`;
                // `split` gives each part its own range within `0..n`.
                PACKED.with(|packed| unsafe {
                    sparse.rows_times(b, c.get(), m, k, n, columns, &mut packed.borrow_mut())
                })
            });
        } else if m > n {
            split(m, MR, threads, &|rows| {
                // SAFETY: AVX2 and FMA are checked above; `a`, `b` and `c` are
                // `m x k`, `k x n` and `m x n` (this function's contract), and
                // `split` gives each part its own range within `0..m`.
                PACKED.with(|packed| unsafe {
                    dense(
                        a,
                        b,
                        c.get(),
                        [m, k, n],
                        rows,
                        0..n,
                        &mut packed.borrow_mut(),
                    )
                })
            });
        } else {
            split(n, NR, threads, &|columns| {
                // SAFETY: as for the rows just above, with ranges within `0..n`.
                PACKED.with(|packed| unsafe {
                    dense(
                        a,
                        b,
                        c.get(),
                        [m, k, n],
                        0..m,
                        columns,
                        &mut packed.borrow_mut(),
                    )
                })
            });
        }
    })
}

/// The tile `rows x columns` of `c = a * b` by the packed register-tile kernel.
/// How each element is summed depends on `m`, `k` and `n` only, never on the tile.
///
/// # Safety
/// AVX2 and FMA are available; `a`, `b` and `c` are `m x k`, `k x n` and `m x n`
/// matrices as `sgemm` describes them; `rows` lies within `0..m` and `columns`
/// within `0..n`, and no other thread touches that tile of `c` during the call.
unsafe fn dense(
    a: Strided,
    b: Strided,
    c: *mut f32,
    [m, k, n]: [usize; 3],
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
    pb: &mut Vec<f32>,
) {
    let (j_begin, j_end) = (columns.start, columns.end);
    if k == 0 {
        for i in rows {
            for j in j_begin..j_end {
                // SAFETY: `i < m` and `j < j_end <= n`: an element of `c`, in this
                // part's tile.
                unsafe { *c.add(i * n + j) = 0.0 };
            }
        }
        return;
    }
    // Equal k slices, so that no short last slice costs a whole pass over `c`.
    let longest = if m * n * 4 > LARGE_C_BYTES {
        KC_LARGE_C
    } else {
        KC
    };
    let slices = k.div_ceil(longest);
    let kc_max = k.div_ceil(slices);
    let b_len = NC.min(j_end - j_begin).div_ceil(NR) * NR * kc_max;
    if pb.len() < b_len {
        pb.resize(b_len, 0.0);
    }
    for j0 in (j_begin..j_end).step_by(NC) {
        let nc = NC.min(j_end - j0);
        for (s, p0) in (0..k).step_by(kc_max).enumerate() {
            let kc = kc_max.min(k - p0);
            // SAFETY: rows `p0..p0 + kc` (`<= k`) and columns `j0..j0 + nc`
            // (`<= j_end <= n`) lie inside `b`.
            unsafe { pack_b(b, p0, kc, j0, nc, pb) };
            // A block of rows of `a` stays in L2 while every panel of `b` meets it,
            // so that `a` is read from memory once per `k` slice.
            for ib in rows.clone().step_by(MC) {
                let block_end = rows.end.min(ib + MC);
                // The next block's rows of a large row-major `a` with long rows,
                // fetched into L2 a few lines per tile while this block is worked
                // on: the hardware's prefetch does not keep up with the block's
                // short rows (a convnet's 15488 x 288 x 64 product: 0.75x the
                // time, median of alternated runs on a loaded machine). Short rows
                // (`kc` 64: 4 lines) and an `a` in cache do not pay for it.
                let fetch = a.cols == 1 && m * k * 4 > LARGE_C_BYTES && kc >= AHEAD_MIN_KC;
                let next = if fetch {
                    block_end..rows.end.min(block_end + MC)
                } else {
                    0..0
                };
                let mut ahead = Ahead::new(a, next, p0, kc);
                let tiles = (block_end - ib).div_ceil(MR) * nc.div_ceil(NR);
                let lines_per_tile = ahead.lines().div_ceil(tiles);
                for jr in (0..nc).step_by(NR) {
                    // The panel `pack_b` wrote at `jr * kc`: `kc` rows of `NR`.
                    let panel_b = &pb[jr * kc..][..kc * NR];
                    let cols = NR.min(nc - jr);
                    for i0 in (ib..block_end).step_by(MR) {
                        if fetch {
                            ahead.fetch(lines_per_tile);
                        }
                        let tile_rows = MR.min(block_end - i0);
                        // SAFETY: the tile's rows `i0..i0 + tile_rows` (`<= rows.end
                        // <= m`) and columns `j0 + jr..j0 + jr + cols` (`<= j0 + nc
                        // <= j_end`) lie in `c` and in this part's tile; columns
                        // `p0..p0 + kc` of those rows lie in `a`; `panel_b` holds
                        // `kc * NR` floats; `tile_rows >= 1` since `i0 < block_end`;
                        // AVX2 and FMA are this function's promise.
                        unsafe {
                            kernel(
                                kc,
                                a.ptr
                                    .wrapping_offset(i0 as isize * a.rows + p0 as isize * a.cols),
                                a.rows,
                                a.cols,
                                panel_b.as_ptr(),
                                c.wrapping_add(i0 * n + j0 + jr),
                                n,
                                tile_rows,
                                cols,
                                s > 0,
                            )
                        };
                    }
                }
            }
        }
    }
}

/// Prefetches the rows `rows`, columns `p0..p0 + kc`, of a row-major `a` into L2, a
/// few cache lines at a time (nothing for a transposed `a`).
struct Ahead {
    /// The next row's first element, and how many rows are left after it.
    row: *const f32,
    rows_left: usize,
    /// The next line's offset in the row (bytes), and the row's length in bytes.
    offset: usize,
    row_bytes: usize,
    stride: isize,
}

impl Ahead {
    fn new(a: Strided, rows: std::ops::Range<usize>, p0: usize, kc: usize) -> Ahead {
        Ahead {
            row: a
                .ptr
                .wrapping_offset(rows.start as isize * a.rows + p0 as isize),
            rows_left: if a.cols == 1 { rows.len() } else { 0 },
            offset: 0,
            row_bytes: kc * 4,
            stride: a.rows,
        }
    }

    /// Cache lines left to fetch (about).
    fn lines(&self) -> usize {
        self.rows_left * self.row_bytes.div_ceil(64)
    }

    /// Fetches the next `lines` cache lines.
    fn fetch(&mut self, mut lines: usize) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        while lines > 0 && self.rows_left > 0 {
            let at = self.row.cast::<i8>().wrapping_add(self.offset);
            // SAFETY: a prefetch is a hint: it never faults, whatever the address
            // (this one lies in `a`'s row anyway), and SSE is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(at) };
            lines -= 1;
            self.offset += 64;
            if self.offset >= self.row_bytes {
                self.offset = 0;
                self.row = self.row.wrapping_offset(self.stride);
                self.rows_left -= 1;
            }
        }
    }
}

/// Packs `b[p0.., j0..]` (`kc x nc`) as consecutive `NR`-column panels, each stored
/// row by row, short panels padded with 0 (`out` is indexed with bounds checks).
///
/// # Safety
/// Rows `p0..p0 + kc` and columns `j0..j0 + nc` lie inside `b`.
unsafe fn pack_b(b: Strided, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
    let mut o = 0;
    for jr in (0..nc).step_by(NR) {
        let cols = NR.min(nc - jr);
        for p in 0..kc {
            if cols == NR && b.cols == 1 {
                // SAFETY: columns `j0 + jr..j0 + jr + NR` (`<= j0 + nc`) of row
                // `p0 + p` lie inside `b`, and `b.cols == 1` makes them contiguous.
                let row =
                    unsafe { std::slice::from_raw_parts(b.row(p0 + p).wrapping_add(j0 + jr), NR) };
                out[o..o + NR].copy_from_slice(row);
            } else {
                for col in 0..NR {
                    out[o + col] = if col < cols {
                        // SAFETY: `col < cols`: column `j0 + jr + col < j0 + nc` of
                        // row `p0 + p < p0 + kc`, inside `b`.
                        unsafe { b.at(p0 + p, j0 + jr + col) }
                    } else {
                        0.0
                    };
                }
            }
            o += NR;
        }
    }
}

/// One `rows x cols` (at most `MR x NR`) tile of `c` (row stride `ldc`) from a
/// panel of `a` and a packed one of `b`: written, or added to with `accumulate`.
///
/// # Safety
/// AVX2 and FMA are available; `1 <= rows <= MR`, `cols <= NR`;
/// `a.offset(r * rsa + p * csa)` is readable for `r < rows`, `p < kc`; `pb` holds
/// `kc * NR` floats; `c.add(r * ldc + j)` is writable for `r < rows`, `j < cols`,
/// and no other thread touches those elements during the call.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    pb: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    // Rows past `rows` repeat the last one (their sums are dropped), so that no
    // read leaves `a`.
    let row_ptr: [*const f32; MR] =
        std::array::from_fn(|r| a.wrapping_offset(r.min(rows - 1) as isize * rsa));
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: `p < kc`: floats `p * NR..p * NR + 16` of `pb`'s `kc * NR`.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(pb.add(p * NR)),
                _mm256_loadu_ps(pb.add(p * NR + 8)),
            )
        };
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: element `(min(r, rows - 1), p)` of `a`, with `p < kc`.
            let av = unsafe { _mm256_broadcast_ss(&*row_ptr[r].offset(p as isize * csa)) };
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
    }
    if rows == MR && cols == NR {
        for (r, row) in acc.iter().enumerate() {
            for (h, &v) in row.iter().enumerate() {
                // SAFETY: `r < MR == rows`, and the 8 floats from column `h * 8`
                // end at `16 == NR == cols`: inside the tile.
                unsafe {
                    let dst = c.add(r * ldc + h * 8);
                    let v = if accumulate {
                        _mm256_add_ps(_mm256_loadu_ps(dst), v)
                    } else {
                        v
                    };
                    _mm256_storeu_ps(dst, v);
                }
            }
        }
    } else {
        let mut tile = [[0.0f32; 8]; 2 * MR];
        for (r, row) in acc.iter().enumerate() {
            for (h, &v) in row.iter().enumerate() {
                // SAFETY: an 8-float array receives the 8 lanes.
                unsafe { _mm256_storeu_ps(tile[2 * r + h].as_mut_ptr(), v) };
            }
        }
        for r in 0..rows {
            for col in 0..cols {
                let v = tile[2 * r + col / 8][col % 8];
                // SAFETY: `r < rows`, `col < cols`: inside the tile.
                unsafe {
                    let dst = c.add(r * ldc + col);
                    *dst = if accumulate { *dst + v } else { v };
                }
            }
        }
    }
}

/// Which lines of `a` a `SparseLines` holds.
#[derive(Clone, Copy, Default)]
enum Lines {
    /// Rows (`a` has contiguous rows); a nonzero's index is its column.
    #[default]
    Rows,
    /// Columns (`a` is a transposed operand); a nonzero's index is its row.
    Columns,
}

/// The nonzero elements of `a`, line by line, each line in increasing index.
///
/// What the sparse product's unchecked reads rely on, established by `gather` (and
/// kept by `columns_to_rows`): `starts` has one entry per line plus one, increasing
/// up to the count of nonzeros, at most `indices.len()` (== `values.len()`); every
/// index is below `line_len`; for `Lines::Rows`, the nonzeros of block `b` of a line
/// lie between its `block_starts` `b` and `b + 1`, and their indices in
/// `b * SPARSE_BLOCK..(b + 1) * SPARSE_BLOCK`.
#[derive(Default)]
struct SparseLines {
    kind: Lines,
    /// Line `l`'s nonzeros are `starts[l]..starts[l + 1]` of `indices` and `values`.
    starts: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    /// How many indices a line has room for (`k` for rows, `m` for columns).
    line_len: usize,
    /// Where each line's nonzeros of each `SPARSE_BLOCK` of indices start
    /// (`blocks + 1` entries per line, the last the line's end), for `Lines::Rows`;
    /// recorded as the nonzeros are collected or sorted into rows, which visit each
    /// line's indices in increasing order.
    block_starts: Vec<usize>,
    /// Working space of `columns_to_rows`.
    sorted_indices: Vec<u32>,
    sorted_values: Vec<f32>,
    next: Vec<usize>,
    /// Set when the lines held were collected as rows of a fixed operand (see
    /// `sgemm`): which lines they are.
    fixed: Option<LinesKey>,
}

/// Where a set of lines lies in memory: the first line, how many, how long, and the
/// distance between their starts.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LinesKey {
    /// The address (a number: the key is shared with the helper threads).
    first: usize,
    lines: usize,
    line_len: usize,
    stride: isize,
}

impl SparseLines {
    /// Collects the nonzeros of `a` (`m x k`) by its contiguous lines; false, leaving
    /// the lines unusable, when more than `SPARSE_MAX_DENSITY` of `a` is nonzero or
    /// neither its rows nor its columns are contiguous.
    ///
    /// # Safety
    /// AVX2 is available; `a` describes an `m x k` matrix.
    unsafe fn gather(&mut self, a: Strided, m: usize, k: usize, a_fixed: bool) -> bool {
        if m * k == 0 || m.max(k) > u32::MAX as usize {
            return false;
        }
        let (kind, lines, line_len, stride) = if a.cols == 1 {
            (Lines::Rows, m, k, a.rows)
        } else if a.rows == 1 {
            (Lines::Columns, k, m, a.cols)
        } else {
            return false;
        };
        let key = LinesKey {
            first: a.ptr as usize,
            lines,
            line_len,
            stride,
        };
        if a_fixed && self.fixed == Some(key) {
            // The same lines, collected as rows (with their blocks) since `a` was
            // last changed; as columns they are sorted into rows next.
            self.kind = kind;
            return true;
        }
        self.fixed = None;
        let max_nonzeros = (SPARSE_MAX_DENSITY * (m * k) as f64) as usize;
        // Room for one line past the limit, and the spill of one 8-wide store.
        let room = max_nonzeros + line_len + 8;
        if self.indices.len() < room {
            self.indices.resize(room, 0);
            self.values.resize(room, 0.0);
        }
        self.kind = kind;
        self.line_len = line_len;
        self.starts.clear();
        self.block_starts.clear();
        let record_blocks = matches!(kind, Lines::Rows);
        let mut count = 0;
        for l in 0..lines {
            self.starts.push(count);
            let line = a.ptr.wrapping_offset(l as isize * stride);
            // SAFETY: AVX2 is this function's promise; line `l < lines` of `a` has
            // `line_len` contiguous elements (the stride between them is 1, tested
            // above). (`count <= max_nonzeros`, tested after every line, leaves the
            // `line_len + 8` places that the checked stores need.)
            count = unsafe { self.append_nonzeros(line, line_len, count, record_blocks) };
            if count > max_nonzeros {
                return false;
            }
        }
        self.starts.push(count);
        if a_fixed && record_blocks {
            self.fixed = Some(key);
        }
        true
    }

    /// Appends the nonzeros of `line[..len]` (positions and values) at `count`;
    /// returns the new count. Branch-free: each 8 elements are compressed with a
    /// permutation chosen by their nonzero mask. With `record_blocks`, also appends
    /// the line's `block_starts`.
    ///
    /// # Safety
    /// AVX2 is available; `line` points at `len` contiguous floats. (`indices` and
    /// `values` need room for `len + 8` more nonzeros: checked, the call panics
    /// otherwise.)
    #[target_feature(enable = "avx2")]
    unsafe fn append_nonzeros(
        &mut self,
        line: *const f32,
        len: usize,
        mut count: usize,
        record_blocks: bool,
    ) -> usize {
        use std::arch::x86_64::*;
        // Each 8-wide store below writes 8 places from `count`, which grows by at
        // most 8 per store: this bounds them all.
        assert!(
            count + len + 8 <= self.values.len().min(self.indices.len()),
            "no room for a line's nonzeros"
        );
        // A block starts every `SPARSE_BLOCK` positions, a multiple of 8.
        let full = len / 8 * 8;
        for p in (0..full).step_by(8) {
            if record_blocks && p % SPARSE_BLOCK == 0 {
                self.block_starts.push(count);
            }
            // SAFETY: `p + 8 <= full <= len`: inside the line.
            let v = unsafe { _mm256_loadu_ps(line.add(p)) };
            let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps()));
            let order = &COMPRESS[mask as usize];
            // SAFETY: reads the 8 `u32` of `order`.
            let order = unsafe { _mm256_loadu_si256(order.as_ptr().cast()) };
            let positions = _mm256_add_epi32(order, _mm256_set1_epi32(p as i32));
            // All 8 lanes are stored; the next store starts after the nonzeros.
            // SAFETY: `count` has grown by at most `p` in this line, so the stores
            // end at `count + 8 <= start + p + 8 <= start + len`, inside both
            // vectors (asserted above).
            unsafe {
                _mm256_storeu_ps(
                    self.values.as_mut_ptr().add(count),
                    _mm256_permutevar8x32_ps(v, order),
                );
                _mm256_storeu_si256(self.indices.as_mut_ptr().add(count).cast(), positions);
            }
            count += mask.count_ones() as usize;
        }
        for p in full..len {
            if record_blocks && p % SPARSE_BLOCK == 0 {
                self.block_starts.push(count);
            }
            // SAFETY: `p < len`: inside the line.
            let v = unsafe { *line.add(p) };
            if v != 0.0 {
                self.indices[count] = p as u32;
                self.values[count] = v;
                count += 1;
            }
        }
        if record_blocks {
            self.block_starts.push(count);
        }
        count
    }

    /// The nonzeros of line `line` in block `block` (of `blocks` per line): indices
    /// and values.
    fn block(&self, line: usize, block: usize, blocks: usize) -> (&[u32], &[f32]) {
        let at = line * (blocks + 1) + block;
        let range = self.block_starts[at]..self.block_starts[at + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    /// `c = a * b` from the rows of `a` (`m x k`): row `i` of `c` sums the rows of
    /// `b` its nonzeros select. Slabs of 64 columns are kept in registers; `k` runs
    /// in blocks whose rows of `b` are packed (in L1), the sums waiting in `c`
    /// between blocks (the same additions in the same order as one pass).
    ///
    /// # Safety
    /// AVX2 and FMA are available; `b` is `k x n` with contiguous rows, `c` is
    /// `m x n`; `columns` lies within `0..n`, and no other thread touches those
    /// columns of `c` during the call. (That the lines are the `m` rows of a
    /// `m x k` matrix is checked: the call panics otherwise.)
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_times(
        &self,
        b: Strided,
        c: *mut f32,
        m: usize,
        k: usize,
        n: usize,
        columns: std::ops::Range<usize>,
        packed: &mut Vec<f32>,
    ) {
        use std::arch::x86_64::*;
        assert!(
            matches!(self.kind, Lines::Rows) && self.starts.len() == m + 1 && self.line_len == k,
            "the nonzeros held are not the rows of this product's left operand"
        );
        let blocks = k.div_ceil(SPARSE_BLOCK);
        packed.resize(SPARSE_BLOCK * SPARSE_SLAB, 0.0);
        let packed: &mut [[f32; SPARSE_SLAB]; SPARSE_BLOCK] = packed
            .as_chunks_mut()
            .0
            .first_chunk_mut()
            .expect("resized to one block");
        let slabs = columns.start + (columns.len() / SPARSE_SLAB * SPARSE_SLAB);
        for j in (columns.start..slabs).step_by(SPARSE_SLAB) {
            for block in 0..blocks {
                let p0 = block * SPARSE_BLOCK;
                // SAFETY: rows `p0..p0 + min(SPARSE_BLOCK, k - p0)` (`<= k`) and
                // columns `j..j + SPARSE_SLAB` (`<= slabs <= n`) lie inside `b`, whose
                // rows are contiguous.
                unsafe { pack_slab(b, p0, SPARSE_BLOCK.min(k - p0), j, packed) };
                for i in 0..m {
                    let c_row = c.wrapping_add(i * n + j);
                    let mut acc = [_mm256_setzero_ps(); 8];
                    if block > 0 {
                        for (q, v) in acc.iter_mut().enumerate() {
                            // SAFETY: `i < m`, columns `j + 8q..j + 8q + 8` within
                            // `j..j + SPARSE_SLAB`: this part's columns of `c`.
                            *v = unsafe { _mm256_loadu_ps(c_row.add(8 * q)) };
                        }
                    }
                    let (indices, values) = self.block(i, block, blocks);
                    for (&p, &x) in indices.iter().zip(values) {
                        let x = _mm256_set1_ps(x);
                        // Row `p` of `b` is row `p - p0` of the packed block: the
                        // block's indices are `p0..p0 + SPARSE_BLOCK` (see
                        // `SparseLines`); the modulo shows the compiler the bound.
                        let row = &packed[(p as usize).wrapping_sub(p0) % SPARSE_BLOCK];
                        for (q, v) in acc.iter_mut().enumerate() {
                            // SAFETY: `8q + 8 <= SPARSE_SLAB`: inside `row`.
                            let b = unsafe { _mm256_loadu_ps(row.as_ptr().add(8 * q)) };
                            *v = _mm256_fmadd_ps(x, b, *v);
                        }
                    }
                    for (q, v) in acc.iter().enumerate() {
                        // SAFETY: as for the loads above.
                        unsafe { _mm256_storeu_ps(c_row.add(8 * q), *v) };
                    }
                }
            }
        }
        // The last columns, fewer than a slab, one at a time.
        for i in 0..m {
            for j in slabs..columns.end {
                let mut acc = 0.0f32;
                for at in self.starts[i]..self.starts[i + 1] {
                    let p = self.indices[at] as usize;
                    // SAFETY: `p < line_len == k` (every index is, see
                    // `SparseLines`) and `j < columns.end <= n`: inside `b`.
                    acc = self.values[at].mul_add(unsafe { *b.row(p).add(j) }, acc);
                }
                // SAFETY: `i < m`, `j` in this part's columns: inside `c`.
                unsafe { *c.add(i * n + j) = acc };
            }
        }
    }

    /// Re-sorts nonzeros gathered as `Lines::Columns` into rows (by counting),
    /// each row in increasing column.
    fn columns_to_rows(&mut self) {
        // The lines become others.
        self.fixed = None;
        let (k, m) = (self.starts.len() - 1, self.line_len);
        let count = self.starts[k];
        let Self {
            starts,
            indices,
            values,
            sorted_indices,
            sorted_values,
            next,
            block_starts,
            ..
        } = self;
        sorted_indices.resize(indices.len(), 0);
        sorted_values.resize(values.len(), 0.0);
        next.clear();
        next.resize(m + 1, 0);
        let blocks = k.div_ceil(SPARSE_BLOCK);
        block_starts.clear();
        block_starts.resize(m * (blocks + 1), 0);
        count_into_rows(
            starts,
            &indices[..count],
            &values[..count],
            next,
            sorted_indices,
            sorted_values,
            block_starts,
        );
        std::mem::swap(indices, sorted_indices);
        std::mem::swap(values, sorted_values);
        std::mem::swap(starts, next);
        self.kind = Lines::Rows;
        self.line_len = k;
    }
}

/// The counting sort of `columns_to_rows`: `column_starts` bound each column's
/// nonzeros (`rows`, `values`); `row_starts` (zeroed, one entry per row plus one)
/// becomes the rows' bounds and `columns`, `sorted_values` their nonzeros, and
/// `block_starts` (`blocks + 1` per row) each row's blocks of `SPARSE_BLOCK`
/// columns. A function of its own so that the compiler knows the slices apart.
fn count_into_rows(
    column_starts: &[usize],
    rows: &[u32],
    values: &[f32],
    row_starts: &mut [usize],
    columns: &mut [u32],
    sorted_values: &mut [f32],
    block_starts: &mut [usize],
) {
    let m = row_starts.len() - 1;
    for &i in rows {
        row_starts[i as usize + 1] += 1;
    }
    for i in 0..m {
        row_starts[i + 1] += row_starts[i];
    }
    let stride = block_starts.len() / m.max(1);
    // Each row's next free place: `row_starts` shifted by one, restored after.
    for (p, bounds) in column_starts.windows(2).enumerate() {
        if p % SPARSE_BLOCK == 0 {
            // Where each row's nonzeros of columns `p..` begin.
            for (i, &next) in row_starts[..m].iter().enumerate() {
                block_starts[i * stride + p / SPARSE_BLOCK] = next;
            }
        }
        for at in bounds[0]..bounds[1] {
            let next = &mut row_starts[rows[at] as usize];
            columns[*next] = p as u32;
            sorted_values[*next] = values[at];
            *next += 1;
        }
    }
    for (i, &end) in row_starts[..m].iter().enumerate() {
        block_starts[i * stride + stride - 1] = end;
    }
    row_starts.copy_within(0..m, 1);
    row_starts[0] = 0;
}

/// Copies `b[p0..p0 + rows, j..j + SPARSE_SLAB]` into `out`, row after row:
/// strided rows of `b` would fall into few L1 sets.
///
/// # Safety
/// Rows `p0..p0 + rows` and columns `j..j + SPARSE_SLAB` lie inside `b`, whose rows
/// are contiguous. (`out` holds `SPARSE_BLOCK` rows: no more are copied.)
unsafe fn pack_slab(
    b: Strided,
    p0: usize,
    rows: usize,
    j: usize,
    out: &mut [[f32; SPARSE_SLAB]; SPARSE_BLOCK],
) {
    for (r, row) in out.iter_mut().enumerate().take(rows) {
        // SAFETY: columns `j..j + SPARSE_SLAB` of row `p0 + r`, contiguous and inside
        // `b` (this function's contract).
        let src = unsafe { std::slice::from_raw_parts(b.row(p0 + r).add(j), SPARSE_SLAB) };
        row.copy_from_slice(src);
    }
}

/// For each 8-bit mask, the positions of its set bits, lowest first.
static COMPRESS: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut bit, mut at) = (0, 0);
        while bit < 8 {
            if mask & (1 << bit) != 0 {
                table[mask][at] = bit as u32;
                at += 1;
            }
            bit += 1;
        }
        mask += 1;
    }
    table
};

/// Whether every element of `b` (`k x n`, rows contiguous) is finite: skipping a
/// zero of `a` is exact only then (`0 * inf` is NaN).
///
/// # Safety
/// AVX2 is available; `b` describes a `k x n` matrix with contiguous rows.
#[target_feature(enable = "avx2")]
unsafe fn all_finite(b: Strided, k: usize, n: usize) -> bool {
    use std::arch::x86_64::*;
    // The largest magnitude's bits, eight lanes at a time; inf and NaN are above
    // every finite value.
    let magnitude = _mm256_set1_epi32(0x7fff_ffff);
    let mut largest = _mm256_setzero_si256();
    let mut tail = 0u32;
    for p in 0..k {
        // SAFETY: row `p < k` of `b`, whose `n` elements are contiguous, and only
        // read while the product runs.
        let row = unsafe { std::slice::from_raw_parts(b.row(p), n) };
        let (full, rest) = row.split_at(n / 8 * 8);
        for eight in full.chunks_exact(8) {
            // SAFETY: reads the 8 floats of `eight`.
            let bits = unsafe { _mm256_loadu_si256(eight.as_ptr().cast()) };
            largest = _mm256_max_epu32(largest, _mm256_and_si256(bits, magnitude));
        }
        for v in rest {
            tail = tail.max(v.to_bits() & 0x7fff_ffff);
        }
    }
    let mut lanes = [0u32; 8];
    // SAFETY: writes the 8 `u32` of `lanes`.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), largest) };
    lanes.iter().all(|&l| l < 0x7f80_0000) && tail < 0x7f80_0000
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `a` (`m x k`, stored transposed with `ta`) with about `density` of it nonzero.
    fn operand(rng: &mut StdRng, len: usize, density: f64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                if rng.gen_bool(density) {
                    rng.gen_range(-1.0..1.0)
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// `c = a * b` by `sgemm` with `a` and `b` stored as `ta`, `tb` say; checked
    /// against an f64 product within the f32 rounding bound of a `k`-term sum.
    fn check(m: usize, k: usize, n: usize, ta: bool, tb: bool, density: f64, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let a = operand(&mut rng, m * k, density);
        let b = operand(&mut rng, k * n, 1.0);
        let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
        let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
        let product = |threads| {
            let mut c = vec![f32::NAN; m * n];
            // SAFETY: `a`, `b` and `c` hold `m x k`, `k x n` and `m x n` elements
            // in the layouts the strides describe; `supported()` was checked.
            unsafe {
                sgemm(
                    m,
                    k,
                    n,
                    a.as_ptr(),
                    rsa,
                    csa,
                    b.as_ptr(),
                    rsb,
                    csb,
                    c.as_mut_ptr(),
                    threads,
                    false,
                );
            }
            c
        };
        let c = product(1);
        // Split over threads (when large enough), every element is computed alike.
        for threads in [2, 3] {
            assert_eq!(
                c,
                product(threads),
                "{m}x{k}x{n}: {threads} threads differ from one"
            );
        }
        let at = |v: &[f32], i: usize, j: usize, rs: isize, cs: isize| {
            v[(i as isize * rs + j as isize * cs) as usize] as f64
        };
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut magnitude) = (0f64, 0f64);
                for p in 0..k {
                    let term = at(&a, i, p, rsa, csa) * at(&b, p, j, rsb, csb);
                    exact += term;
                    magnitude += term.abs();
                }
                let bound = (k as f64 + 1.0) * f32::EPSILON as f64 * magnitude + 1e-30;
                let got = c[i * n + j] as f64;
                assert!(
                    (got - exact).abs() <= bound,
                    "{m}x{k}x{n} ta={ta} tb={tb} density={density}: c[{i},{j}] = {got}, \
                     exact {exact}"
                );
            }
        }
    }

    #[test]
    fn products_match_an_f64_reference_on_both_paths() {
        if !supported() {
            return;
        }
        let shapes = [
            (1, 1, 1),
            (7, 0, 65),
            (6, 16, 16),
            (13, 33, 17),
            (40, 300, 70),
            (5, 70, 64),
            (3, 128, 64),
            (130, 150, 129),
            (9, 600, 200),
            // Split by rows over threads (more rows than columns), parts ending
            // mid-block and a last tile of fewer than `MR` rows.
            (1001, 40, 19),
            // A row-major `a` over 1 MB with `k` slices of at least `AHEAD_MIN_KC`:
            // its next blocks are prefetched; split into several parts per thread.
            (1100, 300, 20),
        ];
        let mut seed = 0;
        for (m, k, n) in shapes {
            for ta in [false, true] {
                for tb in [false, true] {
                    // 1.0 takes the dense path; 0.1 the sparse one where `n` allows.
                    for density in [1.0, 0.1, 0.0] {
                        seed += 1;
                        check(m, k, n, ta, tb, density, seed);
                    }
                }
            }
        }
    }

    /// `a * b`, both row-major, on one thread.
    fn row_major_product(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        let (rsa, rsb) = (k as isize, n as isize);
        assert_eq!((a.len(), b.len()), (m * k, k * n));
        // SAFETY: `a`, `b` and `c` hold `m x k`, `k x n` and `m x n` elements, row
        // by row (asserted above); the callers checked `supported()`.
        unsafe {
            sgemm(
                m,
                k,
                n,
                a.as_ptr(),
                rsa,
                1,
                b.as_ptr(),
                rsb,
                1,
                c.as_mut_ptr(),
                1,
                false,
            )
        };
        c
    }

    #[test]
    fn a_fixed_operand_is_collected_once_until_inputs_change() {
        // A sparse batch `x` read as `x * w` (its rows) and `x^T * d` (its columns),
        // as a train step does: marked fixed, the second product reuses the first's
        // nonzeros; the results equal those of unmarked products, and new values of
        // `x` are read after `inputs_changed`.
        if !supported() {
            return;
        }
        let (m, k, n) = (20, 150, 64);
        let mut rng = StdRng::seed_from_u64(9);
        let mut x = operand(&mut rng, m * k, 0.1);
        let w = operand(&mut rng, k * n, 1.0);
        let d = operand(&mut rng, m * n, 1.0);
        // `x * w` reads `x` by rows, `x^T * d` by columns: (rows, inner, strides).
        let product = |x: &[f32], shape: (usize, usize, isize, isize), b: &[f32], fixed| {
            let (rows, inner, rs, cs) = shape;
            let mut c = vec![f32::NAN; rows * n];
            let (a, b, pc) = (x.as_ptr(), b.as_ptr(), c.as_mut_ptr());
            // SAFETY: `x` holds `rows x inner` elements in the layout the strides
            // describe, `b` `inner x n` row by row, `c` `rows x n`.
            unsafe { sgemm(rows, inner, n, a, rs, cs, b, n as isize, 1, pc, 1, fixed) };
            c
        };
        let forward = |x: &[f32], fixed| product(x, (m, k, k as isize, 1), &w, fixed);
        let backward = |x: &[f32], fixed| product(x, (k, m, 1, k as isize), &d, fixed);
        let (plain_forward, plain_backward) = (forward(&x, false), backward(&x, false));
        inputs_changed();
        assert_eq!(forward(&x, true), plain_forward);
        assert_eq!(forward(&x, true), plain_forward, "rows reused as rows");
        assert_eq!(backward(&x, true), plain_backward, "rows reused as columns");
        assert_eq!(forward(&x, true), plain_forward, "collected again");

        for v in x.iter_mut() {
            *v *= -2.0;
        }
        inputs_changed();
        let changed = forward(&x, true);
        assert_ne!(changed, plain_forward);
        assert_eq!(changed, forward(&x, false));
        assert_eq!(backward(&x, true), backward(&x, false));
    }

    #[test]
    fn a_zero_times_infinity_is_still_nan() {
        if !supported() {
            return;
        }
        let (m, k, n) = (8, 10, 64);
        let a = vec![0.0f32; m * k];
        let mut b = vec![1.0f32; k * n];
        b[3 * n + 5] = f32::INFINITY;
        let c = row_major_product(m, k, n, &a, &b);
        for i in 0..m {
            for j in 0..n {
                assert_eq!(
                    c[i * n + j].is_nan(),
                    j == 5,
                    "c[{i},{j}] = {}",
                    c[i * n + j]
                );
            }
        }
    }

    #[test]
    fn sparse_and_dense_rows_give_the_same_sums() {
        // One row of `a` dense enough to keep the whole product dense, or not: the
        // rows that are sparse either way must come out equal to the bit, since both
        // paths add in increasing `k` (the dense one slice after slice).
        if !supported() {
            return;
        }
        let (m, k, n) = (12, 200, 64);
        let mut rng = StdRng::seed_from_u64(9);
        let mut a = operand(&mut rng, m * k, 0.1);
        let b = operand(&mut rng, k * n, 1.0);
        let product = |a: &[f32]| row_major_product(m, k, n, a, &b);
        let sparse = product(&a);
        for v in &mut a[..k * 4] {
            *v = 0.5;
        }
        let dense = product(&a);
        assert_eq!(sparse[4 * n..], dense[4 * n..]);
    }
}
