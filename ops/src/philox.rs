//! Counter-based Philox 4x32-10 random numbers (Salmon et al., "Parallel Random Numbers: As Easy
//! as 1, 2, 3", SC'11; the same generator and constants as Random123 and cuRAND).
//!
//! # Stream definition
//!
//! This is a contract: the CUDA backend reproduces it bit-for-bit, so change it only together.
//!
//! A request is `(seed: u64, offset: u64)` plus an output length `n`. Element `i` (0-based) of the
//! request is produced from one Philox block:
//!
//! * block index `b = offset + i / 4` (u64, wrapping);
//! * `counter = [b as u32, (b >> 32) as u32, 0, 0]`, `key = [seed as u32, (seed >> 32) as u32]`;
//! * `x = philox4x32_10(counter, key)`, and element `i` uses lane `i % 4` of `x`.
//!
//! Raw lanes map to values as follows (all arithmetic exact unless noted):
//!
//! * uniform `f32` in [0, 1): `(x >> 8) as f32 * 2^-24` — the top 24 bits, exactly representable;
//! * uniform `f64` in [0, 1): `x as f64 * 2^-32` — all 32 bits (one lane per element keeps the
//!   element-to-lane map identical for every dtype);
//! * standard normal, Box–Muller on the lane pairs (0, 1) and (2, 3) of the element's block:
//!   `u1 = (x_a as f64 + 1) * 2^-32` in (0, 1] (never 0, so the log is finite),
//!   `u2 = x_b as f64 * 2^-32`, `r = sqrt(-2 ln u1)`, `z_a = r cos(2π u2)`, `z_b = r sin(2π u2)`,
//!   evaluated in `f64` and rounded once to the output type. Lanes 0 and 2 take `z_a`, lanes 1
//!   and 3 take `z_b`. The transcendental functions come from the `libm` crate so the CPU result
//!   is the same on every platform; another implementation (CUDA) agrees up to the last-ulp
//!   accuracy of its own `log`/`sqrt`/`sin`/`cos` in `f64`, which after rounding to `f32` is
//!   almost always bit-identical.
//!
//! A request of `n` elements consumes [`blocks_used`]`(n) = ceil(n / 4)` blocks; callers advance
//! their offset by that so the next request draws fresh blocks. Because every element is a pure
//! function of `(seed, offset, i)`, results do not depend on how the work is split across threads.

use rayon::prelude::*;

/// Philox multiplier applied to counter word 0.
const M0: u32 = 0xD251_1F53;
/// Philox multiplier applied to counter word 2.
const M1: u32 = 0xCD9E_8D57;
/// Weyl increment of key word 0 (golden ratio).
const W0: u32 = 0x9E37_79B9;
/// Weyl increment of key word 1 (sqrt(3) - 1).
const W1: u32 = 0xBB67_AE85;

/// 2^-24, the spacing of 24-bit uniform floats.
const TWO_POW_M24: f32 = 1.0 / 16_777_216.0;
/// 2^-32, the spacing of 32-bit uniform floats.
const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;

/// Elements per parallel chunk; a multiple of 4 so every chunk starts on a block boundary.
const CHUNK: usize = 16 * 1024;

/// One Philox round: two 32x32->64 multiplies, then mix the halves with the other words and key.
#[inline(always)]
fn round(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let p0 = u64::from(M0) * u64::from(ctr[0]);
    let p1 = u64::from(M1) * u64::from(ctr[2]);
    let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
    let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
    [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0]
}

/// The Philox 4x32 block function with 10 rounds: four random words per (counter, key).
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut ctr = counter;
    let mut key = key;
    for r in 0..10 {
        if r > 0 {
            // The key schedule bumps the key between rounds (9 bumps for 10 rounds).
            key = [key[0].wrapping_add(W0), key[1].wrapping_add(W1)];
        }
        ctr = round(ctr, key);
    }
    ctr
}

