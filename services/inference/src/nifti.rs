//! NIfTI-1 volumes: read any scalar 3D image (CT or mask) with its affine,
//! write a uint8 mask with the affine of the grid it lies on.

use crate::Error;
use crate::grid::{Grid, normalised};
use nifti::{NiftiObject, ReaderOptions};
use std::io::Write;
use std::path::Path;

/// Reads a 3D NIfTI file (`.nii` or `.nii.gz`): its grid in LPS and its
/// values with `scl_slope`/`scl_inter` applied, in `[slice][row][column]`
/// order (NIfTI's k, j, i).
pub fn read(path: &Path) -> Result<(Grid, Vec<f32>), Error> {
    let bad = |reason: String| Error::Input {
        path: path.into(),
        reason,
    };
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| bad(format!("not a readable NIfTI file: {e}")))?;
    let h = obj.header().clone();
    let ndim = h.dim[0] as usize;
    if !(2..=7).contains(&ndim) {
        return Err(bad(format!("dim[0] = {ndim} is not a 3D image")));
    }
    if ndim > 3 && h.dim[4..=ndim].iter().any(|&d| d > 1) {
        return Err(bad("only 3D images are supported, not 4D or more".into()));
    }
    let slices = if ndim >= 3 { h.dim[3].max(1) } else { 1 };
    let dims3 = [h.dim[1] as usize, h.dim[2] as usize, slices as usize];
    let raw = obj.into_volume().into_raw_data();
    let mut data = decode(&raw, h.datatype, h.endianness == nifti::Endianness::Big)
        .ok_or_else(|| bad(format!("NIfTI datatype {} is not supported", h.datatype)))?;
    let n: usize = dims3.iter().product();
    if data.len() < n {
        return Err(bad(format!(
            "holds {} voxels, its header says {n}",
            data.len()
        )));
    }
    data.truncate(n);
    if h.scl_slope.is_finite() && h.scl_slope != 0.0 {
        let (m, b) = (
            h.scl_slope,
            if h.scl_inter.is_finite() {
                h.scl_inter
            } else {
                0.0
            },
        );
        data.iter_mut().for_each(|v| *v = *v * m + b);
    }
    let affine = affine_lps(&h);
    let mut axes = [[0.0; 3]; 3];
    let mut spacing = [0.0; 3];
    // NIfTI i (fastest) is our column axis, j the row axis, k the slice axis.
    for (ours, col) in [(2usize, 0usize), (1, 1), (0, 2)] {
        let v = [affine[0][col], affine[1][col], affine[2][col]];
        let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        axes[ours] = normalised(v).ok_or_else(|| bad("its affine is degenerate".into()))?;
        spacing[ours] = norm;
    }
    let grid = Grid {
        dims: [dims3[2], dims3[1], dims3[0]],
        spacing,
        origin: [affine[0][3], affine[1][3], affine[2][3]],
        axes,
    };
    Ok((grid, data))
}

/// Raw voxels of a scalar NIfTI datatype as f32.
fn decode(raw: &[u8], datatype: i16, big_endian: bool) -> Option<Vec<f32>> {
    fn conv<const N: usize>(raw: &[u8], big: bool, f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        raw.chunks_exact(N)
            .map(|c| {
                let mut b: [u8; N] = c.try_into().unwrap_or([0; N]);
                if big {
                    b.reverse();
                }
                f(b)
            })
            .collect()
    }
    let big = big_endian;
    Some(match datatype {
        2 => raw.iter().map(|&v| v as f32).collect(),
        256 => raw.iter().map(|&v| v as i8 as f32).collect(),
        4 => conv(raw, big, |b| i16::from_le_bytes(b) as f32),
        512 => conv(raw, big, |b| u16::from_le_bytes(b) as f32),
        8 => conv(raw, big, |b| i32::from_le_bytes(b) as f32),
        768 => conv(raw, big, |b| u32::from_le_bytes(b) as f32),
        16 => conv(raw, big, f32::from_le_bytes),
        64 => conv(raw, big, |b| f64::from_le_bytes(b) as f32),
        _ => return None,
    })
}

/// The voxel-to-LPS affine: sform when set, else qform, else pixdim alone.
#[allow(clippy::needless_range_loop)] // matrix indices read as in the NIfTI standard
fn affine_lps(h: &nifti::NiftiHeader) -> [[f64; 4]; 3] {
    let mut a = [[0.0f64; 4]; 3];
    if h.sform_code > 0 {
        for (row, src) in a.iter_mut().zip([h.srow_x, h.srow_y, h.srow_z]) {
            for (d, s) in row.iter_mut().zip(src) {
                *d = s as f64;
            }
        }
    } else if h.qform_code > 0 {
        let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
        let a0 = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a0 * a0 + b * b - c * c - d * d,
                2.0 * (b * c - a0 * d),
                2.0 * (b * d + a0 * c),
            ],
            [
                2.0 * (b * c + a0 * d),
                a0 * a0 + c * c - b * b - d * d,
                2.0 * (c * d - a0 * b),
            ],
            [
                2.0 * (b * d - a0 * c),
                2.0 * (c * d + a0 * b),
                a0 * a0 + d * d - c * c - b * b,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let px = [
            h.pixdim[1] as f64,
            h.pixdim[2] as f64,
            h.pixdim[3] as f64 * qfac,
        ];
        let off = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] = r[i][j] * px[j];
            }
            a[i][3] = off[i];
        }
    } else {
        for i in 0..3 {
            let p = h.pixdim[i + 1] as f64;
            a[i][i] = if p > 0.0 { p } else { 1.0 };
        }
    }
    // RAS to LPS.
    for row in a.iter_mut().take(2) {
        row.iter_mut().for_each(|v| *v = -*v);
    }
    a
}

