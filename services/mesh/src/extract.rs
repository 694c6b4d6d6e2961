//! Mask -> closed, edge- and vertex-manifold triangle mesh in patient space.
//!
//! Why the result is a closed 2-manifold: surface nets puts one vertex in
//! every cube (2x2x2 samples) with a sign change and one quad around every
//! sample edge with a sign change, joining the four cubes around that edge.
//! Two cubes sharing a square face are joined by a mesh edge in the quads of
//! the square's sign-changing sides: 0, 2, or 4 of them, 4 only for a saddle
//! square; with saddles removed every such edge is in exactly two faces,
//! and a quad's diagonal is in its own two triangles only. Quads around one
//! sample edge are wound consistently by the library (inside -> outside), so
//! each edge is used once in each direction. A vertex's faces form one disc
//! when the cube's inside corners and its outside corners are each
//! connected along cube edges; once saddles are gone the only configurations
//! that break this are two opposite corners alone on one side, which are
//! removed as well. The padding keeps every face away from the range border,
//! so nothing is left open.

use fast_surface_nets::{SignedDistance, SurfaceNetsBuffer, surface_nets};
use ndshape::RuntimeShape;

use crate::{MeshError, VoxelGrid};

/// Outside samples around the mask's bounding box: 1 for the cubes on the
/// low side, 2 on the high side because surface nets leaves the last cube
/// layer of its range to the next chunk; 2 on both for symmetry.
const PAD: usize = 2;

/// A sample of the sign field: one byte instead of an f32 (a cropped box
/// can have tens of millions of samples).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Sign(i8);

const INSIDE: Sign = Sign(-1);
const OUTSIDE: Sign = Sign(1);

impl From<Sign> for f32 {
    fn from(s: Sign) -> f32 {
        f32::from(s.0)
    }
}

impl SignedDistance for Sign {
    fn is_negative(self) -> bool {
        self.0 < 0
    }
}

pub(crate) struct Extracted {
    /// Patient space (LPS, mm).
    pub positions: Vec<[f64; 3]>,
    /// Counter-clockwise seen from outside, in patient space.
    pub triangles: Vec<[u32; 3]>,
    pub voxels: usize,
    /// slices, rows, columns of the padded box
    pub crop_dims: [usize; 3],
    pub samples_added: usize,
}

/// Inclusive bounding box `[lo, hi]` (slice, row, column) of the set voxels
/// and their count; `None` when no voxel is set.
fn bounding_box(mask: &[u8], dims: [usize; 3]) -> Option<([usize; 3], [usize; 3], usize)> {
    let [slices, rows, cols] = dims;
    let (mut lo, mut hi, mut count) = ([usize::MAX; 3], [0usize; 3], 0usize);
    for k in 0..slices {
        for r in 0..rows {
            let row = &mask[(k * rows + r) * cols..][..cols];
            let Some(first) = row.iter().position(|&v| v > 0) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v > 0).unwrap_or(first);
            count += row[first..=last].iter().filter(|&&v| v > 0).count();
            lo = [lo[0].min(k), lo[1].min(r), lo[2].min(first)];
            hi = [hi[0].max(k), hi[1].max(r), hi[2].max(last)];
        }
    }
    (count > 0).then_some((lo, hi, count))
}

pub(crate) fn extract(mask: &[u8], grid: &VoxelGrid) -> Result<Extracted, MeshError> {
    let (lo, hi, voxels) = bounding_box(mask, grid.dims).ok_or(MeshError::EmptyMask)?;
    // Padded box, slice-row-column; the sample at box index i is voxel
    // lo + i - PAD.
    let crop_dims: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a] + 1 + 2 * PAD);
    let [nk, nr, nc] = crop_dims;
    let samples = crop_dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| u32::try_from(n).is_ok())
        .ok_or(MeshError::TooLarge(crop_dims))?;

    let mut field = vec![OUTSIDE; samples];
    let [_, rows, cols] = grid.dims;
    for k in lo[0]..=hi[0] {
        for r in lo[1]..=hi[1] {
            let src = &mask[(k * rows + r) * cols..][lo[2]..=hi[2]];
            let at = ((k - lo[0] + PAD) * nr + (r - lo[1] + PAD)) * nc + PAD;
            for (dst, &v) in field[at..at + src.len()].iter_mut().zip(src) {
                if v > 0 {
                    *dst = INSIDE;
                }
            }
        }
    }
    let samples_added = resolve_ambiguities(&mut field, [nc, nr, nk]);

    // x runs along columns, y along rows, z along slices: the mask's order.
    let shape = RuntimeShape::<u32, 3>::new([nc as u32, nr as u32, nk as u32]);
    let mut buffer = SurfaceNetsBuffer::default();
    surface_nets(
        &field,
        &shape,
        [0; 3],
        [nc as u32 - 1, nr as u32 - 1, nk as u32 - 1],
        &mut buffer,
    );
    drop(field);

    let offset = lo.map(|x| x as f64 - PAD as f64);
    let positions = buffer
        .positions
        .iter()
        .map(|&[x, y, z]| {
            grid.position([
                f64::from(z) + offset[0],
                f64::from(y) + offset[1],
                f64::from(x) + offset[2],
            ])
        })
        .collect();
    let mirrored = grid.mirrored();
    let triangles = buffer
        .indices
        .chunks_exact(3)
        .map(|t| {
            if mirrored {
                [t[0], t[2], t[1]]
            } else {
                [t[0], t[1], t[2]]
            }
        })
        .collect();
    Ok(Extracted {
        positions,
        triangles,
        voxels,
        crop_dims,
        samples_added,
    })
}

