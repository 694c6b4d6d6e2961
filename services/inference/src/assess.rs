//! The segmentation judged before anything is written or sent: is what the
//! network found a plausible liver, does the scan hold all of it, and was
//! the network sure?
//!
//! The rules are anatomical, not tuned to a scan: an adult liver is hundreds
//! of millilitres of soft tissue in one piece, on the patient's right, inside
//! a trunk. A network that has only ever seen abdomens still marks
//! something in a head or a leg; these checks are what keeps the service from
//! reporting the liver of a head.

use crate::postprocess::Kept;
use crate::{Error, Grid};
use liverseg_core::{Assessment, Coverage, Flag, NoLiver, NoLiverReason, Side};

/// Liver area (mm^2) on a boundary face of the scan (its first or last slice,
/// an edge of the field of view) from which the liver counts as cut there:
/// about 1 cm^2, so that one smeared voxel row does not count.
pub const EDGE_MM2: f64 = 100.0;
/// Smallest volume (ml) reported as a liver the scan covers whole. Adult
/// livers are 1000-2500 ml; after a major resection they can be half that.
pub const MIN_WHOLE_LIVER_ML: f64 = 300.0;
/// Smallest volume (ml) reported as the part of a liver inside a scan that
/// cuts it (a chest CT that catches the dome).
pub const MIN_PARTIAL_LIVER_ML: f64 = 30.0;
/// Narrowest body (mm, left to right, at the finding's level) taken for an
/// adult trunk. Heads are 140-170 mm wide; adult trunks at the liver 240 mm
/// and more.
pub const MIN_TRUNK_WIDTH_MM: f64 = 200.0;
/// Smallest share of the marked voxels that the kept component must hold.
pub const MIN_LARGEST_SHARE: f64 = 0.5;
/// Median density (HU) of a liver: fatty non-contrast livers go down to
/// about -40, enhanced ones up to about 200.
pub const SOFT_TISSUE_HU: [f32; 2] = [-60.0, 250.0];
/// Voxels at or above this density are body, not air (as the input window's
/// body box).
const BODY_HU: f32 = -500.0;
/// A logit this close to the threshold is a pixel the network was unsure of
/// (probability between 0.12 and 0.88).
pub const UNSURE_LOGIT: f32 = 2.0;
/// Unsure pixels per liver pixel above which a result is flagged for review.
/// Measured on held-out patients (cross-validation folds of model 2.0.0):
/// LiTS 117 0.16 (Dice 0.935), IRCADb 1 0.20 (Dice 0.944, HD95 11.7 mm),
/// IRCADb 7 0.26 (Dice 0.70, volume +49 %); the shipped model on the IRCADb
/// series 0.09, on the head phantom 1.7.
pub const MAX_UNCERTAINTY: f64 = 0.2;

/// What the judgement needs of a segmentation, on the canonical grid
/// (feet to head, anterior at the top, the patient's right on the left).
pub struct Evidence<'a> {
    /// The post-processed mask, 0/1.
    pub mask: &'a [u8],
    pub hu: &'a [f32],
    pub dims: [usize; 3],
    /// (z, y, x) mm.
    pub spacing: [f64; 3],
    pub kept: Kept,
    /// Unsure and liver pixels on the network's grid, over every slice run.
    pub unsure_pixels: usize,
    pub liver_pixels: usize,
}

