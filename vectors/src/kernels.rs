//! Distance kernels for exact search: f32 and i8 dot products and squared L2 distances, and
//! bit hamming counts.
//!
//! Each kernel is written once as plain Rust over fixed-width lanes, which LLVM vectorizes, and
//! compiled twice: for the baseline target and, on x86-64, for AVX2 + FMA, picked at run time
//! (release wheels target baseline x86-64, so without the second copy they would use SSE2
//! only). The lane sums are in a fixed order, so results do not depend on the CPU.

use std::sync::OnceLock;

/// `fn(a, b)` over two equally long slices.
pub type F32Kernel = fn(&[f32], &[f32]) -> f32;
/// `fn(a, b)` over two equally long slices, exact in i32.
pub type I8Kernel = fn(&[i8], &[i8]) -> i32;

const LANES: usize = 16;

#[inline(always)]
fn dot_f32_lanes<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = if FMA {
                x[i].mul_add(y[i], acc[i])
            } else {
                acc[i] + x[i] * y[i]
            };
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn l2sq_f32_lanes<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] = if FMA {
                d.mul_add(d, acc[i])
            } else {
                acc[i] + d * d
            };
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot_i8_lanes(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[inline(always)]
fn l2sq_i8_lanes(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| (i32::from(x) - i32::from(y)).pow(2))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = i32::from(x[i]) - i32::from(y[i]);
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<i32>() + tail
}

fn dot_f32_base(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_lanes::<false>(a, b)
}
fn l2sq_f32_base(a: &[f32], b: &[f32]) -> f32 {
    l2sq_f32_lanes::<false>(a, b)
}
fn dot_i8_base(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_lanes(a, b)
}
fn l2sq_i8_base(a: &[i8], b: &[i8]) -> i32 {
    l2sq_i8_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        super::dot_f32_lanes::<true>(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2sq_f32(a: &[f32], b: &[f32]) -> f32 {
        super::l2sq_f32_lanes::<true>(a, b)
    }
    #[target_feature(enable = "avx2")]
    unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        super::dot_i8_lanes(a, b)
    }
    #[target_feature(enable = "avx2")]
    unsafe fn l2sq_i8(a: &[i8], b: &[i8]) -> i32 {
        super::l2sq_i8_lanes(a, b)
    }

    // Safe wrappers, only handed out after the features were detected (see `Kernels::detect`).
    pub(super) fn dot_f32_checked(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when the CPU reported AVX2 and FMA.
        unsafe { dot_f32(a, b) }
    }
    pub(super) fn l2sq_f32_checked(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { l2sq_f32(a, b) }
    }
    pub(super) fn dot_i8_checked(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: as above.
        unsafe { dot_i8(a, b) }
    }
    pub(super) fn l2sq_i8_checked(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: as above.
        unsafe { l2sq_i8(a, b) }
    }
}

/// A distance as hnswlib calls it: two vectors in the graph's form and a parameter, here a
/// pointer to the element count (`usize`).
pub(crate) type GraphDistance = unsafe extern "C" fn(
    *const std::ffi::c_void,
    *const std::ffi::c_void,
    *const std::ffi::c_void,
) -> f32;

/// The two vectors and their length, from hnswlib's arguments.
///
/// # Safety
/// `a` and `b` point to as many aligned `T`s as the `usize` at `len` says.
#[inline(always)]
unsafe fn graph_slices<'a, T>(
    a: *const std::ffi::c_void,
    b: *const std::ffi::c_void,
    len: *const std::ffi::c_void,
) -> (&'a [T], &'a [T], usize) {
    let len = *len.cast::<usize>();
    (
        std::slice::from_raw_parts(a.cast::<T>(), len),
        std::slice::from_raw_parts(b.cast::<T>(), len),
        len,
    )
}

