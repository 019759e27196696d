//! 2-D toy distributions with known samplers: 8 Gaussians, 25 Gaussians, swiss roll and
//! checkerboard, as used by the distillation toys (scaled to roughly unit variance).

use scorch_engine::{DType, Generator, Result, Tensor};

/// The toy sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toy {
    EightGaussians,
    TwentyFiveGaussians,
    SwissRoll,
    Checkerboard,
}

impl Toy {
    /// Parses `8gaussians`, `25gaussians`, `swissroll`, `checkerboard`.
    pub fn parse(s: &str) -> Option<Toy> {
        Some(match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "8gaussians" => Toy::EightGaussians,
            "25gaussians" => Toy::TwentyFiveGaussians,
            "swissroll" => Toy::SwissRoll,
            "checkerboard" => Toy::Checkerboard,
            _ => return None,
        })
    }

    /// `n` samples as `[n, 2]` f32 from the generator's stream.
    pub fn sample(self, n: usize, gen: &Generator) -> Result<Tensor> {
        let u = Tensor::rand(&[n, 4], DType::F64, gen)?.to_vec_f64()?;
        let z = Tensor::randn(&[n, 2], DType::F64, gen)?.to_vec_f64()?;
        let mut out = Vec::with_capacity(2 * n);
        for i in 0..n {
            let (u0, u1, u2) = (u[4 * i], u[4 * i + 1], u[4 * i + 2]);
            let (z0, z1) = (z[2 * i], z[2 * i + 1]);
            let (x, y) = match self {
                Toy::EightGaussians => {
                    // Modes on a circle of radius 2, std 0.02·√2 … scaled by 1/1.414 overall.
                    let k = ((u0 * 8.0) as usize).min(7) as f64;
                    let t = k * std::f64::consts::TAU / 8.0;
                    ((2.0 * t.cos() + 0.1 * z0) / 1.414, (2.0 * t.sin() + 0.1 * z1) / 1.414)
                }
                Toy::TwentyFiveGaussians => {
                    let (a, b) = (((u0 * 5.0) as i32).min(4) - 2, ((u1 * 5.0) as i32).min(4) - 2);
                    ((a as f64 + 0.05 * z0) / 2.828, (b as f64 + 0.05 * z1) / 2.828)
                }
                Toy::SwissRoll => {
                    let t = 1.5 * std::f64::consts::PI * (1.0 + 2.0 * u0);
                    ((t * t.cos() + 0.5 * z0) / 5.0, (t * t.sin() + 0.5 * z1) / 5.0)
                }
                Toy::Checkerboard => {
                    let x1 = u0 * 4.0 - 2.0;
                    let x2 = u1 - u2.round() * 2.0 + (x1.floor() as i64).rem_euclid(2) as f64;
                    (x1, x2)
                }
            };
            out.push(x as f32);
            out.push(y as f32);
        }
        Tensor::from_vec(out, &[n, 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_are_seeded_and_shaped() {
        for toy in [Toy::EightGaussians, Toy::TwentyFiveGaussians, Toy::SwissRoll, Toy::Checkerboard] {
            let a = toy.sample(1000, &Generator::new(1)).unwrap();
            let b = toy.sample(1000, &Generator::new(1)).unwrap();
            assert_eq!(a.shape(), &[1000, 2]);
            assert_eq!(a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
            let v = a.to_vec_f32().unwrap();
            assert!(v.iter().all(|x| x.is_finite() && x.abs() < 5.0), "{toy:?}");
        }
    }

    #[test]
    fn eight_gaussians_hit_every_mode() {
        let v = Toy::EightGaussians.sample(4000, &Generator::new(2)).unwrap().to_vec_f32().unwrap();
        let mut seen = [0usize; 8];
        for p in v.chunks(2) {
            let a = (p[1] as f64).atan2(p[0] as f64).rem_euclid(std::f64::consts::TAU);
            seen[((a / (std::f64::consts::TAU / 8.0)).round() as usize) % 8] += 1;
        }
        assert!(seen.iter().all(|&c| c > 350 && c < 650), "{seen:?}");
    }

    #[test]
    fn checkerboard_lies_on_the_dark_squares() {
        let v = Toy::Checkerboard.sample(2000, &Generator::new(3)).unwrap().to_vec_f32().unwrap();
        for p in v.chunks(2) {
            let (cx, cy) = ((p[0] as f64).floor() as i64, (p[1] as f64).floor() as i64);
            assert_eq!((cx + cy).rem_euclid(2), 0, "{p:?}");
        }
    }
}
