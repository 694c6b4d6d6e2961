//! Liver surface meshes from a binary voxel mask: a closed, smoothed,
//! decimated triangle mesh in patient coordinates (mm, DICOM LPS), written as
//! binary STL or binary glTF. Pure and synchronous: bytes in, bytes out.
//!
//! The pipeline and why each step is the way it is:
//!
//! 1. **Crop.** Only the mask's bounding box plus a 2-sample margin of
//!    "outside" is meshed: a liver fills a few percent of a CT volume. The
//!    margin closes the surface at the box border; it is 2 rather than 1
//!    because `surface_nets` emits no faces on the last cube layer of its
//!    range (its chunk-seam rule).
//! 2. **Sign field.** The field is the mask itself (-1 inside, +1 outside),
//!    without blur: a blur changes topology (thin bridges vanish, close
//!    surfaces merge) and, on 2.5 mm slices, moves the surface by millimetres;
//!    the Taubin smoother does the smoothing in patient space instead. With a
//!    binary field each surface-nets vertex lands at the centroid of the
//!    crossed edges' midpoints, i.e. on the voxel boundary, so the enclosed
//!    volume matches the voxel volume.
//! 3. **Ambiguities.** Surface nets gives an edge used by four faces wherever
//!    a 2x2 square of samples is a "saddle" (inside on one diagonal, outside
//!    on the other), and a vertex shared by two sheets where a cube's inside
//!    (or outside) corners touch only along a body diagonal. Both are removed
//!    from the sign field before extraction by turning an outside sample of
//!    the offending square/cube inside, re-checking the cubes around it,
//!    until none remain. This only adds samples, so it terminates, and an
//!    added sample always lies within the bounding box of the inside samples,
//!    so the margin stays outside. What comes out is a closed 2-manifold
//!    (every edge in two faces, once in each direction, every vertex a disc):
//!    see `extract`. Turning samples inside (rather than outside) joins
//!    voxels that touch only along an edge or at a corner instead of
//!    splitting or dropping them; on a real mask it adds a handful of
//!    samples (15 on IRCADb 01), on noise many (`Report::samples_added`).
//! 4. **Patient space.** Vertices map from sample indices to LPS with the
//!    grid in f64. The library winds faces counter-clockwise seen from
//!    outside in (column, row, slice) index space; when that map is mirrored
//!    (negative determinant, e.g. slices stored head to feet) every triangle
//!    is flipped so normals still point outward.
//! 5. **Smoothing.** Taubin lambda/mu (0.5 / -0.53) over the one-ring with
//!    uniform weights: removes the voxel staircase without the shrinkage of
//!    plain Laplacian smoothing, and moves vertices only, so topology cannot
//!    change. Parts of a few voxels are left unsmoothed (the filter would
//!    shrink them to a point); strands one voxel thick still thin out, and
//!    should that leave a triangle without area in f32, the unsmoothed
//!    geometry is kept (`Report::smoothed`).
//! 6. **Decimation.** meshoptimizer's edge-collapse simplifier (quadric
//!    error), driven to the triangle budget; a collapse may move the surface
//!    by at most the largest voxel spacing per run (the mask is no more
//!    accurate than that; on IRCADb the error stays near 0.1 mm, so only
//!    pathological masks are held above the budget by this). It checks no
//!    link condition, so a collapse
//!    can pinch the surface; every result is checked, the spots that broke
//!    are locked and the run repeated, and when that does not converge the
//!    decimation backs off to smaller steps and, at worst, to the last
//!    watertight mesh (the undecimated one is watertight by construction).
//!    The report says how it went; the returned mesh is always watertight
//!    when the extraction was (see `decimate`). The genus is not kept: a
//!    small handle may be closed.
//! 7. **Export.** STL via `stl_io` with facet normals from the winding; GLB
//!    with the JSON from `gltf-json` and the container packed by hand;
//!    positions stay in mm and the node scales by 0.001 (glTF's unit is the
//!    metre).

mod decimate;
mod export;
mod extract;
mod mesh;
mod smooth;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use liverseg_core::geometry::{cross, dot};
use thiserror::Error;

pub use decimate::Decimation;
pub use mesh::Mesh;

const MAX_SPACING_MM: f64 = 1e3;
const MAX_ORIGIN_MM: f64 = 1e7;

/// Where voxels lie: identical in meaning to the inference crate's `Grid`.
///
/// Voxel `(k, r, c)` has its centre at
/// `origin + k*spacing[0]*axes[0] + r*spacing[1]*axes[1] + c*spacing[2]*axes[2]`
/// and its value at mask index `(k*rows + r)*cols + c`.
#[derive(Debug, Clone, PartialEq)]
pub struct VoxelGrid {
    /// slices, rows, columns
    pub dims: [usize; 3],
    /// mm between slice centres, rows, columns
    pub spacing: [f64; 3],
    /// Patient position (LPS, mm) of the centre of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Unit vectors (LPS) along increasing slice, row and column index; the
    /// frame may be left- or right-handed.
    pub axes: [[f64; 3]; 3],
}

