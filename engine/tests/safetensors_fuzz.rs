//! Mutation fuzzing of the safetensors loader.
//!
//! A valid file (every dtype, 0-d and empty tensors, metadata) is mutated — bit flips,
//! byte rewrites, truncation, insertion, deletion, header-length rewrites, and
//! header-aware edits that keep the JSON parseable (number and string replacement, entry
//! removal) so that the semantic checks are reached, not only the JSON parser. Each
//! result must load as `Ok` or `Err` without panicking, and agrees with the reference
//! implementation (`safetensors::SafeTensors::deserialize`): whatever we accept it
//! accepts with the same content, and whatever it accepts we accept unless the file hits
//! one of our documented stricter rules.
//!
//! `proptest_mutations` runs under proptest; `fuzz_loader_many` is a seeded,
//! deterministic long run (`cargo test --release --test safetensors_fuzz -- --nocapture`
//! prints its counts).

use std::collections::BTreeMap;

use proptest::prelude::*;
use scorch_engine::safetensors_io::{
    dtype_to_safetensors, load_bytes_with_metadata, save_to_bytes, Malformed, RawTensor,
};
use scorch_ops::DType;

/// SplitMix64: small, seedable, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The valid file every mutation starts from.
fn base_file() -> Vec<u8> {
    let mut rng = Rng(7);
    let shapes: [&[usize]; 4] = [&[], &[0, 2], &[3], &[2, 2]];
    let mut tensors = Vec::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let shape = shapes[i % shapes.len()];
        let n = shape.iter().product::<usize>() * dtype.size();
        let data = (0..n).map(|_| rng.next() as u8).collect();
        let name = format!("layer{i}.{}", dtype_to_safetensors(dtype).to_lowercase());
        tensors.push(RawTensor::new(name, dtype, shape.to_vec(), data));
    }
    let meta =
        BTreeMap::from([("format".to_string(), "pt".to_string()), ("note".to_string(), "fuzz \"base\"".to_string())]);
    save_to_bytes(&tensors, Some(&meta)).expect("base file is valid")
}

/// The header region `8..8 + n` if the length prefix is in range.
fn header_range(buf: &[u8]) -> Option<std::ops::Range<usize>> {
    let n = u64::from_le_bytes(buf.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(n).ok()?)?;
    (end <= buf.len()).then_some(8..end)
}

/// Replaces the header with `new` and rewrites the length prefix to match.
fn replace_header(buf: &mut Vec<u8>, range: std::ops::Range<usize>, new: Vec<u8>) {
    let new_len = new.len() as u64;
    buf.splice(range, new);
    buf[..8].copy_from_slice(&new_len.to_le_bytes());
}

/// Maximal runs of bytes satisfying `pred` inside `s`.
fn runs(s: &[u8], pred: impl Fn(u8) -> bool) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if pred(s[i]) {
            let start = i;
            while i < s.len() && pred(s[i]) {
                i += 1;
            }
            out.push(start..i);
        } else {
            i += 1;
        }
    }
    out
}

/// String literal contents (between quotes, escapes not handled: good enough to mutate).
fn string_contents(s: &[u8]) -> Vec<std::ops::Range<usize>> {
    let quotes: Vec<usize> = (0..s.len()).filter(|&i| s[i] == b'"').collect();
    quotes.chunks_exact(2).map(|q| q[0] + 1..q[1]).collect()
}

const JSON_BYTES: &[u8] = b"{}[]\":,0123456789-+.eE \\u\0\xff";
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "7",
    "8",
    "16",
    "24",
    "-1",
    "1.5",
    "1e3",
    "-0",
    "4294967296",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "100000000",
    "\"3\"",
    "null",
    "[]",
];
const STRINGS: &[&str] = &[
    "F32",
    "F64",
    "BF16",
    "F16",
    "I64",
    "I32",
    "U8",
    "BOOL",
    "I8",
    "U16",
    "U64",
    "F8_E4M3",
    "f32",
    "",
    "__metadata__",
    "dtype",
    "shape",
    "data_offsets",
    "layer0.f32",
    "layer1.f64",
    "\\u0041",
    "\\",
    "x\"y",
];

/// Number of mutation kinds `apply` knows.
const KINDS: u8 = 14;