/// The four raw words of block `block` of stream `seed` (see the module docs).
#[inline]
pub fn block_bits(seed: u64, block: u64) -> [u32; 4] {
    philox4x32_10([block as u32, (block >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32])
}

/// The raw 32-bit word of element `i` of the request `(seed, offset)`.
pub fn random_u32(seed: u64, offset: u64, i: u64) -> u32 {
    block_bits(seed, offset.wrapping_add(i / 4))[(i % 4) as usize]
}

/// Number of Philox blocks a request of `n` elements consumes: ceil(n / 4).
pub fn blocks_used(n: usize) -> u64 {
    n.div_ceil(4) as u64
}

/// Uniform `f32` in [0, 1) from a raw word: its top 24 bits times 2^-24.
#[inline]
pub fn uniform_f32(x: u32) -> f32 {
    // Both steps are exact: 24 bits fit the f32 mantissa, and 2^-24 is a power of two.
    (x >> 8) as f32 * TWO_POW_M24
}

/// Uniform `f64` in [0, 1) from a raw word: `x * 2^-32`.
#[inline]
pub fn uniform_f64(x: u32) -> f64 {
    x as f64 * TWO_POW_M32
}

/// Box–Muller: two standard normals from two raw words (see the module docs).
#[inline]
pub fn box_muller(xa: u32, xb: u32) -> (f64, f64) {
    let u1 = (xa as f64 + 1.0) * TWO_POW_M32;
    let u2 = xb as f64 * TWO_POW_M32;
    let r = libm::sqrt(-2.0 * libm::log(u1));
    let theta = 2.0 * std::f64::consts::PI * u2;
    (r * libm::cos(theta), r * libm::sin(theta))
}

/// The four normals of one block, in lane order.
#[inline]
fn normal_block(x: [u32; 4]) -> [f64; 4] {
    let (z0, z1) = box_muller(x[0], x[1]);
    let (z2, z3) = box_muller(x[2], x[3]);
    [z0, z1, z2, z3]
}

/// Fills `out` with element `i` = `map(block words)[i % 4]`, in parallel chunks that each start
/// on a block boundary, so the result is independent of the chunking.
fn fill_blocks<T, F>(seed: u64, offset: u64, out: &mut [T], map: F)
where
    T: Copy + Send,
    F: Fn([u32; 4]) -> [T; 4] + Sync,
{
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        // CHUNK is a multiple of 4, so this chunk's first element is lane 0 of this block.
        let first_block = offset.wrapping_add((c * (CHUNK / 4)) as u64);
        for (j, quad) in chunk.chunks_mut(4).enumerate() {
            let vals = map(block_bits(seed, first_block.wrapping_add(j as u64)));
            // A short final quad takes the leading lanes, as element i always uses lane i % 4.
            quad.copy_from_slice(&vals[..quad.len()]);
        }
    });
}

/// Fills `out` with uniform `f32` in [0, 1) from the request `(seed, offset)`.
pub fn fill_uniform_f32(seed: u64, offset: u64, out: &mut [f32]) {
    fill_blocks(seed, offset, out, |x| x.map(uniform_f32));
}

/// Fills `out` with uniform `f64` in [0, 1) from the request `(seed, offset)`.
pub fn fill_uniform_f64(seed: u64, offset: u64, out: &mut [f64]) {
    fill_blocks(seed, offset, out, |x| x.map(uniform_f64));
}

/// Fills `out` with standard normals (computed in `f64`, rounded to `f32`).
pub fn fill_normal_f32(seed: u64, offset: u64, out: &mut [f32]) {
    fill_blocks(seed, offset, out, |x| normal_block(x).map(|z| z as f32));
}

