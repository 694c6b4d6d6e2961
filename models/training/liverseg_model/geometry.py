"""Pre- and post-processing geometry, shared bit-for-bit with services/inference.

Every rule here has a twin in `services/inference/src/preprocess.rs`; the parity test
compares the two. A slice is always in the canonical display orientation (anterior at
the top, the patient's right on the image's left) and a volume runs feet to head.

Input grid: GRID x GRID pixels of SPACING_MM, centred on the centre of the body's
bounding box (voxels above BODY_HU over the whole volume), so the same window is
used for every slice of a study. Sampling is bilinear; taps outside the image read
as air (-1024 HU). The network's logits go back to the source grid the same way,
with taps outside the window reading as a confident "background" logit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

GRID = 256
SPACING_MM = 1.5
HU_LOW, HU_HIGH = -200.0, 300.0
HU_CENTER, HU_HALF = 50.0, 250.0
AIR_HU = -1024.0
BODY_HU = -500.0
NEIGHBOUR_MM = 3.0
BACKGROUND_LOGIT = -20.0


def neighbour_offset(slice_spacing_mm: float) -> int:
    """Slices between a slice and its 2.5D neighbours: about NEIGHBOUR_MM away, at least 1."""
    if not np.isfinite(slice_spacing_mm) or slice_spacing_mm <= 0:
        return 1
    return max(1, int(np.floor(NEIGHBOUR_MM / slice_spacing_mm + 0.5)))


def neighbour_indices(z: int, n: int, k: int) -> tuple[int, int, int]:
    return max(z - k, 0), z, min(z + k, n - 1)


def body_center_mm(hu: np.ndarray, spacing_yx: tuple[float, float]) -> tuple[float, float]:
    """Centre (row mm, column mm) of the bounding box of voxels above BODY_HU."""
    body = hu > BODY_HU
    rows = np.flatnonzero(body.any(axis=(0, 2)))
    cols = np.flatnonzero(body.any(axis=(0, 1)))
    h, w = hu.shape[1:]
    if rows.size == 0:
        r = (h - 1) / 2.0
        c = (w - 1) / 2.0
    else:
        r = (rows[0] + rows[-1]) / 2.0
        c = (cols[0] + cols[-1]) / 2.0
    return r * spacing_yx[0], c * spacing_yx[1]


def grid_coords(center_mm, spacing_yx, shape_hw):
    """Source (row, column) index of every GRID pixel centre, as float64 arrays [GRID]."""
    off = (np.arange(GRID, dtype=np.float64) - (GRID - 1) / 2.0) * SPACING_MM
    rows = (center_mm[0] + off) / spacing_yx[0]
    cols = (center_mm[1] + off) / spacing_yx[1]
    return rows, cols


def normalise(hu: torch.Tensor) -> torch.Tensor:
    return (hu.clamp(HU_LOW, HU_HIGH) - HU_CENTER) / HU_HALF


def _to_norm(idx: torch.Tensor, size: int) -> torch.Tensor:
    # grid_sample with align_corners=True maps -1 and +1 to the first and last pixel centres.
    if size == 1:
        return torch.zeros_like(idx)
    return idx * (2.0 / (size - 1)) - 1.0


def sample_slices(hu: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of hu [B, C, H, W] at source indices rows/cols [B, GRID, GRID] -> HU [B, C, GRID, GRID]."""
    h, w = hu.shape[-2:]
    grid = torch.stack([_to_norm(cols, w), _to_norm(rows, h)], dim=-1).to(hu.dtype)
    shifted = hu - AIR_HU  # zero padding then reads as air
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out + AIR_HU


def network_input(volume: np.ndarray, spacing_zyx) -> tuple[torch.Tensor, tuple[float, float]]:
    """Every slice of a canonical volume [S, H, W] (HU) as network input [S, 3, GRID, GRID]."""
    s, h, w = volume.shape
    spacing_yx = (float(spacing_zyx[1]), float(spacing_zyx[2]))
    center = body_center_mm(volume, spacing_yx)
    r, c = grid_coords(center, spacing_yx, (h, w))
    rows = torch.from_numpy(np.repeat(r[:, None], GRID, axis=1)).float()[None]
    cols = torch.from_numpy(np.repeat(c[None, :], GRID, axis=0)).float()[None]
    k = neighbour_offset(float(spacing_zyx[0]))
    vol = torch.from_numpy(volume.astype(np.float32))
    out = torch.empty((s, 3, GRID, GRID), dtype=torch.float32)
    sampled = sample_slices(vol[None], rows, cols)[0]  # [S, GRID, GRID]
    for z in range(s):
        for ch, zz in enumerate(neighbour_indices(z, s, k)):
            out[z, ch] = sampled[zz]
    return normalise(out), center


def logits_to_source(logits: torch.Tensor, center_mm, spacing_yx, shape_hw) -> torch.Tensor:
    """Logits [S, GRID, GRID] on the input grid -> logits [S, H, W] on the source grid."""
    h, w = shape_hw
    ri = (np.arange(h) * spacing_yx[0] - center_mm[0]) / SPACING_MM + (GRID - 1) / 2.0
    ci = (np.arange(w) * spacing_yx[1] - center_mm[1]) / SPACING_MM + (GRID - 1) / 2.0
    rows = torch.from_numpy(np.repeat(ri[:, None], w, axis=1)).float()[None]
    cols = torch.from_numpy(np.repeat(ci[None, :], h, axis=0)).float()[None]
    grid = torch.stack([_to_norm(cols, GRID), _to_norm(rows, GRID)], dim=-1)
    shifted = logits[:, None] - BACKGROUND_LOGIT
    out = F.grid_sample(shifted, grid.expand(logits.shape[0], -1, -1, -1), mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return out[:, 0] + BACKGROUND_LOGIT
