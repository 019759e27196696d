//! Reading and writing [safetensors](https://github.com/huggingface/safetensors) files
//! over raw tensors ([`RawTensor`]: name, dtype, shape, little-endian row-major bytes).
//!
//! # The format
//!
//! ```text
//! [ u64 little-endian N ][ N bytes of UTF-8 JSON header ][ data section ]
//! ```
//!
//! The header is a JSON object. Every key except `__metadata__` names a tensor and maps
//! to `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`, offsets being
//! relative to the start of the data section. The optional `__metadata__` entry is an
//! object of string to string. A valid file's tensors tile the data section exactly:
//! no overlaps, no holes, nothing left over.
//!
//! # Writer layout
//!
//! [`save`] produces the same bytes as the reference writer (the Rust `safetensors`
//! crate, which Python's `safetensors.numpy`/`safetensors.torch` `save_file` call into):
//! compact JSON with `__metadata__` first, tensor entries in data order with the fields
//! in the order `dtype`, `shape`, `data_offsets`, the header padded with spaces to a
//! multiple of 8 bytes, and the tensors ordered by **descending dtype rank**
//! (I64, F64, F32, I32, BF16, F16, U8, BOOL) and then by name. That ordering (rather than
//! purely by name) is what the reference writer does — checked against Python
//! `safetensors` 0.8.0 — and it keeps every tensor's data aligned to its element size,
//! because the header is padded to 8. Metadata keys are written in sorted order (the
//! reference writes its map's iteration order; for sorted keys the files are identical).
//!
//! # Why a hand-written parser rather than `safetensors::SafeTensors::deserialize`
//!
//! The `safetensors` 0.4 crate validates the same structural rules, but not with the
//! diagnostics we want and not with all of the checks:
//!
//! * several of its errors carry no detail: `TensorInvalidInfo` and `ValidationOverflow`
//!   do not name the tensor, `InvalidHeaderDeserialization` drops the JSON error (so a
//!   missing field and a wrong-typed field look the same), `MetadataIncompleteBuffer`
//!   does not say how much is left over;
//! * repeated keys in the header are silently accepted (the last one wins), so a file
//!   can mean different things to different readers;
//! * its writer takes `__metadata__` as a `HashMap`, so a file with several metadata
//!   entries does not get reproducible bytes, and `serialize_to_file` is not atomic.
//!
//! So the header is parsed here with `serde_json` and validated by hand, applying the
//! reference rules (the fuzz tests in `tests/safetensors_fuzz.rs` run the crate as an
//! oracle on every input) plus a few stricter ones listed on [`Malformed`] (repeated
//! keys, dtypes scorch has no type for, shapes whose non-zero dimensions multiply past
//! `usize`, array-form tensor entries). The writer is hand-written for the same
//! reasons; the `safetensors` crate is only used by the tests.
//!
//! Loading never panics and never reads out of bounds, whatever the input bytes; every
//! problem is an [`IoError`] naming the problem, the tensor (where there is one) and the
//! file (where there is one).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use scorch_ops::DType;
use serde_json::{Map, Value};

/// Headers longer than this are rejected as absurd (the reference implementation's limit).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// The header key that holds the free-form string metadata.
pub const METADATA_KEY: &str = "__metadata__";

/// The free-form string metadata of a file (its `__metadata__` entry).
pub type Metadata = BTreeMap<String, String>;

/// One tensor as stored in a safetensors file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawTensor {
    /// The tensor's key in the file.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The dimensions; empty for a 0-d (scalar) tensor.
    pub shape: Vec<usize>,
    /// The elements, little-endian, row-major: `shape.iter().product() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Bundles the four fields (no validation; [`save`] validates).
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Self {
        RawTensor { name: name.into(), dtype, shape, data }
    }
}

/// The safetensors spelling of a dtype (`F32`, `BF16`, `BOOL`, ...).
pub fn dtype_to_safetensors(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::BF16 => "BF16",
        DType::F16 => "F16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
    }
}

/// Parses a safetensors dtype name; `None` for names scorch has no type for (e.g. `I8`,
/// `U16`, `F8_E4M3`) and for names that are not safetensors dtypes at all.
pub fn dtype_from_safetensors(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F64" => DType::F64,
        "BF16" => DType::BF16,
        "F16" => DType::F16,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "U8" => DType::U8,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// Position of a dtype in the reference writer's `Dtype` enum, which orders the data
/// section (higher first). Only the relative order of scorch's dtypes matters.
fn writer_rank(dtype: DType) -> u8 {
    match dtype {
        DType::I64 => 7,
        DType::F64 => 6,
        DType::F32 => 5,
        DType::I32 => 4,
        DType::BF16 => 3,
        DType::F16 => 2,
        DType::U8 => 1,
        DType::Bool => 0,
    }
}

/// Everything that can go wrong saving or loading.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The operating system refused an operation (`op`) on `path`.
    #[error("cannot {op} `{}`: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bytes are not a valid safetensors file; `path` is `None` for [`load_bytes`].
    #[error("invalid safetensors {}: {problem}", Location(.path.as_deref()))]
    Malformed { path: Option<PathBuf>, problem: Malformed },
    /// The tensors given to [`save`] / [`save_to_bytes`] cannot be written; `path` is the
    /// target file (`None` for [`save_to_bytes`]). Nothing was written.
    #[error("cannot save safetensors {}: {problem}", Location(.path.as_deref()))]
    InvalidInput { path: Option<PathBuf>, problem: InvalidInput },
}

