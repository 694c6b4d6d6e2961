"""Evaluate a trained model (PyTorch checkpoint or ONNX file) on labelled patients.

    python -m liverseg_model.evaluate --model runs/fold_ircadb_01/model.pt --data DIR --patient ircadb_01
    python -m liverseg_model.evaluate --model ../liver-unet.onnx --data DIR

Runs the same pipeline as `liverseg segment`: 2.5D input on the fixed grid, logits
resampled to the source grid, threshold, largest component, hole filling; then Dice,
HD95 (mm) and volume difference on the source grid.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import torch

from . import geometry as g
from .data import load_folder
from .metrics import report
from .net import UNet
from .postprocess import postprocess


def torch_runner(path: pathlib.Path):
    ck = torch.load(path, weights_only=False, map_location="cpu")
    model = UNet(widths=tuple(ck["meta"]["widths"]))
    model.load_state_dict(ck["model"])
    model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return run


def onnx_runner(path: pathlib.Path):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return run


def runner(path: pathlib.Path):
    return onnx_runner(path) if path.suffix == ".onnx" else torch_runner(path)


def predict(run, image: np.ndarray, spacing, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(raw mask, post-processed mask) on the source grid of a canonical volume."""
    x, center = g.network_input(image, spacing)
    logits = np.concatenate([run(x[i:i + batch].numpy()) for i in range(0, len(x), batch)])[:, 0]
    src = g.logits_to_source(torch.from_numpy(logits), center, spacing[1:], image.shape[1:])
    raw = (src > 0).numpy()
    return raw, postprocess(raw)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=pathlib.Path, required=True, help="model.pt or .onnx")
    ap.add_argument("--data", type=pathlib.Path, required=True)
    ap.add_argument("--patient", action="append", help="only these patients (repeatable)")
    ap.add_argument("--out", type=pathlib.Path, help="write the results here as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    run = runner(args.model)
    results = {}
    for p in load_folder(args.data):
        if args.patient and p.name not in args.patient:
            continue
        raw, post = predict(run, p.image, p.spacing)
        r = report(post, p.mask, p.spacing)
        r["dice_before_postprocess"] = report(raw, p.mask, p.spacing)["dice"]
        r["spacing_assumed"] = p.spacing_assumed
        results[p.name] = r
        print(f"{p.name}: dice {r['dice']:.4f} (raw {r['dice_before_postprocess']:.4f}) "
              f"hd95 {r['hd95_mm']:.2f} mm volume {r['volume_ml']:.0f} ml "
              f"({r['volume_diff_pct']:+.1f} %)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
