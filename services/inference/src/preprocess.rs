//! Network input from a canonical volume, and logits back to its grid.
//!
//! The twin of `models/training/liverseg_model/geometry.py`: the same window
//! (GRID x GRID pixels of `spacing_mm`, centred on the body's bounding box over
//! the whole volume), the same bilinear sampling with out-of-image taps reading
//! as air, the same HU window and normalisation, the same 2.5D neighbours.

use crate::model::InputSpec;

/// One bilinear tap pair along an axis: indices and weights; an index of
/// `None` lies outside the source and reads as the fill value.
#[derive(Debug, Clone, Copy)]
struct Taps {
    i0: Option<usize>,
    i1: Option<usize>,
    w1: f32,
}

fn taps(coord: f64, size: usize) -> Taps {
    // f32 like torch's grid_sample, so both sides round alike.
    let coord = coord as f32;
    let f = coord.floor();
    let w1 = coord - f;
    let inside = |i: f32| (i >= 0.0 && (i as usize) < size).then_some(i as usize);
    Taps {
        i0: inside(f),
        i1: inside(f + 1.0),
        w1,
    }
}

fn axis_taps(coords: impl Iterator<Item = f64>, size: usize) -> Vec<Taps> {
    coords.map(|c| taps(c, size)).collect()
}

/// Bilinear sample of `src` (rows x cols) at separable coordinates; taps
/// outside read as `fill`.
fn sample(src: &[f32], cols: usize, ty: &[Taps], tx: &[Taps], fill: f32, out: &mut Vec<f32>) {
    out.clear();
    let read = |r: Option<usize>, c: Option<usize>| match (r, c) {
        (Some(r), Some(c)) => src[r * cols + c] - fill,
        _ => 0.0,
    };
    for y in ty {
        for x in tx {
            let top = read(y.i0, x.i0) * (1.0 - x.w1) + read(y.i0, x.i1) * x.w1;
            let bottom = read(y.i1, x.i0) * (1.0 - x.w1) + read(y.i1, x.i1) * x.w1;
            out.push(top * (1.0 - y.w1) + bottom * y.w1 + fill);
        }
    }
}

/// The fixed input window of one canonical volume.
pub struct Window {
    spec: InputSpec,
    dims: [usize; 3],
    neighbour: usize,
    in_rows: Vec<Taps>,
    in_cols: Vec<Taps>,
    out_rows: Vec<Taps>,
    out_cols: Vec<Taps>,
}

impl Window {
    /// `hu` is canonical `[z][y][x]` with `dims` and (z, y, x) `spacing` in mm.
    pub fn new(spec: &InputSpec, hu: &[f32], dims: [usize; 3], spacing: [f64; 3]) -> Window {
        let center = body_center_mm(hu, dims, spacing, spec.body_hu);
        let g = spec.grid;
        let half = (g as f64 - 1.0) / 2.0;
        let along =
            |c: f64, s: f64| (0..g).map(move |i| (c + (i as f64 - half) * spec.spacing_mm) / s);
        let back = |c: f64, s: f64, n: usize| {
            (0..n).map(move |i| (i as f64 * s - c) / spec.spacing_mm + half)
        };
        Window {
            in_rows: axis_taps(along(center[0], spacing[1]), dims[1]),
            in_cols: axis_taps(along(center[1], spacing[2]), dims[2]),
            out_rows: axis_taps(back(center[0], spacing[1], dims[1]), g),
            out_cols: axis_taps(back(center[1], spacing[2], dims[2]), g),
            neighbour: neighbour_offset(spacing[0], spec.neighbour_mm),
            spec: spec.clone(),
            dims,
        }
    }

    /// Network input `[3, grid, grid]` for slice `z`: the slices `neighbour`
    /// below, at and above it (clamped to the volume), windowed and normalised.
    pub fn input(&self, hu: &[f32], z: usize) -> Vec<f32> {
        let [s, r, c] = self.dims;
        let n = self.spec.normalisation.clone();
        let [lo, hi] = self.spec.hu_window;
        let mut out = Vec::with_capacity(3 * self.spec.grid * self.spec.grid);
        let mut buf = Vec::new();
        let zs = [
            z.saturating_sub(self.neighbour),
            z,
            (z + self.neighbour).min(s - 1),
        ];
        for zz in zs {
            let slice = &hu[zz * r * c..(zz + 1) * r * c];
            sample(
                slice,
                c,
                &self.in_rows,
                &self.in_cols,
                self.spec.air_hu,
                &mut buf,
            );
            out.extend(
                buf.iter()
                    .map(|v| (v.clamp(lo, hi) - n.center_hu) / n.half_width_hu),
            );
        }
        out
    }

