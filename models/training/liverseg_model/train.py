"""Train the liver U-Net on CPU (a GPU is used when present), resumably.

    python -m liverseg_model.train --data ../../shared/data/liver2d --out runs/final
    python -m liverseg_model.train --data ... --out runs/fold_ircadb_01 --holdout ircadb_01

Every --checkpoint-every steps the model, optimiser, scheduler and random state go to
OUT/checkpoint.pt (written atomically); running the same command again resumes there.
Samples are drawn on the fly: a slice and its 2.5D neighbours are resampled from the
source grid through the inference geometry composed with a random rotation, scale,
shift and elastic field; intensities get a random affine, soft-tissue contrast change
(contrast phase), blur and noise. Never a left-right flip: the liver lies on one side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import geometry as g
from . import lesions
from .data import Patient, load_folder
from .net import UNet

CROP = 160


def augment_coords(rng: np.random.Generator, center_mm, spacing_yx, crop_origin, strength=1.0):
    """Source (row, col) indices for a CROP x CROP window of the inference grid, augmented."""
    idx = np.arange(CROP, dtype=np.float64)
    ii, jj = np.meshgrid(idx + crop_origin[0], idx + crop_origin[1], indexing="ij")
    # Physical offsets (mm) from the window centre of the inference grid.
    y = (ii - (g.GRID - 1) / 2.0) * g.SPACING_MM
    x = (jj - (g.GRID - 1) / 2.0) * g.SPACING_MM
    cy, cx = y.mean(), x.mean()
    theta = math.radians(rng.uniform(-15, 15) * strength)
    scale = math.exp(rng.uniform(math.log(0.8), math.log(1.25)) * strength)
    dy, dx = y - cy, x - cx
    ry = (math.cos(theta) * dy - math.sin(theta) * dx) * scale + cy
    rx = (math.sin(theta) * dy + math.cos(theta) * dx) * scale + cx
    if rng.random() < 0.7 * strength:
        # Smooth elastic field: random coarse displacements, bicubically upsampled.
        coarse = torch.from_numpy(rng.normal(0, 6.0, size=(1, 2, 5, 5))).float()
        field = F.interpolate(coarse, size=(CROP, CROP), mode="bicubic", align_corners=True)[0].numpy()
        ry = ry + field[0]
        rx = rx + field[1]
    rows = (center_mm[0] + ry) / spacing_yx[0]
    cols = (center_mm[1] + rx) / spacing_yx[1]
    return rows, cols


def augment_intensity(rng: np.random.Generator, hu: torch.Tensor, liver: torch.Tensor) -> torch.Tensor:
    """Scanner, dose and contrast-phase variation on hu [C, H, W]; liver [C, H, W] is 0/1."""
    a = rng.uniform(0.9, 1.1)
    b = rng.uniform(-25, 25)
    hu = hu * a + b
    # Contrast phase: soft tissue enhancement varies (non-contrast liver ~55 HU,
    # portal ~110, delayed ~90); the liver also moves against its neighbours
    # (arterial: liver dimmer than spleen and kidneys; non-contrast: close to muscle).
    gain = rng.uniform(0.5, 1.4)
    soft = ((hu > -100) & (hu < 350)).float()
    hu = hu + soft * (hu - 40.0) * (gain - 1.0)
    if rng.random() < 0.5:
        hu = hu + liver * soft * rng.uniform(-50, 30)
    if rng.random() < 0.3:
        hu = F.avg_pool2d(hu[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    # Noise from routine to low dose, sometimes spatially correlated (sharp kernels).
    sigma = rng.uniform(0, 25) if rng.random() < 0.7 else rng.uniform(25, 60)
    noise = torch.randn_like(hu)
    if rng.random() < 0.4:
        noise = F.avg_pool2d(noise[None], 3, stride=1, padding=1)[0] * 2.2
    return hu + noise * sigma


class Sampler:
    def __init__(self, patients: list[Patient], seed: int, lesions: bool = True):
        self.patients = patients
        self.lesions = lesions
        self.rng = np.random.default_rng(seed)
        self.centers = [g.body_center_mm(p.image, p.spacing[1:]) for p in patients]
        self.images = [torch.from_numpy(p.image) for p in patients]
        self.masks = [torch.from_numpy(p.mask.astype(np.float32)) for p in patients]
        n = np.array([math.sqrt(max(len(p.liver_slices), 1)) for p in patients])
        self.weights = n / n.sum()
        self.no_liver = [np.flatnonzero(~p.mask.any(axis=(1, 2))) for p in patients]

    def slabs(self, z: int, n: int, dz: float):
        """Source slices averaged into each 2.5D channel, and each channel's offset (mm).

        Mostly the native slices; sometimes a thicker reconstruction (up to 5 mm),
        simulated by averaging the source slices a thick slice covers."""
        thick = dz
        if self.rng.random() < 0.35 and dz < 4.5:
            thick = self.rng.uniform(max(dz, 2.0), 5.0)
        per = max(1, int(round(thick / dz)))
        k = g.neighbour_offset(per * dz) * per
        out = []
        for c in (z - k, z, z + k):
            lo = c - per // 2
            out.append([min(max(i, 0), n - 1) for i in range(lo, lo + per)])
        return out, [-k * dz, 0.0, k * dz]

    def sample(self):
        rng = self.rng
        pi = rng.choice(len(self.patients), p=self.weights)
        p = self.patients[pi]
        s = p.image.shape[0]
        liver = p.liver_slices
        r = rng.random()
        if r < 0.75 and liver.size:
            z = int(rng.choice(liver))
        elif r < 0.9 and self.no_liver[pi].size:
            z = int(rng.choice(self.no_liver[pi]))  # chest and pelvis: nothing to find
        else:
            z = int(rng.integers(s))
        slabs, offsets = self.slabs(z, s, p.spacing[0])
        # Window placement: mostly over the liver, sometimes anywhere on the grid.
        lo, hi = 0, g.GRID - CROP
        if rng.random() < 0.7 and p.mask[z].any():
            rr, cc = np.nonzero(p.mask[z])
            j = rng.integers(rr.size)
            ly = rr[j] * p.spacing[1] - self.centers[pi][0]
            lx = cc[j] * p.spacing[2] - self.centers[pi][1]
            oy = ly / g.SPACING_MM + (g.GRID - 1) / 2.0 - CROP / 2.0
            ox = lx / g.SPACING_MM + (g.GRID - 1) / 2.0 - CROP / 2.0
            origin = (float(np.clip(oy + rng.normal(0, 20), lo, hi)),
                      float(np.clip(ox + rng.normal(0, 20), lo, hi)))
        else:
            origin = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
        rows, cols = augment_coords(rng, self.centers[pi], p.spacing[1:], origin)
        rows_t = torch.from_numpy(rows).float()[None]
        cols_t = torch.from_numpy(cols).float()[None]
        flat = sorted({i for slab in slabs for i in slab})
        where = {i: j for j, i in enumerate(flat)}
        hu_all = g.sample_slices(self.images[pi][flat][None], rows_t, cols_t)[0]
        m_all = g.sample_slices(self.masks[pi][flat][None] + g.AIR_HU, rows_t, cols_t)[0] - g.AIR_HU
        hu = torch.stack([hu_all[[where[i] for i in slab]].mean(0) for slab in slabs])
        m = torch.stack([m_all[[where[i] for i in slab]].mean(0) for slab in slabs])
        m = (m > 0.5).float()
        if self.lesions and rng.random() < 0.6 and m[1].any():
            pixel_mm = g.SPACING_MM  # augment_coords scales around this; close enough for sizes
            hu, m = lesions.paste(rng, hu, m, offsets, pixel_mm, int(rng.integers(1, 4)))
        hu = augment_intensity(rng, hu, m)
        return g.normalise(hu), m[1:2]

    def batch(self, n):
        xs, ys = zip(*(self.sample() for _ in range(n)))
        return torch.stack(xs), torch.stack(ys)


def loss_fn(logits, target):
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def save_atomic(obj, path: pathlib.Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=pathlib.Path, required=True, help="folder of patient_*.npz")
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--holdout", default=None, help="patient left out (cross-validation fold)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--no-lesions", action="store_true", help="ablation: no synthetic lesions")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    patients = load_folder(args.data)
    if args.holdout:
        names = [p.name for p in patients]
        if args.holdout not in names:
            raise SystemExit(f"--holdout {args.holdout}: not one of {names}")
        patients = [p for p in patients if p.name != args.holdout]
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "checkpoint.pt"

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model = UNet().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.05)
    sampler = Sampler(patients, args.seed, lesions=not args.no_lesions)
    step = 0
    history = []
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        sampler.rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        step, history = ck["step"], ck["history"]
        print(f"resumed at step {step}", flush=True)

    meta = {"holdout": args.holdout, "train": [p.name for p in patients], "steps": args.steps,
            "batch": args.batch, "lesions": not args.no_lesions, "lr": args.lr, "seed": args.seed, "widths": model.widths,
            "assumed_spacing": {p.name: p.spacing for p in patients if p.spacing_assumed}}
    model.train()
    t0, running = time.time(), []
    while step < args.steps:
        x, y = sampler.batch(args.batch)
        loss = loss_fn(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        running.append(float(loss))
        if step % args.checkpoint_every == 0 or step == args.steps:
            mean = sum(running) / len(running)
            history.append({"step": step, "loss": mean, "seconds": time.time() - t0})
            print(f"step {step}/{args.steps} loss {mean:.4f} {time.time() - t0:.0f}s", flush=True)
            running = []
            save_atomic({"model": model.state_dict(), "opt": opt.state_dict(),
                         "sched": sched.state_dict(), "rng": sampler.rng.bit_generator.state,
                         "torch_rng": torch.get_rng_state(), "step": step, "history": history,
                         "meta": meta}, ckpt_path)
    save_atomic({"model": model.state_dict(), "meta": meta, "history": history},
                args.out / "model.pt")
    (args.out / "train.json").write_text(json.dumps({"meta": meta, "history": history}, indent=1))
    print("done", flush=True)


if __name__ == "__main__":
    main()
