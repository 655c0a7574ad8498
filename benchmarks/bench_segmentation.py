"""HematomaSegmenter on the synthetic cohort: training time, held-out Dice/IoU, inference vs radiomics time.

The shipped (pretrained) segmenter::

    python benchmarks/bench_segmentation.py --pretrained [--cases 20] [--fine-tune-cases 30] [--grids 256,512]
        [--out benchmarks/results/segmentation_pretrained.json]

evaluates the weights of ``HematomaSegmenter.pretrained()`` on a held-out seed (4242; the weights
were trained on seeds 2026-2031) at 256 × 256 × 28 and 512 × 512 × 28: Dice mean / median / min,
the false-positive volume outside the haematoma per scan (mL), the subdural / epidural /
subarachnoid blood marked, inference seconds per case next to radiomics extraction seconds per case;
then the same after fine-tuning on 30 cases of another seed. ``--scanner randomised --gantry-tilt-deg
-25,25`` draws the test and fine-tuning cohorts with domain-randomised scanners and tilted gantries
(the scans the shipped weights did not see: ``benchmarks/results/segmentation_pretrained_tilted.json``).

Training from scratch::

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


def _timed_transform(seg, frame):
    """The transformed frame and the seconds of each case, timed alone (after a warm-up case)."""
    import pandas as pd

    # the warm-up (building the network, torch's one-time imports and first oneDNN primitives) writes
    # to a folder of its own: a mask written to the timed folder would be reused, and timing the first
    # case would time the cache
    timed_folder = seg.cache_dir
    with tempfile.TemporaryDirectory(prefix="radhe-bench-warm-up-") as warm_up, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first case's warnings come with its timed prediction
        seg.set_params(cache_dir=warm_up).transform(frame.iloc[:1])
    seg.set_params(cache_dir=timed_folder)
    outputs, seconds = [], []
    for i in range(len(frame)):
        t0 = time.perf_counter()
        outputs.append(seg.transform(frame.iloc[i:i + 1]))
        seconds.append(time.perf_counter() - t0)
    return pd.concat(outputs), seconds


def _evaluate(seg, test, oracle) -> dict:
    """Dice per case, false-positive volume outside the haematoma (mL per scan) and other blood marked."""
    import SimpleITK as sitk

    from radhe.errors import InputWarning
    from radhe.segmentation import segmentation_metrics

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        out, seconds = _timed_transform(seg, test)
    metrics = segmentation_metrics(out)
    from radhe.datasets.cohort import MASK_LABELS

    false_positive, outside_blood, other_marked = [], [], []
    marked_by_kind = {label: [] for label in MASK_LABELS if label > 1}
    for truth_path, predicted_path in zip(test["mask"], out["mask_pred"], strict=True):
        truth_image = sitk.ReadImage(truth_path)
        labels = sitk.GetArrayFromImage(truth_image)
        predicted = sitk.GetArrayFromImage(sitk.ReadImage(predicted_path)).astype(bool)
        voxel_ml = float(np.prod(truth_image.GetSpacing())) / 1000
        false_positive.append(float((predicted & (labels != 1)).sum() * voxel_ml))
        outside_blood.append(float((predicted & (labels == 0)).sum() * voxel_ml))
        other_marked.append(float((predicted & (labels > 1)).sum() * voxel_ml))
        for label, marked in marked_by_kind.items():
            marked.append(float((predicted & (labels == label)).sum() * voxel_ml))
    has_other = (oracle.set_index("case_id").loc[test["case_id"], ["subdural_ml", "epidural_ml", "subarachnoid_ml"]]
                 .sum(axis=1).to_numpy() > 0)
    dice = metrics["dice"].to_numpy()
    return {
        "cases": len(test), "dice_mean": float(dice.mean()), "dice_median": float(np.median(dice)),
        "dice_min": float(dice.min()), "missed_cases_dice_below_0.1": int((dice < 0.1).sum()),
        "false_positive_ml_per_scan": {"mean": float(np.mean(false_positive)),
                                       "median": float(np.median(false_positive)),
                                       "max": float(np.max(false_positive))},
        "scans_with_false_positive_below_2ml": float(np.mean(np.asarray(false_positive) < 2.0)),
        # what is marked where there is no blood at all (bone, brain, CSF, air), apart from the other
        # blood (subdural, epidural, subarachnoid, intraventricular), which is counted below
        "false_positive_outside_any_blood_ml_per_scan": {"mean": float(np.mean(outside_blood)),
                                                         "median": float(np.median(outside_blood)),
                                                         "max": float(np.max(outside_blood))},
        "other_blood_marked_ml_mean_by_kind": {MASK_LABELS[label]: float(np.mean(marked))
                                              for label, marked in marked_by_kind.items()},
        "cases_with_other_blood": int(has_other.sum()),
        "dice_mean_cases_with_other_blood": float(dice[has_other].mean()) if has_other.any() else None,
        "other_blood_marked_ml_mean": float(np.mean(other_marked)),
        "inference_seconds_per_case": {"median": float(np.median(seconds)), "max": float(np.max(seconds))},
        "empty_or_fallback_predictions": sum(1 for w in caught if "no haematoma predicted" in str(w.message)),
    }


def pretrained(argv=None) -> dict:
    """The shipped weights on a held-out seed at 256 and 512, as shipped and after fine-tuning on 30 cases."""
    parser = argparse.ArgumentParser(description="bench_segmentation.py --pretrained")
    parser.add_argument("--pretrained", action="store_true")
    parser.add_argument("--cases", type=int, default=20, help="held-out test cases per grid")
    parser.add_argument("--fine-tune-cases", type=int, default=30)
    parser.add_argument("--fine-tune-epochs", type=int, default=8)
    parser.add_argument("--grids", default="256,512", help="in-plane sizes (28 slices each)")
    parser.add_argument("--seed", type=int, default=4242, help="seed of the test cohort (the training seeds are 2026-2031)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-fine-tune", action="store_true")
    parser.add_argument("--scanner", choices=("sites", "randomised"), default="sites",
                        help="scanner of the test and fine-tuning cohorts (make_ich_cohort's scanner)")
    parser.add_argument("--gantry-tilt-deg", default="0",
                        help="gantry tilt of the cohorts (degrees): one angle or LOW,HIGH (needs --scanner randomised)")
    parser.add_argument("--data", default=None, help="folder of the cohorts (kept; default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "segmentation_pretrained.json"))
    args = parser.parse_args(argv)

    import pandas as pd

    from radhe.datasets import make_ich_cohort
    from radhe.features.radiomics import RadiomicsFeatures
    from radhe.io import load_manifest
    from radhe.nn.pretrained import weights_info
    from radhe.segmentation import HematomaSegmenter

    tilt = tuple(float(v) for v in args.gantry_tilt_deg.split(","))
    tilt = tilt * 2 if len(tilt) == 1 else tilt
    tmp = tempfile.TemporaryDirectory(prefix="radhe-bench-seg-")
    base = Path(args.data) if args.data else Path(tmp.name)
    results: dict = {"settings": vars(args), "weights": weights_info()["training"],
                     "load_average_start": os.getloadavg()}
    for size in (int(v) for v in args.grids.split(",")):
        grid = (size, size, 28)
        cohorts = {}
        wanted = (("test", args.seed, args.cases),) + (() if args.skip_fine_tune else
                                                          (("tune", args.seed + 1, args.fine_tune_cases),))
        for name, seed, n in wanted:
            # other blood labelled (2-5) so that what the segmenter marks of it is measured; the
            # segmenter and the metrics read label 1
            scan = "" if args.scanner == "sites" else f"-{args.scanner}-tilt{tilt[0]:g},{tilt[1]:g}"
            folder = base / f"{name}-{size}-seed{seed}-labelled{scan}"
            if (folder / "manifest.csv").exists() and len(pd.read_csv(folder / "manifest.csv")) == n:
                manifest = load_manifest(folder / "manifest.csv")
            else:
                manifest = make_ich_cohort(n, folder, shape=grid, random_state=seed, n_jobs=args.threads,
                                           label_other_blood=True, scanner=args.scanner, gantry_tilt_deg=tilt)
            cohorts[name] = (manifest, pd.read_csv(folder / "oracle.csv"))
        test, oracle = cohorts["test"]
        entry: dict = {}
        # predicted masks in this run's temporary folder, never a kept one: a mask written by an earlier
        # run would be reused and the inference time would time the cache
        masks = Path(tmp.name) / f"masks-{size}"
        seg = HematomaSegmenter.pretrained(n_threads=args.threads, cache_dir=masks)
        entry["pretrained"] = _evaluate(seg, test, oracle)
        radiomics = RadiomicsFeatures(n_jobs=1)
        radiomics.fit_transform(test.iloc[:1])
        extraction = []
        for i in range(len(test)):
            t0 = time.perf_counter()
            radiomics.transform(test.iloc[i:i + 1])
            extraction.append(time.perf_counter() - t0)
        entry["radiomics_seconds_per_case"] = {"median": float(np.median(extraction)), "max": float(np.max(extraction))}
        entry["inference_over_extraction"] = (entry["pretrained"]["inference_seconds_per_case"]["median"]
                                              / entry["radiomics_seconds_per_case"]["median"])
        print(f"{size}² pretrained:", json.dumps(entry, indent=1), flush=True)
        if not args.skip_fine_tune:
            tune = cohorts["tune"][0]
            tuned = HematomaSegmenter.pretrained(epochs=args.fine_tune_epochs, n_threads=args.threads,
                                                 cache_dir=masks, random_state=0, verbose=True)
            t0 = time.perf_counter()
            tuned.fit(tune)
            entry["fine_tuned"] = {**_evaluate(tuned, test, oracle), "fit_seconds": time.perf_counter() - t0,
                                   "best_epoch": int(tuned.best_epoch_),
                                   "validation_dice_start": float(tuned.history_["val_dice"].iloc[0]),
                                   "validation_dice_best": float(tuned.history_["val_dice"].max())}
            print(f"{size}² fine-tuned on {len(tune)}:", json.dumps(entry["fine_tuned"], indent=1), flush=True)
        results[f"grid_{size}"] = entry
    results["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    print("pretrained segmenter (mean Dice; false-positive mL per scan, median; inference / extraction per case):")
    for key, entry in results.items():
        if key.startswith("grid_"):
            for mode in ("pretrained", "fine_tuned"):
                if mode in entry:
                    e = entry[mode]
                    print(f"  {key[5:]:>4}² {mode:<10} Dice {e['dice_mean']:.3f} (median {e['dice_median']:.3f}, min "
                          f"{e['dice_min']:.3f})  FP {e['false_positive_ml_per_scan']['median']:.2f} mL (mean "
                          f"{e['false_positive_ml_per_scan']['mean']:.2f}; outside any blood "
                          f"{e['false_positive_outside_any_blood_ml_per_scan']['mean']:.2f})  "
                          f"inference {e['inference_seconds_per_case']['median']:.2f} s")
            print(f"        extraction {entry['radiomics_seconds_per_case']['median']:.2f} s per case: inference is "
                  f"{entry['inference_over_extraction']:.1f}× extraction")
    tmp.cleanup()
    return results


def main(argv=None) -> dict:
    if "--pretrained" in (sys.argv[1:] if argv is None else argv):
        return pretrained(argv)
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

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        out, per_case = _timed_transform(seg, test)
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
