//! Reader for the IDX format used by MNIST and Fashion-MNIST, plus
//! deterministic shuffling and batching of sample indices.
//!
//! Nothing here depends on the tensor type: images come back as raw `u8`
//! pixels in row-major `[n, rows, cols]` order and labels as `u8` class ids.
//! The engine wraps these into tensors (and normalises pixels) itself.
//!
//! # IDX format
//!
//! An IDX file is a big-endian header followed by the payload:
//!
//! | bytes        | meaning                                           |
//! |--------------|---------------------------------------------------|
//! | `00 00`      | always zero                                       |
//! | `08`         | element type (`0x08` = unsigned byte)             |
//! | `03` / `01`  | number of dimensions (3 for images, 1 for labels) |
//! | 4 × ndims    | each dimension as a big-endian `u32`              |
//! | ...          | `product(dims)` payload bytes                     |
//!
//! Files may be gzip-compressed (as distributed) or raw; the reader sniffs
//! the gzip magic bytes, so the file name does not matter.
//!
//! # Robustness
//!
//! Everything read from a file is validated and reported as a [`DataError`];
//! no file content can cause a panic. A corrupt header cannot trigger a huge
//! allocation: the payload is read through a limit of `declared + 1` bytes
//! into a buffer that only grows as real (decompressed) data arrives, so the
//! declared size is checked against the actual length before anything
//! beyond the actual data is allocated.
//!
//! # Fashion-MNIST location
//!
//! [`load_fmnist`] reads `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`
//! (or the same names without `.gz`) from a directory, by default
//! [`DEFAULT_FMNIST_DIR`] as installed by the Debian package
//! `dataset-fashion-mnist`; [`fmnist_dir`] honours the `SCORCH_FMNIST_DIR`
//! environment variable.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// Directory where the Debian package `dataset-fashion-mnist` installs the data.
pub const DEFAULT_FMNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Environment variable that overrides [`DEFAULT_FMNIST_DIR`].
pub const FMNIST_DIR_ENV: &str = "SCORCH_FMNIST_DIR";

/// Number of classes in MNIST and Fashion-MNIST; valid labels are `0..NUM_CLASSES`.
pub const NUM_CLASSES: usize = 10;

/// IDX magic number of a 3-d unsigned-byte array (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;

/// IDX magic number of a 1-d unsigned-byte array (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Hint appended to "not found" errors.
const INSTALL_HINT: &str = "install it with `apt-get install dataset-fashion-mnist` or set SCORCH_FMNIST_DIR";

/// First two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Upper bound on the up-front buffer reservation for a payload; beyond it the
/// buffer grows only as data actually arrives.
const PREALLOC_LIMIT: usize = 1 << 20;

/// Errors from reading IDX files or locating the dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset directory does not exist (or is not a directory).
    #[error("dataset directory {} not found or not a directory; {INSTALL_HINT}", path.display())]
    MissingDir {
        /// The directory that was looked up.
        path: PathBuf,
    },

    /// A data file does not exist.
    #[error("data file {} not found; {INSTALL_HINT}", path.display())]
    MissingFile {
        /// The file that was looked up (for [`load_fmnist`], the `.gz` name;
        /// the uncompressed name is accepted as well).
        path: PathBuf,
    },

    /// An I/O or decompression error other than "not found" / "truncated".
    #[error("failed to read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The file does not start with the expected IDX magic number.
    #[error(
        "{}: bad magic number 0x{found:08x}, expected 0x{expected:08x} (not an IDX {what} file)",
        path.display()
    )]
    BadMagic {
        /// The file being read.
        path: PathBuf,
        /// The magic number found in the file.
        found: u32,
        /// The magic number required.
        expected: u32,
        /// What kind of file was expected (`"images"` or `"labels"`).
        what: &'static str,
    },

    /// The file ends before the header, or the payload it declares, is complete.
    #[error(
        "{}: truncated: needs {expected} bytes (uncompressed) but only {found} are present",
        path.display()
    )]
    Truncated {
        /// The file being read.
        path: PathBuf,
        /// Total bytes (header + payload) the file should contain.
        expected: u64,
        /// Bytes actually available.
        found: u64,
    },

    /// The file holds more data than its header declares.
    #[error(
        "{}: trailing data: header declares {expected} bytes in total but the file is longer",
        path.display()
    )]
    TrailingData {
        /// The file being read.
        path: PathBuf,
        /// Total bytes (header + payload) the header declares.
        expected: u64,
    },

    /// The header declares dimensions that cannot describe a valid array.
    #[error("{}: implausible header dimensions {dims:?}: {reason}", path.display())]
    BadDims {
        /// The file being read.
        path: PathBuf,
        /// The dimensions as declared in the header.
        dims: Vec<u32>,
        /// Why they were rejected.
        reason: &'static str,
    },

    /// The image and label files disagree on the number of samples.
    #[error(
        "count mismatch: {} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Number of images it declares.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of labels it declares.
        labels: usize,
    },

    /// A label is not a valid class id (`>= NUM_CLASSES`).
    #[error(
        "{}: label {label} at index {index} is out of range (expected < {NUM_CLASSES})",
        path.display()
    )]
    BadLabel {
        /// The labels file.
        path: PathBuf,
        /// Index of the first offending label.
        index: usize,
        /// Its value.
        label: u8,
    },
}

