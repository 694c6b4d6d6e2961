//! Dice, HD95 and volume difference of two masks on one grid.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub dice: f64,
    /// 95th percentile of the symmetric surface distances (mm); infinite when
    /// either mask is empty.
    pub hd95_mm: f64,
    pub pred_volume_ml: f64,
    pub truth_volume_ml: f64,
    pub volume_diff_ml: f64,
    pub volume_diff_pct: f64,
}

/// `pred` and `truth` are `[z][y][x]` 0/1 masks; `spacing` is (z, y, x) mm.
pub fn compare(pred: &[u8], truth: &[u8], dims: [usize; 3], spacing: [f64; 3]) -> Comparison {
    let voxel_ml = spacing.iter().product::<f64>() / 1000.0;
    let (mut p, mut t, mut both) = (0usize, 0usize, 0usize);
    for (a, b) in pred.iter().zip(truth) {
        let (a, b) = (*a != 0, *b != 0);
        p += a as usize;
        t += b as usize;
        both += (a && b) as usize;
    }
    let dice = if p + t == 0 {
        1.0
    } else {
        2.0 * both as f64 / (p + t) as f64
    };
    let (pv, tv) = (p as f64 * voxel_ml, t as f64 * voxel_ml);
    Comparison {
        dice,
        hd95_mm: hd95(pred, truth, dims, spacing),
        pred_volume_ml: pv,
        truth_volume_ml: tv,
        volume_diff_ml: pv - tv,
        volume_diff_pct: if tv > 0.0 {
            100.0 * (pv - tv) / tv
        } else {
            f64::NAN
        },
    }
}

/// Surface voxels: set voxels with a 6-neighbour unset (or off the grid).
fn surface(mask: &[u8], [s, r, c]: [usize; 3]) -> Vec<bool> {
    let mut out = vec![false; mask.len()];
    for z in 0..s {
        for y in 0..r {
            for x in 0..c {
                let i = (z * r + y) * c + x;
                if mask[i] == 0 {
                    continue;
                }
                let off = |dz: isize, dy: isize, dx: isize| {
                    let (zz, yy, xx) = (z as isize + dz, y as isize + dy, x as isize + dx);
                    if zz < 0
                        || yy < 0
                        || xx < 0
                        || zz >= s as isize
                        || yy >= r as isize
                        || xx >= c as isize
                    {
                        return true;
                    }
                    mask[((zz as usize) * r + yy as usize) * c + xx as usize] == 0
                };
                out[i] = off(-1, 0, 0)
                    || off(1, 0, 0)
                    || off(0, -1, 0)
                    || off(0, 1, 0)
                    || off(0, 0, -1)
                    || off(0, 0, 1);
            }
        }
    }
    out
}

/// Exact squared Euclidean distance (mm^2) from every voxel to the nearest
/// `seed`, separable (Felzenszwalb & Huttenlocher) with anisotropic spacing.
pub fn distance_sq(seed: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut d: Vec<f64> = seed
        .iter()
        .map(|&s| if s { 0.0 } else { f64::INFINITY })
        .collect();
    let [s, r, c] = dims;
    let strides = [r * c, c, 1];
    let mut line = Vec::new();
    let mut out = Vec::new();
    for axis in 0..3 {
        let n = dims[axis];
        let step = strides[axis];
        // Every line along `axis`: iterate over the other two indices.
        let starts: Vec<usize> = (0..s * r * c).filter(|&i| (i / step) % n == 0).collect();
        for start in starts {
            line.clear();
            line.extend((0..n).map(|k| d[start + k * step]));
            edt_1d(&line, spacing[axis], &mut out);
            for (k, v) in out.iter().enumerate() {
                d[start + k * step] = *v;
            }
        }
    }
    d
}

/// 1D lower envelope of parabolas: out[q] = min_p f[p] + ((q - p) * h)^2.
fn edt_1d(f: &[f64], h: f64, out: &mut Vec<f64>) {
    let n = f.len();
    out.clear();
    out.resize(n, f64::INFINITY);
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k: isize = -1;
    let pos = |q: usize| q as f64 * h;
    for q in 0..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            if k < 0 {
                k = 0;
                v[0] = q;
                z[0] = f64::NEG_INFINITY;
                z[1] = f64::INFINITY;
                break;
            }
            let p = v[k as usize];
            let sct =
                ((f[q] + pos(q) * pos(q)) - (f[p] + pos(p) * pos(p))) / (2.0 * (pos(q) - pos(p)));
            if sct <= z[k as usize] {
                k -= 1;
                continue;
            }
            k += 1;
            v[k as usize] = q;
            z[k as usize] = sct;
            z[k as usize + 1] = f64::INFINITY;
            break;
        }
    }
    if k < 0 {
        return;
    }
    let mut j = 0usize;
    for (q, o) in out.iter_mut().enumerate() {
        while z[j + 1] < pos(q) {
            j += 1;
        }
        let p = v[j];
        *o = f[p] + (pos(q) - pos(p)).powi(2);
    }
}

fn hd95(pred: &[u8], truth: &[u8], dims: [usize; 3], spacing: [f64; 3]) -> f64 {
    let (sp, st) = (surface(pred, dims), surface(truth, dims));
    if !sp.iter().any(|v| *v) || !st.iter().any(|v| *v) {
        return f64::INFINITY;
    }
    let to_truth = distance_sq(&st, dims, spacing);
    let to_pred = distance_sq(&sp, dims, spacing);
    let mut d: Vec<f64> = sp
        .iter()
        .zip(&to_truth)
        .filter(|(s, _)| **s)
        .map(|(_, d)| d.sqrt())
        .chain(
            st.iter()
                .zip(&to_pred)
                .filter(|(s, _)| **s)
                .map(|(_, d)| d.sqrt()),
        )
        .collect();
    d.sort_by(f64::total_cmp);
    percentile(&d, 95.0)
}

/// Linear-interpolated percentile of sorted values (numpy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)] // voxel indices drive the brute force
    fn distance_transform_matches_brute_force() {
        let dims = [4, 5, 6];
        let spacing = [2.0, 0.7, 1.1];
        let n = 120;
        let seed: Vec<bool> = (0..n).map(|i| i % 17 == 3 || i == 59).collect();
        let d = distance_sq(&seed, dims, spacing);
        let coord = |i: usize| {
            [
                (i / 30) as f64 * 2.0,
                ((i / 6) % 5) as f64 * 0.7,
                (i % 6) as f64 * 1.1,
            ]
        };
        for i in 0..n {
            let best = (0..n)
                .filter(|&j| seed[j])
                .map(|j| {
                    let (a, b) = (coord(i), coord(j));
                    (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
            assert!((d[i] - best).abs() < 1e-9, "voxel {i}: {} vs {best}", d[i]);
        }
    }

    #[test]
    fn shifted_cube_scores() {
        let dims = [10, 10, 10];
        let cube = |o: usize| {
            let mut m = vec![0u8; 1000];
            for z in 2..7 {
                for y in 2..7 {
                    for x in o..o + 5 {
                        m[(z * 10 + y) * 10 + x] = 1;
                    }
                }
            }
            m
        };
        let same = compare(&cube(2), &cube(2), dims, [1.0; 3]);
        assert_eq!(same.dice, 1.0);
        assert_eq!(same.hd95_mm, 0.0);
        let moved = compare(&cube(3), &cube(2), dims, [1.0, 1.0, 2.0]);
        assert!((moved.dice - 0.8).abs() < 1e-12);
        assert_eq!(moved.volume_diff_ml, 0.0);
        assert!(moved.hd95_mm > 0.0 && moved.hd95_mm <= 2.0);
    }
}