impl VoxelGrid {
    /// Number of voxels, or `None` when it overflows `usize`.
    pub fn len(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Whether the grid has no voxel.
    pub fn is_empty(&self) -> bool {
        self.dims.contains(&0)
    }

    /// Volume of one voxel (mm³).
    pub fn voxel_volume_mm3(&self) -> f64 {
        self.spacing.iter().product()
    }

    /// Patient position (LPS, mm) of a point in continuous voxel index space.
    pub fn position(&self, [k, r, c]: [f64; 3]) -> [f64; 3] {
        let (s, a) = (self.spacing, self.axes);
        std::array::from_fn(|i| {
            self.origin[i] + k * s[0] * a[0][i] + r * s[1] * a[1][i] + c * s[2] * a[2][i]
        })
    }

    fn validate(&self) -> Result<(), MeshError> {
        for (axis, &value) in self.spacing.iter().enumerate() {
            // The upper bound keeps positions well inside f32 (the output
            // type) whatever the dimensions; a metre between voxels is
            // already no CT.
            if !(value > 0.0 && value <= MAX_SPACING_MM) {
                return Err(MeshError::InvalidSpacing { axis, value });
            }
        }
        if !self.origin.iter().all(|x| x.abs() <= MAX_ORIGIN_MM) {
            return Err(MeshError::InvalidOrigin(self.origin));
        }
        // 1e-3 matches the tolerance the DICOM loader accepts for
        // ImageOrientationPatient, which is stored with few digits.
        const TOL: f64 = 1e-3;
        let a = self.axes;
        let finite = a.iter().flatten().all(|x| x.is_finite());
        let unit = a.iter().all(|v| (dot(*v, *v).sqrt() - 1.0).abs() <= TOL);
        let orthogonal = [(0, 1), (0, 2), (1, 2)]
            .iter()
            .all(|&(i, j)| dot(a[i], a[j]).abs() <= TOL);
        if finite && unit && orthogonal {
            Ok(())
        } else {
            Err(MeshError::NonOrthonormalAxes(a))
        }
    }

    /// Whether index space (column, row, slice), the order the extractor's
    /// x, y, z run in, maps onto patient space with a reflection.
    fn mirrored(&self) -> bool {
        let [slice, row, col] = self.axes;
        dot(col, cross(row, slice)) < 0.0
    }
}

/// How to mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Triangle budget of the returned mesh (at least 4, a tetrahedron).
    pub max_triangles: usize,
    /// Taubin iterations (each a shrinking and an inflating pass); 0 keeps
    /// the raw surface-nets surface.
    pub smoothing_iterations: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            // Enough for a liver at ~2 mm detail; a GLB of ~1.2 MB and an
            // STL of ~2.5 MB.
            max_triangles: 50_000,
            // Removes the voxel staircase of 2.5 mm slices while keeping
            // the volume within a fraction of a percent (see the tests).
            smoothing_iterations: 20,
        }
    }
}

/// What `surface` did, for the caller's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Voxels set in the mask.
    pub voxels: usize,
    /// Their volume (ml).
    pub voxel_volume_ml: f64,
    /// Slices, rows, columns of the cropped, padded sample grid.
    pub crop_dims: [usize; 3],
    /// Outside samples turned inside to remove ambiguous configurations.
    pub samples_added: usize,
    /// Closed surfaces in the mesh (connected parts of the mask, roughly).
    pub components: usize,
    /// Triangles straight out of surface nets.
    pub triangles_extracted: usize,
    /// Whether the smoothed geometry was used (false when smoothing was
    /// off, or degenerated a triangle and was undone).
    pub smoothed: bool,
    /// Triangles of the returned mesh.
    pub triangles: usize,
    /// Vertices of the returned mesh.
    pub vertices: usize,
    /// Whether the returned mesh is watertight (see `Mesh::is_watertight`).
    pub watertight: bool,
    /// Whether `triangles <= Options::max_triangles`.
    pub budget_met: bool,
    /// How the decimation went.
    pub decimation: Decimation,
    /// meshoptimizer's estimate of the decimation's deviation (mm; summed
    /// over rounds, an upper bound).
    pub decimation_error_mm: f64,
    /// Simplifier runs, rejected ones included (each rejection locks the
    /// spot that broke and reruns).
    pub decimation_runs: usize,
    /// Volume enclosed by the returned mesh (ml).
    pub volume_ml: f64,
    /// Area of the returned mesh (mm²).
    pub surface_area_mm2: f64,
    /// Crop, ambiguity removal, surface nets, mapping to patient space.
    pub extraction_time: Duration,
    /// Taubin smoothing and its check.
    pub smoothing_time: Duration,
    /// All simplifier runs and their checks.
    pub decimation_time: Duration,
}