/// Which half of the dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split (`train-*`, 60 000 samples for (Fashion-)MNIST).
    Train,
    /// The test split (`t10k-*`, 10 000 samples for (Fashion-)MNIST).
    Test,
}

impl Split {
    /// File-name prefix of this split: `"train"` or `"t10k"`.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// A stack of `n` grayscale `rows × cols` images, row-major, one byte per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// `n * rows * cols` pixels, image after image, each image row-major.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Pixels per image (`rows * cols`).
    pub fn image_size(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= self.n`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.n, "image index {i} out of range for {} images", self.n);
        let size = self.image_size();
        &self.pixels[i * size..(i + 1) * size]
    }
}

/// Images together with their class labels (`labels.len() == images.n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledImages {
    /// The images.
    pub images: IdxImages,
    /// One label per image, each `< NUM_CLASSES`.
    pub labels: Vec<u8>,
}

impl LabeledImages {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The Fashion-MNIST directory: `$SCORCH_FMNIST_DIR` if set and non-empty,
/// otherwise [`DEFAULT_FMNIST_DIR`].
#[must_use]
pub fn fmnist_dir() -> PathBuf {
    dir_from_env_value(std::env::var_os(FMNIST_DIR_ENV))
}

/// [`fmnist_dir`] given the environment variable's value (split out for testing).
fn dir_from_env_value(value: Option<OsString>) -> PathBuf {
    match value {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_FMNIST_DIR),
    }
}

/// Loads one split of Fashion-MNIST (or MNIST, which uses the same layout)
/// from `dir`.
///
/// Reads `{prefix}-images-idx3-ubyte.gz` and `{prefix}-labels-idx1-ubyte.gz`
/// (falling back to the names without `.gz`), where `prefix` is
/// [`Split::file_prefix`]. Checks that both files hold the same number of
/// samples and that every label is `< NUM_CLASSES`.
///
/// # Errors
/// [`DataError::MissingDir`] / [`DataError::MissingFile`] if the data is not
/// there, [`DataError::CountMismatch`] / [`DataError::BadLabel`] if the files
/// disagree or a label is invalid, and any error of [`read_idx_images`] /
/// [`read_idx_labels`].
pub fn load_fmnist(dir: &Path, split: Split) -> Result<LabeledImages, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingDir { path: dir.to_path_buf() });
    }
    let prefix = split.file_prefix();
    let images_path = find_data_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_data_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;

    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;

    if images.n != labels.len() {
        return Err(DataError::CountMismatch { images_path, images: images.n, labels_path, labels: labels.len() });
    }
    if let Some(index) = labels.iter().position(|&l| usize::from(l) >= NUM_CLASSES) {
        return Err(DataError::BadLabel { path: labels_path, index, label: labels[index] });
    }
    Ok(LabeledImages { images, labels })
}

/// `dir/{stem}.gz` if it exists, else `dir/{stem}` if it exists, else
/// [`DataError::MissingFile`] naming the `.gz` path.
fn find_data_file(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let raw = dir.join(stem);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(DataError::MissingFile { path: gz })
}