/// Applies one mutation, chosen by `kind`, parameterised by `a` and `b`.
fn apply(buf: &mut Vec<u8>, kind: u8, a: u64, b: u64) {
    let len = buf.len() as u64;
    let pick = |n: usize, x: u64| (x % n.max(1) as u64) as usize;
    match kind % KINDS {
        // Flip a bit anywhere.
        0 if len > 0 => {
            let i = pick(buf.len(), a);
            buf[i] ^= 1 << (b % 8);
        }
        // Flip a bit in the header.
        1 => {
            if let Some(r) = header_range(buf).filter(|r| !r.is_empty()) {
                let i = r.start + pick(r.len(), a);
                buf[i] ^= 1 << (b % 8);
            }
        }
        // Overwrite a header byte with a JSON-significant (or invalid UTF-8) byte.
        2 => {
            if let Some(r) = header_range(buf).filter(|r| !r.is_empty()) {
                let i = r.start + pick(r.len(), a);
                buf[i] = JSON_BYTES[pick(JSON_BYTES.len(), b)];
            }
        }
        // Truncate.
        3 => buf.truncate(pick(buf.len() + 1, a)),
        // Insert 1..=8 random bytes.
        4 => {
            let at = pick(buf.len() + 1, a);
            let n = 1 + (b % 8) as usize;
            let bytes: Vec<u8> = (0..n).map(|k| (b >> (8 * k)) as u8).collect();
            buf.splice(at..at, bytes);
        }
        // Delete up to 16 bytes.
        5 if len > 0 => {
            let at = pick(buf.len(), a);
            let end = (at + 1 + (b % 16) as usize).min(buf.len());
            buf.drain(at..end);
        }
        // Rewrite the header length.
        6 if len >= 8 => {
            let current = u64::from_le_bytes(buf[..8].try_into().unwrap());
            let new = match b % 8 {
                0 => a,
                1 => current.wrapping_add(a % 17).wrapping_sub(8),
                2 => len - 8,
                3 => len - 7,
                4 => 100_000_000,
                5 => 100_000_001,
                6 => u64::MAX,
                _ => a % 16,
            };
            buf[..8].copy_from_slice(&new.to_le_bytes());
        }
        // Replace a number in the header (offsets, dims), keeping the prefix consistent.
        7 => {
            if let Some(r) = header_range(buf) {
                let mut h = buf[r.clone()].to_vec();
                let nums = runs(&h, |c| c.is_ascii_digit());
                if !nums.is_empty() {
                    let run = nums[pick(nums.len(), a)].clone();
                    let old: u64 = std::str::from_utf8(&h[run.clone()]).unwrap().parse().unwrap_or(0);
                    let new = match b % 4 {
                        0 => NUMBERS[pick(NUMBERS.len(), b >> 8)].to_string(),
                        1 => old.wrapping_add(1).to_string(),
                        2 => old.saturating_sub(1).to_string(),
                        _ => (b >> 8 & 0x3f).to_string(),
                    };
                    h.splice(run, new.into_bytes());
                    replace_header(buf, r, h);
                }
            }
        }
        // Replace a string literal's content (dtype names, tensor names, field names).
        8 => {
            if let Some(r) = header_range(buf) {
                let mut h = buf[r.clone()].to_vec();
                let strs = string_contents(&h);
                if !strs.is_empty() {
                    let s = strs[pick(strs.len(), a)].clone();
                    h.splice(s, STRINGS[pick(STRINGS.len(), b)].bytes());
                    replace_header(buf, r, h);
                }
            }
        }
        // Delete a header span between two structural bytes (drops fields / entries).
        9 => {
            if let Some(r) = header_range(buf) {
                let mut h = buf[r.clone()].to_vec();
                let marks: Vec<usize> = (0..h.len()).filter(|&i| b",{}[]:".contains(&h[i])).collect();
                if marks.len() >= 2 {
                    let i = pick(marks.len() - 1, a);
                    let j = (i + 1 + pick(3, b)).min(marks.len() - 1);
                    h.drain(marks[i]..marks[j]);
                    replace_header(buf, r, h);
                }
            }
        }
        // Duplicate a header span at another structural position.
        10 => {
            if let Some(r) = header_range(buf) {
                let mut h = buf[r.clone()].to_vec();
                let marks: Vec<usize> = (0..h.len()).filter(|&i| h[i] == b',' || h[i] == b'{').collect();
                if marks.len() >= 2 {
                    let i = pick(marks.len() - 1, a);
                    let span = h[marks[i]..marks[i + 1]].to_vec();
                    let at = marks[pick(marks.len(), b)];
                    h.splice(at..at, span);
                    replace_header(buf, r, h);
                }
            }
        }
        // Append or remove data bytes at the end.
        11 => {
            if b.is_multiple_of(2) {
                buf.extend((0..1 + a % 9).map(|k| k as u8));
            } else {
                let n = (a % 9) as usize;
                buf.truncate(buf.len().saturating_sub(n));
            }
        }
        // Shift one tensor's data_offsets pair by the same amount (gaps and overlaps
        // with a consistent byte length).
        12 => {
            if let Some(r) = header_range(buf) {
                let mut h = buf[r.clone()].to_vec();
                let key = b"\"data_offsets\":[";
                let starts: Vec<usize> = (0..h.len()).filter(|&i| h[i..].starts_with(key)).collect();
                if !starts.is_empty() {
                    let from = starts[pick(starts.len(), a)] + key.len();
                    if let Some(close) = h[from..].iter().position(|&c| c == b']') {
                        let text = String::from_utf8_lossy(&h[from..from + close]).into_owned();
                        let nums: Vec<u64> = text.split(',').filter_map(|n| n.parse().ok()).collect();
                        if let [x, y] = nums[..] {
                            let delta = (b % 17) as i64 - 8;
                            let shift = |v: u64| v.saturating_add_signed(delta);
                            let new = format!("{},{}", shift(x), shift(y));
                            h.splice(from..from + close, new.into_bytes());
                            replace_header(buf, r, h);
                        }
                    }
                }
            }
        }
        // Swap two bytes anywhere (reorders data, occasionally header).
        _ if len > 1 => {
            let i = pick(buf.len(), a);
            let j = pick(buf.len(), b);
            buf.swap(i, j);
        }
        _ => {}
    }
}

