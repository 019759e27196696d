//! EDM — "Elucidating the Design Space of Diffusion-Based Generative Models" (Karras et
//! al., NeurIPS 2022), following the official `NVlabs/edm` code (spec `edm-sid.md` §1–2).
//!
//! - [`precond`]: the preconditioned denoiser `D(x; σ, c) = c_skip·x + c_out·F(c_in·x,
//!   c_noise, c)` ([`EdmPrecond`]), the [`Denoiser`] trait the sampler and loss take, and
//!   classifier-free guidance.
//! - [`loss`]: `λ(σ)·‖D(y + σn; σ) − y‖²` with `ln σ ~ N(−1.2, 1.2²)` ([`EdmLoss`]).
//! - [`sampler`]: the Heun sampler with ρ = 7 noise levels and optional churn
//!   ([`EdmSampler`]).
//! - [`networks`]: the U-Nets `F` — [`SongUNet`] (DDPM++ / NCSN++) and [`DhariwalUNet`]
//!   (ADM) — named like the official state dicts.
//! - [`layers`]: EDM's primitive layers and initialisation.
//! - [`presets`]: the released teachers' configurations and a small Fashion-MNIST one.
//!
//! ```
//! use scorch_models::edm::{presets, EdmPrecond, EdmSampler};
//! use scorch_models::params::ParamStore;
//! use scorch_engine::{DType, Generator, Tensor};
//!
//! let store = ParamStore::new(DType::F32, 0);
//! let net = EdmPrecond::new(&store.root(), &presets::fashion_mnist(false))?;
//! store.set_training(false);
//! let z = Tensor::randn(&[1, 1, 32, 32], DType::F32, &Generator::new(1))?;
//! let sampler = EdmSampler { num_steps: 2, ..Default::default() };
//! let x = sampler.sample(&net, &z, None, &Generator::new(2))?;
//! assert_eq!(x.shape(), [1, 1, 32, 32]);
//! # Ok::<(), scorch_models::Error>(())
//! ```

pub mod layers;
pub mod loss;
pub mod networks;
pub mod precond;
pub mod presets;
pub mod sampler;
pub mod toy;
pub mod train;

pub use loss::EdmLoss;
pub use networks::{DhariwalUNet, DhariwalUNetConfig, SongUNet, SongUNetConfig, UNet, UNetConfig};
pub use precond::{ClassifierFreeGuidance, Coefficients, Denoiser, EdmConfig, EdmPrecond};
pub use sampler::EdmSampler;
