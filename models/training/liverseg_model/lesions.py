"""Synthetic liver lesions pasted into training samples; the label stays liver.

By the convention of 3D-IRCADb, LiTS and TotalSegmentator the liver label includes
its tumours and cysts. Four training patients hold few tumours, so the network
learnt to cut them out. Each pasted lesion is an ellipsoid (5 to 100 mm across,
log-uniform) centred anywhere in the liver, the capsule and the dome included; its
cross-section on each 2.5D channel follows the channel's distance from the centre.

Kinds and contrasts, relative to the liver's own median HU in the sample (real
IRCADb 1 tumours sit 20 to 65 HU below their portal-phase liver, with a 10th-90th
percentile spread of about 70 HU inside each; LiTS tumours are alike):
- hypodense (metastasis, HCC washout): liver - 15 ... 90 HU, textured;
- hyperdense (arterial HCC, haemangioma): liver + 20 ... 90 HU;
- cyst: 0 ... 20 HU absolute, sharp edge, smooth inside;
- calcified: 200 ... 900 HU, small (at most 20 mm);
- rim-enhancing (abscess, necrotic metastasis): hypodense core, bright rim 2-5 mm.
A share of the lesions at the capsule bulge out of the liver outline (exophytic);
the part inside the body is labelled liver too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("hypodense", "hyperdense", "cyst", "calcified", "rim")
KIND_P = (0.45, 0.15, 0.15, 0.1, 0.15)


def _smooth_noise(rng: np.random.Generator, shape, scale_px: float) -> torch.Tensor:
    coarse = max(2, int(shape[-1] / max(scale_px, 1.0)))
    c = torch.from_numpy(rng.normal(0, 1, size=(1, 1, coarse, coarse))).float()
    return F.interpolate(c, size=shape[-2:], mode="bicubic", align_corners=False)[0, 0]


def paste(rng: np.random.Generator, hu: torch.Tensor, liver: torch.Tensor, channel_mm: list[float],
          pixel_mm: float, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste `count` lesions into hu [C, H, W] (HU) whose liver masks are liver [C, H, W] (0/1).

    channel_mm: each channel's offset (mm) from the centre channel along z; pixel_mm: the
    sample's pixel size. Returns the new HU and the new liver masks.
    """
    hu = hu.clone()
    liver = liver.clone()
    c_idx = len(channel_mm) // 2
    inside = liver[c_idx] > 0.5
    if not inside.any():
        return hu, liver
    body = hu > -500
    h, w = hu.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    liver_hu = float(hu[c_idx][inside].median())
    rr, cc = torch.nonzero(inside, as_tuple=True)
    for _ in range(count):
        j = int(rng.integers(rr.numel()))
        cy, cx = float(rr[j]), float(cc[j])
        diameter = math.exp(rng.uniform(math.log(5.0), math.log(100.0)))
        kind = KINDS[rng.choice(len(KINDS), p=KIND_P)]
        if kind == "calcified":
            diameter = min(diameter, rng.uniform(3, 20))
        radii = np.array([diameter / 2 * rng.uniform(0.75, 1.25) for _ in range(3)])  # z, y, x mm
        dz0 = rng.uniform(-radii[0], radii[0]) * 0.8  # lesion centre off the centre channel
        angle = rng.uniform(0, math.pi)
        exophytic = rng.random() < 0.25
        edge_mm = 0.3 if kind in ("cyst", "calcified") else rng.uniform(0.5, 3.0)
        texture = _smooth_noise(rng, (h, w), rng.uniform(2, 8) / pixel_mm)
        if kind == "hypodense":
            core = liver_hu - rng.uniform(15, 90)
            tex_sd = rng.uniform(5, 30)
        elif kind == "hyperdense":
            core = liver_hu + rng.uniform(20, 90)
            tex_sd = rng.uniform(5, 25)
        elif kind == "cyst":
            core, tex_sd = rng.uniform(0, 20), 3.0
        elif kind == "calcified":
            core, tex_sd = rng.uniform(200, 900), 40.0
        else:
            core = liver_hu - rng.uniform(40, 110)
            tex_sd = rng.uniform(5, 20)
        rim_mm = rng.uniform(2, 5)
        rim_hu = liver_hu + rng.uniform(20, 80)
        for ch, zmm in enumerate(channel_mm):
            dz = (zmm - dz0) / radii[0]
            if abs(dz) >= 1:
                continue
            shrink = math.sqrt(1 - dz * dz)
            ry, rx = radii[1] * shrink / pixel_mm, radii[2] * shrink / pixel_mm
            if ry < 0.5 or rx < 0.5:
                continue
            y, x = yy - cy, xx - cx
            u = (math.cos(angle) * y - math.sin(angle) * x) / ry
            v = (math.sin(angle) * y + math.cos(angle) * x) / rx
            r = torch.sqrt(u * u + v * v)  # 1 at the edge
            dist_mm = (r - 1) * min(ry, rx) * pixel_mm  # negative inside
            alpha = torch.sigmoid(-dist_mm / max(edge_mm, 1e-3) * 2)
            region = liver[ch] > 0.5
            if exophytic:
                region = region | body[ch]
            alpha = alpha * region.float()
            # Keep the scan's own grain inside the lesion: only its local mean is replaced.
            grain = hu[ch] - F.avg_pool2d(hu[ch][None, None], 5, stride=1, padding=2,
                                          count_include_pad=False)[0, 0]
            value = core + texture * tex_sd + grain
            if kind == "rim":
                in_rim = (dist_mm > -rim_mm).float()
                value = value * (1 - in_rim) + rim_hu * in_rim
            hu[ch] = hu[ch] * (1 - alpha) + value * alpha
            liver[ch] = torch.maximum(liver[ch], (alpha > 0.5).float())
    return hu, liver
