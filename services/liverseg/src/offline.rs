//! `liverseg segment` and `liverseg eval`: the model on files, without the service.

use anyhow::{Context, anyhow, bail};
use liverseg_dicom::volume::Volume;
use liverseg_inference::grid::{dot, sub};
use liverseg_inference::{Grid, Model, metrics, nifti};
use liverseg_worker::results::{self, volume_grid};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn is_nifti(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// A DICOM series: its geometry and identity (voxels moved out) and one of
/// its files, for the attributes the results copy.
struct DicomSource {
    volume: Volume,
    header_file: PathBuf,
}

/// A CT volume from a folder of DICOM files (one series) or a NIfTI file.
fn load_ct(input: &Path) -> anyhow::Result<(Grid, Vec<f32>, Option<DicomSource>)> {
    if input.is_dir() {
        let loaded = liverseg_dicom::volume::load_dir_listing(input, true)?;
        for (path, kind) in &loaded.skipped {
            eprintln!("note: skipped {}: {kind}, not an image", path.display());
        }
        let mut volume = loaded.volume;
        let hu = std::mem::take(&mut volume.hu);
        let header_file = loaded
            .files
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{}: no files", input.display()))?;
        let grid = volume_grid(&volume);
        Ok((
            grid,
            hu,
            Some(DicomSource {
                volume,
                header_file,
            }),
        ))
    } else if input.is_file() && is_nifti(input) {
        let (grid, hu) = nifti::read(input)?;
        Ok((grid, hu, None))
    } else if input.exists() {
        bail!(
            "{}: not a folder of DICOM files or a NIfTI file (.nii, .nii.gz)",
            input.display()
        )
    } else {
        bail!("{}: no such file or folder", input.display())
    }
}

pub struct SegmentArgs {
    pub input: PathBuf,
    pub out: PathBuf,
    pub model: Option<PathBuf>,
    pub threads: Option<usize>,
    pub every_slice: bool,
    /// The mesh's triangle budget (`results.mesh_max_triangles`).
    pub max_triangles: usize,
}

pub fn segment(args: SegmentArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let model = match &args.model {
        Some(p) => Model::from_file(p)?,
        None => Model::builtin()?,
    };
    let (grid, hu, dicom) = load_ct(&args.input)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let options = liverseg_inference::segment::Options {
        threads: args
            .threads
            .unwrap_or_else(liverseg_inference::segment::default_threads)
            .max(1),
        coarse_step_mm: (!args.every_slice).then_some(10.0),
    };
    let threads = options.threads;
    let tty = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize| {
        if tty {
            eprint!("\rsegmenting: {done}/{total} slices ");
        }
    };
    let seg = liverseg_inference::segment(&model, &grid, &hu, options, &progress)?;
    drop(hu); // the results need the mask only
    if tty {
        eprintln!();
    }
    let m = &model.manifest;
    let description = format!("liverseg {} {}", m.name, m.version);
    let results_start = Instant::now();
    let artifacts = result_files(&grid, &seg, dicom.as_ref(), m, args.max_triangles)?;
    let results_seconds = results_start.elapsed().as_secs_f64();
    let a = &seg.assessment;
    let summary = json!({
        "liver_found": a.liver_found,
        "liver_volume_ml": a.liver_found.then_some(seg.liver_volume_ml),
        "coverage": a.coverage,
        "flags": a.flags,
        "no_liver": a.no_liver,
        "uncertainty": a.uncertainty,
        "slices": seg.slices,
        "slices_run": seg.slices_run,
        "seconds": start.elapsed().as_secs_f64(),
        "model": {"name": m.name, "version": m.version, "sha256": m.sha256},
        "label": m.label.name,
        "grid": {"dims": grid.dims, "spacing_mm": grid.spacing},
        "timings": {"load_seconds": load_seconds, "network_seconds": seg.network_seconds,
                    "segment_seconds": seg.total_seconds, "results_seconds": results_seconds},
        "files": artifacts.iter().map(|a| a.file_name).collect::<Vec<_>>(),
        "threads": threads,
    });
    write_outputs(&args.out, |staging| {
        nifti::write_mask(&staging.join("mask.nii.gz"), &grid, &seg.mask, &description)?;
        let mut f = std::fs::File::create(staging.join("summary.json"))?;
        f.write_all(serde_json::to_string_pretty(&summary)?.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        for a in &artifacts {
            std::fs::write(staging.join(a.file_name), &a.bytes)?;
        }
        Ok(())
    })?;
    if dicom.is_none() {
        eprintln!("note: SEG and SR need a DICOM series as input; wrote the mesh only");
    }
    let finding = match &a.no_liver {
        Some(n) => format!("no liver found ({}: {})", n.reason.as_str(), n.detail),
        None if a.caveat().is_empty() => format!("liver {:.1} ml", seg.liver_volume_ml),
        None => format!(
            "liver {:.1} ml ({}; the volume is a lower bound where cut)",
            seg.liver_volume_ml,
            a.caveat()
        ),
    };
    println!(
        "{}: {finding} over {} slices in {:.2} s -> {}",
        args.input.display(),
        seg.slices,
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// The result files: from a DICOM series the SEG, the Encapsulated STL and
/// the volume SR (exactly what the worker sends) plus the mesh files; from
/// a NIfTI file the mesh files only.
fn result_files(
    grid: &Grid,
    seg: &liverseg_inference::Segmentation,
    dicom: Option<&DicomSource>,
    manifest: &liverseg_inference::Manifest,
    max_triangles: usize,
) -> anyhow::Result<Vec<results::Artifact>> {
    let Some(d) = dicom else {
        if !seg.assessment.liver_found {
            return Ok(Vec::new());
        }
        let (mesh, _) = results::liver_mesh(grid, &seg.mask, max_triangles)?;
        return Ok(results::mesh_files(&mesh).into());
    };
    // Deterministic: the same series and model give the same UIDs.
    let mut uids = d.volume.sop_instance_uids.clone();
    uids.sort();
    let seed = format!("offline/{}/{}", uids.join(","), manifest.sha256);
    let ctx = liverseg_dicom::derived::Context {
        uid_seed: seed,
        created_unix_seconds: liverseg_core::time::now_millis() / 1000,
        software_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let set = results::build(
        &d.volume,
        &d.header_file,
        &seg.mask,
        seg.liver_volume_ml,
        &seg.assessment,
        manifest,
        &ctx,
        max_triangles,
    )?;
    Ok(set.artifacts)
}

/// Writes the outputs into a staging folder inside `out`, then renames each
/// file into place: on any error nothing new is left in `out`.
fn write_outputs(
    out: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let staging = out.join(format!(".liverseg-partial-{}", std::process::id()));
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("{}: cannot create", staging.display()))?;
    let result = write(&staging).and_then(|()| {
        for entry in std::fs::read_dir(&staging)? {
            let entry = entry?;
            std::fs::rename(entry.path(), out.join(entry.file_name()))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    result.with_context(|| format!("{}: writing the results", out.display()))
}

/// A mask to compare: dense on a grid, or the frames of a DICOM SEG.
enum MaskInput {
    Dense(Grid, Vec<u8>),
    Seg(PathBuf, liverseg_dicom::seg::Segmentation),
}

fn load_mask(path: &Path) -> anyhow::Result<MaskInput> {
    let dense = |grid: Grid, values: Vec<f32>| {
        MaskInput::Dense(
            grid,
            values.into_iter().map(|v| u8::from(v > 0.0)).collect(),
        )
    };
    if path.is_dir() {
        let v = liverseg_dicom::volume::load_dir(path, false)?;
        Ok(dense(volume_grid(&v), v.hu))
    } else if path.is_file() && is_nifti(path) {
        let (g, v) = nifti::read(path)?;
        Ok(dense(g, v))
    } else if path.is_file() {
        Ok(MaskInput::Seg(
            path.into(),
            liverseg_dicom::seg::read(path)?,
        ))
    } else {
        bail!("{}: no such file or folder", path.display())
    }
}

/// Rasterises the liver segment of a SEG onto `grid`; every frame must lie
/// on one of its slices.
fn seg_on_grid(
    path: &Path,
    seg: &liverseg_dicom::seg::Segmentation,
    grid: &Grid,
) -> anyhow::Result<Vec<u8>> {
    let segment = seg.liver_segment().ok_or_else(|| {
        anyhow!(
            "{}: no liver segment among {} segments",
            path.display(),
            seg.segments.len()
        )
    })?;
    let [s, r, c] = grid.dims;
    if (seg.rows, seg.columns) != (r, c) {
        bail!(
            "{}: frames are {}x{}, the reference grid's slices {r}x{c}",
            path.display(),
            seg.rows,
            seg.columns
        );
    }
    let mut out = vec![0u8; grid.len()];
    for (k, f) in seg
        .frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.segment == segment)
    {
        let (row_cos, col_cos) = (
            [f.orientation[0], f.orientation[1], f.orientation[2]],
            [f.orientation[3], f.orientation[4], f.orientation[5]],
        );
        let aligned = dot(row_cos, grid.axes[2]) > 0.999
            && dot(col_cos, grid.axes[1]) > 0.999
            && (f.pixel_spacing[0] - grid.spacing[1]).abs() < 1e-3
            && (f.pixel_spacing[1] - grid.spacing[2]).abs() < 1e-3;
        let d = sub(f.position, grid.origin);
        let [zi, ri, ci] = [0, 1, 2].map(|k| dot(d, grid.axes[k]) / grid.spacing[k]);
        let z = zi.round();
        if !aligned
            || ri.abs() > 0.05
            || ci.abs() > 0.05
            || (zi - z).abs() > 0.1
            || z < 0.0
            || z as usize >= s
        {
            bail!(
                "{}: frame {} at ({:.2}, {:.2}, {:.2}) does not lie on a slice of the reference grid",
                path.display(),
                k + 1,
                f.position[0],
                f.position[1],
                f.position[2]
            );
        }
        let plane = &mut out[z as usize * r * c..(z as usize + 1) * r * c];
        for (o, p) in plane.iter_mut().zip(&f.pixels) {
            *o |= *p;
        }
    }
    Ok(out)
}

pub fn eval(pred: &Path, truth: &Path, json_out: bool) -> anyhow::Result<()> {
    let (p, t) = (load_mask(pred)?, load_mask(truth)?);
    let (grid, pm, tm) = match (p, t) {
        (MaskInput::Dense(pg, pm), MaskInput::Dense(tg, tm)) => {
            if pg.same_lattice(&tg, 0.01) {
                (tg, pm, tm)
            } else {
                // Same voxels stored in another order (e.g. RAS vs LPS): compare canonically.
                let (pc, tc) = (pg.canonical()?, tg.canonical()?);
                let (pcg, tcg) = (pc.grid(&pg), tc.grid(&tg));
                if !pcg.same_lattice(&tcg, 0.01) {
                    bail!(
                        "{} and {} lie on different voxel grids ({:?} vs {:?} voxels)",
                        pred.display(),
                        truth.display(),
                        pg.dims,
                        tg.dims
                    );
                }
                (
                    tcg,
                    pc.to_canonical(&pm).into_owned(),
                    tc.to_canonical(&tm).into_owned(),
                )
            }
        }
        (MaskInput::Seg(path, seg), MaskInput::Dense(tg, tm)) => {
            let pm = seg_on_grid(&path, &seg, &tg)?;
            (tg, pm, tm)
        }
        (MaskInput::Dense(pg, pm), MaskInput::Seg(path, seg)) => {
            let tm = seg_on_grid(&path, &seg, &pg)?;
            (pg, pm, tm)
        }
        (MaskInput::Seg(..), MaskInput::Seg(..)) => {
            bail!(
                "at least one of --pred and --truth must be a NIfTI file or a folder of DICOM masks (it gives the grid)"
            )
        }
    };
    let c = metrics::compare(&pm, &tm, grid.dims, grid.spacing);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        println!("Dice              {:.4}", c.dice);
        println!("HD95              {:.2} mm", c.hd95_mm);
        println!(
            "Volume            {:.1} ml predicted, {:.1} ml truth: {:+.1} ml ({:+.1} %)",
            c.pred_volume_ml, c.truth_volume_ml, c.volume_diff_ml, c.volume_diff_pct
        );
    }
    Ok(())
}
