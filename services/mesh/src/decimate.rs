//! Decimation to a triangle budget with meshoptimizer, keeping the mesh
//! watertight.
//!
//! meshoptimizer's simplifier collapses edges in order of quadric error and
//! rejects collapses that flip triangles, but it checks no link condition:
//! a collapse across a thin part or a small handle can leave an edge in four
//! triangles or a pair of back-to-back triangles, and a small closed part
//! can be squashed flat and vanish. So:
//! - parts too small to survive the reduction ratio are locked (not
//!   decimated at all; speckles of a few voxels cost little), and no run
//!   aims below the locked triangles plus a minimum per movable part
//!   (aiming lower makes the simplifier squash whole parts);
//! - back-to-back pairs are dropped from a run's result (the surface around
//!   them is closed without them);
//! - the result is checked; the vertices around what is still wrong (edges
//!   not used exactly once in each direction, zero-area triangles, small
//!   parts that vanished) are locked, with a few rings of neighbours, and
//!   the run repeated: the simplifier then decimates everything else and
//!   leaves that spot alone;
//! - decimation goes in rounds, each from the last watertight mesh: first
//!   straight to the budget (one run keeps the error ordering global, and
//!   usually succeeds, as on IRCADb), and when a round cannot be made
//!   watertight, half or a quarter of the way instead; when even that
//!   fails, the last watertight mesh is returned (the undecimated one at
//!   worst) and the report says so.
//!
//! The checks keep the mesh closed and every part present; they do not keep
//! the genus: the simplifier may close a small handle (a tunnel left by a
//! vessel), which is harmless for a display and volume mesh.

use meshopt::SimplifyOptions;

use crate::Mesh;
use crate::smooth::one_rings;

/// How decimation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decimation {
    /// The smoothed mesh was already within the budget.
    NotNeeded,
    /// Decimated to the budget, watertight.
    Reached,
    /// Decimated, watertight, but above the budget: further collapses were
    /// locked (small parts, repaired spots), broke the surface, or would
    /// have moved it by more than the error limit.
    Partial,
    /// No collapse kept the mesh watertight: the undecimated mesh is
    /// returned.
    Abandoned,
}

pub(crate) struct Decimated {
    pub mesh: Mesh,
    pub outcome: Decimation,
    /// Sum of the rounds' error estimates (an upper bound, mm).
    pub error_mm: f64,
    /// Simplifier runs, including those whose result was rejected.
    pub runs: usize,
}

/// Simplifier runs per round, each with more vertices locked.
const RUNS_PER_ROUND: usize = 6;

/// Rings of neighbours locked around a defect: the collapse that caused it
/// may have come from a vertex a few edges away.
const LOCK_RINGS: usize = 3;

/// A closed part that uniform reduction would leave with fewer triangles
/// than this is not decimated at all...
const MIN_PART_TRIANGLES: usize = 64;
/// ... unless it has at least this many (a tiny budget must not lock the
/// liver itself). A part this large that vanishes in a run means the target
/// is too low for the mesh, not a local accident.
const ALWAYS_DECIMATED: usize = 1024;

pub(crate) fn decimate(mesh: Mesh, max_triangles: usize, max_error_mm: f32) -> Decimated {
    let count = mesh.triangles.len();
    if count <= max_triangles {
        return Decimated {
            mesh,
            outcome: Decimation::NotNeeded,
            error_mm: 0.0,
            runs: 0,
        };
    }
    let part = mesh.part_of_vertex();
    let below = (MIN_PART_TRIANGLES * count / max_triangles).min(ALWAYS_DECIMATED);
    let mut simplifier = Simplifier {
        positions: &mesh.positions,
        locks: small_part_locks(&mesh, &part, below),
        rings: one_rings(mesh.positions.len(), &mesh.triangles),
        part,
        max_error_mm,
        runs: 0,
    };

    let mut current = mesh.triangles.clone();
    let mut error_mm = 0.0;
    while current.len() > max_triangles {
        // Straight to the budget (one run keeps the error ordering global);
        // when that cannot be made watertight, halving, or less.
        let step = [max_triangles, current.len() / 2, current.len() * 3 / 4]
            .into_iter()
            .map(|t| t.max(max_triangles))
            .find_map(|target| simplifier.round(&current, target));
        match step {
            Some((triangles, error)) if triangles.len() < current.len() => {
                current = triangles;
                error_mm += error;
            }
            _ => break,
        }
    }
    let runs = simplifier.runs;

    let outcome = if current.len() <= max_triangles {
        Decimation::Reached
    } else if current.len() < count {
        Decimation::Partial
    } else {
        Decimation::Abandoned
    };
    let mut decimated = Mesh {
        positions: mesh.positions,
        triangles: current,
    };
    decimated.compact();
    Decimated {
        mesh: decimated,
        outcome,
        error_mm,
        runs,
    }
}