impl IoError {
    /// The format problem, if this is a [`IoError::Malformed`].
    pub fn malformed(&self) -> Option<&Malformed> {
        match self {
            IoError::Malformed { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The input problem, if this is a [`IoError::InvalidInput`].
    pub fn invalid_input(&self) -> Option<&InvalidInput> {
        match self {
            IoError::InvalidInput { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// Formats an optional path as "file `path`" or "data" (for in-memory bytes).
struct Location<'a>(Option<&'a Path>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "file `{}`", path.display()),
            None => f.write_str("data"),
        }
    }
}

/// Why some bytes are not a valid safetensors file.
///
/// Beyond the reference implementation's rules, scorch also rejects: keys repeated within
/// any object of the header ([`Malformed::DuplicateKey`]; the reference keeps the last
/// tensor entry or metadata value), dtypes it has no type for
/// ([`Malformed::UnsupportedDtype`]), shapes whose non-zero dimensions multiply (times the
/// element size) past `usize` even when another dimension is 0
/// ([`Malformed::ShapeOverflow`]; downstream stride arithmetic would overflow on them), and
/// tensor entries written as arrays instead of objects ([`Malformed::EntryNotObject`]; the
/// reference's serde derive reads `["F32",[2],[0,8]]` positionally). Like the reference it
/// accepts unknown extra fields in a tensor entry, whitespace around the header JSON and
/// `"__metadata__": null` (read as no metadata).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("{len} bytes is shorter than the 8-byte header-length prefix")]
    TooShort { len: usize },
    #[error("declared header length {header_len} exceeds the limit of {MAX_HEADER_LEN} bytes")]
    HeaderTooLarge { header_len: u64 },
    #[error("declared header length {header_len} runs past the end of the file ({available} bytes follow the prefix)")]
    HeaderPastEnd { header_len: u64, available: usize },
    #[error("header is not valid UTF-8 (bad byte at header offset {valid_up_to})")]
    HeaderNotUtf8 { valid_up_to: usize },
    #[error("header is not valid JSON: {message}")]
    HeaderNotJson { message: String },
    #[error("header is {found}, expected a JSON object")]
    HeaderNotObject { found: &'static str },
    #[error("header repeats key `{name}` within one object")]
    DuplicateKey { name: String },
    #[error("`__metadata__` {reason}")]
    BadMetadata { reason: String },
    #[error("tensor `{tensor}`: entry is {found}, expected an object")]
    EntryNotObject { tensor: String, found: &'static str },
    #[error("tensor `{tensor}`: missing field `{field}`")]
    MissingField { tensor: String, field: &'static str },
    #[error("tensor `{tensor}`: field `{field}` must be {expected}")]
    WrongFieldType { tensor: String, field: &'static str, expected: &'static str },
    #[error(
        "tensor `{tensor}`: dtype `{dtype}` is not supported (scorch reads F32, F64, BF16, F16, I64, I32, U8, BOOL)"
    )]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("tensor `{tensor}`: shape {shape:?} of {dtype} elements has a byte size that overflows usize")]
    ShapeOverflow { tensor: String, shape: Vec<u64>, dtype: DType },
    #[error("tensor `{tensor}`: data_offsets [{begin}, {end}] has begin > end")]
    OffsetsReversed { tensor: String, begin: u64, end: u64 },
    #[error("tensor `{tensor}`: data_offsets [{begin}, {end}] run past the end of the {data_len}-byte data section")]
    OffsetsOutOfRange { tensor: String, begin: u64, end: u64, data_len: u64 },
    #[error("tensor `{tensor}`: dtype {dtype} and shape {shape:?} need {expected} bytes, but data_offsets [{begin}, {end}] span {}", .end - .begin)]
    ByteLengthMismatch { tensor: String, dtype: DType, shape: Vec<usize>, expected: u64, begin: u64, end: u64 },
    #[error(
        "tensors `{first}` and `{second}` overlap in the data section (`{second}` starts at {at}, inside `{first}`)"
    )]
    Overlap { first: String, second: String, at: u64 },
    #[error("{len} unused bytes at data offset {at}, before tensor `{tensor}`")]
    Gap { tensor: String, at: u64, len: u64 },
    #[error("{} unused bytes at the end: the tensors cover {covered} of the {data_len}-byte data section", .data_len - .covered)]
    TrailingBytes { covered: u64, data_len: u64 },
}

/// Why a list of tensors cannot be saved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("tensor `{name}`: dtype {dtype} and shape {shape:?} need {expected} bytes, but the data has {actual}")]
    ByteLength { name: String, dtype: DType, shape: Vec<usize>, expected: usize, actual: usize },
    #[error("tensor `{name}`: shape {shape:?} of {dtype} elements has a byte size that overflows usize")]
    ShapeOverflow { name: String, shape: Vec<usize>, dtype: DType },
    #[error("tensor name `{name}` appears more than once")]
    DuplicateName { name: String },
    #[error("`{name}` is reserved for the metadata and cannot name a tensor")]
    ReservedName { name: String },
}

// ---------------------------------------------------------------------------------------
// Shared shape arithmetic
// ---------------------------------------------------------------------------------------

/// Byte size of a tensor, or `None` if the product of its non-zero dimensions times the
/// element size overflows (`u64` or `usize`). Checking the non-zero dimensions — not just
/// the full product, which is 0 as soon as one dimension is — guarantees that every
/// partial product (strides, sub-tensor sizes) of an accepted shape fits in `usize`.
fn checked_byte_len(dims: &[u64], dtype: DType) -> Option<u64> {
    let mut span = dtype.size() as u64;
    let mut has_zero = false;
    for &d in dims {
        if d == 0 {
            has_zero = true;
        } else {
            span = span.checked_mul(d)?;
        }
    }
    usize::try_from(span).ok()?;
    Some(if has_zero { 0 } else { span })
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Saves `tensors` (and optional string `metadata`) to `path`, atomically.
///
/// The bytes go to a fresh temporary file in the same directory, which is fsynced and
/// then renamed over `path`; readers see either the old file or the complete new one, and
/// a failed save leaves `path` untouched (and removes the temporary file). The layout is
/// the reference writer's (see the module docs), so PyTorch / Python `safetensors` read
/// the result, and files with the same content get identical bytes.
///
/// Errors: [`IoError::InvalidInput`] (wrong byte length, shape overflow, duplicate or
/// reserved name — checked before anything is written), [`IoError::Io`].
pub fn save(path: &Path, tensors: &[RawTensor], metadata: Option<&BTreeMap<String, String>>) -> Result<(), IoError> {
    let plan = Plan::new(tensors, metadata)
        .map_err(|problem| IoError::InvalidInput { path: Some(path.to_path_buf()), problem })?;
    write_atomically(path, |w| plan.write_to(w))
}

/// The bytes [`save`] would write, in memory.
pub fn save_to_bytes(tensors: &[RawTensor], metadata: Option<&BTreeMap<String, String>>) -> Result<Vec<u8>, IoError> {
    let plan = Plan::new(tensors, metadata).map_err(|problem| IoError::InvalidInput { path: None, problem })?;
    let mut out = Vec::with_capacity(8 + plan.header.len() + plan.data_len);
    // Writing into a Vec cannot fail.
    let _ = plan.write_to(&mut out);
    Ok(out)
}

/// A validated file layout: the padded header and the tensors in data order.
struct Plan<'a> {
    header: Vec<u8>,
    order: Vec<&'a RawTensor>,
    data_len: usize,
}

