//! Shape + strides + offset: how a flat buffer is viewed as an n-d array.

use crate::error::{shape_err, Error, Result};

/// A strided view of a flat buffer. Strides are in elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

/// Row-major strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i].max(1);
    }
    strides
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return shape_err("broadcast", format!("shapes {a:?} and {b:?} are not broadcastable"));
        };
    }
    Ok(out)
}

/// Normalises a possibly negative axis.
pub fn norm_axis(axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) && !(rank == 0 && a == 0) {
        return Err(Error::Axis { axis, rank });
    }
    Ok(a as usize)
}

impl Layout {
    /// A contiguous row-major layout.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are exactly `offset..offset+numel` in row-major order.
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != acc {
                return false;
            }
            acc *= self.shape[i];
        }
        true
    }

    /// Largest element offset touched + 1 (0 for empty views).
    pub fn span_end(&self) -> usize {
        if self.numel() == 0 {
            return self.offset;
        }
        self.offset + self.shape.iter().zip(&self.strides).map(|(d, s)| (d - 1) * s).sum::<usize>() + 1
    }

    /// Broadcasts to `shape` (stride 0 on expanded dims).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        if shape.len() < self.rank() {
            return shape_err("broadcast_to", format!("cannot broadcast {:?} to {:?}", self.shape, shape));
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for i in 0..self.rank() {
            let (d, t) = (self.shape[i], shape[lead + i]);
            if d == t {
                strides[lead + i] = self.strides[i];
            } else if d == 1 {
                strides[lead + i] = 0;
            } else {
                return shape_err("broadcast_to", format!("cannot broadcast {:?} to {:?}", self.shape, shape));
            }
        }
        Ok(Layout { shape: shape.to_vec(), strides, offset: self.offset })
    }

    /// Reorders dimensions.
    pub fn permute(&self, dims: &[usize]) -> Result<Layout> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if dims.len() != r {
            return shape_err("permute", format!("permutation {dims:?} for a tensor of rank {r}"));
        }
        for &d in dims {
            if d >= r || seen[d] {
                return shape_err("permute", format!("{dims:?} is not a permutation of 0..{r}"));
            }
            seen[d] = true;
        }
        Ok(Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        })
    }

    /// Selects `len` elements of dimension `dim` from `start`, every `step`-th.
    pub fn narrow(&self, dim: usize, start: usize, len: usize, step: usize) -> Result<Layout> {
        if dim >= self.rank() {
            return Err(Error::Axis { axis: dim as isize, rank: self.rank() });
        }
        if step == 0 {
            return shape_err("narrow", "step must be at least 1");
        }
        let size = self.shape[dim];
        let last = if len == 0 { start } else { start + (len - 1) * step };
        if start > size || (len > 0 && last >= size) {
            return shape_err(
                "narrow",
                format!("start {start}, len {len}, step {step} out of range for dim {dim} of size {size}"),
            );
        }
        let mut l = self.clone();
        l.offset += start * self.strides[dim];
        l.shape[dim] = len;
        l.strides[dim] *= step;
        Ok(l)
    }

    /// A view with a new shape, when the strides allow it without a copy.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            return Some(Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: self.offset });
        }
        // Merge runs of old dims that are contiguous with each other, then split them.
        let old: Vec<(usize, usize)> =
            self.shape.iter().copied().zip(self.strides.iter().copied()).filter(|&(d, _)| d != 1).collect();
        let mut new_strides = vec![0; shape.len()];
        let mut oi = 0;
        let mut ni = 0;
        while ni < shape.len() || oi < old.len() {
            // Skip size-1 new dims.
            if ni < shape.len() && shape[ni] == 1 {
                new_strides[ni] = 1;
                ni += 1;
                continue;
            }
            if oi >= old.len() || ni >= shape.len() {
                return None;
            }
            // Take a chunk of old dims that is contiguous, covering the product of some new dims.
            let mut chunk = old[oi].0;
            let mut oj = oi + 1;
            let mut nsz = shape[ni];
            let mut nj = ni + 1;
            while chunk != nsz {
                if chunk < nsz {
                    if oj >= old.len() || old[oj - 1].1 != old[oj].0 * old[oj].1 {
                        return None;
                    }
                    chunk *= old[oj].0;
                    oj += 1;
                } else {
                    if nj >= shape.len() {
                        return None;
                    }
                    nsz *= shape[nj];
                    nj += 1;
                }
            }
            // Assign strides for new dims ni..nj from the innermost stride of the chunk.
            let mut st = old[oj - 1].1;
            for k in (ni..nj).rev() {
                new_strides[k] = st;
                st *= shape[k];
            }
            oi = oj;
            ni = nj;
        }
        Some(Layout { shape: shape.to_vec(), strides: new_strides, offset: self.offset })
    }

    /// Dims of `self` merged where adjacent dims are contiguous with each other: the same
    /// element order with fewer, longer dims (speeds up strided iteration).
    pub fn coalesced(&self) -> Layout {
        let mut shape: Vec<usize> = Vec::with_capacity(self.rank());
        let mut strides: Vec<usize> = Vec::with_capacity(self.rank());
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            if d == 1 {
                continue;
            }
            if let (Some(ld), Some(ls)) = (shape.last_mut(), strides.last_mut()) {
                if *ls == s * d {
                    *ld *= d;
                    *ls = s;
                    continue;
                }
            }
            shape.push(d);
            strides.push(s);
        }
        if shape.is_empty() {
            shape.push(1);
            strides.push(1);
        }
        Layout { shape, strides, offset: self.offset }
    }

    /// Iterates the buffer offsets of the elements in row-major order, starting at the
    /// `start`-th element.
    pub fn offsets_from(&self, start: usize) -> StridedOffsets {
        StridedOffsets::new(self, start)
    }

    /// Iterates all element offsets in row-major order.
    pub fn offsets(&self) -> StridedOffsets {
        StridedOffsets::new(self, 0)
    }
}

