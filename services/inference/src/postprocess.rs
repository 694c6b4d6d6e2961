//! 3D clean-up of a thresholded mask: keep the largest 6-connected component,
//! then fill holes in 3D and, per slice, in 2D (vessels inside the liver).

/// Keeps the largest 6-connected component of `mask` (`[z][y][x]`, 0/1).
pub fn largest_component(mask: &mut [u8], dims: [usize; 3]) {
    let mut label = vec![0u32; mask.len()];
    let mut sizes = vec![0usize]; // label 0: background
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || label[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0;
        label[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            size += 1;
            for n in neighbours6(i, dims) {
                if mask[n] != 0 && label[n] == 0 {
                    label[n] = id;
                    stack.push(n);
                }
            }
        }
        sizes.push(size);
    }
    if sizes.len() <= 2 {
        return;
    }
    let keep = (1..sizes.len()).max_by_key(|&i| sizes[i]).unwrap_or(1) as u32;
    for (m, l) in mask.iter_mut().zip(label) {
        *m = u8::from(l == keep);
    }
}

fn neighbours6(i: usize, [s, r, c]: [usize; 3]) -> impl Iterator<Item = usize> {
    let (z, y, x) = (i / (r * c), (i / c) % r, i % c);
    let plane = r * c;
    [
        (x > 0).then(|| i - 1),
        (x + 1 < c).then(|| i + 1),
        (y > 0).then(|| i - c),
        (y + 1 < r).then(|| i + c),
        (z > 0).then(|| i - plane),
        (z + 1 < s).then(|| i + plane),
    ]
    .into_iter()
    .flatten()
}

/// Sets every background voxel that is not 6-connected (4-connected within
/// the slice when `dims[0] == 1`) to the volume's border.
fn fill_enclosed(mask: &mut [u8], dims: [usize; 3]) {
    let [s, r, c] = dims;
    let mut outside = vec![false; mask.len()];
    let mut stack = Vec::new();
    for z in 0..s {
        for y in 0..r {
            for x in 0..c {
                let border = (s > 1 && (z == 0 || z + 1 == s))
                    || y == 0
                    || y + 1 == r
                    || x == 0
                    || x + 1 == c;
                let i = (z * r + y) * c + x;
                if border && mask[i] == 0 && !outside[i] {
                    outside[i] = true;
                    stack.push(i);
                }
            }
        }
    }
    while let Some(i) = stack.pop() {
        for n in neighbours6(i, dims) {
            if mask[n] == 0 && !outside[n] {
                outside[n] = true;
                stack.push(n);
            }
        }
    }
    for (m, o) in mask.iter_mut().zip(outside) {
        if !o {
            *m = 1;
        }
    }
}

/// 3D hole filling, then 2D per slice.
pub fn fill_holes(mask: &mut [u8], dims: [usize; 3]) {
    fill_enclosed(mask, dims);
    let plane = dims[1] * dims[2];
    for slice in mask.chunks_exact_mut(plane) {
        fill_enclosed(slice, [1, dims[1], dims[2]]);
    }
}

/// Voxels the network marked, and those of them in the largest component:
/// a liver is one dominant piece, scattered findings are not a liver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kept {
    pub marked: usize,
    pub largest: usize,
}

/// Largest component, then hole filling. Both run inside the mask's bounding
/// box grown by one voxel: the same result (the box's border is background
/// and connected around the mask), at a fraction of the cost.
pub fn postprocess(mask: &mut [u8], dims: [usize; 3]) -> Kept {
    let Some((lo, hi)) = bounding_box(mask, dims) else {
        return Kept::default();
    };
    // Only grow where the volume allows: a mask touching the volume's border
    // keeps that border as the box's border, as in the full computation.
    let lo = [0, 1, 2].map(|a| lo[a].saturating_sub(1));
    let hi = [0, 1, 2].map(|a| (hi[a] + 1).min(dims[a] - 1));
    let sub = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let [_, r, c] = dims;
    let mut crop = Vec::with_capacity(sub.iter().product());
    for z in lo[0]..=hi[0] {
        for y in lo[1]..=hi[1] {
            let row = (z * r + y) * c;
            crop.extend_from_slice(&mask[row + lo[2]..=row + hi[2]]);
        }
    }
    let marked = count(&crop);
    largest_component(&mut crop, sub);
    let largest = count(&crop);
    fill_holes(&mut crop, sub);
    for (i, chunk) in crop.chunks_exact(sub[2]).enumerate() {
        let (z, y) = (lo[0] + i / sub[1], lo[1] + i % sub[1]);
        let row = (z * r + y) * c;
        mask[row + lo[2]..=row + hi[2]].copy_from_slice(chunk);
    }
    Kept { marked, largest }
}

