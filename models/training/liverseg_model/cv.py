"""Leave-one-patient-out cross-validation, then the final model on every patient.

    python -m liverseg_model.cv --data ../../shared/data/liver2d --runs runs --steps 2000 --final-steps 4000

Resumable: a finished fold (runs/fold_NAME/eval.json) is skipped, an unfinished one
resumes from its checkpoint. Writes runs/cv.json with the per-patient table.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from . import evaluate, train
from .data import load_folder


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=pathlib.Path, required=True)
    ap.add_argument("--runs", type=pathlib.Path, required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--final-steps", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-final", action="store_true")
    args = ap.parse_args(argv)
    names = [p.name for p in load_folder(args.data)]
    table = {}
    for name in names:
        fold = args.runs / f"fold_{name}"
        done = fold / "eval.json"
        if not done.exists():
            train.main(["--data", str(args.data), "--out", str(fold), "--holdout", name,
                        "--steps", str(args.steps), "--threads", str(args.threads)])
            evaluate.main(["--model", str(fold / "model.pt"), "--data", str(args.data),
                           "--patient", name, "--out", str(done)])
        table[name] = json.loads(done.read_text())[name]
    dices = [r["dice"] for r in table.values()]
    summary = {"folds": table, "mean_dice": float(np.mean(dices)), "min_dice": float(np.min(dices)),
               "steps": args.steps}
    (args.runs / "cv.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1), flush=True)
    if not args.skip_final:
        final = args.runs / "final"
        train.main(["--data", str(args.data), "--out", str(final), "--steps", str(args.final_steps),
                    "--threads", str(args.threads)])


if __name__ == "__main__":
    main()