/// What the rounds share: the smoothed mesh's vertices (every round's
/// triangles index them), its parts and one-rings, the locks every round
/// starts from.
struct Simplifier<'a> {
    positions: &'a [[f32; 3]],
    /// Representative vertex of each vertex's connected part.
    part: Vec<u32>,
    locks: Vec<bool>,
    /// Offsets and neighbours, as `smooth::one_rings` returns them.
    rings: (Vec<usize>, Vec<u32>),
    max_error_mm: f32,
    runs: usize,
}

impl Simplifier<'_> {
    /// One round: `triangles` (watertight) simplified towards `target`,
    /// watertight, without a vanished part and with fewer triangles, or
    /// `None` when `RUNS_PER_ROUND` runs did not get there.
    fn round(&mut self, triangles: &[[u32; 3]], target: usize) -> Option<(Vec<[u32; 3]>, f64)> {
        let indices: Vec<u32> = triangles.iter().flatten().copied().collect();
        // Spots locked by this round's failed runs are this round's affair:
        // the next round meets a different mesh, and a failed attempt's
        // locks would only hamper a gentler one.
        let mut locks = self.locks.clone();
        for _ in 0..RUNS_PER_ROUND {
            let aim = floor(triangles, &self.part, &locks).max(target);
            // meshoptimizer asserts (aborts the process) on a target above
            // the input count; at or above it there is nothing to do anyway.
            if aim >= triangles.len() {
                return None;
            }
            self.runs += 1;
            let mut error = 0.0f32;
            // Absolute error: the limit and the reported error are in mm.
            let out = meshopt::simplify_with_locks_decoder(
                &indices,
                self.positions,
                &locks,
                aim * 3,
                self.max_error_mm,
                SimplifyOptions::ErrorAbsolute,
                Some(&mut error),
            );
            let mut result: Vec<[u32; 3]> = out
                .chunks_exact(3)
                .map(|t| [t[0], t[1], t[2]])
                .filter(|&[a, b, c]| a != b && b != c && c != a)
                .collect();
            drop_twins(&mut result);
            let bad = match check(self.positions, triangles, &result, &self.part) {
                Check::Good if result.len() < triangles.len() => {
                    return Some((result, f64::from(error)));
                }
                // Everything that could move is locked, or the error limit
                // allows no collapse: no progress possible.
                Check::Good => return None,
                Check::Defects(bad) => bad,
                Check::Hopeless => return None,
            };
            // Lock the defects and their neighbourhood. The rings are those
            // of the smoothed mesh: close enough to cover the collapse that
            // went wrong, which came from a vertex a few edges away.
            let (offsets, neighbours) = &self.rings;
            let mut frontier = bad;
            for _ in 0..=LOCK_RINGS {
                let mut next = Vec::new();
                for v in frontier {
                    let v = v as usize;
                    if !std::mem::replace(&mut locks[v], true) {
                        next.extend_from_slice(&neighbours[offsets[v]..offsets[v + 1]]);
                    }
                }
                frontier = next;
            }
        }
        None
    }
}