fn count(mask: &[u8]) -> usize {
    mask.iter().filter(|v| **v != 0).count()
}

/// Inclusive (z, y, x) bounds of the set voxels.
fn bounding_box(mask: &[u8], [s, r, c]: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for z in 0..s {
        for y in 0..r {
            let row = &mask[(z * r + y) * c..(z * r + y + 1) * c];
            let Some(first) = row.iter().position(|v| *v != 0) else {
                continue;
            };
            let last = row.iter().rposition(|v| *v != 0).unwrap_or(first);
            for (a, (l, h)) in [(z, z), (y, y), (first, last)].into_iter().enumerate() {
                lo[a] = lo[a].min(l);
                hi[a] = hi[a].max(h);
            }
        }
    }
    (lo[0] != usize::MAX).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cropped_postprocess_equals_the_full_computation() {
        let dims = [6, 9, 11];
        let mut state = 7u32;
        // Noise in a block that touches the x = 0 face and no other.
        let mask: Vec<u8> = (0..dims.iter().product::<usize>())
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let (z, y, x) = (i / 99, (i / 11) % 9, i % 11);
                let inside = (1..5).contains(&z) && (2..7).contains(&y) && x < 7;
                u8::from(inside && (state >> 16) % 5 < 3)
            })
            .collect();
        assert!(bounding_box(&mask, dims).is_some_and(|(lo, hi)| lo[0] > 0 && hi[2] < 10));
        let mut full = mask.clone();
        largest_component(&mut full, dims);
        fill_holes(&mut full, dims);
        let mut cropped = mask.clone();
        postprocess(&mut cropped, dims);
        assert_eq!(cropped, full);
    }

    #[test]
    fn keeps_the_largest_component_only() {
        let dims = [1, 3, 7];
        #[rustfmt::skip]
        let mut m = vec![
            1, 1, 0, 0, 1, 1, 1,
            0, 0, 0, 0, 1, 1, 0,
            1, 0, 0, 0, 0, 0, 0,
        ];
        largest_component(&mut m, dims);
        assert_eq!(m.iter().filter(|v| **v == 1).count(), 5);
        assert_eq!(m[4], 1);
        assert_eq!(m[0], 0);
    }

    #[test]
    fn fills_an_enclosed_cavity_but_not_a_notch() {
        let dims = [3, 5, 5];
        let mut m = vec![0u8; 75];
        // A 3x3x3 cube with its centre missing, plus a notch open to the border.
        for z in 0..3 {
            for y in 1..4 {
                for x in 1..4 {
                    m[(z * 5 + y) * 5 + x] = 1;
                }
            }
        }
        m[(5 + 2) * 5 + 2] = 0;
        m[(5 + 1) * 5 + 2] = 0; // opens the centre to row 0 within slice 1
        m[(5) * 5 + 2] = 0;
        let mut filled = m.clone();
        fill_holes(&mut filled, dims);
        // The cube touches the top and bottom slices: in 3D the centre is
        // reachable only through the notch, so it stays empty.
        assert_eq!(filled[(5 + 2) * 5 + 2], 0);
        let mut closed = m.clone();
        closed[(5 + 1) * 5 + 2] = 1;
        fill_holes(&mut closed, dims);
        assert_eq!(closed[(5 + 2) * 5 + 2], 1);
    }
}
