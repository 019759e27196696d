//! FID: the Fréchet distance between Inception-v3 pool features (2048 per image), with the
//! network pytorch-fid uses — torchvision's Inception3 with the FID blocks of the
//! TensorFlow 2015-12-05 graph (average pools that do not count padding; a max pool in the
//! last block), batch norm in inference form (ε = 0.001).
//!
//! Weights: the standard `pt_inception-2015-12-05-6726825d.pth`, converted by
//! `tools/convert_inception.py` to safetensors under torchvision's names
//! (`Conv2d_1a_3x3.conv.weight`, `Mixed_7c.branch_pool.bn.running_var`, …). scorch cannot
//! download it; a user who has it converts it once. Without it, FD-FMNIST
//! ([`super::fmnist_net`]) is the metric scorch ships.
//!
//! Inputs are images `[N, 1 or 3, H, W]` in [−1, 1]; one channel is repeated to three, and
//! any size is resized to 299 × 299 (bilinear, align_corners = false), as pytorch-fid does
//! with [0, 1] images mapped by 2x − 1. [`Fid`] first rounds images to 8 bits like EDM's
//! `fid.py`, so generated samples are measured as saved PNGs would be.

use super::frechet::{frechet_from_stats, FeatureStats};
use crate::error::{Error, Result};
use crate::params::{Init, ParamPath, ParamStore};
use scorch_engine::safetensors_io;
use scorch_engine::{no_grad, ConvParams, DType, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Width of the pool features.
pub const FEATURES: usize = 2048;
/// Side length the network sees.
pub const RESOLUTION: usize = 299;
const BN_EPS: f64 = 0.001;

/// Convolution without bias, batch norm, ReLU (torchvision's `BasicConv2d`). The batch norm
/// is folded into the convolution at every forward, so loading new weights needs nothing else.
struct BasicConv {
    weight: Tensor,
    gamma: Tensor,
    beta: Tensor,
    mean: Tensor,
    var: Tensor,
    params: ConvParams,
}

impl BasicConv {
    fn new(p: &ParamPath, cin: usize, cout: usize, k: [usize; 2], stride: usize, pad: [usize; 2]) -> Result<BasicConv> {
        let c = p.pp("conv");
        let bn = p.pp("bn");
        Ok(BasicConv {
            weight: c.get_or_init("weight", &[cout, cin, k[0], k[1]], Init::pytorch_weight())?,
            gamma: bn.get_or_init("weight", &[cout], Init::Ones)?,
            beta: bn.get_or_init("bias", &[cout], Init::Zeros)?,
            mean: bn.get_or_init("running_mean", &[cout], Init::Zeros)?,
            var: bn.get_or_init("running_var", &[cout], Init::Ones)?,
            params: ConvParams { stride: [stride; 2], padding: pad, dilation: [1, 1], groups: 1 },
        })
    }

    /// A square `k × k` convolution.
    fn square(p: &ParamPath, cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Result<BasicConv> {
        BasicConv::new(p, cin, cout, [k, k], stride, [pad, pad])
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let cout = self.gamma.numel();
        let scale = self.gamma.div(&self.var.add_scalar(BN_EPS)?.sqrt()?)?;
        let shift = self.beta.sub(&self.mean.mul(&scale)?)?;
        let w = self.weight.mul(&scale.reshape(&[cout, 1, 1, 1])?)?;
        Ok(x.conv2d(&w, Some(&shift), self.params)?.relu()?)
    }
}

/// 3 × 3 average pool, stride 1, padding 1, dividing by the number of real (unpadded)
/// pixels in each window (`count_include_pad=False`).
fn avg3(x: &Tensor) -> Result<Tensor> {
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let ones = Tensor::full_on(&[1, 1, h, w], 1.0, x.dtype(), x.device())?;
    Ok(x.avg_pool2d(3, 1, 1)?.div(&ones.avg_pool2d(3, 1, 1)?)?)
}

fn chain(layers: &[BasicConv], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for l in layers {
        h = l.forward(&h)?;
    }
    Ok(h)
}

/// Mixed_5b–5d (`InceptionA`).
struct BlockA {
    b1: BasicConv,
    b5: [BasicConv; 2],
    b3: [BasicConv; 3],
    pool: BasicConv,
}

impl BlockA {
    fn new(p: &ParamPath, cin: usize, pool: usize) -> Result<BlockA> {
        Ok(BlockA {
            b1: BasicConv::square(&p.pp("branch1x1"), cin, 64, 1, 1, 0)?,
            b5: [
                BasicConv::square(&p.pp("branch5x5_1"), cin, 48, 1, 1, 0)?,
                BasicConv::square(&p.pp("branch5x5_2"), 48, 64, 5, 1, 2)?,
            ],
            b3: [
                BasicConv::square(&p.pp("branch3x3dbl_1"), cin, 64, 1, 1, 0)?,
                BasicConv::square(&p.pp("branch3x3dbl_2"), 64, 96, 3, 1, 1)?,
                BasicConv::square(&p.pp("branch3x3dbl_3"), 96, 96, 3, 1, 1)?,
            ],
            pool: BasicConv::square(&p.pp("branch_pool"), cin, pool, 1, 1, 0)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let parts = [self.b1.forward(x)?, chain(&self.b5, x)?, chain(&self.b3, x)?, self.pool.forward(&avg3(x)?)?];
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// Mixed_6a (`InceptionB`): the 35 → 17 reduction.
struct BlockB {
    b3: BasicConv,
    b3dbl: [BasicConv; 3],
}

impl BlockB {
    fn new(p: &ParamPath, cin: usize) -> Result<BlockB> {
        Ok(BlockB {
            b3: BasicConv::square(&p.pp("branch3x3"), cin, 384, 3, 2, 0)?,
            b3dbl: [
                BasicConv::square(&p.pp("branch3x3dbl_1"), cin, 64, 1, 1, 0)?,
                BasicConv::square(&p.pp("branch3x3dbl_2"), 64, 96, 3, 1, 1)?,
                BasicConv::square(&p.pp("branch3x3dbl_3"), 96, 96, 3, 2, 0)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let parts = [self.b3.forward(x)?, chain(&self.b3dbl, x)?, x.max_pool2d(3, 2, 0)?];
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// 1 × 7 and 7 × 1 convolutions with "same" padding.
fn row7(p: &ParamPath, cin: usize, cout: usize) -> Result<BasicConv> {
    BasicConv::new(p, cin, cout, [1, 7], 1, [0, 3])
}
fn col7(p: &ParamPath, cin: usize, cout: usize) -> Result<BasicConv> {
    BasicConv::new(p, cin, cout, [7, 1], 1, [3, 0])
}

/// Mixed_6b–6e (`InceptionC`), factorised 7 × 7 convolutions.
struct BlockC {
    b1: BasicConv,
    b7: [BasicConv; 3],
    b7dbl: [BasicConv; 5],
    pool: BasicConv,
}

impl BlockC {
    fn new(p: &ParamPath, cin: usize, c7: usize) -> Result<BlockC> {
        let q = |n: &str| p.pp(n);
        Ok(BlockC {
            b1: BasicConv::square(&q("branch1x1"), cin, 192, 1, 1, 0)?,
            b7: [
                BasicConv::square(&q("branch7x7_1"), cin, c7, 1, 1, 0)?,
                row7(&q("branch7x7_2"), c7, c7)?,
                col7(&q("branch7x7_3"), c7, 192)?,
            ],
            b7dbl: [
                BasicConv::square(&q("branch7x7dbl_1"), cin, c7, 1, 1, 0)?,
                col7(&q("branch7x7dbl_2"), c7, c7)?,
                row7(&q("branch7x7dbl_3"), c7, c7)?,
                col7(&q("branch7x7dbl_4"), c7, c7)?,
                row7(&q("branch7x7dbl_5"), c7, 192)?,
            ],
            pool: BasicConv::square(&q("branch_pool"), cin, 192, 1, 1, 0)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let parts = [self.b1.forward(x)?, chain(&self.b7, x)?, chain(&self.b7dbl, x)?, self.pool.forward(&avg3(x)?)?];
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// Mixed_7a (`InceptionD`): the 17 → 8 reduction.
struct BlockD {
    b3: [BasicConv; 2],
    b7x3: [BasicConv; 4],
}

impl BlockD {
    fn new(p: &ParamPath, cin: usize) -> Result<BlockD> {
        let q = |n: &str| p.pp(n);
        Ok(BlockD {
            b3: [
                BasicConv::square(&q("branch3x3_1"), cin, 192, 1, 1, 0)?,
                BasicConv::square(&q("branch3x3_2"), 192, 320, 3, 2, 0)?,
            ],
            b7x3: [
                BasicConv::square(&q("branch7x7x3_1"), cin, 192, 1, 1, 0)?,
                row7(&q("branch7x7x3_2"), 192, 192)?,
                col7(&q("branch7x7x3_3"), 192, 192)?,
                BasicConv::square(&q("branch7x7x3_4"), 192, 192, 3, 2, 0)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let parts = [chain(&self.b3, x)?, chain(&self.b7x3, x)?, x.max_pool2d(3, 2, 0)?];
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// Mixed_7b / 7c (`InceptionE`): split 1 × 3 / 3 × 1 branches. The FID graph pools with an
/// average (not counting padding) in 7b and a max in 7c.
struct BlockE {
    b1: BasicConv,
    b3_1: BasicConv,
    b3_2: [BasicConv; 2],
    dbl_12: [BasicConv; 2],
    dbl_3: [BasicConv; 2],
    pool: BasicConv,
    max_pool: bool,
}

impl BlockE {
    fn new(p: &ParamPath, cin: usize, max_pool: bool) -> Result<BlockE> {
        let q = |n: &str| p.pp(n);
        let split = |a: &str, b: &str| -> Result<[BasicConv; 2]> {
            Ok([
                BasicConv::new(&q(a), 384, 384, [1, 3], 1, [0, 1])?,
                BasicConv::new(&q(b), 384, 384, [3, 1], 1, [1, 0])?,
            ])
        };
        Ok(BlockE {
            b1: BasicConv::square(&q("branch1x1"), cin, 320, 1, 1, 0)?,
            b3_1: BasicConv::square(&q("branch3x3_1"), cin, 384, 1, 1, 0)?,
            b3_2: split("branch3x3_2a", "branch3x3_2b")?,
            dbl_12: [
                BasicConv::square(&q("branch3x3dbl_1"), cin, 448, 1, 1, 0)?,
                BasicConv::square(&q("branch3x3dbl_2"), 448, 384, 3, 1, 1)?,
            ],
            dbl_3: split("branch3x3dbl_3a", "branch3x3dbl_3b")?,
            pool: BasicConv::square(&q("branch_pool"), cin, 192, 1, 1, 0)?,
            max_pool,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.b3_1.forward(x)?;
        let d = chain(&self.dbl_12, x)?;
        let pooled = if self.max_pool { x.max_pool2d(3, 1, 1)? } else { avg3(x)? };
        let parts = [
            self.b1.forward(x)?,
            self.b3_2[0].forward(&b)?,
            self.b3_2[1].forward(&b)?,
            self.dbl_3[0].forward(&d)?,
            self.dbl_3[1].forward(&d)?,
            self.pool.forward(&pooled)?,
        ];
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// The FID Inception-v3 network up to its 2048 pool features.
pub struct InceptionV3 {
    stem: [BasicConv; 5],
    a: [BlockA; 3],
    b: BlockB,
    c: [BlockC; 4],
    d: BlockD,
    e: [BlockE; 2],
    store: ParamStore,
}

impl InceptionV3 {
    /// Builds it under `p` with torchvision's names (PyTorch-default random weights until
    /// loaded; batch norm starts as the identity).
    pub fn new(p: &ParamPath) -> Result<InceptionV3> {
        let q = |n: &str| p.pp(n);
        Ok(InceptionV3 {
            stem: [
                BasicConv::square(&q("Conv2d_1a_3x3"), 3, 32, 3, 2, 0)?,
                BasicConv::square(&q("Conv2d_2a_3x3"), 32, 32, 3, 1, 0)?,
                BasicConv::square(&q("Conv2d_2b_3x3"), 32, 64, 3, 1, 1)?,
                BasicConv::square(&q("Conv2d_3b_1x1"), 64, 80, 1, 1, 0)?,
                BasicConv::square(&q("Conv2d_4a_3x3"), 80, 192, 3, 1, 0)?,
            ],
            a: [
                BlockA::new(&q("Mixed_5b"), 192, 32)?,
                BlockA::new(&q("Mixed_5c"), 256, 64)?,
                BlockA::new(&q("Mixed_5d"), 288, 64)?,
            ],
            b: BlockB::new(&q("Mixed_6a"), 288)?,
            c: [
                BlockC::new(&q("Mixed_6b"), 768, 128)?,
                BlockC::new(&q("Mixed_6c"), 768, 160)?,
                BlockC::new(&q("Mixed_6d"), 768, 160)?,
                BlockC::new(&q("Mixed_6e"), 768, 192)?,
            ],
            d: BlockD::new(&q("Mixed_7a"), 768)?,
            e: [BlockE::new(&q("Mixed_7b"), 1280, false)?, BlockE::new(&q("Mixed_7c"), 2048, true)?],
            store: p.store().clone(),
        })
    }

    /// Loads converted weights (`tools/convert_inception.py`) into an f32 network on the
    /// default device. Every tensor must match by name, shape and dtype.
    pub fn load(path: &Path) -> Result<InceptionV3> {
        if !path.is_file() {
            return Err(Error::Config(format!(
                "Inception weights {} not found: convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth with tools/convert_inception.py",
                path.display()
            )));
        }
        let store = ParamStore::new(DType::F32, 0);
        let net = InceptionV3::new(&store.root())?;
        store.load(path)?;
        store.set_training(false);
        Ok(net)
    }

    /// The store holding its weights.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Pool features `[N, 2048]` of images `[N, 1 or 3, H, W]` in [−1, 1] (H, W ≥ 1; any
    /// size is resized to 299 × 299).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || !matches!(x.shape()[1], 1 | 3) || x.shape()[2] == 0 || x.shape()[3] == 0 {
            return Err(Error::Config(format!(
                "Inception-v3 features: images {:?} must be [N, 1 or 3, H, W] with H, W ≥ 1",
                x.shape()
            )));
        }
        let _ng = no_grad();
        let [n, _, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        let mut t = x.cast(self.store.dtype())?;
        if t.shape()[1] == 1 {
            t = t.broadcast_to(&[n, 3, h, w])?;
        }
        if (h, w) != (RESOLUTION, RESOLUTION) {
            t = t.contiguous()?.upsample_bilinear2d(RESOLUTION, RESOLUTION)?;
        }
        t = chain(&self.stem[..3], &t)?.max_pool2d(3, 2, 0)?;
        t = chain(&self.stem[3..], &t)?.max_pool2d(3, 2, 0)?;
        for blk in &self.a {
            t = blk.forward(&t)?;
        }
        t = self.b.forward(&t)?;
        for blk in &self.c {
            t = blk.forward(&t)?;
        }
        t = self.d.forward(&t)?;
        for blk in &self.e {
            t = blk.forward(&t)?;
        }
        Ok(t.mean(&[2, 3], false)?)
    }

    /// Features of many images, `batch` at a time, as f64 rows.
    pub fn features_f64(&self, images: &Tensor, batch: usize) -> Result<Vec<f64>> {
        super::features_in_batches(images, batch, |x| self.features(x))
    }
}

/// Rounds images in [−1, 1] to the 256 levels of an 8-bit PNG, as EDM's `fid.py` does before
/// the Inception network (`(x · 127.5 + 128).clip(0, 255)` as uint8), back in [−1, 1].
pub fn quantize_8bit(x: &Tensor) -> Result<Tensor> {
    Ok(x.affine(127.5, 128.0)?.floor()?.clamp(0.0, 255.0)?.affine(1.0 / 127.5, -1.0)?)
}

/// The pool features FID compares: of `images` rounded to 8 bits ([`quantize_8bit`]),
/// `batch` at a time, as f64 rows of [`FEATURES`].
pub fn fid_features(net: &InceptionV3, images: &Tensor, batch: usize) -> Result<Vec<f64>> {
    net.features_f64(&quantize_8bit(images)?, batch)
}

/// FID against fixed reference statistics.
pub struct Fid {
    net: InceptionV3,
    reference: FeatureStats,
    batch: usize,
}

impl Fid {
    /// Reference statistics from `reference` images (`[N, C, H, W]` in [−1, 1], N ≥ 2),
    /// features computed `batch` images at a time.
    pub fn new(net: InceptionV3, reference: &Tensor, batch: usize) -> Result<Fid> {
        let stats = Self::stats_of(&net, reference, batch)?;
        Ok(Fid { net, reference: stats, batch })
    }

    /// Reference statistics computed before (e.g. [`load_stats`] of a cached file).
    pub fn from_stats(net: InceptionV3, reference: FeatureStats, batch: usize) -> Result<Fid> {
        if reference.mean.len() != FEATURES {
            return Err(Error::Config(format!(
                "FID reference statistics have {} features, Inception-v3 pool features are {FEATURES}",
                reference.mean.len()
            )));
        }
        Ok(Fid { net, reference, batch })
    }

    /// Statistics of `images` (8-bit rounded, like [`Fid::distance`]), e.g. to cache a
    /// dataset's reference with [`save_stats`].
    pub fn stats(net: &InceptionV3, images: &Tensor, batch: usize) -> Result<FeatureStats> {
        Self::stats_of(net, images, batch)
    }

    /// The reference statistics.
    pub fn reference(&self) -> &FeatureStats {
        &self.reference
    }

    fn stats_of(net: &InceptionV3, images: &Tensor, batch: usize) -> Result<FeatureStats> {
        Ok(FeatureStats::from_rows(&fid_features(net, images, batch)?, FEATURES)?)
    }

    /// FID of `images` (`[N, C, H, W]` in [−1, 1], N ≥ 2; the standard protocol uses 50k).
    pub fn distance(&self, images: &Tensor) -> Result<f64> {
        self.distance_of(&fid_features(&self.net, images, self.batch)?)
    }

    /// FID of features computed before with [`fid_features`].
    pub fn distance_of(&self, features: &[f64]) -> Result<f64> {
        Ok(frechet_from_stats(&FeatureStats::from_rows(features, FEATURES)?, &self.reference)?)
    }
}

const STATS_KIND: &str = "scorch.fid-stats";

/// Writes feature statistics (f64 `mu [d]`, `sigma [d, d]`, the sample count and what
/// `features` they are of) to a safetensors file, atomically — pytorch-fid's `.npz` role.
pub fn save_stats(stats: &FeatureStats, features: &str, path: &Path) -> Result<()> {
    let d = stats.mean.len();
    let mu = Tensor::from_vec(stats.mean.iter().copied().collect::<Vec<f64>>(), &[d])?.to_raw("mu")?;
    // nalgebra is column-major; sigma is symmetric, so its storage order is its row order.
    let sigma = Tensor::from_vec(stats.cov.as_slice().to_vec(), &[d, d])?.to_raw("sigma")?;
    let meta = BTreeMap::from([
        ("format".to_string(), STATS_KIND.to_string()),
        ("features".to_string(), features.to_string()),
        ("count".to_string(), stats.n.to_string()),
    ]);
    safetensors_io::save(path, &[mu, sigma], Some(&meta))?;
    Ok(())
}

/// Reads statistics written by [`save_stats`], checking they are of `features`.
pub fn load_stats(path: &Path, features: &str) -> Result<FeatureStats> {
    let (raw, meta) = safetensors_io::load_with_metadata(path)?;
    let meta = meta.unwrap_or_default();
    let bad = |why: String| Error::Checkpoint { path: path.to_path_buf(), detail: why };
    if meta.get("format").map(String::as_str) != Some(STATS_KIND) {
        return Err(bad(format!("not a statistics file (format {:?}, want {STATS_KIND:?})", meta.get("format"))));
    }
    if meta.get("features").map(String::as_str) != Some(features) {
        return Err(bad(format!("statistics of {:?} features, want {features:?}", meta.get("features"))));
    }
    let n = meta.get("count").and_then(|c| c.parse().ok()).ok_or_else(|| bad("no sample count".into()))?;
    let find = |name: &str| raw.iter().find(|r| r.name == name).ok_or_else(|| bad(format!("no `{name}` tensor")));
    let (mu, sigma) = (Tensor::from_raw(find("mu")?)?, Tensor::from_raw(find("sigma")?)?);
    let d = mu.numel();
    if mu.rank() != 1 || sigma.shape() != [d, d] {
        return Err(bad(format!("mu {:?} and sigma {:?} must be [d] and [d, d]", mu.shape(), sigma.shape())));
    }
    Ok(FeatureStats {
        mean: nalgebra::DVector::from_vec(mu.to_vec_f64()?),
        cov: nalgebra::DMatrix::from_vec(d, d, sigma.to_vec_f64()?),
        n,
    })
}

/// What [`save_stats`] records for Inception pool features.
pub const INCEPTION_STATS: &str = "inception-v3-2015-12-05/pool3";