/// Reads an IDX3 unsigned-byte image file (gzip-compressed or raw).
///
/// Does not check the image size, so MNIST-like data of any resolution loads.
///
/// # Errors
/// [`DataError::MissingFile`] or [`DataError::Io`] if the file cannot be
/// read or decompressed; [`DataError::BadMagic`], [`DataError::BadDims`],
/// [`DataError::Truncated`] or [`DataError::TrailingData`] if its content is
/// not a consistent IDX3 unsigned-byte array.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages, DataError> {
    let path = path.as_ref();
    let (dims, pixels) = read_idx(path, IDX_IMAGES_MAGIC, "images")?;
    let [n, rows, cols] = [dims[0], dims[1], dims[2]].map(to_usize);
    Ok(IdxImages { n, rows, cols, pixels })
}

/// Reads an IDX1 unsigned-byte label file (gzip-compressed or raw).
///
/// Label values are returned as stored; [`load_fmnist`] additionally checks
/// that they are `< NUM_CLASSES`.
///
/// # Errors
/// As [`read_idx_images`], for an IDX1 unsigned-byte array.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>, DataError> {
    let (_dims, labels) = read_idx(path.as_ref(), IDX_LABELS_MAGIC, "labels")?;
    Ok(labels)
}

/// `u32 -> usize`; lossless on every platform with at least 32-bit pointers.
/// Callers only use it after the payload size has been checked to fit `usize`.
fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Reads an unsigned-byte IDX file whose magic number must be `magic`
/// (the low byte of which is the number of dimensions). Returns the
/// dimensions and the payload, whose length equals their product.
fn read_idx(path: &Path, magic: u32, what: &'static str) -> Result<(Vec<u32>, Vec<u8>), DataError> {
    let io_err = |source: io::Error| DataError::Io { path: path.to_path_buf(), source };
    let mut reader = open_maybe_gz(path)?;

    // Magic number.
    let mut word = [0u8; 4];
    let got = read_up_to(&mut reader, &mut word).map_err(io_err)?;
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 * (1 + ndims) as u64;
    if got < word.len() {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected: header_len, found: got as u64 });
    }
    let found = u32::from_be_bytes(word);
    if found != magic {
        return Err(DataError::BadMagic { path: path.to_path_buf(), found, expected: magic, what });
    }

    // Dimensions.
    let mut dims = Vec::with_capacity(ndims);
    for i in 0..ndims {
        let got = read_up_to(&mut reader, &mut word).map_err(io_err)?;
        if got < word.len() {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                expected: header_len,
                found: 4 * (1 + i as u64) + got as u64,
            });
        }
        dims.push(u32::from_be_bytes(word));
    }
    let bad_dims = |reason| DataError::BadDims { path: path.to_path_buf(), dims: dims.clone(), reason };
    // Every dimension but the leading (sample-count) one must be non-zero.
    if dims.iter().skip(1).any(|&d| d == 0) {
        return Err(bad_dims("zero-sized sample dimension"));
    }
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .ok_or_else(|| bad_dims("total size overflows 64 bits"))?;
    if usize::try_from(payload).is_err() {
        return Err(bad_dims("total size does not fit in memory on this platform"));
    }
    // Also guarantees that `payload + 1` below cannot overflow.
    let expected_total = header_len.checked_add(payload).ok_or_else(|| bad_dims("total size overflows 64 bits"))?;

    // Payload: read at most `payload + 1` bytes; the buffer grows with the
    // data actually present, so a lying header cannot force a huge allocation.
    let capacity = usize::try_from(payload.min(PREALLOC_LIMIT as u64)).unwrap_or(0);
    let mut data = Vec::with_capacity(capacity);
    match reader.take(payload + 1).read_to_end(&mut data) {
        Ok(_) => {}
        // A gzip stream that ends early reports `UnexpectedEof`.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                expected: expected_total,
                found: header_len + data.len() as u64,
            });
        }
        Err(e) => return Err(io_err(e)),
    }
    let got = data.len() as u64;
    if got < payload {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: expected_total,
            found: header_len + got,
        });
    }
    if got > payload {
        return Err(DataError::TrailingData { path: path.to_path_buf(), expected: expected_total });
    }
    Ok((dims, data))
}

/// Opens `path`, transparently decompressing it if it starts with the gzip
/// magic bytes (multi-member streams are supported).
fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            DataError::MissingFile { path: path.to_path_buf() }
        } else {
            DataError::Io { path: path.to_path_buf(), source }
        }
    })?;
    let mut reader = BufReader::new(file);
    let is_gz = {
        let head = reader.fill_buf().map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        // `fill_buf` on a regular file returns its first buffer-full, so this
        // sees both magic bytes whenever the file has them.
        head.starts_with(&GZIP_MAGIC)
    };
    Ok(if is_gz { Box::new(MultiGzDecoder::new(reader)) } else { Box::new(reader) })
}