pub fn assess(e: &Evidence<'_>) -> Assessment {
    let uncertainty = e.unsure_pixels as f64 / e.liver_pixels.max(1) as f64;
    let voxels = e.mask.iter().filter(|v| **v != 0).count();
    let voxel_ml = e.spacing.iter().product::<f64>() / 1000.0;
    let volume_ml = voxels as f64 * voxel_ml;
    let coverage = coverage(e);
    let reject = |reason, detail: String| Assessment {
        liver_found: false,
        no_liver: Some(NoLiver { reason, detail }),
        coverage: Coverage::default(),
        flags: vec![Flag::NoLiver],
        uncertainty,
    };
    if voxels == 0 {
        return reject(
            NoLiverReason::NothingFound,
            "the network marked no liver tissue".into(),
        );
    }
    let (min_ml, what) = if coverage.complete {
        (MIN_WHOLE_LIVER_ML, "a liver the scan covers whole")
    } else {
        (MIN_PARTIAL_LIVER_ML, "even a cut liver")
    };
    if volume_ml < min_ml {
        return reject(
            NoLiverReason::TooSmall,
            format!("{volume_ml:.0} ml is too small for {what} (at least {min_ml:.0} ml)"),
        );
    }
    if let Some(body) = body_at_finding(e) {
        if body.width_mm < MIN_TRUNK_WIDTH_MM {
            return reject(
                NoLiverReason::NotATrunk,
                format!(
                    "the body is {:.0} mm wide at the finding: not an adult trunk (at least {MIN_TRUNK_WIDTH_MM:.0} mm)",
                    body.width_mm
                ),
            );
        }
        if body.right_of_midline_mm < 0.0 {
            return reject(
                NoLiverReason::WrongSide,
                format!(
                    "the finding's centre lies {:.0} mm to the patient's left of the midline",
                    -body.right_of_midline_mm
                ),
            );
        }
    }
    let share = e.kept.largest as f64 / e.kept.marked.max(1) as f64;
    if share < MIN_LARGEST_SHARE {
        return reject(
            NoLiverReason::Scattered,
            format!(
                "the largest piece holds {:.0} % of what was marked (a liver is one piece)",
                share * 100.0
            ),
        );
    }
    let median = median_hu(e);
    if !(SOFT_TISSUE_HU[0]..=SOFT_TISSUE_HU[1]).contains(&median) {
        return reject(
            NoLiverReason::NotSoftTissue,
            format!("median density {median:.0} HU is not that of liver tissue"),
        );
    }
    let mut flags = Vec::new();
    if !coverage.complete {
        flags.push(Flag::PartialCoverage);
    }
    if uncertainty > MAX_UNCERTAINTY {
        flags.push(Flag::Uncertain);
    }
    Assessment {
        liver_found: true,
        no_liver: None,
        coverage,
        flags,
        uncertainty,
    }
}

/// Where `mask` (on `grid`, in source order) reaches the scan's boundary:
/// for a mask nobody asked the network about (a radiologist's correction),
/// the same rule as for the network's.
pub fn coverage_on(grid: &Grid, mask: &[u8]) -> Result<Coverage, Error> {
    let canonical = grid.canonical()?;
    let canon = canonical.to_canonical(mask);
    Ok(coverage(&Evidence {
        mask: &canon,
        hu: &[],
        dims: canonical.dims,
        spacing: canonical.spacing,
        kept: Kept::default(),
        unsure_pixels: 0,
        liver_pixels: 0,
    }))
}

/// The sides where the mask reaches a boundary face of the scan with at
/// least [`EDGE_MM2`] of liver.
fn coverage(e: &Evidence<'_>) -> Coverage {
    let [s, r, c] = e.dims;
    let [dz, dy, dx] = e.spacing;
    let on = |z: usize, y: usize, x: usize| usize::from(e.mask[(z * r + y) * c + x] != 0);
    // Liver voxels on each face: z = 0, z = s-1, y = 0, y = r-1, x = 0, x = c-1.
    let mut n = [0usize; 6];
    for z in 0..s {
        for y in 0..r {
            n[4] += on(z, y, 0);
            n[5] += on(z, y, c - 1);
            for x in 0..c {
                let v = on(z, y, x);
                if z == 0 {
                    n[0] += v;
                }
                if z == s - 1 {
                    n[1] += v;
                }
                if y == 0 {
                    n[2] += v;
                }
                if y == r - 1 {
                    n[3] += v;
                }
            }
        }
    }
    // Slices run feet to head: the last slice is the superior end. A single
    // slice has no ends to judge.
    let faces = [
        (Side::Superior, n[1], dy * dx, s > 1),
        (Side::Inferior, n[0], dy * dx, s > 1),
        (Side::Anterior, n[2], dz * dx, true),
        (Side::Posterior, n[3], dz * dx, true),
        (Side::Right, n[4], dz * dy, true),
        (Side::Left, n[5], dz * dy, true),
    ];
    let cut: Vec<Side> = faces
        .into_iter()
        .filter(|(_, n, area, judged)| *judged && *n as f64 * area >= EDGE_MM2)
        .map(|(side, ..)| side)
        .collect();
    Coverage {
        complete: cut.is_empty(),
        cut,
    }
}