/// Defines a graph distance twice, for the baseline and for AVX2 + FMA, from one body over the
/// slices `a`, `b` (of `$t`) and their length: hnswlib calls it once per visited node, so the
/// lane loop must be inlined into the function it calls (a call through [`Kernels`] would add
/// two more, and a `target_feature` function cannot be inlined into a baseline one).
macro_rules! graph_distance {
    ($base:ident, $fast:ident, $t:ty, |$a:ident, $b:ident, $len:ident, $fma:ident| $body:expr) => {
        /// # Safety
        /// `a` and `b` point to vectors in the graph's form of the length `len` points to.
        pub(crate) unsafe extern "C" fn $base(
            a: *const std::ffi::c_void,
            b: *const std::ffi::c_void,
            len: *const std::ffi::c_void,
        ) -> f32 {
            let ($a, $b, $len) = graph_slices::<$t>(a, b, len);
            const $fma: bool = false;
            $body
        }

        /// # Safety
        /// As the baseline version; the CPU must have AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe extern "C" fn $fast(
            a: *const std::ffi::c_void,
            b: *const std::ffi::c_void,
            len: *const std::ffi::c_void,
        ) -> f32 {
            let ($a, $b, $len) = graph_slices::<$t>(a, b, len);
            const $fma: bool = true;
            $body
        }
    };
}

graph_distance!(
    graph_l2_f32_base,
    graph_l2_f32_avx2,
    f32,
    |a, b, _len, FMA| l2sq_f32_lanes::<FMA>(a, b)
);
graph_distance!(
    graph_one_minus_dot_f32_base,
    graph_one_minus_dot_f32_avx2,
    f32,
    |a, b, _len, FMA| 1.0 - dot_f32_lanes::<FMA>(a, b)
);
graph_distance!(
    graph_l2_i8_base,
    graph_l2_i8_avx2,
    i8,
    |a, b, _len, _FMA| l2sq_i8_lanes(a, b) as f32
);
graph_distance!(
    graph_one_minus_dot_i8_base,
    graph_one_minus_dot_i8_avx2,
    i8,
    |a, b, _len, _FMA| 1.0 - dot_i8_lanes(a, b) as f32
);
// i8 under cosine: each vector is followed by its f32 squared norm (little-endian, unaligned).
graph_distance!(
    graph_cosine_i8_base,
    graph_cosine_i8_avx2,
    i8,
    |a, b, len, _FMA| {
        let norm = |v: &[i8]| f32::from_le_bytes(v.as_ptr().add(len).cast::<[u8; 4]>().read());
        let denominator = (norm(a) * norm(b)).sqrt();
        if denominator > 0.0 {
            1.0 - dot_i8_lanes(a, b) as f32 / denominator
        } else {
            1.0
        }
    }
);

/// # Safety
/// `a` and `b` point to bit vectors of the byte length `len` points to.
pub(crate) unsafe extern "C" fn graph_hamming(
    a: *const std::ffi::c_void,
    b: *const std::ffi::c_void,
    len: *const std::ffi::c_void,
) -> f32 {
    let (a, b, _) = graph_slices::<u8>(a, b, len);
    hamming(a, b) as f32
}

/// The graph distances for this CPU, as [`Kernels::get`] picks kernels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GraphDistances {
    pub l2_f32: GraphDistance,
    pub one_minus_dot_f32: GraphDistance,
    pub l2_i8: GraphDistance,
    pub one_minus_dot_i8: GraphDistance,
    pub cosine_i8: GraphDistance,
}

impl GraphDistances {
    pub(crate) fn get() -> GraphDistances {
        #[cfg(target_arch = "x86_64")]
        if Kernels::get().name == "avx2+fma" {
            return GraphDistances {
                l2_f32: graph_l2_f32_avx2,
                one_minus_dot_f32: graph_one_minus_dot_f32_avx2,
                l2_i8: graph_l2_i8_avx2,
                one_minus_dot_i8: graph_one_minus_dot_i8_avx2,
                cosine_i8: graph_cosine_i8_avx2,
            };
        }
        GraphDistances {
            l2_f32: graph_l2_f32_base,
            one_minus_dot_f32: graph_one_minus_dot_f32_base,
            l2_i8: graph_l2_i8_base,
            one_minus_dot_i8: graph_one_minus_dot_i8_base,
            cosine_i8: graph_cosine_i8_base,
        }
    }
}