impl<'a> Plan<'a> {
    fn new(tensors: &'a [RawTensor], metadata: Option<&BTreeMap<String, String>>) -> Result<Self, InvalidInput> {
        let mut seen = HashSet::with_capacity(tensors.len());
        for t in tensors {
            if t.name == METADATA_KEY {
                return Err(InvalidInput::ReservedName { name: t.name.clone() });
            }
            if !seen.insert(t.name.as_str()) {
                return Err(InvalidInput::DuplicateName { name: t.name.clone() });
            }
            let dims: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            let expected = checked_byte_len(&dims, t.dtype).ok_or_else(|| InvalidInput::ShapeOverflow {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype,
            })?;
            // `checked_byte_len` guarantees the size fits in usize.
            let expected = expected as usize;
            if t.data.len() != expected {
                return Err(InvalidInput::ByteLength {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    expected,
                    actual: t.data.len(),
                });
            }
        }

        let mut order: Vec<&RawTensor> = tensors.iter().collect();
        order.sort_by(|a, b| writer_rank(b.dtype).cmp(&writer_rank(a.dtype)).then_with(|| a.name.cmp(&b.name)));

        let mut header = String::from("{");
        let mut first = true;
        if let Some(metadata) = metadata {
            header.push_str(&json_string(METADATA_KEY));
            header.push_str(":{");
            for (i, (k, v)) in metadata.iter().enumerate() {
                if i > 0 {
                    header.push(',');
                }
                header.push_str(&json_string(k));
                header.push(':');
                header.push_str(&json_string(v));
            }
            header.push('}');
            first = false;
        }
        // The tensors' data are distinct allocations that all exist at once, so their
        // total length fits in usize.
        let mut offset = 0usize;
        for t in &order {
            if !first {
                header.push(',');
            }
            first = false;
            let end = offset + t.data.len();
            let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            header.push_str(&json_string(&t.name));
            header.push_str(&format!(
                r#":{{"dtype":"{}","shape":[{}],"data_offsets":[{},{}]}}"#,
                dtype_to_safetensors(t.dtype),
                shape.join(","),
                offset,
                end
            ));
            offset = end;
        }
        header.push('}');
        // Pad with spaces to a multiple of 8, as the reference writer does.
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        Ok(Plan { header: header.into_bytes(), order, data_len: offset })
    }

    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&(self.header.len() as u64).to_le_bytes())?;
        w.write_all(&self.header)?;
        for t in &self.order {
            w.write_all(&t.data)?;
        }
        Ok(())
    }
}

/// `s` as a JSON string literal, escaped exactly as serde_json (and so the reference
/// writer) escapes it.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Distinguishes temporary files created by this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file via a uniquely named temporary file in the same directory: write,
/// fsync, rename over `path`, then (best effort, Unix) fsync the directory so the rename
/// itself is durable. The temporary file is removed on failure.
fn write_atomically(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), IoError> {
    let io_err = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| IoError::Io { op, path: p, source }
    };
    let file_name = path.file_name().ok_or_else(|| IoError::Io {
        op: "save to",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };

    // Create the temporary file, retrying on the (unlikely) name collision.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mut attempt = 0;
    let (tmp_path, file) = loop {
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}.{}.{}.tmp", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed), nanos));
        let tmp_path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp_path) {
            Ok(file) => break (tmp_path, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(io_err("create a temporary file in", dir)(e)),
        }
    };

    let written = (|| -> Result<(), IoError> {
        let mut w = BufWriter::new(&file);
        write(&mut w).and_then(|()| w.flush()).map_err(io_err("write", &tmp_path))?;
        drop(w);
        file.sync_all().map_err(io_err("fsync", &tmp_path))?;
        drop(file);
        fs::rename(&tmp_path, path).map_err(io_err("rename the temporary file onto", path))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp_path);
        return Err(e);
    }
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// Loads every tensor of the file at `path`, sorted by name. See [`load_with_metadata`].
pub fn load(path: &Path) -> Result<Vec<RawTensor>, IoError> {
    load_with_metadata(path).map(|(tensors, _)| tensors)
}

/// Loads every tensor (sorted by name) and the `__metadata__` map (`None` when the file
/// has none) of the file at `path`.
///
/// The file is memory-mapped and validated by [`load_bytes_with_metadata`], which copies
/// each tensor's bytes out; the map is dropped before returning. Errors name `path`.
pub fn load_with_metadata(path: &Path) -> Result<(Vec<RawTensor>, Option<Metadata>), IoError> {
    let io_err = |op: &'static str| move |source| IoError::Io { op, path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err("open"))?;
    // SAFETY: the mapping is only sound while no one modifies or truncates the file. We
    // never write to a file in place (`save` writes a new file and renames it over the
    // old one, which leaves an existing mapping of the old file intact), the map lives
    // only for the duration of `parse`, which bounds-checks every access and copies the
    // tensor bytes out, and it is dropped before this function returns. A different
    // process truncating the file during those moments could still fault the read;
    // that is the accepted risk of every memory-mapped loader, PyTorch's included.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err("memory-map"))?;
    let parsed = parse(&map);
    drop(map);
    parsed.map_err(|problem| IoError::Malformed { path: Some(path.to_path_buf()), problem })
}

/// Parses and validates a whole safetensors file held in memory; tensors sorted by name.
pub fn load_bytes(bytes: &[u8]) -> Result<Vec<RawTensor>, IoError> {
    load_bytes_with_metadata(bytes).map(|(tensors, _)| tensors)
}