struct Body {
    width_mm: f64,
    /// How far the finding's centre lies to the patient's right of the
    /// middle of the body (negative: to the left).
    right_of_midline_mm: f64,
}

/// The body around the finding, on the slice with the most of it: for each
/// of its rows, the stretch of body (everything not reached from the image
/// border through air) that holds it; the median of those widths. The
/// table lies behind the patient, not on the finding's rows; arms are
/// separated from the trunk by air. `None` when a stretch runs into the
/// edge of the image: a field of view narrower than the body (a cropped
/// reconstruction) shows neither its width nor its middle.
fn body_at_finding(e: &Evidence<'_>) -> Option<Body> {
    let [s, r, c] = e.dims;
    let plane = r * c;
    let z = (0..s).max_by_key(|z| {
        e.mask[z * plane..(z + 1) * plane]
            .iter()
            .filter(|v| **v != 0)
            .count()
    })?;
    let mask = &e.mask[z * plane..(z + 1) * plane];
    let hu = &e.hu[z * plane..(z + 1) * plane];
    let outside = outside_air(hu, r, c);
    let mut widths = Vec::new();
    let mut offsets = Vec::new();
    let mut weights = Vec::new();
    for y in 0..r {
        let row = &mask[y * c..(y + 1) * c];
        let xs: Vec<usize> = (0..c).filter(|&x| row[x] != 0).collect();
        let (Some(&first), Some(&last)) = (xs.first(), xs.last()) else {
            continue;
        };
        let mut lo = first;
        while lo > 0 && !outside[y * c + lo - 1] {
            lo -= 1;
        }
        let mut hi = last;
        while hi + 1 < c && !outside[y * c + hi + 1] {
            hi += 1;
        }
        if lo == 0 || hi + 1 == c {
            // The field of view cuts the body at the finding's level.
            return None;
        }
        let centre = xs.iter().sum::<usize>() as f64 / xs.len() as f64;
        let middle = (lo + hi) as f64 / 2.0;
        widths.push((hi - lo + 1) as f64 * e.spacing[2]);
        // Columns run from the patient's right to the left.
        offsets.push((middle - centre) * e.spacing[2] * xs.len() as f64);
        weights.push(xs.len() as f64);
    }
    if widths.is_empty() {
        return None;
    }
    let weight: f64 = weights.iter().sum();
    widths.sort_by(f64::total_cmp);
    Some(Body {
        width_mm: widths[widths.len() / 2],
        right_of_midline_mm: offsets.iter().sum::<f64>() / weight.max(1.0),
    })
}

