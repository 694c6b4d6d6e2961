//! One segmentation's result set, built from a decoded series and its liver
//! mask: the DICOM SEG, the liver mesh (binary STL, glTF and Encapsulated STL)
//! and the volume SR. Pure and blocking; `liverseg segment` and the worker
//! both call [`build`], so offline and service results are the same objects.

use liverseg_core::{Assessment, NoLiver, NoLiverReason};
use liverseg_dicom::derived::{self, Algorithm, Caveats, Code, Context, Source};
use liverseg_dicom::volume::Volume;
use liverseg_inference::{Grid, Manifest};
use std::path::Path;
use std::time::Instant;
use tracing::info_span;

/// A DICOM result's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomIdentity {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_uid: String,
}

/// One file of the result set.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// `seg`, `stl-document`, `sr`, `stl`, `glb`.
    pub kind: &'static str,
    /// Its name in `liverseg segment`'s output folder.
    pub file_name: &'static str,
    pub dicom: Option<DicomIdentity>,
    pub bytes: Vec<u8>,
}

impl Artifact {
    /// A file that is not DICOM (mesh, summary): kept, not sent to the PACS.
    pub fn file(kind: &'static str, file_name: &'static str, bytes: Vec<u8>) -> Artifact {
        Artifact {
            kind,
            file_name,
            dicom: None,
            bytes,
        }
    }

    fn dicom(kind: &'static str, file_name: &'static str, p: derived::Produced) -> Artifact {
        Artifact {
            kind,
            file_name,
            dicom: Some(DicomIdentity {
                sop_class_uid: p.sop_class_uid,
                sop_instance_uid: p.sop_instance_uid,
                series_uid: p.series_instance_uid,
            }),
            bytes: p.bytes,
        }
    }
}