/// [`load_bytes`] that also returns the `__metadata__` map (`None` when absent).
///
/// Every byte sequence gives `Ok` or an [`IoError::Malformed`] describing the first
/// problem found; see [`Malformed`] for the cases.
pub fn load_bytes_with_metadata(bytes: &[u8]) -> Result<(Vec<RawTensor>, Option<Metadata>), IoError> {
    parse(bytes).map_err(|problem| IoError::Malformed { path: None, problem })
}

/// A tensor entry of the header, validated on its own (not yet against the others).
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

type Parsed = (Vec<RawTensor>, Option<Metadata>);

fn parse(bytes: &[u8]) -> Result<Parsed, Malformed> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(Malformed::TooShort { len: bytes.len() });
    };
    let header_len = u64::from_le_bytes(*prefix);
    if header_len > MAX_HEADER_LEN {
        return Err(Malformed::HeaderTooLarge { header_len });
    }
    if header_len > rest.len() as u64 {
        return Err(Malformed::HeaderPastEnd { header_len, available: rest.len() });
    }
    // In range: header_len <= rest.len().
    let (header, data) = rest.split_at(header_len as usize);
    let header = std::str::from_utf8(header).map_err(|e| Malformed::HeaderNotUtf8 { valid_up_to: e.valid_up_to() })?;
    let entries = parse_header_json(header)?;

    let mut metadata = None;
    let mut tensors = Vec::with_capacity(entries.len());
    let data_len = data.len() as u64;
    for (name, value) in entries {
        if name == METADATA_KEY {
            metadata = parse_metadata(value)?;
        } else {
            tensors.push(parse_entry(name, value, data_len)?);
        }
    }

    // The tensors must tile the data section: sorted by offsets, each starts where the
    // previous one ended (empty tensors may sit at any boundary), the last ends at the end.
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut cursor = 0u64;
    let mut last_nonempty: Option<&str> = None;
    for t in &tensors {
        if t.begin > cursor {
            return Err(Malformed::Gap { tensor: t.name.clone(), at: cursor, len: t.begin - cursor });
        }
        if t.begin < cursor {
            return Err(Malformed::Overlap {
                // cursor > 0, so a non-empty tensor ends there.
                first: last_nonempty.unwrap_or_default().to_owned(),
                second: t.name.clone(),
                at: t.begin,
            });
        }
        if t.end > t.begin {
            last_nonempty = Some(&t.name);
            cursor = t.end;
        }
    }
    if cursor != data_len {
        return Err(Malformed::TrailingBytes { covered: cursor, data_len });
    }

    let mut out: Vec<RawTensor> = tensors
        .into_iter()
        .map(|t| RawTensor {
            // begin <= end <= data.len() was checked in `parse_entry`.
            data: data[t.begin as usize..t.end as usize].to_vec(),
            name: t.name,
            dtype: t.dtype,
            shape: t.shape,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, metadata))
}

/// Parses the header into its top-level object, rejecting repeated keys in any of its
/// objects (serde_json's `Map` would silently keep only the last of them).
fn parse_header_json(header: &str) -> Result<Map<String, Value>, Malformed> {
    let value: Value = serde_json::from_str(header).map_err(|e| Malformed::HeaderNotJson { message: e.to_string() })?;
    let Value::Object(map) = value else {
        return Err(Malformed::HeaderNotObject { found: json_kind(&value) });
    };
    if let Some(name) = find_duplicate_key(header) {
        return Err(Malformed::DuplicateKey { name });
    }
    Ok(map)
}

