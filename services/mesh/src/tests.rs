use super::*;
use crate::extract::{NO_FIX, fix_for, parts};

const AXIAL: [[f64; 3]; 3] = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]];
const CENTRE: [f64; 3] = [1.3, -0.4, 2.1];
const RADIUS: f64 = 30.0;

/// An axial grid: slices along +S, rows along +P, columns along +L.
fn axial(dims: [usize; 3], spacing: [f64; 3], origin: [f64; 3]) -> VoxelGrid {
    VoxelGrid {
        dims,
        spacing,
        origin,
        axes: AXIAL,
    }
}

/// Voxels whose centres (in patient space) satisfy `inside`.
fn voxelise(grid: &VoxelGrid, inside: impl Fn([f64; 3]) -> bool) -> Vec<u8> {
    let [s, r, c] = grid.dims;
    let mut mask = vec![0u8; s * r * c];
    for k in 0..s {
        for j in 0..r {
            for i in 0..c {
                let p = grid.position([k as f64, j as f64, i as f64]);
                mask[(k * r + j) * c + i] = u8::from(inside(p));
            }
        }
    }
    mask
}

fn index_mask(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> bool) -> Vec<u8> {
    let mut mask = vec![0u8; dims.iter().product()];
    for k in 0..dims[0] {
        for r in 0..dims[1] {
            for c in 0..dims[2] {
                mask[(k * dims[1] + r) * dims[2] + c] = u8::from(f(k, r, c));
            }
        }
    }
    mask
}

fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt()
}

fn f64x3(p: [f32; 3]) -> [f64; 3] {
    p.map(f64::from)
}

fn in_sphere(p: [f64; 3]) -> bool {
    distance(p, CENTRE) <= RADIUS
}

/// The 0.7 x 0.7 x 2.5 mm sphere grid, big enough for the sphere plus a
/// few voxels.
fn sphere_grid() -> VoxelGrid {
    axial([30, 100, 100], [2.5, 0.7, 0.7], [-36.0, -34.65, -34.65])
}

fn sphere() -> (VoxelGrid, Vec<u8>) {
    let grid = sphere_grid();
    let mask = voxelise(&grid, in_sphere);
    (grid, mask)
}

fn voxel_volume_mm3(mask: &[u8], grid: &VoxelGrid) -> f64 {
    mask.iter().filter(|&&v| v > 0).count() as f64 * grid.voxel_volume_mm3()
}