/// Reads into `buf` until it is full or the reader hits EOF; returns the
/// number of bytes read (less than `buf.len()` only at EOF).
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

// ---------------------------------------------------------------------------
// Shuffling and batching
// ---------------------------------------------------------------------------

/// `SplitMix64` (Steele, Lea & Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014; constants as in Vigna's reference `splitmix64.c`).
///
/// The state is a 64-bit counter advanced by the golden-ratio increment
/// `0x9E3779B97F4A7C15`; each output is the counter passed through a
/// bijective avalanche mixer. It uses only wrapping `u64` arithmetic, so the
/// sequence is identical on every platform and word size. It is not
/// cryptographic; it is plenty for shuffling data.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The `SplitMix64` output mixer (a bijection on `u64`).
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        Self::mix(self.state)
    }

    /// Uniform integer in `0..bound` (`bound > 0`), without modulo bias
    /// (Lemire's multiply-shift with rejection).
    fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        // Smallest low-half value that is accepted: 2^64 mod bound.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(bound);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Deterministic per-epoch shuffler of sample indices.
///
/// The permutation for `(seed, epoch)` is a Fisher–Yates shuffle driven by
/// [SplitMix64](https://prng.di.unimi.it/splitmix64.c) seeded from both
/// values, so it is reproducible across runs, platforms and word sizes, and
/// different epochs get independent-looking orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shuffler {
    seed: u64,
}

impl Shuffler {
    /// A shuffler with the given base seed.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The base seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Generator for one epoch. Both inputs go through the mixer, so
    /// different `(seed, epoch)` pairs start at unrelated points of the
    /// SplitMix64 sequence (plain `seed + epoch` would give shifted copies).
    fn rng(&self, epoch: u64) -> SplitMix64 {
        let epoch_key = SplitMix64::mix(epoch ^ 0x5CA1_AB1E_D00D_F00D);
        SplitMix64::new(SplitMix64::mix(self.seed ^ epoch_key))
    }

