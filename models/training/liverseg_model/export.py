"""Export a trained model to ONNX (opset 17, input [1, 3, GRID, GRID]) with its manifest.

    python -m liverseg_model.export --model runs/final/model.pt --cv runs/cv.json --out ../liver-unet.onnx

The manifest (same name, .json) carries everything the Rust side needs to reproduce
the pre- and post-processing, plus provenance: training data, cross-validation, licence.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib

import numpy as np
import torch

from . import geometry as g
from .net import UNet

VERSION = "2.0.0"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=pathlib.Path, required=True)
    ap.add_argument("--cv", type=pathlib.Path, help="cv.json from liverseg_model.cv")
    ap.add_argument("--out", type=pathlib.Path, required=True, help="path of the .onnx file")
    ap.add_argument("--version", default=VERSION)
    args = ap.parse_args(argv)

    ck = torch.load(args.model, weights_only=False, map_location="cpu")
    model = UNet(widths=tuple(ck["meta"]["widths"]))
    model.load_state_dict(ck["model"])
    model.eval()
    x = torch.zeros(1, 3, g.GRID, g.GRID)
    tmp = args.out.with_suffix(".onnx.tmp")
    # Eval mode: the exporter folds batch norm into the convolutions.
    torch.onnx.export(model, x, tmp, opset_version=17, input_names=["image"],
                      output_names=["logits"], do_constant_folding=True, dynamo=False)
    tmp.replace(args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    cv = json.loads(args.cv.read_text()) if args.cv else None
    params = sum(p.numel() for p in model.parameters())
    manifest = {
        "name": "liverseg-liver-unet",
        "version": args.version,
        "file": args.out.name,
        "sha256": digest,
        "architecture": {"kind": ("2.5D U-Net: 2x2 space-to-depth stem, U-Net at half resolution "
                                  "(nearest resize + 3x3 convolution decoder), depth-to-space head"),
                         "widths": ck["meta"]["widths"], "parameters": params},
        "input": {
            "name": "image", "shape": [1, 3, g.GRID, g.GRID],
            "grid": g.GRID, "spacing_mm": g.SPACING_MM,
            "hu_window": [g.HU_LOW, g.HU_HIGH],
            "normalisation": {"center_hu": g.HU_CENTER, "half_width_hu": g.HU_HALF},
            "air_hu": g.AIR_HU, "body_hu": g.BODY_HU, "neighbour_mm": g.NEIGHBOUR_MM,
            "orientation": "axial; anterior at the top, patient's right on the image left; channels feet to head",
        },
        "output": {"name": "logits", "kind": "logit", "threshold_logit": 0.0,
                   "background_logit": g.BACKGROUND_LOGIT,
                   "postprocess": ["largest 6-connected component", "3D hole filling",
                                   "2D hole filling per slice"]},
        "label": {"value": 1, "name": "Liver",
                  "category": {"scheme": "SCT", "code": "123037004", "meaning": "Anatomical Structure"},
                  "type": {"scheme": "SCT", "code": "10200004", "meaning": "Liver"}},
        "training": {"patients": ck["meta"]["train"], "steps": ck["meta"]["steps"],
                     "batch": ck["meta"]["batch"], "assumed_spacing": ck["meta"]["assumed_spacing"],
                     "synthetic_lesions": ck["meta"].get("lesions", False),
                     "final_loss": ck["history"][-1]["loss"] if ck.get("history") else None},
        "cross_validation": cv,
        "licence": ("Trained on 3D-IRCADb-01 (CC BY-NC-ND 4.0), LiTS (CC BY-NC-SA 4.0) and a "
                    "TotalSegmentator example (Apache-2.0): research and non-commercial use only; "
                    "not a medical device."),
    }
    args.out.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {digest[:12]}) and its manifest")


if __name__ == "__main__":
    main()
