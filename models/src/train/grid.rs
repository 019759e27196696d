//! Sample grids as PNG (the `image` crate writes the file; we lay out the tiles).

use crate::error::{Error, Result};
use scorch_engine::Tensor;
use std::path::Path;

/// Writes `[N, C, H, W]` images with values in [lo, hi] as a grid with `cols` columns and a
/// 2-pixel gap (C = 1 is grey, C = 3 is RGB). Written to a temp file and renamed.
pub fn save_grid(images: &Tensor, cols: usize, lo: f64, hi: f64, path: &Path) -> Result<()> {
    let s = images.shape();
    if s.len() != 4 || !(s[1] == 1 || s[1] == 3) || cols == 0 {
        return Err(Error::Output(format!("save_grid: need [N, 1|3, H, W] images and cols > 0, got {s:?}")));
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let v = images.to_vec_f64()?;
    let mut buf = vec![255u8; gw * gh * 3];
    for k in 0..n {
        let (oy, ox) = (gap + (k / cols) * (h + gap), gap + (k % cols) * (w + gap));
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3 {
                    let src = if c == 1 { 0 } else { ch };
                    let val = v[((k * c + src) * h + y) * w + x];
                    let t = ((val - lo) / (hi - lo)).clamp(0.0, 1.0);
                    buf[((oy + y) * gw + ox + x) * 3 + ch] = (t * 255.0).round() as u8;
                }
            }
        }
    }
    let img =
        image::RgbImage::from_raw(gw as u32, gh as u32, buf).ok_or_else(|| Error::Output("grid buffer size".into()))?;
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| Error::Output(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Output(format!("renaming to {}: {e}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scorch_engine::DType;

    #[test]
    fn writes_a_png_with_the_right_size() {
        let dir = std::env::temp_dir().join(format!("scorch-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.png");
        let x = Tensor::linspace(-1.0, 1.0, 5 * 8 * 8, DType::F32).unwrap().reshape(&[5, 1, 8, 8]).unwrap();
        save_grid(&x, 3, -1.0, 1.0, &p).unwrap();
        let img = image::open(&p).unwrap();
        assert_eq!((img.width(), img.height()), (3 * 10 + 2, 2 * 10 + 2));
        assert!(save_grid(&x.reshape(&[5, 64]).unwrap(), 3, -1.0, 1.0, &p).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
