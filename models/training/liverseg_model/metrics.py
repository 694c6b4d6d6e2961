"""Dice, HD95 and volume difference on a voxel grid with physical spacing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth.astype(bool)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else 2.0 * float((p & t).sum()) / float(denom)


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1),
                                       border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> float:
    """95th percentile of the symmetric surface distances, in mm."""
    p, t = pred.astype(bool), truth.astype(bool)
    if not p.any() or not t.any():
        return float("inf")
    sp, st = _surface(p), _surface(t)
    dt_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    dt_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    d = np.concatenate([dt_t[sp], dt_p[st]])
    return float(np.percentile(d, 95))


def volume_ml(mask: np.ndarray, spacing) -> float:
    return float(mask.astype(bool).sum()) * float(np.prod(spacing)) / 1000.0


def report(pred, truth, spacing) -> dict:
    vp, vt = volume_ml(pred, spacing), volume_ml(truth, spacing)
    return {"dice": dice(pred, truth), "hd95_mm": hd95(pred, truth, spacing),
            "volume_ml": vp, "truth_volume_ml": vt,
            "volume_diff_pct": 100.0 * (vp - vt) / vt if vt else float("nan")}
