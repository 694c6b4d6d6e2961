//! Series geometry and the sanity checks a CT series must pass before it is
//! worth segmenting. Geometry comes from ImagePositionPatient and
//! ImageOrientationPatient only, never from file or instance order.

use liverseg_core::InstanceMeta;

/// Rules from the `[series]` configuration section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesRules {
    pub min_slices: u32,
    pub max_tilt_degrees: f64,
}

/// What a passing series looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    pub slices: usize,
    pub rows: u32,
    pub columns: u32,
    /// Unit slice normal (row cosines x column cosines).
    pub normal: [f64; 3],
    /// Angle between the normal and the patient's head-feet axis.
    pub tilt_degrees: f64,
    /// Extent along the normal, first to last slice (mm).
    pub extent_mm: f64,
}

/// Largest difference between two direction cosines still taken as "the
/// same orientation" (about 0.06 degrees).
const ORIENTATION_TOLERANCE: f64 = 1e-3;

pub use liverseg_core::geometry::{cross, dot};

/// Unit normal of an orientation, or `None` when the cosines are degenerate.
pub fn slice_normal(iop: &[f64; 6]) -> Option<[f64; 3]> {
    let n = cross([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
    let len = dot(n, n).sqrt();
    (len > 0.5).then(|| [n[0] / len, n[1] / len, n[2] / len])
}

/// Checks a CT series given each instance's SOP class and metadata; `Err`
/// carries the reason it is skipped, phrased for an operator.
pub fn check_ct_series(
    instances: &[(&str, &InstanceMeta)],
    rules: &SeriesRules,
) -> Result<SeriesSummary, String> {
    let Some((_, first)) = instances.first() else {
        return Err("the series has no instances".into());
    };
    if let Some((_, m)) = instances.iter().find(|(_, m)| {
        m.modality
            .as_deref()
            .is_some_and(|v| !v.eq_ignore_ascii_case("CT"))
    }) {
        return Err(format!(
            "modality {} is not CT",
            m.modality.as_deref().unwrap_or("")
        ));
    }
    if instances
        .iter()
        .any(|(_, m)| m.image_type.iter().any(|t| t == "LOCALIZER"))
    {
        return Err("the series contains localizer (scout) images".into());
    }
    let iop = first
        .image_orientation
        .ok_or("ImageOrientationPatient is missing")?;
    let normal = slice_normal(&iop).ok_or("ImageOrientationPatient is degenerate")?;
    let (rows, columns) = match (first.rows, first.columns) {
        (Some(r), Some(c)) if r > 0 && c > 0 => (r, c),
        _ => return Err("Rows or Columns is missing".into()),
    };

    let mut positions = Vec::with_capacity(instances.len());
    let mut slices = 0usize;
    for (_, m) in instances {
        let o = m
            .image_orientation
            .ok_or("ImageOrientationPatient is missing on some instances")?;
        if o.iter()
            .zip(iop)
            .any(|(a, b)| (a - b).abs() > ORIENTATION_TOLERANCE)
        {
            return Err("the instances have more than one orientation".into());
        }
        if m.rows != Some(rows) || m.columns != Some(columns) {
            return Err("the instances have more than one image size".into());
        }
        let p = m
            .image_position
            .ok_or("ImagePositionPatient is missing on some instances")?;
        positions.push(dot(p, normal));
        slices += m.number_of_frames.unwrap_or(1).max(1) as usize;
    }

    let tilt_degrees = normal[2].abs().clamp(0.0, 1.0).acos().to_degrees();
    if tilt_degrees > rules.max_tilt_degrees {
        return Err(format!(
            "not axial: slices are tilted {tilt_degrees:.1} degrees from the head-feet axis (limit {})",
            rules.max_tilt_degrees
        ));
    }
    if slices < rules.min_slices as usize {
        return Err(format!(
            "{slices} slices, fewer than the {} required",
            rules.min_slices
        ));
    }
    // Single-frame instances: two at the same place means a duplicate or a
    // second acquisition mixed into the series.
    if instances.len() > 1 {
        positions.sort_by(f64::total_cmp);
        if positions.windows(2).any(|w| (w[1] - w[0]).abs() < 1e-3) {
            return Err("two instances share one slice position".into());
        }
    }
    let extent_mm = positions.last().unwrap_or(&0.0) - positions.first().unwrap_or(&0.0);
    Ok(SeriesSummary {
        slices,
        rows,
        columns,
        normal,
        tilt_degrees,
        extent_mm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = crate::sop::CT_IMAGE_STORAGE;
    const RULES: SeriesRules = SeriesRules {
        min_slices: 3,
        max_tilt_degrees: 30.0,
    };

    fn slice(z: f64) -> InstanceMeta {
        InstanceMeta {
            modality: Some("CT".into()),
            image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "AXIAL".into()],
            rows: Some(512),
            columns: Some(512),
            image_position: Some([-170.0, -170.0, z]),
            image_orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            pixel_spacing: Some([0.7, 0.7]),
            ..Default::default()
        }
    }

    fn check(metas: &[InstanceMeta]) -> Result<SeriesSummary, String> {
        let v: Vec<_> = metas.iter().map(|m| (CT, m)).collect();
        check_ct_series(&v, &RULES)
    }

    #[test]
    fn accepts_axial_series_in_any_file_order() {
        let s = check(&[slice(5.0), slice(-5.0), slice(0.0)]).unwrap();
        assert_eq!(s.slices, 3);
        assert!((s.extent_mm - 10.0).abs() < 1e-9);
        assert!(s.tilt_degrees < 1e-9);
    }

    #[test]
    fn rejects_each_flaw_with_a_reason() {
        let few = check(&[slice(0.0), slice(1.0)]).unwrap_err();
        assert!(few.contains("fewer than the 3"), "{few}");

        let mut scout = vec![slice(0.0), slice(1.0), slice(2.0)];
        scout[1].image_type.push("LOCALIZER".into());
        assert!(check(&scout).unwrap_err().contains("localizer"));

        let mut mixed = vec![slice(0.0), slice(1.0), slice(2.0)];
        mixed[2].image_orientation = Some([1.0, 0.0, 0.0, 0.0, 0.0, -1.0]);
        assert!(
            check(&mixed)
                .unwrap_err()
                .contains("more than one orientation")
        );

        let coronal: Vec<_> = (0..3)
            .map(|i| InstanceMeta {
                image_orientation: Some([1.0, 0.0, 0.0, 0.0, 0.0, -1.0]),
                image_position: Some([0.0, i as f64, 0.0]),
                ..slice(0.0)
            })
            .collect();
        assert!(check(&coronal).unwrap_err().contains("not axial"));

        let mut sizes = vec![slice(0.0), slice(1.0), slice(2.0)];
        sizes[0].rows = Some(256);
        assert!(check(&sizes).unwrap_err().contains("image size"));

        let mut no_pos = vec![slice(0.0), slice(1.0), slice(2.0)];
        no_pos[1].image_position = None;
        assert!(check(&no_pos).unwrap_err().contains("ImagePositionPatient"));

        assert!(
            check(&[slice(0.0), slice(0.0), slice(1.0)])
                .unwrap_err()
                .contains("share one slice position")
        );

        let mut mr = vec![slice(0.0), slice(1.0), slice(2.0)];
        mr[0].modality = Some("MR".into());
        assert!(check(&mr).unwrap_err().contains("not CT"));
        assert!(check(&[]).is_err());
    }

    #[test]
    fn a_tilted_gantry_within_the_limit_passes() {
        let t = 20f64.to_radians();
        let tilted: Vec<_> = (0..3)
            .map(|i| InstanceMeta {
                image_orientation: Some([1.0, 0.0, 0.0, 0.0, t.cos(), -t.sin()]),
                image_position: Some([0.0, 0.0, i as f64]),
                ..slice(0.0)
            })
            .collect();
        let s = check(&tilted).unwrap();
        assert!((s.tilt_degrees - 20.0).abs() < 1e-6, "{}", s.tilt_degrees);
    }

    #[test]
    fn an_enhanced_ct_counts_its_frames() {
        let mut m = slice(0.0);
        m.number_of_frames = Some(40);
        let s = check(&[m]).unwrap();
        assert_eq!(s.slices, 40);
    }
}
