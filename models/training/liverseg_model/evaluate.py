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


# Pixels whose logit lies this close to 0 are ones the network was unsure of
# (the twin of UNSURE_LOGIT in services/inference/src/assess.rs).
UNSURE_LOGIT = 2.0


def predict(run, image: np.ndarray, spacing, batch: int = 8) -> tuple[np.ndarray, np.ndarray, float]:
    """(raw mask, post-processed mask, uncertainty) on the source grid of a canonical volume.

    Uncertainty: unsure pixels per liver pixel on the network's grid, as the service reports it."""
    x, center = g.network_input(image, spacing)
    logits = np.concatenate([run(x[i:i + batch].numpy()) for i in range(0, len(x), batch)])[:, 0]
    uncertainty = float((np.abs(logits) < UNSURE_LOGIT).sum()) / max(int((logits > 0).sum()), 1)
    src = g.logits_to_source(torch.from_numpy(logits), center, spacing[1:], image.shape[1:])
    raw = (src > 0).numpy()
    return raw, postprocess(raw), uncertainty


def tumours(name: str, data: pathlib.Path):
    """The expert tumour label of a patient on its liver2d grid, where one exists:
    IRCADb 1's lesions.npz beside the data, LiTS 117's label in the PyPI wheel."""
    if name == "ircadb_01":
        path = data.parent / "dicom" / "ircadb_01" / "lesions.npz"
        if not path.exists():
            return None
        with np.load(path) as d:
            t = d["tumour"]
            out = np.zeros_like(t)
            for i, f in enumerate(d["files"]):
                out[int(str(f).rsplit("_", 1)[-1])] = t[i]
            return out
    if name == "lits_117_ds128":
        import glob
        import os
        import zipfile
        cache = os.environ.get("LIVERSEG_PIP_CACHE", "/var/cache/liverseg-pip")
        wheels = glob.glob(f"{cache}/liver_ct_segmentation_package-1.6.0-*.whl")
        if not wheels:
            return None
        with zipfile.ZipFile(wheels[0]) as z:
            lab = np.frombuffer(z.read("liver_ct_segmentation_package/data/lab_117.mrc")[1024:], "<u2")
        return (lab.reshape(128, 128, 128) == 2).transpose(2, 1, 0)
    return None


def tumour_coverage(pred: np.ndarray, tumour: np.ndarray, spacing) -> list[dict]:
    """Per expert tumour (26-connected): its volume and the share of its voxels inside pred."""
    from scipy import ndimage
    labels, n = ndimage.label(tumour, structure=np.ones((3, 3, 3)))
    out = []
    for i in range(1, n + 1):
        t = labels == i
        out.append({"volume_ml": float(t.sum() * np.prod(spacing) / 1000.0),
                    "inside": float((pred & t).sum() / t.sum())})
    return sorted(out, key=lambda r: -r["volume_ml"])


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
        raw, post, uncertainty = predict(run, p.image, p.spacing)
        r = report(post, p.mask, p.spacing)
        r["dice_before_postprocess"] = report(raw, p.mask, p.spacing)["dice"]
        r["spacing_assumed"] = p.spacing_assumed
        r["uncertainty"] = uncertainty
        t = tumours(p.name, args.data)
        if t is not None:
            r["tumours"] = tumour_coverage(post, t, p.spacing)
        results[p.name] = r
        print(f"{p.name}: dice {r['dice']:.4f} (raw {r['dice_before_postprocess']:.4f}) "
              f"hd95 {r['hd95_mm']:.2f} mm volume {r['volume_ml']:.0f} ml "
              f"({r['volume_diff_pct']:+.1f} %) uncertainty {uncertainty:.3f} "
              f"tumours inside {[round(x['inside'], 3) for x in r.get('tumours', [])][:6]}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
