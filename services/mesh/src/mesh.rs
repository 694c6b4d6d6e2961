//! The triangle mesh and its measurements.

/// An indexed triangle mesh in patient space.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mesh {
    /// mm, DICOM LPS
    pub positions: Vec<[f32; 3]>,
    /// Counter-clockwise seen from outside.
    pub triangles: Vec<[u32; 3]>,
}

fn f64x3(p: [f32; 3]) -> [f64; 3] {
    p.map(f64::from)
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    liverseg_core::geometry::cross(a, b)
}

fn norm(a: [f64; 3]) -> f64 {
    liverseg_core::geometry::dot(a, a).sqrt()
}

impl Mesh {
    /// The triangle's corners in f64, or `None` when an index is out of
    /// range.
    fn corners(&self, t: [u32; 3]) -> Option<[[f64; 3]; 3]> {
        let p = |i: u32| self.positions.get(i as usize).copied().map(f64x3);
        Some([p(t[0])?, p(t[1])?, p(t[2])?])
    }

    /// Twice the triangle's vector area (its normal scaled by twice its
    /// area), or `None` when an index is out of range.
    pub(crate) fn area_vector(&self, t: [u32; 3]) -> Option<[f64; 3]> {
        let [a, b, c] = self.corners(t)?;
        Some(cross(sub(b, a), sub(c, a)))
    }

    /// Whether the mesh is a closed, consistently oriented surface: every
    /// undirected edge is in exactly two triangles, used once in each
    /// direction, and no triangle is degenerate (a repeated or out-of-range
    /// index, or zero area). An empty mesh is not watertight.
    pub fn is_watertight(&self) -> bool {
        if self.triangles.is_empty() {
            return false;
        }
        let mut edges = Vec::with_capacity(self.triangles.len() * 3);
        for &t in &self.triangles {
            let [a, b, c] = t;
            if a == b || b == c || c == a {
                return false;
            }
            match self.area_vector(t) {
                Some(n) if n != [0.0; 3] && n.iter().all(|x| x.is_finite()) => {}
                _ => return false,
            }
            edges.extend([(a, b), (b, c), (c, a)]);
        }
        edges.sort_unstable();
        // Each directed edge once (no third face, no face wound the same
        // way as its neighbour) and its reverse present: every undirected
        // edge then has exactly one face on each side.
        edges.windows(2).all(|w| w[0] != w[1])
            && edges
                .iter()
                .all(|&(a, b)| edges.binary_search(&(b, a)).is_ok())
    }

    /// Volume enclosed (mm³): the signed-tetrahedra sum, positive when the
    /// triangles face outward. Meaningful only for a watertight mesh.
    pub fn enclosed_volume_mm3(&self) -> f64 {
        // Tetrahedra from the first vertex rather than the LPS origin keep
        // the terms small (positions are hundreds of mm from the origin).
        let Some(&o) = self.positions.first() else {
            return 0.0;
        };
        let o = f64x3(o);
        self.triangles
            .iter()
            .filter_map(|&t| self.corners(t))
            .map(|[a, b, c]| {
                let (a, b, c) = (sub(a, o), sub(b, o), sub(c, o));
                liverseg_core::geometry::dot(a, cross(b, c))
            })
            .sum::<f64>()
            / 6.0
    }

    /// Total triangle area (mm²).
    pub fn surface_area_mm2(&self) -> f64 {
        self.triangles
            .iter()
            .filter_map(|&t| self.area_vector(t))
            .map(|n| norm(n) / 2.0)
            .sum()
    }

    /// Smallest and largest coordinates of the vertices (mm, LPS); zeros for
    /// a mesh without vertices.
    pub fn bounds(&self) -> ([f32; 3], [f32; 3]) {
        if self.positions.is_empty() {
            return ([0.0; 3], [0.0; 3]);
        }
        self.positions.iter().fold(
            ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]),
            |(lo, hi), p| {
                (
                    std::array::from_fn(|i| lo[i].min(p[i])),
                    std::array::from_fn(|i| hi[i].max(p[i])),
                )
            },
        )
    }

    /// Unit facet normal from the winding; zero for a degenerate triangle.
    pub(crate) fn facet_normal(&self, t: [u32; 3]) -> [f32; 3] {
        match self.area_vector(t) {
            Some(n) if norm(n) > 0.0 => n.map(|x| (x / norm(n)) as f32),
            _ => [0.0; 3],
        }
    }

    /// Area-weighted vertex normals, unit length (glTF requires it); +S
    /// for a vertex without a non-degenerate triangle.
    pub(crate) fn vertex_normals(&self) -> Vec<[f32; 3]> {
        let mut sum = vec![[0.0f64; 3]; self.positions.len()];
        for &t in &self.triangles {
            if let Some(n) = self.area_vector(t) {
                for i in t {
                    let s = &mut sum[i as usize];
                    *s = [s[0] + n[0], s[1] + n[1], s[2] + n[2]];
                }
            }
        }
        sum.into_iter()
            .map(|n| {
                let l = norm(n);
                if l > 0.0 && l.is_finite() {
                    n.map(|x| (x / l) as f32)
                } else {
                    [0.0, 0.0, 1.0]
                }
            })
            .collect()
    }

    /// Connected parts (sets of triangles sharing vertices).
    pub fn components(&self) -> usize {
        let part = self.part_of_vertex();
        let mut roots: Vec<u32> = self
            .triangles
            .iter()
            .filter_map(|t| part.get(t[0] as usize).copied())
            .collect();
        roots.sort_unstable();
        roots.dedup();
        roots.len()
    }

    /// For each vertex, a representative vertex of its connected part.
    pub(crate) fn part_of_vertex(&self) -> Vec<u32> {
        part_of_vertex(self.positions.len(), &self.triangles)
    }

    /// Drops vertices no triangle uses, keeping the others' order.
    pub(crate) fn compact(&mut self) {
        let mut map = vec![u32::MAX; self.positions.len()];
        for t in &self.triangles {
            for &i in t {
                map[i as usize] = 0;
            }
        }
        let mut kept = Vec::new();
        for (i, slot) in map.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = kept.len() as u32;
                kept.push(self.positions[i]);
            }
        }
        self.positions = kept;
        for t in &mut self.triangles {
            *t = t.map(|i| map[i as usize]);
        }
    }
}

/// For each of `n` vertices, a representative vertex of its connected part
/// (union-find over triangle edges; out-of-range indices ignored).
pub(crate) fn part_of_vertex(n: usize, triangles: &[[u32; 3]]) -> Vec<u32> {
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn root(parent: &mut [u32], mut i: u32) -> u32 {
        while parent[i as usize] != i {
            let up = parent[parent[i as usize] as usize];
            parent[i as usize] = up;
            i = up;
        }
        i
    }
    for t in triangles {
        if t.iter().any(|&i| i as usize >= n) {
            continue;
        }
        for (a, b) in [(t[0], t[1]), (t[1], t[2])] {
            let (a, b) = (root(&mut parent, a), root(&mut parent, b));
            if a != b {
                parent[a as usize] = b;
            }
        }
    }
    (0..n as u32).map(|i| root(&mut parent, i)).collect()
}
