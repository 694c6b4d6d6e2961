//! A voxel grid placed in patient space (DICOM LPS), and the reorientation
//! of its voxels into the canonical layout the model was trained on.

use crate::Error;
pub use liverseg_core::geometry::{cross, dot, normalised, sub};

/// Where a `[slice][row][column]` array of voxels lies in patient space.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// slices, rows, columns
    pub dims: [usize; 3],
    /// mm between neighbouring slices, rows and columns.
    pub spacing: [f64; 3],
    /// LPS position (mm) of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Unit LPS directions of increasing slice, row and column index. The
    /// column direction is DICOM's row cosine, the row direction its column
    /// cosine; the slice direction may point either way along the normal.
    pub axes: [[f64; 3]; 3],
}

impl Grid {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn voxel_volume_ml(&self) -> f64 {
        self.spacing.iter().product::<f64>() / 1000.0
    }

    /// LPS position of voxel (s, r, c).
    pub fn position(&self, s: f64, r: f64, c: f64) -> [f64; 3] {
        let mut p = self.origin;
        for (k, idx) in [s, r, c].into_iter().enumerate() {
            for (m, pm) in p.iter_mut().enumerate() {
                *pm += idx * self.spacing[k] * self.axes[k][m];
            }
        }
        p
    }

    /// Same voxel lattice within `tol_mm` (dimensions, and every corner voxel).
    pub fn same_lattice(&self, other: &Grid, tol_mm: f64) -> bool {
        if self.dims != other.dims {
            return false;
        }
        let [s, r, c] = self.dims.map(|d| d.saturating_sub(1) as f64);
        [[0.0, 0.0, 0.0], [s, 0.0, 0.0], [0.0, r, 0.0], [0.0, 0.0, c]]
            .iter()
            .all(|&[a, b, d]| {
                let (p, q) = (self.position(a, b, d), other.position(a, b, d));
                p.iter().zip(q).all(|(x, y)| (x - y).abs() <= tol_mm)
            })
    }

    /// How to lay this grid's voxels out canonically: slices feet to head,
    /// rows anterior to posterior, columns patient right to left.
    pub fn canonical(&self) -> Result<Canonical, Error> {
        // For each source axis, the patient axis it mostly runs along.
        let mut patient_axis = [0usize; 3];
        let mut negative = [false; 3];
        for (k, dir) in self.axes.iter().enumerate() {
            let m = (0..3)
                .max_by(|&a, &b| dir[a].abs().total_cmp(&dir[b].abs()))
                .unwrap_or(0);
            patient_axis[k] = m;
            negative[k] = dir[m] < 0.0;
        }
        if patient_axis[0] != 2 {
            let along = ["left-right (sagittal)", "front-back (coronal)", ""][patient_axis[0]];
            return Err(Error::NotAxial(format!(
                "slices are stacked {along}; only axial series are supported"
            )));
        }
        if patient_axis[1] == patient_axis[2] {
            return Err(Error::NotAxial(
                "rows and columns run along the same patient axis".into(),
            ));
        }
        // Canonical axis a (0 slice = +S, 1 row = +P, 2 column = +L) comes
        // from the source axis running along LPS component 2, 1, 0.
        let mut source_axis = [0usize; 3];
        let mut flip = [false; 3];
        for (a, lps) in [2usize, 1, 0].into_iter().enumerate() {
            let k = (0..3).find(|&k| patient_axis[k] == lps).unwrap_or(a);
            source_axis[a] = k;
            // LPS grows towards posterior, left and superior: the canonical
            // directions; a source axis pointing the other way is flipped.
            flip[a] = negative[k];
        }
        let dims = source_axis.map(|k| self.dims[k]);
        let spacing = source_axis.map(|k| self.spacing[k]);
        Ok(Canonical {
            source_dims: self.dims,
            source_axis,
            flip,
            dims,
            spacing,
        })
    }
}