/// |distance to centre - radius| for every vertex.
fn radial_errors(mesh: &Mesh, centre: [f64; 3], radius: f64) -> Vec<f64> {
    mesh.positions
        .iter()
        .map(|&p| (distance(f64x3(p), centre) - radius).abs())
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn undecimated(smoothing_iterations: u32) -> Options {
    Options {
        max_triangles: usize::MAX,
        smoothing_iterations,
    }
}

/// Every vertex used by a triangle has a single fan of triangles around it
/// (a disc), not two cones meeting at a point.
fn vertex_manifold(mesh: &Mesh) -> bool {
    let mut fans: Vec<Vec<(u32, u32)>> = vec![Vec::new(); mesh.positions.len()];
    for &[a, b, c] in &mesh.triangles {
        fans[a as usize].push((b, c));
        fans[b as usize].push((c, a));
        fans[c as usize].push((a, b));
    }
    fans.iter().filter(|f| !f.is_empty()).all(|fan| {
        // Walk the opposite edges from one start; a disc comes back to it
        // after visiting every one.
        let mut at = fan[0].1;
        for _ in 1..fan.len() {
            match fan.iter().find(|e| e.0 == at) {
                Some(e) if e.1 != fan[0].1 => at = e.1,
                _ => return false,
            }
        }
        at == fan[0].0
    })
}

/// Volume-weighted centroid of the enclosed solid.
fn centroid(mesh: &Mesh) -> [f64; 3] {
    let (mut sum, mut volume) = ([0.0; 3], 0.0);
    for t in &mesh.triangles {
        let [a, b, c] = t.map(|i| f64x3(mesh.positions[i as usize]));
        let v = liverseg_core::geometry::dot(a, liverseg_core::geometry::cross(b, c)) / 6.0;
        volume += v;
        for i in 0..3 {
            sum[i] += v * (a[i] + b[i] + c[i]) / 4.0;
        }
    }
    sum.map(|s| s / volume)
}

/// Mean distance from each vertex of `a` to the nearest vertex of `b`.
fn mean_nearest(a: &Mesh, b: &Mesh) -> f64 {
    let d: Vec<f64> = a
        .positions
        .iter()
        .map(|&p| {
            b.positions
                .iter()
                .map(|&q| distance(f64x3(p), f64x3(q)))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    mean(&d)
}

/// A unit cube, 8 vertices, 12 outward triangles.
fn cube() -> Mesh {
    let positions = (0..8)
        .map(|i| [(i & 1) as f32, (i >> 1 & 1) as f32, (i >> 2 & 1) as f32])
        .collect();
    let triangles = vec![
        [0, 2, 1],
        [1, 2, 3],
        [4, 5, 6],
        [5, 7, 6],
        [0, 1, 4],
        [1, 5, 4],
        [2, 6, 3],
        [3, 6, 7],
        [0, 4, 2],
        [2, 4, 6],
        [1, 3, 5],
        [3, 7, 5],
    ];
    Mesh {
        positions,
        triangles,
    }
}

#[test]
fn mesh_measurements_on_a_cube() {
    let cube = cube();
    assert!(cube.is_watertight());
    assert!((cube.enclosed_volume_mm3() - 1.0).abs() < 1e-12);
    assert!((cube.surface_area_mm2() - 6.0).abs() < 1e-12);
    assert_eq!(cube.bounds(), ([0.0; 3], [1.0; 3]));
    assert_eq!(cube.components(), 1);

    let mut inside_out = cube.clone();
    inside_out.triangles.iter_mut().for_each(|t| t.swap(1, 2));
    assert!(inside_out.is_watertight());
    assert!((inside_out.enclosed_volume_mm3() + 1.0).abs() < 1e-12);

    let mut open = cube.clone();
    open.triangles.pop();
    assert!(!open.is_watertight());

    let mut one_flipped = cube.clone();
    one_flipped.triangles[0].swap(1, 2);
    assert!(!one_flipped.is_watertight(), "inconsistent winding");

    let mut doubled = cube.clone();
    doubled.triangles.extend_from_slice(&cube.triangles[..2]);
    assert!(!doubled.is_watertight(), "edges in four triangles");

    let mut repeated = cube.clone();
    repeated.triangles[0] = [0, 0, 1];
    assert!(!repeated.is_watertight(), "repeated index");

    let mut flat = cube.clone();
    flat.positions[7] = [0.5, 0.5, 1.0];
    flat.positions[5] = [0.5, 0.5, 1.0];
    assert!(!flat.is_watertight(), "zero-area triangle");

    let mut out_of_range = cube.clone();
    out_of_range.triangles[0] = [0, 2, 99];
    assert!(!out_of_range.is_watertight());
    let _ = (
        out_of_range.to_stl(),
        out_of_range.to_glb(),
        out_of_range.enclosed_volume_mm3(),
    );

    assert!(!Mesh::default().is_watertight());
    assert_eq!(Mesh::default().bounds(), ([0.0; 3], [0.0; 3]));
}

#[test]
fn sphere_is_watertight_with_the_voxel_volume_and_radius() {
    let (grid, mask) = sphere();
    let voxels = voxel_volume_mm3(&mask, &grid);
    let (mesh, report) = surface(&mask, &grid, &undecimated(20)).unwrap();
    assert!(mesh.is_watertight() && report.watertight);
    assert!(vertex_manifold(&mesh));
    assert_eq!(report.components, 1);
    assert_eq!(report.decimation, Decimation::NotNeeded);
    let volume = mesh.enclosed_volume_mm3();
    assert!((volume / voxels - 1.0).abs() < 0.01, "{volume} vs {voxels}");
    assert!((report.volume_ml * 1000.0 - volume).abs() < 1e-6);

    // Within half a slice of the analytic sphere everywhere, much closer on
    // average.
    let radial = radial_errors(&mesh, CENTRE, RADIUS);
    assert!(max(&radial) < 1.25, "max radial error {}", max(&radial));
    assert!(mean(&radial) < 0.3, "mean radial error {}", mean(&radial));

    // Smoothing removes the staircase: the area comes close to 4 pi r²,
    // which the raw surface-nets mesh overshoots.
    let sphere_area = 4.0 * std::f64::consts::PI * RADIUS * RADIUS;
    let (raw, _) = surface(&mask, &grid, &undecimated(0)).unwrap();
    assert!(raw.is_watertight());
    assert!(raw.surface_area_mm2() > 1.06 * sphere_area);
    assert!(mesh.surface_area_mm2() < 1.04 * sphere_area);
    assert!(mesh.surface_area_mm2() > 0.99 * sphere_area);

    let (lo, hi) = mesh.bounds();
    for i in 0..3 {
        assert!(
            (f64::from(lo[i]) - (CENTRE[i] - RADIUS)).abs() < 1.3,
            "{lo:?}"
        );
        assert!(
            (f64::from(hi[i]) - (CENTRE[i] + RADIUS)).abs() < 1.3,
            "{hi:?}"
        );
    }
}

#[test]
fn default_options_mesh_a_sphere() {
    let (grid, mask) = sphere();
    let (mesh, report) = surface(&mask, &grid, &Options::default()).unwrap();
    assert!(report.watertight && report.budget_met);
    assert!(report.triangles <= Options::default().max_triangles);
    assert_eq!(report.triangles, mesh.triangles.len());
    assert_eq!(report.vertices, mesh.positions.len());
    assert!(report.triangles_extracted >= report.triangles);
    // The set voxels' bounding box plus 2 on each side.
    let [_, rows, cols] = grid.dims;
    let set: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] > 0).collect();
    let extent = |f: &dyn Fn(usize) -> usize| {
        set.iter().map(|&i| f(i)).max().unwrap() - set.iter().map(|&i| f(i)).min().unwrap() + 1 + 4
    };
    let crop = [
        extent(&|i| i / (rows * cols)),
        extent(&|i| i / cols % rows),
        extent(&|i| i % cols),
    ];
    assert_eq!(report.crop_dims, crop);
    assert_eq!(report.voxels, set.len());
}

#[test]
fn triangle_budget_is_respected_and_watertight() {
    let (grid, mask) = sphere();
    let voxels = voxel_volume_mm3(&mask, &grid);
    for budget in [2000, 500] {
        let options = Options {
            max_triangles: budget,
            ..Options::default()
        };
        let (mesh, report) = surface(&mask, &grid, &options).unwrap();
        assert!(report.triangles_extracted > 10 * budget);
        assert!(mesh.triangles.len() <= budget, "{report:?}");
        assert_eq!(report.decimation, Decimation::Reached);
        assert!(report.budget_met);
        assert!(mesh.is_watertight() && report.watertight);
        // No vertex left behind by the decimation.
        let mut used = vec![false; mesh.positions.len()];
        mesh.triangles
            .iter()
            .flatten()
            .for_each(|&i| used[i as usize] = true);
        assert!(used.iter().all(|&u| u));
        let volume = mesh.enclosed_volume_mm3();
        assert!(
            (volume / voxels - 1.0).abs() < 0.03,
            "{budget}: {volume} vs {voxels}"
        );
        let radial = radial_errors(&mesh, CENTRE, RADIUS);
        assert!(
            max(&radial) < 1.5,
            "{budget}: max radial error {}",
            max(&radial)
        );
    }
}

#[test]
fn mirrored_grids_give_outward_meshes_of_the_same_surface() {
    let (grid, mask) = sphere();
    let options = undecimated(Options::default().smoothing_iterations);
    let (reference, _) = surface(&mask, &grid, &options).unwrap();
    let last = |axis: usize| (grid.dims[axis] - 1) as f64 * grid.spacing[axis];
    // Slices stored head to feet; rows flipped; both (a rotation again).
    for flip in [
        [true, false, false],
        [false, true, false],
        [true, true, false],
    ] {
        let mut mirrored = grid.clone();
        for (axis, _) in flip.iter().enumerate().filter(|(_, f)| **f) {
            let a = grid.axes[axis];
            mirrored.axes[axis] = a.map(|x| -x);
            mirrored.origin = std::array::from_fn(|i| mirrored.origin[i] + last(axis) * a[i]);
        }
        assert_eq!(
            mirrored.mirrored(),
            flip.iter().filter(|&&f| f).count() == 1
        );
        // The same voxels in patient space, stored in another order.
        let flipped_mask = voxelise(&mirrored, in_sphere);
        assert_ne!(flipped_mask, mask);
        let (mesh, report) = surface(&flipped_mask, &mirrored, &options).unwrap();
        assert!(report.watertight);
        let (v, v0) = (mesh.enclosed_volume_mm3(), reference.enclosed_volume_mm3());
        assert!(v > 0.0, "{flip:?}: inward mesh");
        assert!((v / v0 - 1.0).abs() < 0.002, "{flip:?}: {v} vs {v0}");
        let ((lo, hi), (lo0, hi0)) = (mesh.bounds(), reference.bounds());
        for i in 0..3 {
            assert!((lo[i] - lo0[i]).abs() < 0.1 && (hi[i] - hi0[i]).abs() < 0.1);
        }
        assert!(mean_nearest(&mesh, &reference) < 0.1);
        assert!(mean_nearest(&reference, &mesh) < 0.1);
    }
}

/// Rotation by `degrees` about the unit vector `u` (Rodrigues).
fn rotate(v: [f64; 3], u: [f64; 3], degrees: f64) -> [f64; 3] {
    let (s, c) = degrees.to_radians().sin_cos();
    let k = liverseg_core::geometry::cross(u, v);
    let d = liverseg_core::geometry::dot(u, v);
    std::array::from_fn(|i| v[i] * c + k[i] * s + u[i] * d * (1.0 - c))
}

#[test]
fn oblique_grid_places_the_mesh_where_the_voxels_are() {
    let u = [1.0, 2.0, 3.0].map(|x: f64| x / 14f64.sqrt());
    let axes = AXIAL.map(|a| rotate(a, u, 20.0));
    // An ellipsoid with distinct semi-axes along L, P, S (patient space),
    // off the grid's origin: a wrong axis or origin would move or turn it.
    let (centre, semi) = ([40.0, -25.0, 60.0], [28.0, 20.0, 14.0]);
    let inside = |p: [f64; 3]| {
        (0..3)
            .map(|i| ((p[i] - centre[i]) / semi[i]).powi(2))
            .sum::<f64>()
            <= 1.0
    };
    let spacing = [1.5, 0.8, 0.8];
    let dims = [50, 90, 90];
    // The grid centred on the ellipsoid.
    let half = |a: usize| (dims[a] - 1) as f64 * spacing[a] / 2.0;
    let origin =
        std::array::from_fn(|i| centre[i] - (0..3).map(|a| half(a) * axes[a][i]).sum::<f64>());
    let grid = VoxelGrid {
        dims,
        spacing,
        origin,
        axes,
    };
    let mask = voxelise(&grid, inside);
    let (mesh, report) = surface(&mask, &grid, &Options::default()).unwrap();
    assert!(report.watertight && report.budget_met);
    let volume = mesh.enclosed_volume_mm3();
    let voxels = voxel_volume_mm3(&mask, &grid);
    assert!((volume / voxels - 1.0).abs() < 0.03, "{volume} vs {voxels}");
    let analytic = 4.0 / 3.0 * std::f64::consts::PI * semi.iter().product::<f64>();
    assert!((volume / analytic - 1.0).abs() < 0.03);
    let c = centroid(&mesh);
    assert!(distance(c, centre) < 0.3, "centroid {c:?}");
    let (lo, hi) = mesh.bounds();
    for i in 0..3 {
        assert!(
            (f64::from(lo[i]) - (centre[i] - semi[i])).abs() < 1.0,
            "{lo:?}"
        );
        assert!(
            (f64::from(hi[i]) - (centre[i] + semi[i])).abs() < 1.0,
            "{hi:?}"
        );
    }
}

/// A named test mask, its dimensions and the closed surfaces expected
/// (when easy to say).
type Case = (&'static str, [usize; 3], Vec<u8>, Option<usize>);

/// Masks that break naive surface extraction.
fn adversarial() -> Vec<Case> {
    let d = [12, 14, 16];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % 100
    };
    let noise: Vec<u8> = (0..d.iter().product::<usize>())
        .map(|_| u8::from(random() < 35))
        .collect();
    vec![
        (
            "single voxel",
            d,
            index_mask(d, |k, r, c| (k, r, c) == (5, 6, 7)),
            Some(1),
        ),
        (
            "voxel in a corner of the grid",
            d,
            index_mask(d, |k, r, c| (k, r, c) == (0, 0, 0)),
            Some(1),
        ),
        (
            "isolated voxels",
            d,
            index_mask(d, |k, r, c| k % 3 == 1 && r % 3 == 1 && c % 3 == 1),
            Some(4 * 5 * 5),
        ),
        (
            "checkerboard block",
            d,
            index_mask(d, |k, r, c| {
                (2..9).contains(&k)
                    && (2..10).contains(&r)
                    && (3..12).contains(&c)
                    && (k + r + c) % 2 == 0
            }),
            Some(1),
        ),
        (
            "body-diagonal chain",
            d,
            index_mask(d, |k, r, c| k == r && r == c),
            Some(1),
        ),
        (
            "face-diagonal chain",
            d,
            index_mask(d, |k, r, c| k == 4 && r == c),
            Some(1),
        ),
        (
            "crossed diagonals",
            d,
            index_mask(d, |k, r, c| {
                (r == c || r + c == 13) && k == 6 || k == r && c == 3
            }),
            None,
        ),
        (
            "two voxels touching at a corner",
            d,
            index_mask(d, |k, r, c| {
                (k, r, c) == (5, 5, 5) || (k, r, c) == (6, 6, 6)
            }),
            Some(1),
        ),
        (
            "two blobs",
            d,
            index_mask(d, |k, r, c| {
                let b = |k0: f64, r0: f64, c0: f64| {
                    (k as f64 - k0).powi(2) + (r as f64 - r0).powi(2) + (c as f64 - c0).powi(2)
                        < 7.0
                };
                b(3.0, 3.0, 3.0) || b(8.0, 9.0, 11.0)
            }),
            Some(2),
        ),
        (
            "shell with a cavity",
            d,
            index_mask(d, |k, r, c| {
                let m = k.min(r).min(c).min(11 - k).min(13 - r).min(15 - c);
                (1..=2).contains(&m) || (k, r, c) == (6, 7, 8)
            }),
            Some(3),
        ),
        ("every voxel set", d, vec![1; d.iter().product()], Some(1)),
        ("random noise", d, noise, None),
    ]
}

#[test]
fn adversarial_masks_give_closed_manifold_meshes() {
    let spacings = [[2.5, 0.7, 0.7], [1.0, 1.0, 1.0]];
    for (name, dims, mask, parts) in adversarial() {
        for spacing in spacings {
            let grid = axial(dims, spacing, [10.0, -20.0, 30.0]);
            let voxels = voxel_volume_mm3(&mask, &grid);
            for smoothing in [0, 20] {
                let (mesh, report) = surface(&mask, &grid, &undecimated(smoothing)).unwrap();
                let what = format!("{name}, {spacing:?}, smoothing {smoothing}: {report:?}");
                assert!(mesh.is_watertight() && report.watertight, "{what}");
                assert!(vertex_manifold(&mesh), "{what}");
                if let Some(parts) = parts {
                    assert_eq!(report.components, parts, "{what}");
                }
                // Outward. Surface nets cuts a lone voxel's corners down to
                // a diamond of 1/27 of the voxel; smoothing shrinks strands
                // one voxel thick further.
                let floor = if smoothing == 0 { voxels / 30.0 } else { 0.0 };
                assert!(mesh.enclosed_volume_mm3() > floor, "{what}");
            }
            for max_triangles in [50_000, 200, 20] {
                let options = Options {
                    max_triangles,
                    ..Options::default()
                };
                let (mesh, report) = surface(&mask, &grid, &options).unwrap();
                let what = format!("{name}, {spacing:?}, budget {max_triangles}: {report:?}");
                assert!(mesh.is_watertight() && report.watertight, "{what}");
                assert_eq!(report.budget_met, mesh.triangles.len() <= max_triangles);
                assert!(mesh.enclosed_volume_mm3() > 0.0, "{what}");
                if let Some(parts) = parts {
                    assert_eq!(report.components, parts, "{what}");
                }
            }
        }
    }
}

#[test]
fn surface_nets_without_the_fix_is_not_manifold() {
    // Why the ambiguity fix exists: two samples inside on a face diagonal
    // give an edge in four triangles.
    use fast_surface_nets::{SurfaceNetsBuffer, surface_nets};
    use ndshape::RuntimeShape;
    let shape = RuntimeShape::<u32, 3>::new([6, 6, 6]);
    let mut field = vec![1.0f32; 216];
    field[2 + 6 * 2 + 36 * 2] = -1.0;
    field[3 + 6 * 3 + 36 * 2] = -1.0;
    let mut buffer = SurfaceNetsBuffer::default();
    surface_nets(&field, &shape, [0; 3], [5; 3], &mut buffer);
    let raw = Mesh {
        positions: buffer.positions.clone(),
        triangles: buffer
            .indices
            .chunks_exact(3)
            .map(|t| [t[0], t[1], t[2]])
            .collect(),
    };
    assert!(!raw.is_watertight());

    // The same configuration through `surface` is fine.
    let mask = index_mask([5, 6, 6], |k, r, c| {
        (k, r, c) == (2, 2, 2) || (k, r, c) == (2, 3, 3)
    });
    let (mesh, report) = surface(
        &mask,
        &axial([5, 6, 6], [1.0; 3], [0.0; 3]),
        &undecimated(0),
    )
    .unwrap();
    assert!(mesh.is_watertight());
    assert_eq!(report.samples_added, 1);
}

#[test]
fn the_fix_table_leaves_no_ambiguous_cube() {
    let saddle = |config: u8| {
        (0..3).any(|axis| {
            let (b1, b2) = (1u8 << ((axis + 1) % 3), 1u8 << ((axis + 2) % 3));
            (0u8..8).any(|c| {
                let inside = |c: u8| config >> c & 1 == 1;
                inside(c) && inside(c ^ b1 ^ b2) && !inside(c ^ b1) && !inside(c ^ b2)
            })
        })
    };
    for start in 0..=255u8 {
        let mut config = start;
        for _ in 0..8 {
            let fix = fix_for(config);
            if fix == NO_FIX {
                break;
            }
            assert_eq!(config >> fix & 1, 0, "the fix turns an outside corner");
            config |= 1 << fix;
        }
        assert!(!saddle(config), "{start:08b} -> {config:08b}");
        assert!(
            parts(config) <= 1 && parts(!config) <= 1,
            "{start:08b} -> {config:08b}"
        );
        if !saddle(start) && parts(start) <= 1 && parts(!start) <= 1 {
            assert_eq!(config, start, "an unambiguous cube is left alone");
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let (grid, mask) = sphere();
    let options = Options::default();
    assert_eq!(
        surface(&mask[1..], &grid, &options).unwrap_err(),
        MeshError::MaskLength {
            dims: grid.dims,
            expected: mask.len(),
            actual: mask.len() - 1
        }
    );
    assert_eq!(
        surface(&vec![0; mask.len()], &grid, &options).unwrap_err(),
        MeshError::EmptyMask
    );
    let empty_grid = axial([0, 10, 10], [1.0; 3], [0.0; 3]);
    assert_eq!(
        surface(&[], &empty_grid, &options).unwrap_err(),
        MeshError::EmptyMask
    );
    let huge = axial([usize::MAX, 2, 1], [1.0; 3], [0.0; 3]);
    assert!(matches!(
        surface(&[], &huge, &options).unwrap_err(),
        MeshError::DimsOverflow(_)
    ));

    for (axis, value) in [
        (0, 0.0),
        (1, -0.7),
        (2, f64::NAN),
        (0, f64::INFINITY),
        (1, 1e9),
    ] {
        let mut bad = grid.clone();
        bad.spacing[axis] = value;
        match surface(&mask, &bad, &options).unwrap_err() {
            MeshError::InvalidSpacing { axis: a, .. } => assert_eq!(a, axis),
            e => panic!("{e}"),
        }
    }
    for origin in [
        [f64::NAN, 0.0, 0.0],
        [0.0, f64::NEG_INFINITY, 0.0],
        [0.0, 0.0, 1e12],
    ] {
        let mut bad = grid.clone();
        bad.origin = origin;
        assert!(matches!(
            surface(&mask, &bad, &options).unwrap_err(),
            MeshError::InvalidOrigin(_)
        ));
    }
    let axes_cases = [
        [[0.0, 0.0, 2.0], AXIAL[1], AXIAL[2]],
        [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
        [[0.0, 0.6, 0.8], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        [[0.0, 0.0, f64::NAN], AXIAL[1], AXIAL[2]],
        [[0.0; 3], AXIAL[1], AXIAL[2]],
    ];
    for axes in axes_cases {
        let mut bad = grid.clone();
        bad.axes = axes;
        assert!(matches!(
            surface(&mask, &bad, &options).unwrap_err(),
            MeshError::NonOrthonormalAxes(_)
        ));
    }
    for max_triangles in [0, 3] {
        let options = Options {
            max_triangles,
            ..Options::default()
        };
        assert_eq!(
            surface(&mask, &grid, &options).unwrap_err(),
            MeshError::BudgetTooSmall(max_triangles)
        );
    }
    // Values other than 0 and 1 are inside too.
    let mut grey = mask.clone();
    grey.iter_mut().for_each(|v| *v *= 200);
    assert_eq!(
        surface(&grey, &grid, &options).unwrap().0,
        surface(&mask, &grid, &options).unwrap().0
    );
}

fn sphere_mesh(max_triangles: usize) -> Mesh {
    let (grid, mask) = sphere();
    let options = Options {
        max_triangles,
        ..Options::default()
    };
    surface(&mask, &grid, &options).unwrap().0
}

#[test]
fn stl_parses_back_with_outward_normals() {
    let mesh = sphere_mesh(3000);
    let bytes = mesh.to_stl();
    assert_eq!(bytes.len(), 84 + 50 * mesh.triangles.len());
    assert!(!bytes.starts_with(b"solid"), "would read as ASCII STL");
    let stl = stl_io::read_stl(&mut std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(stl.faces.len(), mesh.triangles.len());
    for (face, t) in stl.faces.iter().zip(&mesh.triangles) {
        let corners = face.vertices.map(|i| stl.vertices[i].0);
        assert_eq!(corners, t.map(|i| mesh.positions[i as usize]));
        let n = face.normal.0.map(f64::from);
        let length = n.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((length - 1.0).abs() < 1e-5);
        let centre: [f64; 3] =
            std::array::from_fn(|i| corners.iter().map(|c| f64::from(c[i])).sum::<f64>() / 3.0);
        let outward: [f64; 3] = std::array::from_fn(|i| centre[i] - CENTRE[i]);
        assert!(
            liverseg_core::geometry::dot(n, outward) > 0.0,
            "inward facet"
        );
    }
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

fn f32_at(bytes: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn glb_parses_back() {
    use gltf_json::validation::{Checked, Validate};
    let mesh = sphere_mesh(3000);
    let glb = mesh.to_glb();
    assert_eq!(&glb[..4], b"glTF");
    assert_eq!(u32_at(&glb, 4), 2);
    assert_eq!(u32_at(&glb, 8), glb.len());
    let json_len = u32_at(&glb, 12);
    assert_eq!(&glb[16..20], b"JSON");
    assert_eq!(json_len % 4, 0);
    let json = &glb[20..20 + json_len];
    let bin_header = 20 + json_len;
    let bin_len = u32_at(&glb, bin_header);
    assert_eq!(&glb[bin_header + 4..bin_header + 8], b"BIN\0");
    assert_eq!(bin_len % 4, 0);
    assert_eq!(bin_header + 8 + bin_len, glb.len());
    let bin = &glb[bin_header + 8..];

    let root: gltf_json::Root = serde_json::from_slice(json).unwrap();
    let mut errors = Vec::new();
    root.validate(&root, gltf_json::Path::new, &mut |path, error| {
        errors.push(format!("{}: {error:?}", path()));
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(root.asset.generator.as_deref(), Some("liverseg"));
    assert_eq!(root.asset.version, "2.0");
    assert_eq!(
        (root.scenes.len(), root.nodes.len(), root.meshes.len()),
        (1, 1, 1)
    );
    assert_eq!(root.scene.map(|s| s.value()), Some(0));
    assert_eq!(root.nodes[0].scale, Some([0.001; 3]));
    assert_eq!(root.buffers.len(), 1);
    assert!(root.buffers[0].uri.is_none());
    let buffer_len = root.buffers[0].byte_length.0 as usize;
    assert!(buffer_len <= bin_len && bin_len - buffer_len < 4);
    let colour = root.materials[0].pbr_metallic_roughness.base_color_factor.0;
    assert!(
        colour[0] > colour[1] && colour[1] > colour[2] * 0.5,
        "reddish"
    );

    let primitive = &root.meshes[0].primitives[0];
    let accessor = |semantic| {
        let index = primitive.attributes[&Checked::Valid(semantic)];
        &root.accessors[index.value()]
    };
    let data = |a: &gltf_json::Accessor| {
        let view = &root.buffer_views[a.buffer_view.unwrap().value()];
        let start = view.byte_offset.map_or(0, |o| o.0 as usize)
            + a.byte_offset.map_or(0, |o| o.0 as usize);
        (start, view.byte_length.0 as usize)
    };
    let n = mesh.positions.len();
    let positions = accessor(gltf_json::mesh::Semantic::Positions);
    assert_eq!(positions.count.0 as usize, n);
    let (lo, hi) = mesh.bounds();
    let read = |v: &Option<serde_json::Value>| {
        serde_json::from_value::<[f32; 3]>(v.clone().unwrap()).unwrap()
    };
    assert_eq!((read(&positions.min), read(&positions.max)), (lo, hi));
    let (start, length) = data(positions);
    assert_eq!(length, 12 * n);
    for (i, p) in mesh.positions.iter().enumerate() {
        let read: [f32; 3] = std::array::from_fn(|j| f32_at(bin, start + 12 * i + 4 * j));
        assert_eq!(&read, p);
    }
    let normals = accessor(gltf_json::mesh::Semantic::Normals);
    assert_eq!(normals.count.0 as usize, n);
    let (start, _) = data(normals);
    for i in 0..n {
        let v: [f64; 3] = std::array::from_fn(|j| f64::from(f32_at(bin, start + 12 * i + 4 * j)));
        assert!((v.iter().map(|x| x * x).sum::<f64>().sqrt() - 1.0).abs() < 1e-5);
        let p = f64x3(mesh.positions[i]);
        let out: [f64; 3] = std::array::from_fn(|j| p[j] - CENTRE[j]);
        assert!(liverseg_core::geometry::dot(v, out) > 0.0, "inward normal");
    }
    let indices = &root.accessors[primitive.indices.unwrap().value()];
    assert_eq!(indices.count.0 as usize, 3 * mesh.triangles.len());
    let (start, length) = data(indices);
    assert_eq!(length, 12 * mesh.triangles.len());
    for (i, t) in mesh.triangles.iter().enumerate() {
        let read: [u32; 3] = std::array::from_fn(|j| u32_at(bin, start + 12 * i + 4 * j) as u32);
        assert_eq!(&read, t);
    }
}

#[test]
fn smoothing_leaves_speckles_alone_and_keeps_blob_volumes() {
    let d = [16, 16, 24];
    let grid = axial(d, [1.0; 3], [0.0; 3]);
    for radius in [0.5, 1.2, 1.5, 2.5, 4.0] {
        // A blob and, away from it, a lone voxel.
        let mask = index_mask(d, |k, r, c| {
            let q = (k as f64 - 8.0).powi(2) + (r as f64 - 8.0).powi(2) + (c as f64 - 8.0).powi(2);
            q.sqrt() <= radius || (k, r, c) == (8, 8, 20)
        });
        let (raw, _) = surface(&mask, &grid, &undecimated(0)).unwrap();
        let (smooth, report) = surface(&mask, &grid, &undecimated(20)).unwrap();
        assert!(report.smoothed && smooth.is_watertight());
        assert_eq!(report.components, 2);
        let ratio = smooth.enclosed_volume_mm3() / raw.enclosed_volume_mm3();
        // Without the freeze, the two smallest blobs shrink to nothing or
        // to less than half.
        assert!(
            (0.9..1.1).contains(&ratio),
            "radius {radius}: volume ratio {ratio}"
        );
    }
}

#[test]
fn decimation_repairs_what_the_simplifier_breaks() {
    // A rough blob riddled with handles and speckles: plain meshoptimizer
    // leaves edges in four triangles and squashes speckles.
    let dims = [40, 60, 60];
    let grid = axial(dims, [2.5, 0.8, 0.8], [0.0; 3]);
    let mask = index_mask(dims, |k, r, c| {
        let (k, r, c) = (k as f64, r as f64, c as f64);
        let d = ((k - 20.0).powi(2) * 6.0 + (r - 30.0).powi(2) + (c - 30.0).powi(2)).sqrt();
        d < 20.0 + 4.0 * (r * 0.7).sin() * (c * 0.9).cos() + 3.0 * (k * 1.3).sin()
    });
    let (smoothed, before) = surface(&mask, &grid, &undecimated(20)).unwrap();
    assert!(before.watertight && before.components > 10);
    let indices: Vec<u32> = smoothed.triangles.iter().flatten().copied().collect();
    let plain = meshopt::simplify_decoder(
        &indices,
        &smoothed.positions,
        5000 * 3,
        f32::MAX,
        meshopt::SimplifyOptions::ErrorAbsolute,
        None,
    );
    let plain = Mesh {
        positions: smoothed.positions.clone(),
        triangles: plain.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect(),
    };
    assert!(!plain.is_watertight());

    for budget in [10_000, 5000, 2000] {
        let options = Options {
            max_triangles: budget,
            ..Options::default()
        };
        let (mesh, report) = surface(&mask, &grid, &options).unwrap();
        let what = format!("{budget}: {report:?}");
        assert!(mesh.is_watertight() && report.watertight, "{what}");
        assert_eq!(report.components, before.components, "{what}");
        assert!(report.decimation_runs > 1, "{what}");
        assert!(report.triangles < before.triangles / 2, "{what}");
        assert_eq!(report.budget_met, report.decimation == Decimation::Reached);
        // Closing this many handles costs some volume (4% at 5000; the
        // liver loses 0.02%).
        let volume = mesh.enclosed_volume_mm3() / smoothed.enclosed_volume_mm3();
        assert!((volume - 1.0).abs() < 0.06, "{what}");
    }
}