/// Our documented stricter rules: files the reference may accept but we reject.
fn stricter_rule(problem: &Malformed) -> bool {
    matches!(
        problem,
        Malformed::DuplicateKey { .. }
            | Malformed::UnsupportedDtype { .. }
            | Malformed::ShapeOverflow { .. }
            | Malformed::EntryNotObject { .. }
    )
}

type Content = (Vec<(String, String, Vec<usize>, Vec<u8>)>, Option<BTreeMap<String, String>>);

/// What the reference implementation reads from `input`, or `None` if it rejects it.
fn reference(input: &[u8]) -> Option<Content> {
    let st = safetensors::SafeTensors::deserialize(input).ok()?;
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let dtype = format!("{:?}", view.dtype());
            (name, dtype, view.shape().to_vec(), view.data().to_vec())
        })
        .collect();
    tensors.sort();
    let (_, meta) = safetensors::SafeTensors::read_metadata(input).ok()?;
    let meta = meta.metadata().as_ref().map(|m| m.clone().into_iter().collect());
    Some((tensors, meta))
}

/// How one input fared.
enum Outcome {
    Accepted,
    /// Rejected with this `Malformed` variant; `true` if the reference accepted it.
    Rejected(String, bool),
}

/// Loads `input` with both implementations and checks they agree. Panics (failing the
/// test) on any disagreement or invariant violation.
fn check(input: &[u8]) -> Outcome {
    let ours = load_bytes_with_metadata(input);
    let theirs = reference(input);
    match ours {
        Ok((tensors, meta)) => {
            for t in &tensors {
                let numel: usize = t.shape.iter().product();
                assert_eq!(t.data.len(), numel * t.dtype.size(), "tensor {}", t.name);
            }
            let total: usize = tensors.iter().map(|t| t.data.len()).sum();
            assert!(total <= input.len());
            let mut mine: Vec<_> = tensors
                .into_iter()
                .map(|t| (t.name, dtype_to_safetensors(t.dtype).to_string(), t.shape, t.data))
                .collect();
            mine.sort();
            let theirs = theirs.unwrap_or_else(|| panic!("we accept, reference rejects: {input:?}"));
            assert_eq!((mine, meta), theirs, "content differs for {input:?}");
            Outcome::Accepted
        }
        Err(e) => {
            let problem = e.malformed().unwrap_or_else(|| panic!("load_bytes gave a non-format error: {e}"));
            assert!(!e.to_string().is_empty());
            if theirs.is_some() && !stricter_rule(problem) {
                panic!("reference accepts, we reject with `{e}`: {input:?}");
            }
            let debug = format!("{problem:?}");
            let variant = debug.split([' ', '{']).next().unwrap_or_default().to_string();
            Outcome::Rejected(variant, theirs.is_some())
        }
    }
}

#[test]
fn base_file_is_accepted() {
    assert!(matches!(check(&base_file()), Outcome::Accepted));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn proptest_mutations(muts in prop::collection::vec((any::<u8>(), any::<u64>(), any::<u64>()), 1..6)) {
        let mut buf = base_file();
        for (kind, a, b) in muts {
            apply(&mut buf, kind, a, b);
        }
        check(&buf);
    }

    #[test]
    fn proptest_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64), header_len in 0u64..80) {
        // Arbitrary bytes behind a plausible header length.
        let mut buf = header_len.to_le_bytes().to_vec();
        buf.extend(bytes);
        check(&buf);
    }
}

/// Deterministic long run: 200,000 mutated inputs from a fixed seed.
#[test]
fn fuzz_loader_many() {
    const INPUTS: usize = 200_000;
    let base = base_file();
    let mut rng = Rng(0x5eed_5afe_7e45_0125);
    let mut accepted = 0usize;
    let mut reference_only = 0usize;
    let mut rejections: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds = [0usize; KINDS as usize];
    let start = std::time::Instant::now();
    for _ in 0..INPUTS {
        let mut buf = base.clone();
        for _ in 0..1 + rng.below(4) {
            let kind = rng.next() as u8;
            kinds[usize::from(kind % KINDS)] += 1;
            apply(&mut buf, kind, rng.next(), rng.next());
        }
        match check(&buf) {
            Outcome::Accepted => accepted += 1,
            Outcome::Rejected(variant, reference_accepted) => {
                reference_only += usize::from(reference_accepted);
                *rejections.entry(variant).or_default() += 1;
            }
        }
    }
    println!(
        "fuzz_loader_many: tried {INPUTS} mutated inputs in {:.1?}: accepted {accepted}, \
         rejected {} ({reference_only} of them accepted by the reference under its laxer \
         rules)\n  rejections by kind: {rejections:?}\n  mutation kinds used: {kinds:?}",
        start.elapsed(),
        INPUTS - accepted,
    );
    assert!(accepted > 0 && accepted < INPUTS);
}