/// The fewest triangles a run may aim for: all of the locked ones plus
/// `MIN_PART_TRIANGLES` for each part that can still move. Aiming lower
/// makes the simplifier squash whole parts to reach a count the locked
/// triangles alone exceed.
fn floor(triangles: &[[u32; 3]], part: &[u32], locks: &[bool]) -> usize {
    let mut locked = 0;
    let mut moving: Vec<u32> = Vec::new();
    for t in triangles {
        if t.iter().all(|&v| locks[v as usize]) {
            locked += 1;
        } else {
            moving.push(part[t[0] as usize]);
        }
    }
    moving.sort_unstable();
    moving.dedup();
    locked + MIN_PART_TRIANGLES * moving.len()
}

enum Check {
    Good,
    /// Vertices to lock before trying again.
    Defects(Vec<u32>),
    /// A large part vanished: the target is too low for this mesh, and no
    /// local lock will fix that.
    Hopeless,
}

/// Checks a run's `result` against its input `before`. Defects: vertices
/// of edges not used exactly once in each direction, of zero-area
/// triangles, and of small parts (`part`, per vertex) that vanished.
fn check(positions: &[[f32; 3]], before: &[[u32; 3]], result: &[[u32; 3]], part: &[u32]) -> Check {
    let mut bad = Vec::new();
    let mut edges = Vec::with_capacity(result.len() * 3);
    let mut present = vec![false; positions.len()];
    for &t in result {
        let [a, b, c] = t.map(|i| positions[i as usize].map(f64::from));
        let n = liverseg_core::geometry::cross(
            [b[0] - a[0], b[1] - a[1], b[2] - a[2]],
            [c[0] - a[0], c[1] - a[1], c[2] - a[2]],
        );
        if n == [0.0; 3] {
            bad.extend_from_slice(&t);
        }
        let [a, b, c] = t;
        edges.extend([(a, b), (b, c), (c, a)]);
        present[part[a as usize] as usize] = true;
    }
    edges.sort_unstable();
    for (i, &(a, b)) in edges.iter().enumerate() {
        let repeated = i > 0 && edges[i - 1] == (a, b);
        if repeated || edges.binary_search(&(b, a)).is_err() {
            bad.extend([a, b]);
        }
    }
    let mut lost = vec![0usize; positions.len()];
    for t in before {
        let p = part[t[0] as usize] as usize;
        if !present[p] {
            lost[p] += 1;
        }
    }
    if lost.iter().any(|&n| n >= ALWAYS_DECIMATED) {
        return Check::Hopeless;
    }
    bad.extend(
        before
            .iter()
            .filter(|t| lost[part[t[0] as usize] as usize] > 0)
            .flatten(),
    );
    if bad.is_empty() {
        return Check::Good;
    }
    bad.sort_unstable();
    bad.dedup();
    Check::Defects(bad)
}

/// Locks every vertex of the connected parts with fewer than `below`
/// triangles; `part` maps each vertex to its part's representative.
fn small_part_locks(mesh: &Mesh, part: &[u32], below: usize) -> Vec<bool> {
    let mut size = vec![0usize; mesh.positions.len()];
    for t in &mesh.triangles {
        size[part[t[0] as usize] as usize] += 1;
    }
    part.iter().map(|&p| size[p as usize] < below).collect()
}

/// Removes triangles in pairs on the same three vertices. What the
/// simplifier leaves when it flattens a tetrahedral gap is such a pair,
/// back to back, glued to the surface along an edge that then has four
/// faces; without the pair the surface around it is closed again.
fn drop_twins(triangles: &mut Vec<[u32; 3]>) {
    let mut order: Vec<([u32; 3], usize)> = triangles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut key = *t;
            key.sort_unstable();
            (key, i)
        })
        .collect();
    order.sort_unstable();
    let mut drop = vec![false; triangles.len()];
    let mut i = 0;
    while i + 1 < order.len() {
        if order[i].0 == order[i + 1].0 {
            drop[order[i].1] = true;
            drop[order[i + 1].1] = true;
            i += 2;
        } else {
            i += 1;
        }
    }
    let mut index = 0;
    triangles.retain(|_| {
        index += 1;
        !drop[index - 1]
    });
}