/// The kernels this CPU runs best.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    /// Dot product of f32 vectors.
    pub dot_f32: F32Kernel,
    /// Squared Euclidean distance of f32 vectors.
    pub l2sq_f32: F32Kernel,
    /// Dot product of i8 vectors.
    pub dot_i8: I8Kernel,
    /// Squared Euclidean distance of i8 vectors.
    pub l2sq_i8: I8Kernel,
    /// Which build was picked ("avx2+fma" or "baseline").
    pub name: &'static str,
}

impl Kernels {
    /// The kernels for this CPU (detected once per process).
    pub fn get() -> &'static Kernels {
        static KERNELS: OnceLock<Kernels> = OnceLock::new();
        KERNELS.get_or_init(Self::detect)
    }

    fn detect() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Kernels {
                dot_f32: avx2::dot_f32_checked,
                l2sq_f32: avx2::l2sq_f32_checked,
                dot_i8: avx2::dot_i8_checked,
                l2sq_i8: avx2::l2sq_i8_checked,
                name: "avx2+fma",
            };
        }
        Self::baseline()
    }

    /// The portable kernels (also the reference the tests compare the fast ones with).
    #[must_use]
    pub fn baseline() -> Kernels {
        Kernels {
            dot_f32: dot_f32_base,
            l2sq_f32: l2sq_f32_base,
            dot_i8: dot_i8_base,
            l2sq_i8: l2sq_i8_base,
            name: "baseline",
        }
    }
}

/// Number of differing bits between two packed bit vectors.
#[must_use]
pub fn hamming(a: &[u8], b: &[u8]) -> u32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: u32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x ^ y).count_ones())
        .sum();
    ca.zip(cb)
        .map(|(x, y)| {
            let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
            let y = u64::from_le_bytes(y.try_into().expect("8 bytes"));
            (x ^ y).count_ones()
        })
        .sum::<u32>()
        + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    proptest! {
        #[test]
        fn fast_kernels_agree_with_plain_sums(
            pairs in proptest::collection::vec((-100.0f32..100.0, -100.0f32..100.0), 0..200),
            ints in proptest::collection::vec((any::<i8>(), any::<i8>()), 0..200),
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            for k in [Kernels::get(), &Kernels::baseline()] {
                let dot = f64::from((k.dot_f32)(&a, &b));
                // f32 sums in another order differ by up to n * eps * sum |x y|: a dot product
                // near 0 of large terms is not close to the exact one in relative terms.
                let magnitude: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y).abs()).sum();
                prop_assert!((dot - naive_dot(&a, &b)).abs() <= 2e-5 * (1.0 + magnitude));
                let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
                let l2 = f64::from((k.l2sq_f32)(&a, &b));
                prop_assert!((l2 - naive_dot(&diff, &diff)).abs() <= 1e-3 * (1.0 + naive_dot(&diff, &diff)));
            }
            let (x, y): (Vec<i8>, Vec<i8>) = ints.into_iter().unzip();
            let dot: i32 = x.iter().zip(&y).map(|(p, q)| i32::from(*p) * i32::from(*q)).sum();
            let l2: i32 = x.iter().zip(&y).map(|(p, q)| (i32::from(*p) - i32::from(*q)).pow(2)).sum();
            for k in [Kernels::get(), &Kernels::baseline()] {
                prop_assert_eq!((k.dot_i8)(&x, &y), dot);
                prop_assert_eq!((k.l2sq_i8)(&x, &y), l2);
            }
        }

        #[test]
        fn hamming_counts_differing_bits(pairs in proptest::collection::vec(any::<(u8, u8)>(), 0..40)) {
            let (a, b): (Vec<u8>, Vec<u8>) = pairs.into_iter().unzip();
            let expected: u32 = a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones()).sum();
            prop_assert_eq!(hamming(&a, &b), expected);
        }
    }
}