impl Canonical {
    /// The canonical layout's own grid: same voxels, canonical axes.
    #[allow(clippy::needless_range_loop)] // `a` indexes three parallel arrays
    pub fn grid(&self, source: &Grid) -> Grid {
        let mut corner = [0.0; 3];
        let mut axes = [[0.0; 3]; 3];
        for a in 0..3 {
            let k = self.source_axis[a];
            if self.flip[a] {
                corner[k] = (self.dims[a] - 1) as f64;
            }
            let sign = if self.flip[a] { -1.0 } else { 1.0 };
            axes[a] = source.axes[k].map(|v| v * sign);
        }
        Grid {
            dims: self.dims,
            spacing: self.spacing,
            origin: source.position(corner[0], corner[1], corner[2]),
            axes,
        }
    }
}

/// A permutation and flips that take source voxels to the canonical layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    source_dims: [usize; 3],
    /// Canonical axis a comes from source axis `source_axis[a]` ...
    source_axis: [usize; 3],
    /// ... reversed where `flip[a]`.
    flip: [bool; 3],
    /// Canonical slices, rows, columns.
    pub dims: [usize; 3],
    /// Canonical (z, y, x) spacing in mm.
    pub spacing: [f64; 3],
}

impl Canonical {
    /// Source linear index of canonical voxel (z, y, x).
    fn source_index(&self, canon: [usize; 3]) -> usize {
        let mut src = [0usize; 3];
        for a in 0..3 {
            let i = if self.flip[a] {
                self.dims[a] - 1 - canon[a]
            } else {
                canon[a]
            };
            src[self.source_axis[a]] = i;
        }
        (src[0] * self.source_dims[1] + src[1]) * self.source_dims[2] + src[2]
    }

    pub fn is_identity(&self) -> bool {
        self.source_axis == [0, 1, 2] && self.flip == [false; 3]
    }

    /// Source voxels in canonical order (borrowed when already canonical:
    /// a thin-slice series is hundreds of MB).
    pub fn to_canonical<'a, T: Copy>(&self, source: &'a [T]) -> std::borrow::Cow<'a, [T]> {
        if self.is_identity() {
            return std::borrow::Cow::Borrowed(source);
        }
        let [s, r, c] = self.dims;
        let mut out = Vec::with_capacity(s * r * c);
        for z in 0..s {
            for y in 0..r {
                for x in 0..c {
                    out.push(source[self.source_index([z, y, x])]);
                }
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// Canonical voxels back in source order.
    pub fn to_source<T: Copy + Default>(&self, canon: &[T]) -> Vec<T> {
        if self.is_identity() {
            return canon.to_vec();
        }
        let [s, r, c] = self.dims;
        let mut out = vec![T::default(); s * r * c];
        let mut i = 0;
        for z in 0..s {
            for y in 0..r {
                for x in 0..c {
                    out[self.source_index([z, y, x])] = canon[i];
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(axes: [[f64; 3]; 3], dims: [usize; 3]) -> Grid {
        Grid {
            dims,
            spacing: [2.0, 0.5, 0.7],
            origin: [0.0; 3],
            axes,
        }
    }

    #[test]
    fn standard_axial_is_identity() {
        let g = grid([[0., 0., 1.], [0., 1., 0.], [1., 0., 0.]], [2, 3, 4]);
        let c = g.canonical().unwrap();
        assert!(c.is_identity());
        assert_eq!(c.spacing, [2.0, 0.5, 0.7]);
    }

    #[test]
    fn head_first_flipped_and_transposed_round_trip() {
        // Slices head to feet, rows run left to right, columns front to back.
        let g = grid([[0., 0., -1.], [1., 0., 0.], [0., -1., 0.]], [2, 3, 4]);
        let c = g.canonical().unwrap();
        assert_eq!(c.dims, [2, 4, 3]);
        assert_eq!(c.spacing, [2.0, 0.7, 0.5]);
        let src: Vec<u32> = (0..24).collect();
        let canon = c.to_canonical(&src);
        assert_eq!(c.to_source(&canon), src);
        assert!(matches!(canon, std::borrow::Cow::Owned(_)));
        // Canonical (0,0,0) is the most inferior, anterior, right voxel:
        // source slice 1 (slices run downwards), row 0 (rows run to the
        // left), column 3 (columns run forwards).
        assert_eq!(canon[0], 3 * 4 + 3);
    }

    #[test]
    fn coronal_is_refused() {
        let g = grid([[0., 1., 0.], [0., 0., -1.], [1., 0., 0.]], [2, 3, 4]);
        assert!(matches!(g.canonical(), Err(Error::NotAxial(_))));
    }
}
