"""Labelled volumes from a liver2d folder (one .npz per patient; see its README)."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

# LiTS volume 117 ships as a 128^3 resampled crop with no spacing. Its liver (1.5 L in
# a typical adult) fills the crop; 1.3 mm isotropic gives it about that volume.
ASSUMED_SPACING_MM = (1.3, 1.3, 1.3)


@dataclasses.dataclass
class Patient:
    name: str
    image: np.ndarray  # float32 HU [S, H, W], feet to head, canonical display orientation
    mask: np.ndarray  # uint8 0/1, same shape
    spacing: tuple[float, float, float]  # (z, y, x) mm
    spacing_assumed: bool

    @property
    def liver_slices(self) -> np.ndarray:
        return np.flatnonzero(self.mask.any(axis=(1, 2)))


def load_patient(path: pathlib.Path) -> Patient:
    with np.load(path, allow_pickle=False) as d:
        spacing = tuple(float(v) for v in d["spacing"])
        assumed = not all(np.isfinite(spacing))
        if assumed:
            spacing = ASSUMED_SPACING_MM
        name = path.stem.removeprefix("patient_")
        return Patient(name, d["image"].astype(np.float32), (d["mask"] > 0).astype(np.uint8),
                       spacing, assumed)


def load_folder(folder: pathlib.Path) -> list[Patient]:
    files = sorted(pathlib.Path(folder).glob("patient_*.npz"))
    if not files:
        raise SystemExit(f"{folder}: no patient_*.npz files")
    return [load_patient(f) for f in files]
