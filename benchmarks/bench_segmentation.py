"""HematomaSegmenter on the synthetic cohort: training time, held-out Dice/IoU, inference vs radiomics time.

Usage::

    python benchmarks/bench_segmentation.py [--cases 60] [--shape 256 256 28] [--threads 1]
        [--base-channels 8] [--input-size 128] [--max-fit-time 480] [--out benchmarks/results/segmentation.json]

Steps, on ``radhe.datasets.make_ich_cohort(--cases, shape=--shape)`` (the default-size cohort):

1. U-Net forward speed on 32 slices of 256² (16 base channels, 4 levels) in float32 NCHW,
   channels-last, and channels-last + bfloat16 autocast (the modes ``inference_precision``
   chooses between), fastest of 3 runs each;
2. ``HematomaSegmenter.fit`` on 80 % of the patients (its own patient-level validation split inside
   for early stopping), stopped after ``--max-fit-time`` seconds at the latest;
3. ``transform`` of the held-out 20 %: inference seconds per case (reading the CT, predicting,
   post-processing and writing the mask), each case timed alone;
4. radiomics extraction (``RadiomicsFeatures()``, pyradiomics' default 107 features, ``n_jobs=1``)
   of the same held-out cases with the ground-truth mask, seconds per case;
5. held-out Dice and IoU per patient (and per slice), volume agreement (``compare_volumes``).

Results are printed and written as JSON. The machine is shared: timings are the fastest of
repeated runs where repeated, and the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def forward_speed(threads: int) -> dict:
    import torch

    from radhe.nn.networks import UNet2d

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = UNet2d(1, 16, 4).eval()
    x = torch.rand(32, 1, 256, 256)
    out = {}
    with torch.inference_mode():
        reference = net(x)
        for name, channels_last, bf16 in (("float32_nchw", False, False), ("channels_last", True, False),
                                          ("channels_last_bf16", True, True)):
            model = net.to(memory_format=torch.channels_last) if channels_last else net.to(
                memory_format=torch.contiguous_format)
            xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = model(xi)
                times.append(time.perf_counter() - t0)
            out[name] = {"seconds": min(times),
                         "max_abs_logit_diff": float((y.float() - reference).abs().max())}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 28))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for fit/transform (1: robust when other jobs share the cores)")
    parser.add_argument("--forward-threads", type=int, default=2, help="torch threads of the forward comparison")
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--max-components", type=int, default=None,
                        help="keep only the largest N components of each prediction (default: all)")
    parser.add_argument("--max-fit-time", type=float, default=480.0)
    parser.add_argument("--skip-forward", action="store_true", help="skip the forward-speed comparison")
    parser.add_argument("--data", default=None, help="cohort folder (kept; default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "segmentation.json"))
    args = parser.parse_args(argv)

    import pandas as pd

    from radhe.datasets import make_ich_cohort
    from radhe.errors import InputError, InputWarning
    from radhe.io import load_manifest
    from radhe.segmentation import HematomaSegmenter, segmentation_metrics, volume_agreement

    results: dict = {"settings": vars(args), "load_average_start": os.getloadavg()}
    if not args.skip_forward:
        results["forward_32x256x256"] = forward_speed(args.forward_threads)
        print("forward, 32 x 256^2, 16 base channels:", json.dumps(results["forward_32x256x256"], indent=1))

    tmp = tempfile.TemporaryDirectory(prefix="radhe-bench-seg-")
    data = Path(args.data) if args.data else Path(tmp.name) / "cohort"
    t0 = time.perf_counter()
    if (data / "manifest.csv").exists():
        manifest = load_manifest(data / "manifest.csv")
    else:
        manifest = make_ich_cohort(args.cases, data, shape=tuple(args.shape), random_state=0)
    results["cohort_seconds"] = time.perf_counter() - t0
    patients = np.array(sorted(manifest["patient_id"].unique()))
    rng = np.random.default_rng(0)
    test_patients = set(rng.permutation(patients)[: max(1, len(patients) // 5)])
    is_test = manifest["patient_id"].isin(test_patients).to_numpy()
    train, test = manifest[~is_test], manifest[is_test]
    print(f"cohort: {len(manifest)} cases {tuple(args.shape)}; train {len(train)}, held-out {len(test)}")

    seg = HematomaSegmenter(base_channels=args.base_channels, input_size=args.input_size, epochs=args.epochs,
                            learning_rate=args.learning_rate, patience=args.patience,
                            max_components=args.max_components, max_fit_time=args.max_fit_time, n_threads=args.threads, random_state=0,
                            cache_dir=Path(tmp.name) / "masks", verbose=True)
    t0 = time.perf_counter()
    seg.fit(train)
    results["fit_seconds"] = time.perf_counter() - t0
    results["epochs_run"] = len(seg.history_)
    results["best_epoch"] = seg.best_epoch_
    results["best_validation_dice"] = float(seg.history_["val_dice"].max())

    per_case, outputs = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        seg.transform(test.iloc[:1])  # warm-up (network build, first oneDNN primitives)
        for i in range(len(test)):
            t0 = time.perf_counter()
            outputs.append(seg.transform(test.iloc[i:i + 1]))
            per_case.append(time.perf_counter() - t0)
    out = pd.concat(outputs)
    results["inference_seconds_per_case"] = {"median": float(np.median(per_case)), "max": float(np.max(per_case))}
    results["empty_predictions"] = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]

    from radhe.features.radiomics import RadiomicsFeatures

    radiomics = RadiomicsFeatures(n_jobs=1)
    radiomics_times = []
    for i in range(len(test)):
        t0 = time.perf_counter()
        radiomics.fit_transform(test.iloc[i:i + 1])
        radiomics_times.append(time.perf_counter() - t0)
    results["radiomics_seconds_per_case"] = {"median": float(np.median(radiomics_times)),
                                             "max": float(np.max(radiomics_times))}
    ratio = np.asarray(per_case) / np.asarray(radiomics_times)
    results["inference_over_radiomics_time"] = {"median": float(np.median(ratio)), "max": float(np.max(ratio))}

    by_patient = segmentation_metrics(out, level="patient")
    by_slice = segmentation_metrics(out, level="slice")
    results["held_out_patient_dice"] = {"mean": float(by_patient["dice"].mean()),
                                        "median": float(by_patient["dice"].median()),
                                        "min": float(by_patient["dice"].min())}
    results["held_out_patient_iou"] = {"mean": float(by_patient["iou"].mean()),
                                       "median": float(by_patient["iou"].median())}
    results["held_out_slice_dice_mean"] = float(by_slice["dice"].mean())
    if args.max_components is None:  # the same model, keeping only the largest component per scan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)
            largest = segmentation_metrics(seg.set_params(max_components=1).transform(test), level="patient")
        results["held_out_patient_dice_largest_component"] = {"mean": float(largest["dice"].mean()),
                                                              "median": float(largest["dice"].median())}
    try:
        results["volume_agreement"] = volume_agreement(segmentation_metrics(out, level="case"))
    except (ImportError, InputError):  # radhe.volumetry absent, or fewer than 3 held-out cases
        results["volume_agreement"] = None
    results["load_average_end"] = os.getloadavg()
    print(json.dumps({k: v for k, v in results.items() if k != "settings"}, indent=1, default=float))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    tmp.cleanup()
    return results


if __name__ == "__main__":
    main()
