//! The whole segmentation of one volume: canonical layout, slices through the
//! network on a pool of threads, logits back to the source grid, 3D clean-up.

use crate::Error;
use crate::assess::{Evidence, UNSURE_LOGIT, assess};
use crate::grid::Grid;
use crate::model::Model;
use crate::postprocess::postprocess;
use crate::preprocess::Window;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// A liver mask on the source grid and what it took to make it.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// `[slice][row][column]` on the input grid, 1 = liver.
    pub mask: Vec<u8>,
    pub liver_voxels: usize,
    pub liver_volume_ml: f64,
    pub slices: usize,
    /// Slices the network actually ran on (the rest lie far from the liver).
    pub slices_run: usize,
    /// Seconds in the network (summed over threads' wall time: the parallel
    /// section) and in everything else.
    pub network_seconds: f64,
    pub total_seconds: f64,
    /// Wall time of each network call, one per slice run, in run order
    /// per thread (for latency histograms).
    pub slice_seconds: Vec<f32>,
    /// Whether this is a liver, whole or cut, and how sure the network was.
    /// When no liver is found the mask is empty.
    pub assessment: liverseg_core::Assessment,
}

/// How slices are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub threads: usize,
    /// First a coarse pass every `coarse_step_mm`; then only the slices
    /// between the first and last coarse slices showing liver, widened by
    /// two coarse steps. `None` runs every slice.
    pub coarse_step_mm: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: default_threads(),
            coarse_step_mm: Some(10.0),
        }
    }
}

/// Runs `model` over the slices of (`grid`, `hu`) that can hold liver;
/// `progress(done, total)` is called after each slice.
pub fn segment(
    model: &Model,
    grid: &Grid,
    hu: &[f32],
    options: Options,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Segmentation, Error> {
    let start = Instant::now();
    if hu.len() != grid.len() || grid.is_empty() {
        return Err(Error::Shape(format!(
            "{} voxels for a {:?} grid",
            hu.len(),
            grid.dims
        )));
    }
    let canonical = grid.canonical()?;
    let dims = canonical.dims;
    let canon_hu = canonical.to_canonical(hu);
    let window = Window::new(&model.manifest.input, &canon_hu, dims, canonical.spacing);
    let s = dims[0];
    let plane = dims[1] * dims[2];
    let mut canon_mask = vec![0u8; s * plane];
    let net_start = Instant::now();
    let pool = SlicePool {
        model,
        window: &window,
        hu: &canon_hu,
        plane,
        threads: options.threads.max(1),
        done: AtomicUsize::new(0),
    };

    let all: Vec<usize> = (0..s).collect();
    let (first, rest) = match options.coarse_step_mm {
        Some(mm) if s > 1 => {
            let step = ((mm / canonical.spacing[0]).round() as usize).max(1);
            let coarse: Vec<usize> = (0..s).step_by(step).collect();
            (coarse, Some(step))
        }
        _ => (all.clone(), None),
    };
    // The total shown grows once the coarse pass has found the extent.
    let planned = first.len();
    let mut slice_seconds = Vec::with_capacity(s);
    let mut tally = Tally::default();
    let counts = pool.run(
        &first,
        &mut canon_mask,
        &mut slice_seconds,
        &mut tally,
        &|d| progress(d, planned),
    )?;
    let mut slices_run = first.len();
    if let Some(step) = rest {
        // A coarse slice shows liver when at least MIN_LIVER_MM2 of it is
        // liver; the extent is the longest run of such slices (one miss
        // allowed), so a stray false positive far away does not widen it.
        let pixel_mm2 = canonical.spacing[1] * canonical.spacing[2];
        let hit: Vec<bool> = counts
            .iter()
            .map(|n| *n as f64 * pixel_mm2 >= MIN_LIVER_MM2)
            .collect();
        let hits = longest_run(&hit, 1).map(|(a, b)| (first[a], first[b]));
        if let Some((lo, hi)) = hits {
            let lo = lo.saturating_sub(2 * step);
            let hi = (hi + 2 * step).min(s - 1);
            let second: Vec<usize> = (lo..=hi).filter(|z| z % step != 0).collect();
            let total = first.len() + second.len();
            pool.run(
                &second,
                &mut canon_mask,
                &mut slice_seconds,
                &mut tally,
                &|d| progress(d, total),
            )?;
            slices_run = total;
        }
    }
    let network_seconds = net_start.elapsed().as_secs_f64();
    let kept = postprocess(&mut canon_mask, dims);
    let assessment = assess(&Evidence {
        mask: &canon_mask,
        hu: &canon_hu,
        dims,
        spacing: canonical.spacing,
        kept,
        unsure_pixels: tally.unsure,
        liver_pixels: tally.liver,
    });
    if !assessment.liver_found {
        canon_mask.fill(0);
    }
    // Moved, not copied, when the series is already canonical.
    let mask = if canonical.is_identity() {
        canon_mask
    } else {
        canonical.to_source(&canon_mask)
    };
    let liver_voxels = mask.iter().filter(|v| **v != 0).count();
    Ok(Segmentation {
        liver_voxels,
        liver_volume_ml: liver_voxels as f64 * grid.voxel_volume_ml(),
        slices: s,
        slices_run,
        mask,
        network_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
        slice_seconds,
        assessment,
    })
}

/// Liver area (mm^2) that makes a coarse slice count as showing liver.
const MIN_LIVER_MM2: f64 = 500.0;

/// First and last index of the longest run of `true`, bridging up to
/// `max_gap` consecutive `false` inside a run.
fn longest_run(hit: &[bool], max_gap: usize) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut current: Option<(usize, usize)> = None;
    for (i, &h) in hit.iter().enumerate() {
        if !h {
            continue;
        }
        current = match current {
            Some((a, b)) if i - b <= max_gap + 1 => Some((a, i)),
            _ => Some((i, i)),
        };
        let (a, b) = current.unwrap_or((i, i));
        if best.is_none_or(|(x, y)| b - a > y - x) {
            best = Some((a, b));
        }
    }
    best
}

