//! The whole segmentation of one volume: canonical layout, slices through the
//! network on a pool of threads, logits back to the source grid, 3D clean-up.

use crate::Error;
use crate::grid::Grid;
use crate::model::Model;
use crate::postprocess::postprocess;
use crate::preprocess::Window;
use std::sync::Mutex;
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
    /// Seconds in the network (summed over threads' wall time: the parallel
    /// section) and in everything else.
    pub network_seconds: f64,
    pub total_seconds: f64,
}

/// Runs `model` over every slice of (`grid`, `hu`) with `threads` threads;
/// `progress(done, total)` is called after each slice.
pub fn segment(
    model: &Model,
    grid: &Grid,
    hu: &[f32],
    threads: usize,
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
    let [s, r, c] = dims;
    let plane = r * c;
    let threshold = model.manifest.output.threshold_logit;
    let background = model.manifest.output.background_logit;

    let mut canon_mask = vec![0u8; s * plane];
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let net_start = Instant::now();
    {
        // Each thread claims slices and writes its own disjoint output planes.
        let planes: Vec<Mutex<&mut [u8]>> = canon_mask.chunks_mut(plane).map(Mutex::new).collect();
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1).min(s) {
                scope.spawn(|| {
                    let mut logits_src = Vec::with_capacity(plane);
                    loop {
                        let z = next.fetch_add(1, Ordering::Relaxed);
                        if z >= s || failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let logits = match model.run(window.input(&canon_hu, z)) {
                            Ok(l) => l,
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(e);
                                break;
                            }
                        };
                        window.logits_to_slice(&logits, background, &mut logits_src);
                        let mut out = planes[z].lock().unwrap_or_else(|p| p.into_inner());
                        for (m, l) in out.iter_mut().zip(&logits_src) {
                            *m = u8::from(*l > threshold);
                        }
                        drop(out);
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, s);
                    }
                });
            }
        });
    }
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let network_seconds = net_start.elapsed().as_secs_f64();
    postprocess(&mut canon_mask, dims);
    let mask = canonical.to_source(&canon_mask);
    let liver_voxels = mask.iter().filter(|v| **v != 0).count();
    Ok(Segmentation {
        liver_voxels,
        liver_volume_ml: liver_voxels as f64 * grid.voxel_volume_ml(),
        slices: s,
        mask,
        network_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Threads to use by default: every core the process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