/// Pixels of air reached from the image border through air (4-connected).
fn outside_air(hu: &[f32], r: usize, c: usize) -> Vec<bool> {
    let mut outside = vec![false; r * c];
    let mut stack = Vec::new();
    let seed = |i: usize, outside: &mut Vec<bool>, stack: &mut Vec<usize>| {
        if hu[i] < BODY_HU && !outside[i] {
            outside[i] = true;
            stack.push(i);
        }
    };
    for x in 0..c {
        seed(x, &mut outside, &mut stack);
        seed((r - 1) * c + x, &mut outside, &mut stack);
    }
    for y in 0..r {
        seed(y * c, &mut outside, &mut stack);
        seed(y * c + c - 1, &mut outside, &mut stack);
    }
    while let Some(i) = stack.pop() {
        let (y, x) = (i / c, i % c);
        let next = [
            (x > 0).then(|| i - 1),
            (x + 1 < c).then(|| i + 1),
            (y > 0).then(|| i - c),
            (y + 1 < r).then(|| i + c),
        ];
        for n in next.into_iter().flatten() {
            seed(n, &mut outside, &mut stack);
        }
    }
    outside
}

fn median_hu(e: &Evidence<'_>) -> f32 {
    let mut v: Vec<f32> = e
        .mask
        .iter()
        .zip(e.hu)
        .filter(|(m, _)| **m != 0)
        .map(|(_, h)| *h)
        .collect();
    if v.is_empty() {
        return f32::NAN;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIMS: [usize; 3] = [20, 100, 100];
    /// 5 mm slices of 4 mm pixels: a 400 mm field of view.
    const SPACING: [f64; 3] = [5.0, 4.0, 4.0];

    /// A body (an ellipse `width_mm` wide, 240 mm deep, 40 HU) in air.
    fn body(width_mm: f64) -> Vec<f32> {
        let [s, r, c] = DIMS;
        let mut hu = vec![-1000.0; s * r * c];
        for z in 0..s {
            for y in 0..r {
                for x in 0..c {
                    let dy = (y as f64 - 49.5) * SPACING[1] / 120.0;
                    let dx = (x as f64 - 49.5) * SPACING[2] / (width_mm / 2.0);
                    if dy * dy + dx * dx <= 1.0 {
                        hu[(z * r + y) * c + x] = 40.0;
                    }
                }
            }
        }
        hu
    }

    /// A box of liver over slices `zs`, rows 30..70 and columns `xs`.
    fn liver(zs: std::ops::Range<usize>, xs: std::ops::Range<usize>) -> Vec<u8> {
        let [s, r, c] = DIMS;
        let mut m = vec![0u8; s * r * c];
        for z in zs {
            for y in 30..70 {
                for x in xs.clone() {
                    m[(z * r + y) * c + x] = 1;
                }
            }
        }
        m
    }

    fn judge(mask: &[u8], hu: &[f32], kept: Option<Kept>, unsure: usize) -> Assessment {
        let n = mask.iter().filter(|v| **v != 0).count();
        assess(&Evidence {
            mask,
            hu,
            dims: DIMS,
            spacing: SPACING,
            kept: kept.unwrap_or(Kept {
                marked: n,
                largest: n,
            }),
            unsure_pixels: unsure,
            liver_pixels: 1000,
        })
    }

    fn reason(a: &Assessment) -> Option<NoLiverReason> {
        a.no_liver.as_ref().map(|n| n.reason)
    }

    #[test]
    fn a_whole_liver_on_the_right_of_a_trunk_is_found_complete() {
        // 10 slices x 40 rows x 30 columns x 80 mm^3 = 960 ml, patient's right.
        let a = judge(&liver(5..15, 15..45), &body(340.0), None, 50);
        assert!(a.liver_found, "{a:?}");
        assert_eq!(a.coverage, Coverage::complete());
        assert!(a.flags.is_empty(), "{a:?}");
        assert!((a.uncertainty - 0.05).abs() < 1e-9);
    }

    #[test]
    fn a_liver_reaching_the_ends_of_the_scan_is_partial_on_those_sides() {
        let hu = body(340.0);
        let top = judge(&liver(5..20, 15..45), &hu, None, 0);
        assert!(top.liver_found);
        assert_eq!(top.coverage.cut, [Side::Superior]);
        assert_eq!(top.flags, [Flag::PartialCoverage]);
        let both = judge(&liver(0..20, 15..45), &hu, None, 0);
        assert_eq!(both.coverage.cut, [Side::Superior, Side::Inferior]);
        assert!(!both.coverage.complete);
        // A liver that leaves the field of view on the patient's right.
        let side = judge(&liver(5..15, 0..30), &hu, None, 0);
        assert_eq!(side.coverage.cut, [Side::Right], "{side:?}");
    }

    #[test]
    fn too_little_tissue_is_no_liver() {
        // 2 x 40 x 10 voxels: 64 ml, whole: too small for a whole liver.
        let a = judge(&liver(8..10, 20..30), &body(340.0), None, 0);
        assert_eq!(reason(&a), Some(NoLiverReason::TooSmall), "{a:?}");
        assert!(!a.liver_found);
        assert_eq!(a.flags, [Flag::NoLiver]);
        // The same at the end of a scan is a cut liver's tip: kept.
        let tip = judge(&liver(18..20, 20..30), &body(340.0), None, 0);
        assert!(tip.liver_found, "{tip:?}");
        assert_eq!(tip.coverage.cut, [Side::Superior]);
    }

    #[test]
    fn a_finding_in_a_head_wide_body_is_no_liver() {
        // 160 mm wide (a head); the finding is large enough for a liver.
        let a = judge(&liver(5..15, 35..50), &body(160.0), None, 0);
        assert_eq!(reason(&a), Some(NoLiverReason::NotATrunk), "{a:?}");
    }

    #[test]
    fn a_field_of_view_narrower_than_the_body_does_not_make_it_a_head() {
        // A 600 mm wide body in a 400 mm field of view (a cropped
        // reconstruction, or LiTS's crop around the liver): the body's
        // width and middle cannot be seen, so they are not judged.
        // 1.5 mm pixels: a 150 mm field of view filled with body, and a
        // liver cut at the top of the scan.
        let mask = liver(5..20, 15..45);
        let hu = vec![40.0; 20 * 100 * 100];
        let n = mask.iter().filter(|v| **v != 0).count();
        let a = assess(&Evidence {
            mask: &mask,
            hu: &hu,
            dims: DIMS,
            spacing: [5.0, 1.5, 1.5],
            kept: Kept {
                marked: n,
                largest: n,
            },
            unsure_pixels: 0,
            liver_pixels: 1000,
        });
        assert!(a.liver_found, "{a:?}");
    }

    #[test]
    fn a_finding_on_the_patients_left_is_no_liver() {
        let a = judge(&liver(5..15, 55..85), &body(340.0), None, 0);
        assert_eq!(reason(&a), Some(NoLiverReason::WrongSide), "{a:?}");
    }

    #[test]
    fn scattered_findings_are_no_liver() {
        let m = liver(5..15, 15..45);
        let kept = Kept {
            marked: 40_000,
            largest: 12_000,
        };
        let a = judge(&m, &body(340.0), Some(kept), 0);
        assert_eq!(reason(&a), Some(NoLiverReason::Scattered), "{a:?}");
    }

    #[test]
    fn bone_dense_findings_are_no_liver() {
        let m = liver(5..15, 15..45);
        let hu: Vec<f32> = body(340.0)
            .iter()
            .zip(&m)
            .map(|(h, l)| if *l != 0 { 700.0 } else { *h })
            .collect();
        let a = judge(&m, &hu, None, 0);
        assert_eq!(reason(&a), Some(NoLiverReason::NotSoftTissue), "{a:?}");
    }

    #[test]
    fn an_unsure_network_flags_the_result_for_review() {
        let a = judge(&liver(5..15, 15..45), &body(340.0), None, 400);
        assert!(a.liver_found);
        assert_eq!(a.flags, [Flag::Uncertain]);
    }

    #[test]
    fn nothing_marked_is_nothing_found() {
        let a = judge(&liver(0..0, 0..0), &body(340.0), None, 0);
        assert_eq!(reason(&a), Some(NoLiverReason::NothingFound));
    }
}