/// Marks "no change needed" in the fix table.
pub(crate) const NO_FIX: u8 = u8::MAX;

/// For each cube configuration (bit i set: corner i inside, corner i at
/// offset (i & 1, i >> 1 & 1, i >> 2 & 1)), the outside corner to turn
/// inside, or `NO_FIX`.
fn fix_table() -> [u8; 256] {
    std::array::from_fn(|config| fix_for(config as u8))
}

pub(crate) fn fix_for(config: u8) -> u8 {
    let inside = |c: u8| config >> c & 1 == 1;
    // A saddle square: two diagonal corners of a face inside, the other two
    // outside. Turn the lower-numbered outside one inside.
    for axis in 0..3 {
        let (b1, b2) = (1 << ((axis + 1) % 3), 1 << ((axis + 2) % 3));
        // Every corner's face across this axis; each face is met 4 times.
        for c in 0u8..8 {
            let d = c ^ b1 ^ b2;
            if inside(c) && inside(d) && !inside(c ^ b1) && !inside(c ^ b2) {
                return (c ^ b1).min(c ^ b2);
            }
        }
    }
    // Without saddles, a side split in two within the cube is two opposite
    // corners alone; either way turning the lowest outside corner inside
    // joins them (or opens the way to a saddle fix that does).
    if parts(config) > 1 || parts(!config) > 1 {
        return (0u8..8).find(|&c| !inside(c)).unwrap_or(NO_FIX);
    }
    NO_FIX
}

/// Connected groups of the corners in `set`, along cube edges.
pub(crate) fn parts(set: u8) -> usize {
    let mut seen = 0u8;
    let mut count = 0;
    for start in 0..8 {
        if set >> start & 1 == 0 || seen >> start & 1 == 1 {
            continue;
        }
        count += 1;
        let mut stack = vec![start];
        seen |= 1 << start;
        while let Some(c) = stack.pop() {
            for bit in [1, 2, 4] {
                let n = c ^ bit;
                if set >> n & 1 == 1 && seen >> n & 1 == 0 {
                    seen |= 1 << n;
                    stack.push(n);
                }
            }
        }
    }
    count
}

/// Turns outside samples inside until no cube has a saddle face or a side
/// split along a body diagonal; returns how many it turned. `n` is the shape
/// in x (column), y (row), z (slice) order.
fn resolve_ambiguities(field: &mut [Sign], n: [usize; 3]) -> usize {
    let table = fix_table();
    let strides = [1, n[0], n[0] * n[1]];
    let corner: [usize; 8] =
        std::array::from_fn(|i| (0..3).map(|a| (i >> a & 1) * strides[a]).sum::<usize>());
    let config = |field: &[Sign], cube: usize| {
        corner.iter().enumerate().fold(0u8, |acc, (i, &off)| {
            acc | (u8::from(field[cube + off] == INSIDE) << i)
        })
    };

    let mut pending = Vec::new();
    for z in 0..n[2] - 1 {
        for y in 0..n[1] - 1 {
            let row = z * strides[2] + y * strides[1];
            for cube in row..row + n[0] - 1 {
                if table[usize::from(config(field, cube))] != NO_FIX {
                    pending.push(cube);
                }
            }
        }
    }

    let mut added = 0;
    while let Some(cube) = pending.pop() {
        let fix = table[usize::from(config(field, cube))];
        if fix == NO_FIX {
            continue;
        }
        let sample = cube + corner[usize::from(fix)];
        field[sample] = INSIDE;
        added += 1;
        // Re-check the (up to) eight cubes that have this sample as a corner.
        let at = [sample % n[0], sample / n[0] % n[1], sample / (n[0] * n[1])];
        for c in 0..8 {
            let d: [usize; 3] = std::array::from_fn(|a| c >> a & 1);
            if (0..3).all(|a| at[a] >= d[a] && at[a] - d[a] < n[a] - 1) {
                pending.push(sample - (0..3).map(|a| d[a] * strides[a]).sum::<usize>());
            }
        }
    }
    added
}