/// Why `surface` refused its input.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MeshError {
    #[error("mask has {actual} values, the grid {dims:?} needs {expected}")]
    MaskLength {
        dims: [usize; 3],
        expected: usize,
        actual: usize,
    },
    #[error("grid dimensions {0:?} overflow the address space")]
    DimsOverflow([usize; 3]),
    #[error("mask is empty: no voxel is set")]
    EmptyMask,
    #[error(
        "spacing along axis {axis} is {value} mm; it must be positive, finite and at most 1000 mm"
    )]
    InvalidSpacing { axis: usize, value: f64 },
    #[error(
        "grid origin {0:?} is not finite or is implausibly far (over 10 km) from the patient origin"
    )]
    InvalidOrigin([f64; 3]),
    #[error("grid axes {0:?} are not orthonormal")]
    NonOrthonormalAxes([[f64; 3]; 3]),
    #[error(
        "the mask's bounding box ({0:?} samples with margin) is too large to mesh (over 2^32 samples)"
    )]
    TooLarge([usize; 3]),
    #[error("a budget of {0} triangles is below the 4 of the smallest closed mesh")]
    BudgetTooSmall(usize),
}

/// The smallest closed triangle mesh, a tetrahedron.
const MIN_TRIANGLES: usize = 4;

/// A closed liver surface in patient space from a binary mask on `grid`
/// (values > 0 are inside).
pub fn surface(
    mask: &[u8],
    grid: &VoxelGrid,
    options: &Options,
) -> Result<(Mesh, Report), MeshError> {
    grid.validate()?;
    if options.max_triangles < MIN_TRIANGLES {
        return Err(MeshError::BudgetTooSmall(options.max_triangles));
    }
    let expected = grid.len().ok_or(MeshError::DimsOverflow(grid.dims))?;
    if mask.len() != expected {
        return Err(MeshError::MaskLength {
            dims: grid.dims,
            expected,
            actual: mask.len(),
        });
    }

    let start = Instant::now();
    let extracted = extract::extract(mask, grid)?;
    let extraction_time = start.elapsed();
    let triangles_extracted = extracted.triangles.len();

    let start = Instant::now();
    let to_f32 = |positions: &[[f64; 3]]| positions.iter().map(|p| p.map(|x| x as f32)).collect();
    let mut positions = extracted.positions.clone();
    smooth::taubin(
        &mut positions,
        &extracted.triangles,
        options.smoothing_iterations,
    );
    let mut mesh = Mesh {
        positions: to_f32(&positions),
        triangles: extracted.triangles,
    };
    // Smoothing cannot change the topology, but it can shrink a thin strand
    // until a triangle has no area left in f32; then the extracted
    // geometry (non-degenerate by construction) is kept instead.
    let smoothed = options.smoothing_iterations > 0 && mesh.is_watertight();
    if !smoothed {
        mesh.positions = to_f32(&extracted.positions);
    }
    let smoothing_time = start.elapsed();

    let start = Instant::now();
    // No collapse may move the surface by more than a voxel: the mask is
    // not more accurate than that, and the budget is not worth more.
    let max_error_mm = grid.spacing.iter().copied().fold(0.0, f64::max);
    let decimated = decimate::decimate(mesh, options.max_triangles, max_error_mm as f32);
    let decimation_time = start.elapsed();
    let mesh = decimated.mesh;

    let report = Report {
        voxels: extracted.voxels,
        voxel_volume_ml: extracted.voxels as f64 * grid.voxel_volume_mm3() / 1000.0,
        crop_dims: extracted.crop_dims,
        samples_added: extracted.samples_added,
        components: mesh.components(),
        triangles_extracted,
        smoothed,
        triangles: mesh.triangles.len(),
        vertices: mesh.positions.len(),
        watertight: mesh.is_watertight(),
        budget_met: mesh.triangles.len() <= options.max_triangles,
        decimation: decimated.outcome,
        decimation_error_mm: decimated.error_mm,
        decimation_runs: decimated.runs,
        volume_ml: mesh.enclosed_volume_mm3() / 1000.0,
        surface_area_mm2: mesh.surface_area_mm2(),
        extraction_time,
        smoothing_time,
        decimation_time,
    };
    Ok((mesh, report))
}