/// Fills `out` with standard normals in `f64` from the request `(seed, offset)`.
pub fn fill_normal_f64(seed: u64, offset: u64, out: &mut [f64]) {
    fill_blocks(seed, offset, out, normal_block);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequential reference of the stream definition, element by element.
    fn reference_normal(seed: u64, offset: u64, i: u64) -> f64 {
        let x = block_bits(seed, offset.wrapping_add(i / 4));
        let lane = (i % 4) as usize;
        let (a, b) = box_muller(x[lane & !1], x[lane | 1]);
        if lane & 1 == 0 {
            a
        } else {
            b
        }
    }

    #[test]
    fn known_answers_random123() {
        // kat_vectors from Random123 (philox4x32 with 10 rounds).
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn counter_and_key_layout() {
        let seed = 0x0123_4567_89ab_cdef_u64;
        let b = 0xfedc_ba98_7654_3210_u64;
        assert_eq!(block_bits(seed, b), philox4x32_10([0x7654_3210, 0xfedc_ba98, 0, 0], [0x89ab_cdef, 0x0123_4567]));
        // Element 6 of a request at offset b lives in block b + 1, lane 2; the block index wraps.
        assert_eq!(random_u32(seed, b, 6), block_bits(seed, b + 1)[2]);
        assert_eq!(random_u32(seed, u64::MAX, 5), block_bits(seed, 0)[1]);
    }

    #[test]
    fn blocks_used_rounds_up() {
        assert_eq!(blocks_used(0), 0);
        assert_eq!(blocks_used(1), 1);
        assert_eq!(blocks_used(4), 1);
        assert_eq!(blocks_used(5), 2);
        assert_eq!(blocks_used(1_000_001), 250_001);
    }

    #[test]
    fn uniform_mappings() {
        assert_eq!(uniform_f32(0), 0.0);
        assert_eq!(uniform_f32(u32::MAX), 1.0 - f32::EPSILON / 2.0); // 1 - 2^-24
        assert_eq!(uniform_f32(0x8000_0000), 0.5);
        assert_eq!(uniform_f64(0), 0.0);
        assert_eq!(uniform_f64(u32::MAX), 1.0 - TWO_POW_M32);
        // The extremes of Box–Muller stay finite: u1 = 2^-32 gives the largest radius.
        let (a, b) = box_muller(0, 0);
        assert!(a.is_finite() && b == 0.0 && (a - (64.0 * std::f64::consts::LN_2).sqrt()).abs() < 1e-12);
        let (a, b) = box_muller(u32::MAX, 12345);
        assert_eq!((a, b), (0.0, 0.0));
    }

    #[test]
    fn fills_follow_the_stream_definition() {
        let (seed, offset) = (42, 7);
        let n = 4 * 1000 + 3; // ends in a partial block
        let mut uf = vec![0f32; n];
        let mut ud = vec![0f64; n];
        let mut nf = vec![0f32; n];
        let mut nd = vec![0f64; n];
        fill_uniform_f32(seed, offset, &mut uf);
        fill_uniform_f64(seed, offset, &mut ud);
        fill_normal_f32(seed, offset, &mut nf);
        fill_normal_f64(seed, offset, &mut nd);
        for i in 0..n {
            let x = random_u32(seed, offset, i as u64);
            assert_eq!(uf[i], uniform_f32(x));
            assert_eq!(ud[i], uniform_f64(x));
            let z = reference_normal(seed, offset, i as u64);
            assert_eq!(nd[i], z);
            assert_eq!(nf[i], z as f32);
        }
    }

    #[test]
    fn parallel_fill_equals_sequential_and_is_deterministic() {
        // Several chunks plus a ragged tail.
        let n = 3 * CHUNK + 13;
        let mut par = vec![0f64; n];
        fill_normal_f64(9, 1 << 40, &mut par);
        let seq: Vec<f64> = (0..n as u64).map(|i| reference_normal(9, 1 << 40, i)).collect();
        assert_eq!(par, seq);
        let mut again = vec![0f64; n];
        fill_normal_f64(9, 1 << 40, &mut again);
        assert_eq!(par, again);
        // A different seed gives a different stream.
        let mut other = vec![0f64; n];
        fill_normal_f64(10, 1 << 40, &mut other);
        assert_ne!(par, other);
    }

    #[test]
    fn offset_fill_is_the_tail_of_a_longer_fill() {
        let n = 2 * CHUNK + 101;
        let mut long = vec![0f32; n];
        fill_uniform_f32(3, 0, &mut long);
        for k in [1usize, 5, CHUNK / 4 + 3] {
            let mut tail = vec![0f32; n - 4 * k];
            fill_uniform_f32(3, k as u64, &mut tail);
            assert_eq!(tail, long[4 * k..], "offset {k}");
        }
        // Consecutive requests advanced by blocks_used never overlap and tile the long stream.
        let (a, b) = (1001, n - 1004); // 1001 uses 251 blocks = 1004 elements
        let mut first = vec![0f32; a];
        let mut second = vec![0f32; b];
        fill_uniform_f32(3, 0, &mut first);
        fill_uniform_f32(3, blocks_used(a), &mut second);
        assert_eq!(first, long[..a]);
        assert_eq!(second, long[1004..]);
    }

    #[test]
    fn uniforms_stay_in_range() {
        let mut f = vec![0f32; 1 << 18];
        let mut d = vec![0f64; 1 << 18];
        fill_uniform_f32(5, 0, &mut f);
        fill_uniform_f64(5, 0, &mut d);
        assert!(f.iter().all(|&u| (0.0..1.0).contains(&u)));
        assert!(d.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        // sd of the mean is sqrt(1/12 / n) ~ 5.6e-4; allow 4 sigma.
        assert!((mean - 0.5).abs() < 4.0 * (1.0 / 12.0 / d.len() as f64).sqrt(), "mean {mean}");
    }

    #[test]
    fn normal_moments() {
        let n = 1_000_000;
        for seed in [0u64, 0xdead_beef] {
            let mut z = vec![0f64; n];
            fill_normal_f64(seed, 0, &mut z);
            let mean = z.iter().sum::<f64>() / n as f64;
            let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
            // Standard errors: mean 1/sqrt(n), sample variance sqrt(2/(n-1)); allow 4 sigma.
            let nf = n as f64;
            assert!(mean.abs() < 4.0 / nf.sqrt(), "seed {seed}: mean {mean}");
            assert!((var - 1.0).abs() < 4.0 * (2.0 / (nf - 1.0)).sqrt(), "seed {seed}: var {var}");
        }
        // f32 normals are the f64 ones rounded.
        let mut zf = vec![0f32; 1000];
        let mut zd = vec![0f64; 1000];
        fill_normal_f32(1, 2, &mut zf);
        fill_normal_f64(1, 2, &mut zd);
        assert!(zf.iter().zip(&zd).all(|(&a, &b)| a == b as f32));
    }
}