/// Row-major iterator over the buffer offsets of a strided view.
pub struct StridedOffsets {
    shape: Vec<usize>,
    strides: Vec<usize>,
    index: Vec<usize>,
    cur: usize,
    remaining: usize,
}

impl StridedOffsets {
    fn new(layout: &Layout, start: usize) -> Self {
        let l = layout.coalesced();
        let numel = layout.numel();
        let mut index = vec![0; l.rank()];
        let mut rem = start.min(numel);
        let mut cur = l.offset;
        for i in (0..l.rank()).rev() {
            index[i] = rem % l.shape[i];
            rem /= l.shape[i];
            cur += index[i] * l.strides[i];
        }
        StridedOffsets { shape: l.shape, strides: l.strides, index, cur, remaining: numel.saturating_sub(start) }
    }
}

impl Iterator for StridedOffsets {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let out = self.cur;
        let mut i = self.shape.len();
        while i > 0 {
            i -= 1;
            self.index[i] += 1;
            self.cur += self.strides[i];
            if self.index[i] < self.shape[i] {
                break;
            }
            self.cur -= self.strides[i] * self.shape[i];
            self.index[i] = 0;
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_views() {
        let l = Layout::contiguous(&[2, 3, 4]).permute(&[1, 0, 2]).unwrap();
        // [3,2,4] with strides [4,12,1]: merging dims 0,1 is impossible, splitting last is fine.
        assert!(l.reshape(&[6, 4]).is_none());
        let v = l.reshape(&[3, 2, 2, 2]).unwrap();
        assert_eq!(v.strides, vec![4, 12, 2, 1]);
        let offs: Vec<usize> = l.offsets().collect();
        let offs2: Vec<usize> = v.offsets().collect();
        assert_eq!(offs, offs2);
    }

    #[test]
    fn offsets_start_midway() {
        let l = Layout::contiguous(&[3, 5]).permute(&[1, 0]).unwrap();
        let all: Vec<usize> = l.offsets().collect();
        let tail: Vec<usize> = l.offsets_from(7).collect();
        assert_eq!(&all[7..], &tail[..]);
    }

    #[test]
    fn broadcast() {
        assert_eq!(broadcast_shapes(&[3, 1, 5], &[4, 1]).unwrap(), vec![3, 4, 5]);
        assert!(broadcast_shapes(&[3], &[4]).is_err());
    }
}