/// The mesh as the browser and printer files: binary STL and GLB.
pub fn mesh_files(mesh: &liverseg_mesh::Mesh) -> [Artifact; 2] {
    [
        Artifact::file("stl", "liver.stl", mesh.to_stl()),
        Artifact::file("glb", "liver.glb", mesh.to_glb()),
    ]
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageSeconds {
    pub seg: f64,
    pub mesh: f64,
    pub sr: f64,
}

#[derive(Debug, Clone)]
pub struct ResultSet {
    /// Empty when the mask is empty: a SEG needs at least one frame, and a
    /// mesh a surface.
    pub artifacts: Vec<Artifact>,
    /// The source had no Frame of Reference UID and one was made.
    pub frame_of_reference_repaired: bool,
    pub mesh: Option<liverseg_mesh::Report>,
    pub seconds: StageSeconds,
}

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("cannot describe the source series: {0}")]
    Source(#[source] derived::DerivedError),
    #[error("writing the SEG: {0}")]
    Seg(#[source] derived::DerivedError),
    #[error("making the liver mesh: {0}")]
    Mesh(#[source] liverseg_mesh::MeshError),
    #[error("writing the Encapsulated STL: {0}")]
    StlDocument(#[source] derived::DerivedError),
    #[error("writing the volume report: {0}")]
    Report(#[source] derived::DerivedError),
    #[error("reading the corrected segmentation: {0}")]
    Correction(String),
}

/// A DICOM volume's voxels placed in patient space.
pub fn volume_grid(v: &Volume) -> Grid {
    let o = v.orientation;
    let (row_cos, col_cos) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    Grid {
        dims: v.dims,
        spacing: v.spacing,
        origin: v.origin,
        axes: [
            liverseg_core::geometry::cross(row_cos, col_cos),
            col_cos,
            row_cos,
        ],
    }
}

/// The mesh of `mask` on `grid` (mm, patient coordinates).
pub fn liver_mesh(
    grid: &Grid,
    mask: &[u8],
    max_triangles: usize,
) -> Result<(liverseg_mesh::Mesh, liverseg_mesh::Report), liverseg_mesh::MeshError> {
    let voxels = liverseg_mesh::VoxelGrid {
        dims: grid.dims,
        spacing: grid.spacing,
        origin: grid.origin,
        axes: grid.axes,
    };
    let options = liverseg_mesh::Options {
        max_triangles,
        ..Default::default()
    };
    liverseg_mesh::surface(mask, &voxels, &options)
}

/// The algorithm as the SEG and SR describe it, from the model manifest.
pub fn algorithm(m: &Manifest) -> Algorithm {
    let code = |c: &liverseg_inference::model::Code| Code {
        scheme: c.scheme.clone(),
        value: c.code.clone(),
        meaning: c.meaning.clone(),
    };
    Algorithm {
        name: m.name.clone(),
        version: m.version.clone(),
        family: Code {
            scheme: "DCM".into(),
            value: "123110".into(),
            meaning: "Artificial Intelligence".into(),
        },
        segment_label: m.label.name.clone(),
        category: code(&m.label.category),
        kind: code(&m.label.kind),
    }
}

/// Builds every result object. `header_file` is one instance of the series
/// (patient and study attributes are copied from it). When `assessment`
/// found no liver, the only result is the report that says so; otherwise
/// every object carries its caveats (a cut liver, an unsure model).
#[allow(clippy::too_many_arguments)]
pub fn build(
    volume: &Volume,
    header_file: &Path,
    mask: &[u8],
    liver_volume_ml: f64,
    assessment: &Assessment,
    manifest: &Manifest,
    ctx: &Context,
    max_triangles: usize,
) -> Result<ResultSet, ResultError> {
    let mut seconds = StageSeconds::default();
    let src = Source::from_volume(volume, header_file).map_err(ResultError::Source)?;
    let algo = algorithm(manifest);
    let frame_of_reference_repaired = derived::frame_of_reference(&src, ctx).1;
    let no_liver = match &assessment.no_liver {
        Some(reason) => Some(reason.clone()),
        None if !mask.contains(&1) => Some(NoLiver {
            reason: NoLiverReason::NothingFound,
            detail: "the mask is empty".into(),
        }),
        None => None,
    };
    if let Some(reason) = no_liver {
        let started = Instant::now();
        let sr = info_span!("sr")
            .in_scope(|| derived::no_liver_report(&src, &reason, &algo, ctx))
            .map_err(ResultError::Report)?;
        seconds.sr = started.elapsed().as_secs_f64();
        return Ok(ResultSet {
            artifacts: vec![Artifact::dicom("sr", "sr.dcm", sr)],
            frame_of_reference_repaired: false,
            mesh: None,
            seconds,
        });
    }
    let caveats = Caveats::from(assessment);

    let started = Instant::now();
    let seg =
        info_span!("seg").in_scope(|| derived::segmentation_with(&src, mask, &algo, ctx, &caveats));
    let seg = seg.map_err(ResultError::Seg)?;
    seconds.seg = started.elapsed().as_secs_f64();

    let derived = surface_and_report(
        volume,
        &src,
        &seg,
        1,
        mask,
        (liver_volume_ml, &caveats),
        &algo,
        ctx,
        max_triangles,
        &mut seconds,
    )?;
    let mut artifacts = vec![Artifact::dicom("seg", "seg.dcm", seg)];
    artifacts.extend(derived.artifacts);
    Ok(ResultSet {
        artifacts,
        frame_of_reference_repaired,
        mesh: Some(derived.report),
        seconds,
    })
}

/// What a segmentation's mask yields besides the SEG itself.
struct Derived {
    /// Encapsulated STL, volume SR, STL and GLB files.
    artifacts: Vec<Artifact>,
    report: liverseg_mesh::Report,
}

/// The liver mesh (three files) and the volume report for the segment
/// `segment_number` of `seg`, whose mask is `mask` and whose volume (ml)
/// comes with its caveats.
#[allow(clippy::too_many_arguments)]
fn surface_and_report(
    volume: &Volume,
    src: &Source,
    seg: &derived::Produced,
    segment_number: u16,
    mask: &[u8],
    (liver_volume_ml, caveats): (f64, &Caveats),
    algo: &Algorithm,
    ctx: &Context,
    max_triangles: usize,
    seconds: &mut StageSeconds,
) -> Result<Derived, ResultError> {
    let started = Instant::now();
    let span = info_span!("mesh", triangles = tracing::field::Empty);
    let (mesh, report) = span
        .in_scope(|| liver_mesh(&volume_grid(volume), mask, max_triangles))
        .map_err(ResultError::Mesh)?;
    span.record("triangles", mesh.triangles.len());
    let [stl, glb] = mesh_files(&mesh);
    let stl_document = derived::encapsulated_stl_of(
        src,
        &stl.bytes,
        "Liver surface",
        (&seg.sop_instance_uid, &seg.series_instance_uid),
        ctx,
    )
    .map_err(ResultError::StlDocument)?;
    seconds.mesh = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let sr = info_span!("sr")
        .in_scope(|| {
            derived::volume_report_with(
                src,
                seg,
                segment_number,
                liver_volume_ml,
                algo,
                ctx,
                caveats,
            )
        })
        .map_err(ResultError::Report)?;
    seconds.sr = started.elapsed().as_secs_f64();
    Ok(Derived {
        artifacts: vec![
            Artifact::dicom("stl-document", "stl.dcm", stl_document),
            Artifact::dicom("sr", "sr.dcm", sr),
            stl,
            glb,
        ],
        report,
    })
}

/// A radiologist's corrected SEG (already checked and repaired) and what
/// it yields: the SEG as stored, its mesh and its volume report. The SR
/// names the correction, not the model, as the method.
pub struct Correction<'a> {
    pub seg_bytes: &'a [u8],
    pub sop_instance_uid: &'a str,
    pub series_uid: &'a str,
    pub version: i64,
    pub algorithm_type: &'a str,
}

pub fn build_correction(
    volume: &Volume,
    header_file: &Path,
    correction: &Correction<'_>,
    manifest: &Manifest,
    ctx: &Context,
    max_triangles: usize,
) -> Result<(ResultSet, f64), ResultError> {
    let mut seconds = StageSeconds::default();
    let read = liverseg_dicom::repair::read_lenient(correction.seg_bytes)
        .map_err(|e| ResultError::Correction(e.to_string()))?;
    let seg = liverseg_dicom::seg::parse(&read.dataset).map_err(ResultError::Correction)?;
    let liver = seg
        .liver_segment()
        .ok_or_else(|| ResultError::Correction("no liver segment".into()))?;
    let slices = liverseg_dicom::seg::Slices {
        rows: volume.dims[1],
        columns: volume.dims[2],
        orientation: volume.orientation,
        pixel_spacing: [volume.spacing[1], volume.spacing[2]],
        positions: volume.positions.clone(),
    };
    let mask =
        liverseg_dicom::seg::rasterize(&seg, liver, &slices).map_err(ResultError::Correction)?;
    let voxels = mask.iter().map(|&v| v as u64).sum::<u64>();
    let liver_volume_ml = voxels as f64 * volume.spacing.iter().product::<f64>() / 1000.0;
    // A corrected liver the scan cuts is still only a lower bound.
    let cut = liverseg_inference::assess::coverage_on(&volume_grid(volume), &mask)
        .map_err(|e| ResultError::Correction(e.to_string()))?
        .cut;
    let caveats = Caveats {
        cut,
        uncertain: false,
    };
    let src = Source::from_volume(volume, header_file).map_err(ResultError::Source)?;
    let mut algo = algorithm(manifest);
    algo.name = format!("Corrected segmentation ({})", correction.algorithm_type);
    algo.version = format!("version {}", correction.version);
    let identity = derived::Produced {
        sop_class_uid: liverseg_dicom::sop::SEGMENTATION_STORAGE.to_string(),
        sop_instance_uid: correction.sop_instance_uid.to_string(),
        series_instance_uid: correction.series_uid.to_string(),
        bytes: Vec::new(),
    };
    let segment_number =
        u16::try_from(liver).map_err(|_| ResultError::Correction("segment number".into()))?;
    let derived = surface_and_report(
        volume,
        &src,
        &identity,
        segment_number,
        &mask,
        (liver_volume_ml, &caveats),
        &algo,
        ctx,
        max_triangles,
        &mut seconds,
    )?;
    let mut artifacts = vec![Artifact::dicom(
        "seg",
        "seg.dcm",
        derived::Produced {
            bytes: correction.seg_bytes.to_vec(),
            ..identity
        },
    )];
    artifacts.extend(derived.artifacts);
    Ok((
        ResultSet {
            artifacts,
            frame_of_reference_repaired: false,
            mesh: Some(derived.report),
            seconds,
        },
        liver_volume_ml,
    ))
}