/// Writes `mask` (`[slice][row][column]`, one byte per voxel) on `grid` as a
/// gzipped NIfTI-1 file with sform and qform set (scanner coordinates).
pub fn write_mask(path: &Path, grid: &Grid, mask: &[u8], description: &str) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io {
        path: path.into(),
        source: e,
    };
    let mut h = vec![0u8; 352];
    let put_i16 = |h: &mut [u8], at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut [u8], at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[38] = b'r';
    let [s, r, c] = grid.dims;
    for (k, d) in [3usize, c, r, s, 1, 1, 1, 1].into_iter().enumerate() {
        put_i16(&mut h, 40 + 2 * k, d as i16);
    }
    put_i16(&mut h, 70, 2); // DT_UINT8
    put_i16(&mut h, 72, 8);
    // RAS affine columns: i (column), j (row), k (slice).
    let col_ras = |k: usize| {
        let v = grid.axes[k].map(|x| x * grid.spacing[k]);
        [-v[0], -v[1], v[2]]
    };
    let cols = [col_ras(2), col_ras(1), col_ras(0)];
    let origin = [-grid.origin[0], -grid.origin[1], grid.origin[2]];
    let (quat, qfac) = quaternion(&cols.map(normalised_or_zero));
    put_f32(&mut h, 76, qfac as f32);
    for (k, sp) in [grid.spacing[2], grid.spacing[1], grid.spacing[0]]
        .into_iter()
        .enumerate()
    {
        put_f32(&mut h, 80 + 4 * k, sp as f32);
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0);
    h[123] = 2; // millimetres
    put_f32(&mut h, 124, 1.0);
    let d = description.as_bytes();
    h[148..148 + d.len().min(79)].copy_from_slice(&d[..d.len().min(79)]);
    put_i16(&mut h, 252, 1); // qform: scanner anatomical
    put_i16(&mut h, 254, 1); // sform: scanner anatomical
    for (k, q) in quat.into_iter().chain(origin).enumerate() {
        put_f32(&mut h, 256 + 4 * k, q as f32);
    }
    for row in 0..3 {
        for (k, v) in [cols[0][row], cols[1][row], cols[2][row], origin[row]]
            .into_iter()
            .enumerate()
        {
            put_f32(&mut h, 280 + 16 * row + 4 * k, v as f32);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    let file = std::fs::File::create(path).map_err(io)?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    gz.write_all(&h).map_err(io)?;
    gz.write_all(mask).map_err(io)?;
    let buf = gz.finish().map_err(io)?;
    let file = buf.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}

fn normalised_or_zero(v: [f64; 3]) -> [f64; 3] {
    normalised(v).unwrap_or([0.0; 3])
}

/// NIfTI quaternion (b, c, d) and qfac of the rotation whose columns are `cols`.
fn quaternion(cols: &[[f64; 3]; 3]) -> ([f64; 3], f64) {
    let mut r = [[0.0; 3]; 3];
    for (j, col) in cols.iter().enumerate() {
        for i in 0..3 {
            r[i][j] = col[i];
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a, mut b, mut c, mut d): (f64, f64, f64, f64);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r[0][1] + r[1][0]) / b;
            d = 0.25 * (r[0][2] + r[2][0]) / b;
            a = 0.25 * (r[2][1] - r[1][2]) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r[0][1] + r[1][0]) / c;
            d = 0.25 * (r[1][2] + r[2][1]) / c;
            a = 0.25 * (r[0][2] - r[2][0]) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r[0][2] + r[2][0]) / d;
            c = 0.25 * (r[1][2] + r[2][1]) / d;
            a = 0.25 * (r[1][0] - r[0][1]) / d;
        }
        if a < 0.0 {
            (b, c, d) = (-b, -c, -d);
        }
    }
    ([b, c, d], qfac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_round_trips_with_its_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.nii.gz");
        // Head-first slices and rows running left to right: a left-handed,
        // permuted grid, so both sform and qform (with qfac) are exercised.
        let grid = Grid {
            dims: [3, 4, 5],
            spacing: [2.5, 0.8, 0.6],
            origin: [-10.0, 20.5, 100.0],
            axes: [[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        };
        let mask: Vec<u8> = (0..60).map(|i| (i % 3 == 0) as u8).collect();
        write_mask(&path, &grid, &mask, "test").unwrap();
        let (back, data) = read(&path).unwrap();
        assert!(back.same_lattice(&grid, 1e-4), "{back:?}");
        assert_eq!(data.iter().map(|v| *v as u8).collect::<Vec<_>>(), mask);
    }
}
