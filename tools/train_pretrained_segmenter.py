"""Train the haematoma segmenter shipped with radhe, on synthetic data only.

Usage::

    python tools/train_pretrained_segmenter.py [--cases-per-grid 16] [--seed 2026] [--epochs 22] [--patience 22] [--max-fit-time 3000]
        [--out radhe/nn/weights] [--work /tmp/radhe-pretrain] [--spacing-mm 1.0] [--tilted] [--name NAME]

The training cohort is domain-randomised over the scans a clinical head CT comes as: each of
:data:`GRIDS` (in-plane 0.43-1.02 mm, slice thickness 2.5-6.5 mm) gets ``--cases-per-grid`` cases of
its own seed (``--seed`` + grid index), generated with 2.5 times the cohort's rate of subdural,
epidural and subarachnoid blood so that the network sees enough blood that is not a parenchymal
haematoma. Two grids use the cohort's three sites; four use ``scanner="randomised"``, where every
case draws its own HU calibration, noise level and texture (reconstruction kernel), field of view,
slice thickness, streak strength and head rotation. The segmenter works at :data:`SPACING_MM` in-plane, skull-stripped, with anatomical
post-processing (see ``docs/model-card.md``).

Writes ``<out>/segmenter-synthetic-v1.npz`` and ``.json`` (parameters, seeds, cohort sizes, training
time, validation Dice). ``--spacing-mm`` and ``--tilted`` (two more groups, :data:`TILTED_GRIDS`)
train the variants the model card reports as tried and not shipped; give them their own ``--name``.
Everything is seeded: the same command gives the same weights on the same
machine and torch version (CPU kernels may differ in the last bits across machines).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Scan grids ``(x, y, z)`` and scanners of the training cohort: the cohort's three sites at 512² and
#: 256² (28 slices of 4.5-5 mm), and domain-randomised scanners (``scanner="randomised"``: per case
#: HU calibration, noise level and texture, field of view, slice thickness 2.5-6.5 mm with the slices
#: covering the head, streaks, rotation) at 512², 384², 320² and 256².
GRIDS = (((512, 512, 28), "sites"), ((256, 256, 28), "sites"), ((512, 512, 28), "randomised"),
         ((384, 384, 28), "randomised"), ((320, 320, 28), "randomised"), ((256, 256, 28), "randomised"))
#: Groups ``--tilted`` adds: domain-randomised scanners with an uncorrected gantry tilt drawn from -25 to
#: 25 degrees (a sheared grid: the slices cross the skull base obliquely), at 512² and 256².
TILTED_GRIDS = (((512, 512, 28), "randomised", (-25.0, 25.0)), ((256, 256, 28), "randomised", (-25.0, 25.0)))
#: In-plane pixel size (mm) of the shipped network.
SPACING_MM = 1.0
#: The parameters the weights fix, and the post-processing they were validated with.
PARAMETERS = {"base_channels": 8, "levels": 4, "dilation": 2, "context": 0, "window": [0.0, 100.0],
              "skull_strip": True, "spacing_mm": SPACING_MM, "input_size": None, "brain_only": True,
              "min_component_ml": 0.1}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases-per-grid", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--epochs", type=int, default=22,
                        help="epochs of the cosine learning-rate schedule (annealed to a tenth of the learning rate by the last one)")
    parser.add_argument("--patience", type=int, default=22,
                        help="epochs without a better validation Dice before stopping (default: never stop early, "
                             "so that the schedule anneals)")
    parser.add_argument("--max-fit-time", type=float, default=3000.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "radhe" / "nn" / "weights"))
    parser.add_argument("--work", default="/tmp/radhe-pretrain", help="folder of the generated cohorts (kept)")
    parser.add_argument("--spacing-mm", type=float, default=SPACING_MM, help="in-plane pixel size of the network (mm)")
    parser.add_argument("--tilted", action="store_true", help="add the gantry-tilted groups (TILTED_GRIDS)")
    parser.add_argument("--name", default=None, help="name of the weights (default: the shipped name)")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from radhe.datasets import make_ich_cohort
    from radhe.io import load_manifest
    from radhe.nn.pretrained import SEGMENTER_WEIGHTS, save_weights
    from radhe.segmentation import HematomaSegmenter

    if not args.spacing_mm > 0:
        parser.error(f"--spacing-mm must be a positive number of mm, got {args.spacing_mm}")
    parameters = {**PARAMETERS, "spacing_mm": args.spacing_mm}
    grids = GRIDS + (TILTED_GRIDS if args.tilted else ())
    t0 = time.perf_counter()
    parts, recorded_grids = [], []
    for index, (grid, scanner, *tilt) in enumerate(grids):
        recorded_grids.append([list(grid), scanner, *(list(t) for t in tilt)])
        tilt = tuple(tilt[0]) if tilt else (0.0, 0.0)
        tilted = "" if tilt == (0.0, 0.0) else f"-tilt{tilt[0]:g},{tilt[1]:g}"
        folder = Path(args.work) / f"grid{index}-{'x'.join(map(str, grid))}-{scanner}{tilted}-seed{args.seed + index}"
        if (folder / "manifest.csv").exists() and len(pd.read_csv(folder / "manifest.csv")) == args.cases_per_grid:
            manifest = load_manifest(folder / "manifest.csv")
        else:
            manifest = make_ich_cohort(args.cases_per_grid, folder, shape=grid, random_state=args.seed + index,
                                       other_blood_scale=2.5, scanner=scanner, gantry_tilt_deg=tilt,
                                       n_jobs=args.threads)
        manifest = manifest.assign(case_id=f"g{index}-" + manifest["case_id"],
                                   patient_id=f"g{index}-" + manifest["patient_id"])
        parts.append(manifest)
    cohort = pd.concat(parts, ignore_index=True)
    cohort_seconds = time.perf_counter() - t0
    print(f"training cohort: {len(cohort)} cases on {len(grids)} grids ({cohort_seconds:.0f} s)", flush=True)

    network = {k: v for k, v in parameters.items() if k not in ("brain_only", "min_component_ml")}
    segmenter = HematomaSegmenter(**{**network, "window": tuple(parameters["window"])},
                                  brain_only=parameters["brain_only"], min_component_ml=parameters["min_component_ml"],
                                  epochs=args.epochs, learning_rate=3e-3, batch_size=16, patience=args.patience,
                                  validation_fraction=0.15, max_fit_time=args.max_fit_time, n_threads=args.threads,
                                  random_state=args.seed, verbose=True)
    segmenter.fit(cohort)
    history = segmenter.history_
    training = {
        "data": "synthetic only: radhe.datasets.make_ich_cohort, other_blood_scale=2.5",
        "grids": recorded_grids, "cases_per_grid": args.cases_per_grid, "cases": len(cohort),
        "seeds": [args.seed + i for i in range(len(grids))], "random_state": args.seed,
        "training_cases": len(segmenter.train_cases_), "validation_cases": len(segmenter.validation_cases_),
        "epochs_run": int(history["epoch"].max()), "best_epoch": int(segmenter.best_epoch_),
        "best_validation_dice": float(history["val_dice"].max()), "fit_seconds": round(segmenter.fit_time_, 1),
        "cohort_seconds": round(cohort_seconds, 1), "learning_rate": 3e-3, "batch_size": 16, "epochs": args.epochs, "patience": args.patience,
        "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "command": "python tools/train_pretrained_segmenter.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
    }
    path = save_weights(segmenter.model_state_, parameters, training, args.name or SEGMENTER_WEIGHTS, args.out)
    print(json.dumps(training, indent=1))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return training


if __name__ == "__main__":
    main()
