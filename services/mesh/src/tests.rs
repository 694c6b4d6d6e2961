use super::*;

fn sphere_grid() -> VoxelGrid {
    VoxelGrid {
        dims: [32, 100, 100],
        spacing: [2.5, 0.7, 0.7],
        origin: [-35.0, -34.65, -34.65],
        axes: [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    }
}

#[test]
fn explore() {
    let grid = sphere_grid();
    let centre = [1.0, 0.5, 2.0];
    let mut mask = vec![0u8; grid.len().unwrap()];
    let [s, r, c] = grid.dims;
    for k in 0..s {
        for j in 0..r {
            for i in 0..c {
                let p = grid.position([k as f64, j as f64, i as f64]);
                let d = (0..3)
                    .map(|a| (p[a] - centre[a]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                if d <= 30.0 {
                    mask[(k * r + j) * c + i] = 1;
                }
            }
        }
    }
    for iters in [0, 5, 10, 20, 40] {
        for budget in [usize::MAX, 2000] {
            let (m, rep) = surface(
                &mask,
                &grid,
                &Options {
                    max_triangles: budget,
                    smoothing_iterations: iters,
                },
            )
            .unwrap();
            let radial: Vec<f64> = m
                .positions
                .iter()
                .map(|p| {
                    (0..3)
                        .map(|a| (p[a] as f64 - centre[a]).powi(2))
                        .sum::<f64>()
                        .sqrt()
                        - 30.0
                })
                .collect();
            let maxr = radial.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
            let meanr = radial.iter().sum::<f64>() / radial.len() as f64;
            println!(
                "iters {iters} budget {budget}: {rep:?}\n vol {:.1} voxel {:.1} ratio {:.4} radial max {maxr:.3} mean {meanr:.3}",
                m.enclosed_volume_mm3(),
                rep.voxel_volume_ml * 1000.0,
                m.enclosed_volume_mm3() / (rep.voxel_volume_ml * 1000.0)
            );
        }
    }
}

fn defects(m: &Mesh) -> (usize, usize, usize, usize) {
    use std::collections::HashMap;
    let mut und: HashMap<(u32, u32), usize> = HashMap::new();
    let mut dir: HashMap<(u32, u32), usize> = HashMap::new();
    let mut degenerate = 0;
    for &t in &m.triangles {
        if m.area_vector(t).unwrap() == [0.0; 3] {
            degenerate += 1;
        }
        for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
            *dir.entry((a, b)).or_default() += 1;
            *und.entry((a.min(b), a.max(b))).or_default() += 1;
        }
    }
    let over = und.values().filter(|&&n| n > 2).count();
    let open = und.values().filter(|&&n| n < 2).count();
    let dup = dir.values().filter(|&&n| n > 1).count();
    // back-to-back triangle pairs
    let mut keys: HashMap<[u32; 3], usize> = HashMap::new();
    for t in &m.triangles {
        let mut s = *t;
        s.sort();
        *keys.entry(s).or_default() += 1;
    }
    let pairs = keys.values().filter(|&&n| n > 1).count();
    let _ = degenerate;
    (over, open, dup, pairs)
}

#[test]
fn explore_decimation() {
    let grid = sphere_grid();
    let centre = [1.0, 0.5, 2.0];
    let mut mask = vec![0u8; grid.len().unwrap()];
    let [s, r, c] = grid.dims;
    for k in 0..s {
        for j in 0..r {
            for i in 0..c {
                let p = grid.position([k as f64, j as f64, i as f64]);
                let d = (0..3)
                    .map(|a| (p[a] - centre[a]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                if d <= 30.0 {
                    mask[(k * r + j) * c + i] = 1;
                }
            }
        }
    }
    let (m, _) = surface(
        &mask,
        &grid,
        &Options {
            max_triangles: usize::MAX,
            smoothing_iterations: 0,
        },
    )
    .unwrap();
    let idx: Vec<u32> = m.triangles.iter().flatten().copied().collect();
    for target in [100, 300, 500, 1000, 2000, 3000, 5000, 10000] {
        let out = meshopt::simplify_decoder(
            &idx,
            &m.positions,
            target * 3,
            f32::MAX,
            meshopt::SimplifyOptions::ErrorAbsolute,
            None,
        );
        let mut d = Mesh {
            positions: m.positions.clone(),
            triangles: out.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect(),
        };
        d.compact();
        println!(
            "target {target}: got {} watertight {} defects (over, open, dupdir, samekey) {:?}",
            d.triangles.len(),
            d.is_watertight(),
            defects(&d)
        );
    }
}

fn index_mask(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> bool) -> Vec<u8> {
    let mut m = vec![0u8; dims.iter().product()];
    for k in 0..dims[0] {
        for r in 0..dims[1] {
            for c in 0..dims[2] {
                if f(k, r, c) {
                    m[(k * dims[1] + r) * dims[2] + c] = 1;
                }
            }
        }
    }
    m
}

#[test]
fn explore_shapes() {
    let mut seed = 12345u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    let dims = [40, 60, 60];
    let grid = VoxelGrid {
        dims,
        spacing: [2.5, 0.8, 0.8],
        origin: [0.0; 3],
        axes: [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    };
    let noise: Vec<u8> = (0..dims.iter().product::<usize>())
        .map(|_| (rnd() < 0.3) as u8)
        .collect();
    let blobs = index_mask(dims, |k, r, c| {
        let (k, r, c) = (k as f64, r as f64, c as f64);
        ((k - 10.0).powi(2) * 6.0 + (r - 20.0).powi(2) + (c - 20.0).powi(2)) < 150.0
            || ((k - 25.0).powi(2) * 6.0 + (r - 40.0).powi(2) + (c - 40.0).powi(2)) < 200.0
    });
    let torus = index_mask(dims, |k, r, c| {
        let (z, y, x) = (
            k as f64 * 2.5 - 50.0,
            r as f64 * 0.8 - 24.0,
            c as f64 * 0.8 - 24.0,
        );
        let q = ((x * x + y * y).sqrt() - 15.0).powi(2) + z * z;
        q < 36.0
    });
    let check = index_mask(dims, |k, r, c| {
        k > 5 && k < 15 && r > 5 && r < 25 && c > 5 && c < 25 && (k + r + c) % 2 == 0
    });
    let rough = index_mask(dims, |k, r, c| {
        let (k, r, c) = (k as f64, r as f64, c as f64);
        let d = ((k - 20.0).powi(2) * 6.0 + (r - 30.0).powi(2) + (c - 30.0).powi(2)).sqrt();
        d < 20.0 + 4.0 * (r * 0.7).sin() * (c * 0.9).cos() + 3.0 * (k * 1.3).sin()
    });
    for (name, mask) in [
        ("noise", &noise),
        ("blobs", &blobs),
        ("torus", &torus),
        ("check", &check),
        ("rough", &rough),
    ] {
        for iters in [0, 20] {
            for budget in [4, 20, 50, 100, 200, 500, 1000, 2000, 5000, 20000] {
                let (m, rep) = surface(
                    mask,
                    &grid,
                    &Options {
                        max_triangles: budget,
                        smoothing_iterations: iters,
                    },
                )
                .unwrap();
                println!(
                    "{name} it{iters} b{budget}: extracted {} -> {} {:?} wt {} comps {} added {} vol {:.0}/{:.0} {:?}",
                    rep.triangles_extracted,
                    rep.triangles,
                    rep.decimation,
                    rep.watertight,
                    rep.components,
                    rep.samples_added,
                    rep.volume_ml * 1000.0,
                    rep.voxel_volume_ml * 1000.0,
                    defects(&m)
                );
            }
        }
    }
}

#[test]
fn explore_rough() {
    let dims = [40, 60, 60];
    let grid = VoxelGrid {
        dims,
        spacing: [2.5, 0.8, 0.8],
        origin: [0.0; 3],
        axes: [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    };
    let rough = index_mask(dims, |k, r, c| {
        let (k, r, c) = (k as f64, r as f64, c as f64);
        let d = ((k - 20.0).powi(2) * 6.0 + (r - 30.0).powi(2) + (c - 30.0).powi(2)).sqrt();
        d < 20.0 + 4.0 * (r * 0.7).sin() * (c * 0.9).cos() + 3.0 * (k * 1.3).sin()
    });
    let (m, rep) = surface(
        &rough,
        &grid,
        &Options {
            max_triangles: usize::MAX,
            smoothing_iterations: 20,
        },
    )
    .unwrap();
    // component sizes
    let mut sizes = std::collections::HashMap::new();
    {
        let n = m.positions.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(p: &mut Vec<usize>, mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        for t in &m.triangles {
            let a = root(&mut parent, t[0] as usize);
            let b = root(&mut parent, t[1] as usize);
            parent[a] = b;
            let a = root(&mut parent, t[1] as usize);
            let b = root(&mut parent, t[2] as usize);
            parent[a] = b;
        }
        for t in &m.triangles {
            *sizes
                .entry(root(&mut parent, t[0] as usize))
                .or_insert(0usize) += 1;
        }
    }
    let mut s: Vec<usize> = sizes.values().copied().collect();
    s.sort();
    println!("{rep:?}\ncomponent sizes {s:?}");
    let idx: Vec<u32> = m.triangles.iter().flatten().copied().collect();
    let part = m.part_of_vertex();
    let big = part[m.triangles.iter().map(|t| t[0]).max_by_key(|_| 0).unwrap() as usize];
    let mut counts = std::collections::HashMap::new();
    for t in &m.triangles {
        *counts.entry(part[t[0] as usize]).or_insert(0) += 1;
    }
    let big = *counts.iter().max_by_key(|e| *e.1).unwrap().0;
    let _ = big;
    let locks: Vec<bool> = part.iter().map(|p| *p != big).collect();
    println!(
        "chi {}",
        m.positions.len() as i64 - m.triangles.len() as i64 / 2
    );
    for target in [500, 1000, 2000, 5000, 10000, 15000] {
        let out = meshopt::simplify_with_locks_decoder(
            &idx,
            &m.positions,
            &locks,
            target * 3,
            f32::MAX,
            meshopt::SimplifyOptions::ErrorAbsolute,
            None,
        );
        let mut d = Mesh {
            positions: m.positions.clone(),
            triangles: out.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect(),
        };
        d.compact();
        let zero = d
            .triangles
            .iter()
            .filter(|&&t| d.area_vector(t).unwrap() == [0.0; 3])
            .count();
        println!(
            "target {target}: got {} watertight {} comps {} chi {} zero-area {zero} defects {:?}",
            d.triangles.len(),
            d.is_watertight(),
            d.components(),
            d.positions.len() as i64 - d.triangles.len() as i64 / 2,
            defects(&d)
        );
    }
}