    /// Logits `[grid, grid]` back onto the canonical slice `[rows, cols]`;
    /// taps outside the window read as `background_logit`.
    pub fn logits_to_slice(&self, logits: &[f32], background_logit: f32, out: &mut Vec<f32>) {
        sample(
            logits,
            self.spec.grid,
            &self.out_rows,
            &self.out_cols,
            background_logit,
            out,
        );
    }
}

/// Slices between a slice and its 2.5D neighbours: about `neighbour_mm` away, at least 1.
pub fn neighbour_offset(slice_spacing: f64, neighbour_mm: f64) -> usize {
    if !slice_spacing.is_finite() || slice_spacing <= 0.0 {
        return 1;
    }
    ((neighbour_mm / slice_spacing + 0.5).floor() as usize).max(1)
}

/// Centre (row mm, column mm) of the bounding box of voxels above `body_hu`.
pub fn body_center_mm(hu: &[f32], dims: [usize; 3], spacing: [f64; 3], body_hu: f32) -> [f64; 2] {
    let [_, r, c] = dims;
    let (mut rmin, mut rmax, mut cmin, mut cmax) = (usize::MAX, 0, usize::MAX, 0);
    for slice in hu.chunks_exact(r * c) {
        for (y, row) in slice.chunks_exact(c).enumerate() {
            let mut first = None;
            let mut last = 0;
            for (x, v) in row.iter().enumerate() {
                if *v > body_hu {
                    first.get_or_insert(x);
                    last = x;
                }
            }
            if let Some(f) = first {
                rmin = rmin.min(y);
                rmax = rmax.max(y);
                cmin = cmin.min(f);
                cmax = cmax.max(last);
            }
        }
    }
    let (rc, cc) = if rmin == usize::MAX {
        ((r as f64 - 1.0) / 2.0, (c as f64 - 1.0) / 2.0)
    } else {
        ((rmin + rmax) as f64 / 2.0, (cmin + cmax) as f64 / 2.0)
    };
    [rc * spacing[1], cc * spacing[2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_matches_hand_values_and_fills_outside() {
        let src = [0.0f32, 10.0, 20.0, 30.0]; // 2x2
        let ty = axis_taps([0.5, -1.0].into_iter(), 2);
        let tx = axis_taps([0.5, 1.5].into_iter(), 2);
        let mut out = Vec::new();
        sample(&src, 2, &ty, &tx, -100.0, &mut out);
        assert!((out[0] - 15.0).abs() < 1e-5);
        // (0.5, 1.5): half the taps are outside and read as the fill.
        assert!((out[1] - ((10.0 + 30.0) / 2.0 * 0.5 + -100.0 * 0.5)).abs() < 1e-4);
        assert_eq!(&out[2..], &[-100.0, -100.0]);
    }

    #[test]
    fn neighbours_follow_physical_distance() {
        assert_eq!(neighbour_offset(1.6, 3.0), 2);
        assert_eq!(neighbour_offset(3.0, 3.0), 1);
        assert_eq!(neighbour_offset(5.0, 3.0), 1);
        assert_eq!(neighbour_offset(0.7, 3.0), 4);
        assert_eq!(neighbour_offset(f64::NAN, 3.0), 1);
    }

    #[test]
    fn body_centre_is_the_bounding_box_centre() {
        let mut hu = vec![-1000.0f32; 2 * 4 * 6];
        hu[6 + 1] = 40.0; // slice 0, row 1, column 1
        hu[24 + 3 * 6 + 4] = 40.0; // slice 1, row 3, column 4
        let c = body_center_mm(&hu, [2, 4, 6], [1.0, 2.0, 0.5], -500.0);
        assert_eq!(c, [2.0 * 2.0, 2.5 * 0.5]);
    }
}