    /// Shuffles `items` in place with the permutation for `epoch`.
    pub fn shuffle<T>(&self, items: &mut [T], epoch: u64) {
        let mut rng = self.rng(epoch);
        for i in (1..items.len()).rev() {
            // `i + 1 <= items.len()`, so both conversions are lossless.
            let j = rng.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A permutation of `0..n` for `epoch`.
    #[must_use]
    pub fn indices(&self, n: usize, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        self.shuffle(&mut idx, epoch);
        idx
    }
}

/// A permutation of `0..n`, deterministic in `(seed, epoch)`;
/// same as `Shuffler::new(seed).indices(n, epoch)`.
#[must_use]
pub fn shuffled_indices(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    Shuffler::new(seed).indices(n, epoch)
}

/// Splits `indices` into consecutive batches of `batch` indices. The last
/// batch is shorter when `indices.len()` is not a multiple of `batch`, unless
/// `drop_last` is set, in which case it is omitted.
///
/// # Panics
/// If `batch == 0`.
pub fn batches(
    indices: &[usize],
    batch: usize,
    drop_last: bool,
) -> impl ExactSizeIterator<Item = &[usize]> + DoubleEndedIterator {
    assert!(batch > 0, "batch size must be positive");
    let len = if drop_last { indices.len() / batch * batch } else { indices.len() };
    indices[..len].chunks(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "scorch-idx-{tag}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        /// Writes `bytes` to `name`, gzip-compressed if `gz`; returns the path.
        fn write(&self, name: &str, bytes: &[u8], gz: bool) -> PathBuf {
            let path = self.0.join(name);
            let data = if gz { gzip(bytes) } else { bytes.to_vec() };
            std::fs::write(&path, data).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn idx_bytes(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// `n` images of 2×3 pixels with pixel value `(7 * k) % 256`.
    fn images_file(n: u32) -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..n as usize * 6).map(|k| (7 * k % 256) as u8).collect();
        (idx_bytes(IDX_IMAGES_MAGIC, &[n, 2, 3], &pixels), pixels)
    }

    fn labels_file(labels: &[u8]) -> Vec<u8> {
        idx_bytes(IDX_LABELS_MAGIC, &[labels.len() as u32], labels)
    }

    /// Writes a synthetic test split (images and labels) into `dir`.
    fn write_split(dir: &TempDir, images: &[u8], labels: &[u8], gz: bool) {
        let ext = if gz { ".gz" } else { "" };
        dir.write(&format!("t10k-images-idx3-ubyte{ext}"), images, gz);
        dir.write(&format!("t10k-labels-idx1-ubyte{ext}"), labels, gz);
    }

    #[test]
    fn roundtrip_raw_and_gzip() {
        let dir = TempDir::new("roundtrip");
        let (img, pixels) = images_file(4);
        let lab = labels_file(&[0, 9, 3, 3]);
        for gz in [false, true] {
            // The name does not decide the format: content is sniffed.
            let ip = dir.write(&format!("img-{gz}"), &img, gz);
            let lp = dir.write(&format!("lab-{gz}.gz"), &lab, gz);
            let images = read_idx_images(&ip).unwrap();
            assert_eq!((images.n, images.rows, images.cols), (4, 2, 3));
            assert_eq!(images.pixels, pixels);
            assert_eq!(images.image_size(), 6);
            assert_eq!(images.image(1), &pixels[6..12]);
            assert_eq!(read_idx_labels(&lp).unwrap(), vec![0, 9, 3, 3]);
        }
    }

    #[test]
    fn load_fmnist_gzip_and_raw_dirs() {
        for gz in [true, false] {
            let dir = TempDir::new("load");
            let (img, pixels) = images_file(3);
            write_split(&dir, &img, &labels_file(&[1, 2, 9]), gz);
            let data = load_fmnist(&dir.0, Split::Test).unwrap();
            assert_eq!(data.len(), 3);
            assert!(!data.is_empty());
            assert_eq!(data.images.pixels, pixels);
            assert_eq!(data.labels, vec![1, 2, 9]);
        }
    }

    #[test]
    fn gzip_multi_member_is_read_whole() {
        let dir = TempDir::new("multi");
        let (img, pixels) = images_file(2);
        let (a, b) = img.split_at(10);
        let mut bytes = gzip(a);
        bytes.extend(gzip(b));
        let path = dir.write("img", &bytes, false);
        assert_eq!(read_idx_images(&path).unwrap().pixels, pixels);
    }

    #[test]
    fn empty_split_is_allowed() {
        let dir = TempDir::new("empty");
        write_split(&dir, &idx_bytes(IDX_IMAGES_MAGIC, &[0, 28, 28], &[]), &labels_file(&[]), true);
        let data = load_fmnist(&dir.0, Split::Test).unwrap();
        assert!(data.is_empty());
        assert_eq!((data.images.rows, data.images.cols), (28, 28));
    }

    #[test]
    fn missing_dir_and_files() {
        let dir = TempDir::new("missing");
        let gone = dir.0.join("nope");
        let err = load_fmnist(&gone, Split::Train).unwrap_err();
        assert!(matches!(&err, DataError::MissingDir { path } if *path == gone), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&gone.display().to_string()), "{msg}");
        assert!(msg.contains("apt-get install dataset-fashion-mnist"), "{msg}");
        assert!(msg.contains("SCORCH_FMNIST_DIR"), "{msg}");

        // Directory exists but has no files.
        let err = load_fmnist(&dir.0, Split::Train).unwrap_err();
        let want = dir.0.join("train-images-idx3-ubyte.gz");
        assert!(matches!(&err, DataError::MissingFile { path } if *path == want), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&want.display().to_string()), "{msg}");
        assert!(msg.contains("apt-get install dataset-fashion-mnist"), "{msg}");

        // Images present, labels missing.
        let (img, _) = images_file(1);
        dir.write("train-images-idx3-ubyte.gz", &img, true);
        let err = load_fmnist(&dir.0, Split::Train).unwrap_err();
        let want = dir.0.join("train-labels-idx1-ubyte.gz");
        assert!(matches!(&err, DataError::MissingFile { path } if *path == want), "{err:?}");

        // Direct reads of a missing file.
        let err = read_idx_labels(dir.0.join("absent")).unwrap_err();
        assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    }

    #[test]
    fn bad_magic() {
        let dir = TempDir::new("magic");
        let (img, _) = images_file(1);
        let lab = labels_file(&[1]);
        for gz in [false, true] {
            // Labels where images are expected and vice versa.
            let p = dir.write(&format!("lab-{gz}"), &lab, gz);
            let err = read_idx_images(&p).unwrap_err();
            assert!(
                matches!(err, DataError::BadMagic { found: IDX_LABELS_MAGIC, expected: IDX_IMAGES_MAGIC, .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("0x00000801"), "{err}");
            let p = dir.write(&format!("img-{gz}"), &img, gz);
            let err = read_idx_labels(&p).unwrap_err();
            assert!(matches!(err, DataError::BadMagic { found: IDX_IMAGES_MAGIC, .. }), "{err:?}");
            // Arbitrary text.
            let p = dir.write(&format!("txt-{gz}"), b"hello, world, not idx", gz);
            let err = read_idx_images(&p).unwrap_err();
            assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
        }
    }

    #[test]
    fn truncated_files() {
        let dir = TempDir::new("trunc");
        let (img, _) = images_file(3); // 16 + 18 bytes
        for gz in [false, true] {
            for cut in [0, 2, 4, 9, 16, 20, img.len() - 1] {
                let p = dir.write(&format!("img-{gz}-{cut}"), &img[..cut], gz);
                let err = read_idx_images(&p).unwrap_err();
                match err {
                    DataError::Truncated { expected, found, .. } => {
                        let expected_total = if cut < 16 { 16 } else { img.len() as u64 };
                        assert_eq!((expected, found), (expected_total, cut as u64), "gz={gz} cut={cut}");
                    }
                    other => panic!("gz={gz} cut={cut}: {other:?}"),
                }
            }
        }
        // A gzip stream cut short (missing its end and trailer).
        let full = gzip(&img);
        let p = dir.write("cut.gz", &full[..full.len() - 10], false);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. } | DataError::Io { .. }), "{err:?}");
        // Labels file cut short.
        let lab = labels_file(&[1, 2, 3, 4]);
        let p = dir.write("lab", &lab[..lab.len() - 2], false);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 12, found: 10, .. }), "{err:?}");
    }

    #[test]
    fn trailing_data() {
        let dir = TempDir::new("trail");
        let mut lab = labels_file(&[1, 2]);
        lab.push(0);
        for gz in [false, true] {
            let p = dir.write(&format!("lab-{gz}"), &lab, gz);
            let err = read_idx_labels(&p).unwrap_err();
            assert!(matches!(err, DataError::TrailingData { expected: 10, .. }), "{err:?}");
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let dir = TempDir::new("corrupt");
        let mut bytes = gzip(&labels_file(&[1, 2, 3]));
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let tail = bytes.len() - 5;
        bytes[tail] ^= 0xff; // also break the CRC / length trailer
        let p = dir.write("lab", &bytes, false);
        assert!(read_idx_labels(&p).is_err());
    }

    #[test]
    fn absurd_dims_do_not_allocate_or_panic() {
        let dir = TempDir::new("dims");
        // Product overflows u64.
        let p = dir.write("overflow", &idx_bytes(IDX_IMAGES_MAGIC, &[u32::MAX; 3], &[1, 2, 3]), true);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(&err, DataError::BadDims { dims, .. } if dims == &[u32::MAX; 3]), "{err:?}");
        // Zero-sized images.
        let p = dir.write("zero", &idx_bytes(IDX_IMAGES_MAGIC, &[5, 0, 28], &[]), false);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::BadDims { .. }), "{err:?}");
        // Exactly u64::MAX bytes: the header + payload total overflows.
        let p = dir.write("max", &idx_bytes(IDX_IMAGES_MAGIC, &[65535, 42_009_217, 6_700_417], &[]), false);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::BadDims { .. }), "{err:?}");
        // Huge but representable (~16 EiB / 4 GiB): must be reported as
        // truncated without trying to allocate the declared size.
        for (name, dims) in [("huge", [u32::MAX, 65536, 65536]), ("big", [1_000_000_000, 28, 28])] {
            let p = dir.write(name, &idx_bytes(IDX_IMAGES_MAGIC, &dims, &[0; 100]), true);
            let err = read_idx_images(&p).unwrap_err();
            assert!(matches!(err, DataError::Truncated { found: 116, .. } | DataError::BadDims { .. }), "{err:?}");
        }
        let p = dir.write("lab", &idx_bytes(IDX_LABELS_MAGIC, &[u32::MAX], &[0; 7]), false);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 4_294_967_303, found: 15, .. }), "{err:?}");
    }

    #[test]
    fn count_mismatch_and_bad_label() {
        let dir = TempDir::new("mismatch");
        let (img, _) = images_file(3);
        write_split(&dir, &img, &labels_file(&[1, 2]), true);
        let err = load_fmnist(&dir.0, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { images: 3, labels: 2, .. }), "{err:?}");

        let dir = TempDir::new("badlabel");
        write_split(&dir, &img, &labels_file(&[1, 10, 200]), false);
        let err = load_fmnist(&dir.0, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::BadLabel { index: 1, label: 10, .. }), "{err:?}");
        assert!(err.to_string().contains("label 10 at index 1"), "{err}");
    }

    #[test]
    fn env_override() {
        assert_eq!(dir_from_env_value(None), PathBuf::from(DEFAULT_FMNIST_DIR));
        assert_eq!(dir_from_env_value(Some(OsString::new())), PathBuf::from(DEFAULT_FMNIST_DIR));
        assert_eq!(dir_from_env_value(Some("/data/fm".into())), PathBuf::from("/data/fm"));
    }

    /// Checks a real (Fashion-)MNIST split if the data is installed.
    fn check_real_split(split: Split, n: usize) {
        let dir = fmnist_dir();
        if !dir.is_dir() {
            println!("skipping real Fashion-MNIST {split:?} test: {} not found", dir.display());
            return;
        }
        let data = load_fmnist(&dir, split).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.images.n, n);
        assert_eq!((data.images.rows, data.images.cols), (28, 28));
        assert_eq!(data.images.pixels.len(), n * 28 * 28);
        assert_eq!(data.labels.len(), n);
        let mut counts = [0usize; NUM_CLASSES];
        for &l in &data.labels {
            counts[usize::from(l)] += 1;
        }
        // Both MNIST variants have every class; Fashion-MNIST is exactly balanced.
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        assert!(data.images.pixels.contains(&255));
        println!("{split:?}: {n} images, class counts {counts:?}");
    }

    #[test]
    fn real_fmnist_test_split() {
        check_real_split(Split::Test, 10_000);
    }

    #[test]
    fn real_fmnist_train_split() {
        check_real_split(Split::Train, 60_000);
    }

    #[test]
    fn shuffle_is_deterministic_permutation() {
        for n in [0, 1, 2, 7, 1000] {
            for epoch in 0..3 {
                let a = shuffled_indices(n, 42, epoch);
                assert_eq!(a, shuffled_indices(n, 42, epoch));
                assert_eq!(a, Shuffler::new(42).indices(n, epoch));
                let mut sorted = a.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            }
        }
        // Different epochs and seeds give different orders.
        let base = shuffled_indices(1000, 42, 0);
        assert_ne!(base, shuffled_indices(1000, 42, 1));
        assert_ne!(base, shuffled_indices(1000, 43, 0));
        assert_ne!(base, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn shuffle_golden_values() {
        // Pin the exact stream so any change to the algorithm is noticed
        // (results must be identical on every platform).
        let mut rng = SplitMix64::new(0);
        // Reference values from Vigna's splitmix64.c with seed 0.
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(shuffled_indices(10, 1, 0), GOLDEN_SHUFFLE.to_vec());
    }

    const GOLDEN_SHUFFLE: [usize; 10] = [9, 8, 2, 4, 5, 1, 7, 3, 6, 0];

    #[test]
    fn shuffle_is_roughly_uniform() {
        // Position of element 0 across many seeds should be spread evenly.
        let n = 8;
        let trials = 8000;
        let mut hits = [0usize; 8];
        for seed in 0..trials {
            let p = shuffled_indices(n, seed, 0);
            hits[p.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        for &h in &hits {
            assert!((800..1200).contains(&h), "{hits:?}");
        }
    }

    #[test]
    fn batching() {
        let idx: Vec<usize> = (0..10).collect();
        let b: Vec<&[usize]> = batches(&idx, 4, false).collect();
        assert_eq!(b, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(batches(&idx, 4, false).len(), 3);
        let b: Vec<&[usize]> = batches(&idx, 4, true).collect();
        assert_eq!(b, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7]]);
        assert_eq!(batches(&idx, 5, true).len(), 2);
        assert_eq!(batches(&idx, 20, true).len(), 0);
        assert_eq!(batches(&idx, 20, false).len(), 1);
        assert_eq!(batches(&[], 3, false).len(), 0);
    }

    #[test]
    #[should_panic(expected = "batch size must be positive")]
    fn zero_batch_panics() {
        let _ = batches(&[1, 2], 0, false);
    }
}
