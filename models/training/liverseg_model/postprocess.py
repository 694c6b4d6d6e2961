"""3D clean-up of a thresholded mask: keep the largest 6-connected component, fill holes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIX = ndimage.generate_binary_structure(3, 1)
FOUR = ndimage.generate_binary_structure(2, 1)


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask, structure=SIX)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """3D fill (background not 6-connected to the volume's border), then per slice in 2D."""
    filled = ndimage.binary_fill_holes(mask, structure=SIX)
    for z in range(filled.shape[0]):
        filled[z] = ndimage.binary_fill_holes(filled[z], structure=FOUR)
    return filled


def postprocess(mask: np.ndarray) -> np.ndarray:
    return fill_holes(largest_component(mask))