/// Pixels of the network's grid called liver, and those whose logit lay
/// within [`UNSURE_LOGIT`] of the threshold, over every slice run.
#[derive(Debug, Default)]
struct Tally {
    liver: usize,
    unsure: usize,
}

/// One slice's run: its index into the slices asked for, its thresholded
/// plane, the network call's seconds and its pixel counts.
type SliceResult = (usize, Vec<u8>, f32, Tally);

/// Threads that claim slices one at a time and write their own output planes.
struct SlicePool<'a> {
    model: &'a Model,
    window: &'a Window,
    hu: &'a [f32],
    plane: usize,
    threads: usize,
    /// Slices finished so far, over every call.
    done: AtomicUsize,
}

impl SlicePool<'_> {
    /// Runs slices `zs`, thresholding into `mask`, appending each network
    /// call's seconds to `seconds` and counting into `tally`; returns each
    /// slice's count of liver pixels. `progress` gets the running total.
    fn run(
        &self,
        zs: &[usize],
        mask: &mut [u8],
        seconds: &mut Vec<f32>,
        tally: &mut Tally,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<usize>, Error> {
        let threshold = self.model.manifest.output.threshold_logit;
        let background = self.model.manifest.output.background_logit;
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        // Each thread claims indices into `zs` and returns its thresholded planes.
        let work = || -> Result<Vec<SliceResult>, Error> {
            let mut planes = Vec::new();
            let mut logits_src = Vec::with_capacity(self.plane);
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&z) = zs.get(i) else { break };
                let started = Instant::now();
                let logits = self
                    .model
                    .run(self.window.input(self.hu, z))
                    .inspect_err(|_| {
                        failed.store(true, Ordering::Relaxed);
                    })?;
                let took = started.elapsed().as_secs_f32();
                let counted = Tally {
                    liver: logits.iter().filter(|l| **l > threshold).count(),
                    unsure: logits
                        .iter()
                        .filter(|l| (**l - threshold).abs() < UNSURE_LOGIT)
                        .count(),
                };
                self.window
                    .logits_to_slice(&logits, background, &mut logits_src);
                planes.push((
                    i,
                    logits_src
                        .iter()
                        .map(|l| u8::from(*l > threshold))
                        .collect(),
                    took,
                    counted,
                ));
                progress(self.done.fetch_add(1, Ordering::Relaxed) + 1);
            }
            Ok(planes)
        };
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.threads.min(zs.len()))
                .map(|_| scope.spawn(work))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut counts = vec![0; zs.len()];
        for result in results {
            for (i, plane, took, counted) in result? {
                seconds.push(took);
                tally.liver += counted.liver;
                tally.unsure += counted.unsure;
                let z = zs[i];
                counts[i] = plane.iter().map(|v| *v as usize).sum();
                mask[z * self.plane..(z + 1) * self.plane].copy_from_slice(&plane);
            }
        }
        Ok(counts)
    }
}

/// Threads to use by default: every core the process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::longest_run;

    #[test]
    fn longest_run_bridges_single_misses_only() {
        let t = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<_>>();
        assert_eq!(longest_run(&t("0000"), 1), None);
        assert_eq!(longest_run(&t("1001110110"), 1), Some((3, 8)));
        assert_eq!(longest_run(&t("1100111"), 1), Some((4, 6)));
        assert_eq!(longest_run(&t("1101"), 0), Some((0, 1)));
    }
}
