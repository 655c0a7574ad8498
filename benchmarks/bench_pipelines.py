"""Do the published-method pipelines beat their own simple baseline? Measured on the synthetic cohort.

Each pipeline of ``pipelines/`` (``zhong2021``, ``teng2021``, ``bo2023`` by default) is
cross-validated as its command line does it (:func:`radhe_pipelines._common.run_pipeline`:
patient-grouped stratified 5-fold CV, seed 0; no SHAP, and each fold's threshold from its training
scores rather than an inner CV, which would refit the model three more times per fold and does not
change the AUC) on the default-size synthetic cohort
(``make_ich_cohort(200, random_state=0)``: 256 × 256 × 28). The baselines of the report come from
the same folds — the haematoma volume by logistic regression and the BAT score — with the paired
DeLong test of each against the pipeline.

Beside them, three references from the cohort's ``oracle.csv`` (AUCs of true quantities, which no
model fitted on 200 cases reaches):

* the oracle: the AUC of the true risk;
* the CT-only oracle: the AUC of the part of the true log-odds that the CT shows
  (:data:`radhe.datasets.cohort.IMAGE_TERMS`: NCCT markers, volume, clot texture and density) —
  about the best a method that sees only the image (``zhong2021``, ``teng2021``) can do (not a
  strict bound: the markers and the volume are drawn with some dependence on onset-to-CT time and
  anticoagulation, so the image carries a little of those clinical terms too);
* the volume oracle: the AUC of the true baseline volume alone.

The gap between the CT-only oracle and the volume oracle is about what an image-only method can
add over the volume; when it is small for the cohort's size, no image-only method can beat the volume
baseline by a margin a 200-case DeLong test detects.

``--diagnose`` adds, for the pipelines that extract features (``teng2021``, ``bo2023``), runs that
take one part of the method away at a time, on the same folds and the same cached masks and
radiomics features (cheap after the main run): without the CNN branch; without the CNN and without
the method's feature selection; and without the CNN with radhe's default model
(family stacking) on the method's features. They show which part of the method loses the signal.

    python benchmarks/bench_pipelines.py                               # the three, 200 cases
    python benchmarks/bench_pipelines.py --pipelines bo2023 --diagnose --json out.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # radhe_pipelines from a source checkout

#: Names of the report's baselines compared with each pipeline.
VOLUME, BAT = "Volume (logistic)", "BAT (logistic)"


def ceilings(manifest: pd.DataFrame, folder: Path) -> dict:
    """AUCs of the true risk, of its CT-visible part and of the true volume (``oracle.csv``)."""
    from sklearn.metrics import roc_auc_score

    from radhe.datasets.cohort import IMAGE_TERMS

    oracle = pd.read_csv(folder / "oracle.csv").set_index("case_id").loc[manifest["case_id"].astype(str)]
    missing = [f"logit_{t}" for t in IMAGE_TERMS if f"logit_{t}" not in oracle.columns]
    if missing:
        raise SystemExit(f"{folder / 'oracle.csv'} has no {', '.join(missing)}: a cohort made by an older radhe; "
                         "make it again (or leave out --manifest)")
    y = manifest["he"].astype(int).to_numpy()
    image_logit = oracle[[f"logit_{t}" for t in IMAGE_TERMS]].sum(axis=1).to_numpy()
    return {"oracle": float(roc_auc_score(y, oracle["he_risk"])),
            "ct_only_oracle": float(roc_auc_score(y, image_logit)),
            "volume_oracle": float(roc_auc_score(y, manifest["baseline_volume_ml"]))}


#: The ``--diagnose`` runs: (label, overrides) — one part of the method taken away at a time.
DIAGNOSES = (
    ("without CNN", {"cnn": None}),
    ("without CNN and selection", {"cnn": None, "selector": None}),
    ("without CNN, radhe's default model", {"cnn": None, "fusion": "stack", "selector": "auto",
                                            "classifier": "logistic"}),
)
#: Pipelines with a feature step that ``--diagnose`` takes apart.
DIAGNOSED = ("teng2021", "bo2023")


def run(name: str, manifest, manifest_path: Path, out: Path, folds: int, seed: int, overrides: dict,
        label: str | None = None) -> dict:
    from radhe_pipelines import _common

    module = importlib.import_module(f"radhe_pipelines.{name}")
    folder = out / name / (label or "").replace(" ", "-").replace(",", "").replace("'", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # threshold_cv=None: the AUC does not depend on the threshold, and its inner CV refits the model
        # three more times per fold; one cache for all runs (keys hold the weights and the settings)
        run_ = _common.run_pipeline(module, manifest, manifest_path=manifest_path, out=folder, folds=folds,
                                    seed=seed, threshold_cv=None, explain=False, n_bootstrap=200, verbose=False,
                                    overrides=overrides, cache=out / "cache")
    table = run_["result"].comparison
    row = {"pipeline": name if label is None else f"{name}, {label}", "auc": float(table.iloc[0]["auc"]), "auc_ci_low": float(table.iloc[0]["auc_ci_low"]),
           "auc_ci_high": float(table.iloc[0]["auc_ci_high"]), "seconds": run_["seconds"]}
    for label, baseline in (("volume", VOLUME), ("bat", BAT)):
        if baseline in table.index:
            # DeLong: the baseline against the pipeline (the reference); report pipeline - baseline
            row[f"{label}_auc"] = float(table.loc[baseline, "auc"])
            row[f"vs_{label}"] = -float(table.loc[baseline, "delta_auc"])
            row[f"vs_{label}_p"] = float(table.loc[baseline, "delong_p"])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", default="zhong2021,teng2021,bo2023")
    parser.add_argument("-n", "--n-cases", type=int, default=200)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 28))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manifest", type=Path, default=None,
                        help="an existing synthetic cohort's manifest.csv (its oracle.csv beside it)")
    parser.add_argument("--tiny", action="store_true", help="each pipeline's TINY settings: a smoke run")
    parser.add_argument("--diagnose", action="store_true",
                        help="also the runs taking one part of teng2021 / bo2023 away at a time")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    from radhe.datasets import make_ich_cohort
    from radhe.io import load_manifest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.manifest is not None:
            import SimpleITK as sitk

            manifest_path = args.manifest
            manifest = load_manifest(manifest_path)
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(manifest["image"].iloc[0]))
            reader.ReadImageInformation()
            args.shape = list(reader.GetSize())
        else:
            t0 = time.perf_counter()
            manifest = make_ich_cohort(args.n_cases, tmp / "cohort", shape=tuple(args.shape),
                                       random_state=args.seed, n_jobs=2)
            manifest_path = tmp / "cohort" / "manifest.csv"
            print(f"cohort: {len(manifest)} cases, {tuple(args.shape)}, made in {time.perf_counter() - t0:.0f} s")
        bounds = ceilings(manifest, Path(manifest_path).parent)
        print(f"n={len(manifest)}, events={int(manifest['he'].sum())}; references: oracle AUC {bounds['oracle']:.3f}, "
              f"CT-only oracle {bounds['ct_only_oracle']:.3f}, true volume alone {bounds['volume_oracle']:.3f}")
        rows = []
        for name in args.pipelines.split(","):
            module = importlib.import_module(f"radhe_pipelines.{name}")
            base = dict(module.TINY) if args.tiny else {}
            runs = [(None, base)]
            if args.diagnose and name in DIAGNOSED:
                runs += [(what, {**base, **extra}) for what, extra in DIAGNOSES]
            for what, overrides in runs:
                row = run(name, manifest, Path(manifest_path), tmp / "out", args.folds, args.seed, overrides, what)
                rows.append(row)
                print(f"  {row['pipeline']:<44} AUC {row['auc']:.3f} ({row['auc_ci_low']:.3f}-{row['auc_ci_high']:.3f})  "
                      f"volume logistic {row.get('volume_auc', np.nan):.3f}: {row.get('vs_volume', np.nan):+.3f} "
                      f"(DeLong p {row.get('vs_volume_p', np.nan):.3f})  "
                      f"BAT {row.get('bat_auc', np.nan):.3f}: {row.get('vs_bat', np.nan):+.3f}  "
                      f"{row['seconds'] / 60:.1f} min", flush=True)
    if args.json:
        payload = {"n": len(manifest), "events": int(manifest["he"].sum()), "shape": list(args.shape),
                   "folds": args.folds, "seed": args.seed, "references": bounds, "pipelines": rows}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