/// Returns a key that some object of `json` repeats, if any. `json` must be valid JSON
/// (so its nesting depth is bounded by serde_json's recursion limit): a single scan that
/// tracks the open objects and arrays, skips over string literals, and knows a string is
/// a key when it comes first in an object or right after one of the object's commas.
fn find_duplicate_key(json: &str) -> Option<String> {
    struct Open {
        is_object: bool,
        expect_key: bool,
        keys: HashSet<String>,
    }
    let b = json.as_bytes();
    let mut open: Vec<Open> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if let Some(top) = open.last_mut() {
                    if top.expect_key {
                        top.expect_key = false;
                        let literal = json.get(start..=i)?;
                        // Decode escapes only when there are any (`"a"` == `"\u0061"`).
                        let key = match literal.contains('\\') {
                            false => literal[1..literal.len() - 1].to_owned(),
                            true => serde_json::from_str(literal).ok()?,
                        };
                        if top.keys.contains(&key) {
                            return Some(key);
                        }
                        top.keys.insert(key);
                    }
                }
            }
            c @ (b'{' | b'[') => open.push(Open { is_object: c == b'{', expect_key: c == b'{', keys: HashSet::new() }),
            b'}' | b']' => {
                open.pop();
            }
            b',' => {
                if let Some(top) = open.last_mut() {
                    top.expect_key = top.is_object;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_metadata(value: Value) -> Result<Option<Metadata>, Malformed> {
    let map = match value {
        // The reference implementation reads `null` as "no metadata".
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        other => {
            return Err(Malformed::BadMetadata {
                reason: format!("is {}, expected an object of strings", json_kind(&other)),
            })
        }
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            other => {
                return Err(Malformed::BadMetadata {
                    reason: format!("value for `{k}` is {}, expected a string", json_kind(&other)),
                })
            }
        }
    }
    Ok(Some(out))
}

fn parse_entry(name: String, value: Value, data_len: u64) -> Result<Entry, Malformed> {
    let obj: Map<String, Value> = match value {
        Value::Object(obj) => obj,
        other => return Err(Malformed::EntryNotObject { tensor: name, found: json_kind(&other) }),
    };
    let field =
        |field: &'static str| obj.get(field).ok_or_else(|| Malformed::MissingField { tensor: name.clone(), field });
    let wrong = |field: &'static str, expected: &'static str| Malformed::WrongFieldType {
        tensor: name.clone(),
        field,
        expected,
    };

    let dtype_name = field("dtype")?.as_str().ok_or_else(|| wrong("dtype", "a string"))?;
    let dtype = dtype_from_safetensors(dtype_name)
        .ok_or_else(|| Malformed::UnsupportedDtype { tensor: name.clone(), dtype: dtype_name.to_owned() })?;

    const SHAPE_TYPE: &str = "an array of non-negative integers";
    let dims: Vec<u64> = field("shape")?
        .as_array()
        .ok_or_else(|| wrong("shape", SHAPE_TYPE))?
        .iter()
        .map(|d| d.as_u64().ok_or_else(|| wrong("shape", SHAPE_TYPE)))
        .collect::<Result<_, _>>()?;

    const OFFSETS_TYPE: &str = "an array of two non-negative integers [begin, end]";
    let (begin, end) = match field("data_offsets")?.as_array().map(Vec::as_slice) {
        Some([b, e]) => match (b.as_u64(), e.as_u64()) {
            (Some(b), Some(e)) => (b, e),
            _ => return Err(wrong("data_offsets", OFFSETS_TYPE)),
        },
        _ => return Err(wrong("data_offsets", OFFSETS_TYPE)),
    };

    let Some(expected) = checked_byte_len(&dims, dtype) else {
        return Err(Malformed::ShapeOverflow { tensor: name, shape: dims, dtype });
    };
    // Every non-zero dimension divides the checked byte span, which fits in usize, so each
    // dimension fits too; the conversion cannot fail, but stay total anyway.
    let shape: Vec<usize> = match dims.iter().map(|&d| usize::try_from(d)).collect() {
        Ok(shape) => shape,
        Err(_) => return Err(Malformed::ShapeOverflow { tensor: name, shape: dims, dtype }),
    };
    if begin > end {
        return Err(Malformed::OffsetsReversed { tensor: name, begin, end });
    }
    if end > data_len {
        return Err(Malformed::OffsetsOutOfRange { tensor: name, begin, end, data_len });
    }
    if end - begin != expected {
        return Err(Malformed::ByteLengthMismatch { tensor: name, dtype, shape, expected, begin, end });
    }
    Ok(Entry { name, dtype, shape, begin, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- helpers ----------------------------------------------------------------------

    /// Deterministic pseudo-random bytes (SplitMix64).
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    fn tensor(name: &str, dtype: DType, shape: &[usize], seed: u64) -> RawTensor {
        let n: usize = shape.iter().product::<usize>() * dtype.size();
        let mut data = bytes(seed, n);
        if dtype == DType::Bool {
            data.iter_mut().for_each(|b| *b &= 1);
        }
        RawTensor::new(name, dtype, shape.to_vec(), data)
    }

    /// A file from a header string (padded to 8 like the writer) and a data section.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.as_bytes().to_vec();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out
    }

    fn malformed(bytes: &[u8]) -> Malformed {
        match load_bytes(bytes) {
            Ok(t) => panic!("expected an error, loaded {t:?}"),
            Err(e) => e.malformed().unwrap_or_else(|| panic!("expected Malformed, got {e}")).clone(),
        }
    }

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "scorch_safetensors_{tag}_{}_{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    // ---- round trips ------------------------------------------------------------------

    #[test]
    fn round_trip_every_dtype_and_shape() {
        let shapes: [&[usize]; 5] = [&[], &[0], &[3], &[2, 0, 3], &[2, 3, 4]];
        let mut tensors = Vec::new();
        for (i, dtype) in DType::ALL.into_iter().enumerate() {
            for (j, shape) in shapes.iter().enumerate() {
                let name = format!("{}_{j}", dtype_to_safetensors(dtype).to_lowercase());
                tensors.push(tensor(&name, dtype, shape, (i * 10 + j) as u64));
            }
        }
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        meta.insert("quote\"and\\slash\n".to_string(), "ünïcödé ✓".to_string());

        let dir = scratch_dir("roundtrip");
        let path = dir.join("all.safetensors");
        save(&path, &tensors, Some(&meta)).unwrap();
        let (loaded, loaded_meta) = load_with_metadata(&path).unwrap();
        let mut expected = tensors.clone();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(loaded, expected);
        assert_eq!(loaded_meta, Some(meta.clone()));
        assert_eq!(load(&path).unwrap(), expected);

        // In-memory variant writes the same bytes.
        let bytes = save_to_bytes(&tensors, Some(&meta)).unwrap();
        assert_eq!(bytes, fs::read(&path).unwrap());
        // Saving the loaded tensors (different input order) reproduces the file.
        assert_eq!(save_to_bytes(&loaded, Some(&meta)).unwrap(), bytes);

        // Each tensor's data is aligned to its element size within the file.
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(header_len % 8, 0);
        let parsed: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        for t in &tensors {
            let begin = parsed[&t.name]["data_offsets"][0].as_u64().unwrap() as usize;
            assert_eq!((8 + header_len + begin) % t.dtype.size(), 0, "{}", t.name);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metadata_absent_empty_and_present() {
        let t = [tensor("x", DType::F32, &[2], 1)];
        let (_, m) = load_bytes_with_metadata(&save_to_bytes(&t, None).unwrap()).unwrap();
        assert_eq!(m, None);
        let empty = BTreeMap::new();
        let bytes = save_to_bytes(&t, Some(&empty)).unwrap();
        assert!(bytes[8..].starts_with(br#"{"__metadata__":{},"#));
        assert_eq!(load_bytes_with_metadata(&bytes).unwrap().1, Some(empty));
        // `null` metadata is read as absent, like the reference implementation.
        let f = file(r#"{"__metadata__":null}"#, &[]);
        assert_eq!(load_bytes_with_metadata(&f).unwrap(), (vec![], None));
    }

    #[test]
    fn empty_file_round_trip() {
        let bytes = save_to_bytes(&[], None).unwrap();
        assert_eq!(bytes, b"\x08\0\0\0\0\0\0\0{}      ");
        assert_eq!(load_bytes(&bytes).unwrap(), vec![]);
    }

    // ---- byte-exact fixtures ----------------------------------------------------------

    /// A file built by hand from the format spec: 8-byte LE header length, compact JSON
    /// header (metadata first, then tensors in writer order: I64, F32, F16, BOOL), padded
    /// with spaces to a multiple of 8, then the data.
    #[test]
    fn hand_built_fixture_is_byte_exact() {
        let header = concat!(
            r#"{"__metadata__":{"format":"pt"},"#,
            r#""step":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"#,
            r#""bias":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"#,
            r#""empty":{"dtype":"F16","shape":[0,4],"data_offsets":[16,16]},"#,
            r#""valid":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]}}"#,
        );
        assert_eq!(header.len(), 265); // padded with 7 spaces to 272 = 0x110
        let mut expected = vec![0x10, 0x01, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(header.as_bytes());
        expected.extend_from_slice(b"       ");
        expected.extend_from_slice(&[42, 0, 0, 0, 0, 0, 0, 0]); // step = 42i64
        expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x3F]); // bias[0] = 0.5f32
        expected.extend_from_slice(&[0x00, 0x00, 0x80, 0xBF]); // bias[1] = -1.0f32
        expected.extend_from_slice(&[1, 0, 1]); // valid

        let tensors = vec![
            RawTensor::new("valid", DType::Bool, vec![3], vec![1, 0, 1]),
            RawTensor::new("bias", DType::F32, vec![2], [0.5f32, -1.0].iter().flat_map(|v| v.to_le_bytes()).collect()),
            RawTensor::new("empty", DType::F16, vec![0, 4], vec![]),
            RawTensor::new("step", DType::I64, vec![], 42i64.to_le_bytes().to_vec()),
        ];
        let meta: BTreeMap<String, String> = [("format".into(), "pt".into())].into();

        let dir = scratch_dir("fixture");
        let path = dir.join("hand.safetensors");
        save(&path, &tensors, Some(&meta)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), expected);

        fs::write(&path, &expected).unwrap();
        let (loaded, loaded_meta) = load_with_metadata(&path).unwrap();
        let mut sorted = tensors.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(loaded, sorted);
        assert_eq!(loaded_meta, Some(meta));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// `tests/fixtures/python_written.safetensors` was written by Python `safetensors`
    /// 0.8.0 with numpy 2.4 (one metadata key only: Python writes several in hash order,
    /// which no other writer can reproduce):
    ///
    /// ```python
    /// import numpy as np
    /// from safetensors.numpy import save_file
    /// save_file({
    ///     "f32": np.array([[1.5, -2.0, 3.25], [0.0, -0.0, 1e-3]], dtype=np.float32),
    ///     "f64": np.array([np.pi, -np.e], dtype=np.float64),
    ///     "f16": np.array([1.0, -0.5, 65504.0], dtype=np.float16),
    ///     "i64": np.array(-1234567890123, dtype=np.int64),  # 0-d
    ///     "i32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
    ///     "u8": np.array([0, 7, 255], dtype=np.uint8),
    ///     "bool": np.array([True, False, True, True]),
    ///     "empty": np.zeros((0, 5), dtype=np.float32),
    /// }, "python_written.safetensors", metadata={"format": "np"})
    /// ```
    #[test]
    fn python_written_fixture() {
        const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/python_written.safetensors");
        let (tensors, meta) = load_bytes_with_metadata(FIXTURE).unwrap();
        let meta = meta.unwrap();
        assert_eq!(meta, BTreeMap::from([("format".to_string(), "np".to_string())]));
        let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["bool", "empty", "f16", "f32", "f64", "i32", "i64", "u8"]);
        let get = |n: &str| tensors.iter().find(|t| t.name == n).unwrap();

        let f32s: Vec<f32> =
            get("f32").data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(get("f32").shape, [2, 3]);
        assert_eq!(f32s, [1.5, -2.0, 3.25, 0.0, -0.0, 1e-3]);
        let f64s: Vec<f64> =
            get("f64").data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(f64s, [std::f64::consts::PI, -std::f64::consts::E]);
        let f16s: Vec<f32> =
            get("f16").data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        assert_eq!(f16s, [1.0, -0.5, 65504.0]);
        assert_eq!(get("i64").shape, Vec::<usize>::new());
        assert_eq!(get("i64").data, (-1234567890123i64).to_le_bytes());
        let i32s: Vec<i32> =
            get("i32").data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!((get("i32").shape.clone(), i32s), (vec![2, 3], vec![-3, -2, -1, 0, 1, 2]));
        assert_eq!(get("u8").data, [0, 7, 255]);
        assert_eq!((get("bool").dtype, get("bool").data.clone()), (DType::Bool, vec![1, 0, 1, 1]));
        assert_eq!((get("empty").shape.clone(), get("empty").data.len()), (vec![0, 5], 0));

        // Our writer reproduces Python's file byte for byte.
        assert_eq!(save_to_bytes(&tensors, Some(&meta)).unwrap(), FIXTURE);
    }

    // ---- malformed inputs -------------------------------------------------------------

    const ONE: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

    #[test]
    fn rejects_short_and_bad_header_length() {
        for n in 0..8 {
            assert_eq!(malformed(&vec![0; n]), Malformed::TooShort { len: n });
        }
        let mut f = file(ONE, &[0; 8]);
        f[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(malformed(&f), Malformed::HeaderTooLarge { header_len: u64::MAX });
        f[..8].copy_from_slice(&(MAX_HEADER_LEN + 1).to_le_bytes());
        assert!(matches!(malformed(&f), Malformed::HeaderTooLarge { .. }));
        let avail = f.len() - 8;
        f[..8].copy_from_slice(&(avail as u64 + 1).to_le_bytes());
        assert_eq!(malformed(&f), Malformed::HeaderPastEnd { header_len: avail as u64 + 1, available: avail });
        // Header length 0: the empty string is not JSON.
        assert!(matches!(malformed(&[0; 8]), Malformed::HeaderNotJson { .. }));
    }

    #[test]
    fn rejects_bad_header_text() {
        let mut f = file(ONE, &[0; 8]);
        f[10] = 0xFF;
        assert_eq!(malformed(&f), Malformed::HeaderNotUtf8 { valid_up_to: 2 });
        assert!(matches!(malformed(&file(r#"{"a":"#, &[])), Malformed::HeaderNotJson { .. }));
        assert!(matches!(malformed(&file(r#"{} x"#, &[])), Malformed::HeaderNotJson { .. }));
        assert!(matches!(malformed(&file("\0\0\0\0\0\0\0\0", &[])), Malformed::HeaderNotJson { .. }));
        for (h, found) in
            [("[]", "an array"), ("3", "a number"), ("\"s\"", "a string"), ("null", "null"), ("true", "a boolean")]
        {
            assert_eq!(malformed(&file(h, &[])), Malformed::HeaderNotObject { found }, "{h}");
        }
        // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
        let deep = format!(r#"{{"a":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(malformed(&file(&deep, &[])), Malformed::HeaderNotJson { .. }));
    }

    #[test]
    fn rejects_duplicates_and_bad_metadata() {
        let h = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        assert_eq!(malformed(&file(h, &[1, 2])), Malformed::DuplicateKey { name: "a".into() });
        let h = r#"{"__metadata__":{},"__metadata__":{}}"#;
        assert_eq!(malformed(&file(h, &[])), Malformed::DuplicateKey { name: "__metadata__".into() });
        // Same key spelled with an escape.
        let h = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"\u0061":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        assert_eq!(malformed(&file(h, &[1, 2])), Malformed::DuplicateKey { name: "a".into() });
        // Repeated fields inside an entry or the metadata are ambiguous too.
        let h = r#"{"a":{"dtype":"U8","dtype":"I32","shape":[1],"data_offsets":[0,1]}}"#;
        assert_eq!(malformed(&file(h, &[1])), Malformed::DuplicateKey { name: "dtype".into() });
        let h = r#"{"__metadata__":{"k":"x","k":"y"}}"#;
        assert_eq!(malformed(&file(h, &[])), Malformed::DuplicateKey { name: "k".into() });
        // Keys and values with quotes, commas and braces inside strings are not repeats.
        let h = r#"{"__metadata__":{"k":"x\",\"k\":{","k2":"[,]"},"x,\"{":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"e":[{"a":1},{"a":2}]}}"#;
        let (t, m) = load_bytes_with_metadata(&file(h, &[5])).unwrap();
        assert_eq!((t[0].name.as_str(), m.unwrap()["k"].as_str()), ("x,\"{", "x\",\"k\":{"));
        for h in [
            r#"{"__metadata__":[]}"#,
            r#"{"__metadata__":"x"}"#,
            r#"{"__metadata__":{"k":1}}"#,
            r#"{"__metadata__":{"k":null}}"#,
        ] {
            assert!(matches!(malformed(&file(h, &[])), Malformed::BadMetadata { .. }), "{h}");
        }
    }

    #[test]
    fn rejects_bad_entries() {
        let t = |tensor: &str| tensor.to_string();
        let cases: Vec<(&str, usize, Malformed)> = vec![
            (r#"{"a":[]}"#, 0, Malformed::EntryNotObject { tensor: t("a"), found: "an array" }),
            (
                r#"{"a":{"shape":[],"data_offsets":[0,4]}}"#,
                4,
                Malformed::MissingField { tensor: t("a"), field: "dtype" },
            ),
            (
                r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#,
                4,
                Malformed::MissingField { tensor: t("a"), field: "shape" },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[]}}"#,
                4,
                Malformed::MissingField { tensor: t("a"), field: "data_offsets" },
            ),
            (
                r#"{"a":{"dtype":5,"shape":[],"data_offsets":[0,4]}}"#,
                4,
                Malformed::WrongFieldType { tensor: t("a"), field: "dtype", expected: "a string" },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":{},"data_offsets":[0,4]}}"#,
                4,
                Malformed::WrongFieldType {
                    tensor: t("a"),
                    field: "shape",
                    expected: "an array of non-negative integers",
                },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                4,
                Malformed::WrongFieldType {
                    tensor: t("a"),
                    field: "shape",
                    expected: "an array of non-negative integers",
                },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}"#,
                4,
                Malformed::WrongFieldType {
                    tensor: t("a"),
                    field: "shape",
                    expected: "an array of non-negative integers",
                },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0]}}"#,
                4,
                Malformed::WrongFieldType {
                    tensor: t("a"),
                    field: "data_offsets",
                    expected: "an array of two non-negative integers [begin, end]",
                },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4,8]}}"#,
                4,
                Malformed::WrongFieldType {
                    tensor: t("a"),
                    field: "data_offsets",
                    expected: "an array of two non-negative integers [begin, end]",
                },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,"4"]}}"#,
                4,
                Malformed::WrongFieldType {
                    tensor: t("a"),
                    field: "data_offsets",
                    expected: "an array of two non-negative integers [begin, end]",
                },
            ),
            (
                r#"{"a":{"dtype":"I8","shape":[],"data_offsets":[0,1]}}"#,
                1,
                Malformed::UnsupportedDtype { tensor: t("a"), dtype: t("I8") },
            ),
            (
                r#"{"a":{"dtype":"f32","shape":[],"data_offsets":[0,4]}}"#,
                4,
                Malformed::UnsupportedDtype { tensor: t("a"), dtype: t("f32") },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#,
                0,
                Malformed::ShapeOverflow { tensor: t("a"), shape: vec![1 << 32, 1 << 32], dtype: DType::F32 },
            ),
            // Zero elements, but strides would overflow: rejected too.
            (
                r#"{"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#,
                0,
                Malformed::ShapeOverflow { tensor: t("a"), shape: vec![0, 1 << 32, 1 << 32], dtype: DType::U8 },
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}}"#,
                2,
                Malformed::OffsetsReversed { tensor: t("a"), begin: 2, end: 1 },
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[4,5]}}"#,
                4,
                Malformed::OffsetsOutOfRange { tensor: t("a"), begin: 4, end: 5, data_len: 4 },
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,18446744073709551615]}}"#,
                4,
                Malformed::OffsetsOutOfRange { tensor: t("a"), begin: u64::MAX, end: u64::MAX, data_len: 4 },
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                4,
                Malformed::ByteLengthMismatch {
                    tensor: t("a"),
                    dtype: DType::F32,
                    shape: vec![2],
                    expected: 8,
                    begin: 0,
                    end: 4,
                },
            ),
        ];
        for (h, n, want) in cases {
            assert_eq!(malformed(&file(h, &vec![0; n])), want, "{h}");
        }
    }

    #[test]
    fn rejects_overlaps_gaps_and_trailing_bytes() {
        let u8s = |spec: &[(&str, u64, u64)]| {
            let body: Vec<String> = spec
                .iter()
                .map(|(n, b, e)| format!(r#""{n}":{{"dtype":"U8","shape":[{}],"data_offsets":[{b},{e}]}}"#, e - b))
                .collect();
            format!("{{{}}}", body.join(","))
        };
        let overlap = u8s(&[("a", 0, 4), ("b", 2, 6)]);
        assert_eq!(
            malformed(&file(&overlap, &[0; 6])),
            Malformed::Overlap { first: "a".into(), second: "b".into(), at: 2 }
        );
        let same = u8s(&[("a", 0, 4), ("b", 0, 4)]);
        assert!(matches!(malformed(&file(&same, &[0; 4])), Malformed::Overlap { .. }));
        let inside = u8s(&[("a", 0, 4), ("z", 2, 2)]);
        assert!(matches!(malformed(&file(&inside, &[0; 4])), Malformed::Overlap { .. }));
        let gap = u8s(&[("a", 0, 2), ("b", 3, 5)]);
        assert_eq!(malformed(&file(&gap, &[0; 5])), Malformed::Gap { tensor: "b".into(), at: 2, len: 1 });
        let leading = u8s(&[("a", 1, 3)]);
        assert_eq!(malformed(&file(&leading, &[0; 3])), Malformed::Gap { tensor: "a".into(), at: 0, len: 1 });
        let trailing = u8s(&[("a", 0, 2)]);
        assert_eq!(malformed(&file(&trailing, &[0; 3])), Malformed::TrailingBytes { covered: 2, data_len: 3 });
        assert_eq!(malformed(&file("{}", &[0])), Malformed::TrailingBytes { covered: 0, data_len: 1 });
        // Valid: any entry order in the header, empty tensors at boundaries.
        let ok = u8s(&[("c", 4, 6), ("e", 6, 6), ("a", 0, 4), ("z", 0, 0), ("y", 4, 4)]);
        let loaded = load_bytes(&file(&ok, &[1, 2, 3, 4, 5, 6])).unwrap();
        let summary: Vec<(&str, &[u8])> = loaded.iter().map(|t| (t.name.as_str(), &t.data[..])).collect();
        assert_eq!(summary, [("a", &[1, 2, 3, 4][..]), ("c", &[5, 6]), ("e", &[]), ("y", &[]), ("z", &[])]);
    }

    #[test]
    fn tolerates_unknown_fields_and_leading_whitespace() {
        let h = r#"  {"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":[1,{}]}}"#;
        assert_eq!(load_bytes(&file(h, &[9])).unwrap(), vec![RawTensor::new("a", DType::U8, vec![1], vec![9])]);
    }

    #[test]
    fn load_errors_name_the_file_and_tensor() {
        let dir = scratch_dir("errors");
        let path = dir.join("bad.safetensors");
        fs::write(&path, file(r#"{"weight":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8])).unwrap();
        let err = load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("`weight`") && msg.contains("12 bytes"),
            "{msg}"
        );
        assert!(matches!(err, IoError::Malformed { path: Some(ref p), .. } if *p == path));

        let missing = dir.join("missing.safetensors");
        let err = load(&missing).unwrap_err();
        assert!(matches!(err, IoError::Io { op: "open", .. }));
        assert!(err.to_string().contains("missing.safetensors"));

        fs::write(&path, b"").unwrap();
        assert_eq!(load(&path).unwrap_err().malformed(), Some(&Malformed::TooShort { len: 0 }));
        fs::remove_dir_all(&dir).unwrap();
    }

    // ---- saving -----------------------------------------------------------------------

    #[test]
    fn save_rejects_bad_input_and_keeps_old_file() {
        let dir = scratch_dir("save");
        let path = dir.join("model.safetensors");
        let good = [tensor("w", DType::F32, &[2], 3)];
        save(&path, &good, None).unwrap();
        let before = fs::read(&path).unwrap();

        let bad_len = RawTensor::new("w", DType::F32, vec![2, 2], vec![0; 15]);
        let err = save(&path, &[bad_len], None).unwrap_err();
        assert_eq!(
            err.invalid_input(),
            Some(&InvalidInput::ByteLength {
                name: "w".into(),
                dtype: DType::F32,
                shape: vec![2, 2],
                expected: 16,
                actual: 15
            })
        );
        assert!(err.to_string().contains("model.safetensors") && err.to_string().contains("`w`"));
        let dup = [tensor("x", DType::U8, &[1], 1), tensor("x", DType::I32, &[], 2)];
        assert_eq!(
            save(&path, &dup, None).unwrap_err().invalid_input(),
            Some(&InvalidInput::DuplicateName { name: "x".into() })
        );
        let reserved = [tensor(METADATA_KEY, DType::U8, &[1], 1)];
        assert!(matches!(
            save(&path, &reserved, None).unwrap_err().invalid_input(),
            Some(InvalidInput::ReservedName { .. })
        ));
        let huge = RawTensor::new("h", DType::F64, vec![usize::MAX, 2, 0], vec![]);
        assert!(matches!(
            save_to_bytes(&[huge], None).unwrap_err().invalid_input(),
            Some(InvalidInput::ShapeOverflow { .. })
        ));

        assert_eq!(fs::read(&path).unwrap(), before);
        // Overwrite works, and no temporary files are left behind.
        let other = [tensor("v", DType::I64, &[3], 4)];
        save(&path, &other, None).unwrap();
        assert_eq!(load(&path).unwrap(), other);
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("model.safetensors")]);
        // A missing directory is an I/O error naming it.
        let err = save(&dir.join("no/such/dir/x.safetensors"), &good, None).unwrap_err();
        assert!(matches!(err, IoError::Io { .. }) && err.to_string().contains("no/such/dir"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
