"""Benchmark and realism report of the synthetic ICH cohort (radhe.datasets.make_ich_cohort).

Measures the generation time of ``--n`` cases at the default size with ``n_jobs=1`` and ``n_jobs=2``,
then reports on the generated cohort: pyradiomics shape features of the masks next to the statistics
of 545 real haematomas (median and IQR), the volume distribution, the HE prevalence, the marker
prevalences and the AUC of the oracle risk (the best any model can reach on this cohort).

    python benchmarks/bench_cohort.py                 # 200 cases, 256 x 256 x 28
    python benchmarks/bench_cohort.py --n 50 --jobs 1 --out /tmp/cohort
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402

#: Shape statistics of 545 real ICH masks (pyradiomics): median (IQR). Volume: issue 3's targets.
REAL_SHAPE = {
    "Sphericity": (0.66, 0.56, 0.72),
    "Elongation": (0.70, 0.60, 0.79),
    "Flatness": (0.47, 0.40, 0.55),
    "Maximum3DDiameter": (52.0, 38.0, 69.0),
}
TARGET_VOLUME_ML = (13.0, 6.0, 24.0)


def shape_features(manifest: pd.DataFrame) -> pd.DataFrame:
    import SimpleITK as sitk
    from radiomics import shape

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    rows = []
    for row in manifest.itertuples():
        image = sitk.ReadImage(row.image)
        mask = sitk.ReadImage(row.mask)
        feats = shape.RadiomicsShape(image, mask, label=1)
        rows.append({name: float(getattr(feats, f"get{name}FeatureValue")()) for name in
                     ("Sphericity", "Elongation", "Flatness", "Maximum3DDiameter", "MeshVolume")})
    return pd.DataFrame(rows, index=manifest.index)


def _iqr(series: pd.Series) -> str:
    return f"{series.median():.2f} ({series.quantile(0.25):.2f}-{series.quantile(0.75):.2f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="number of cases (default 200)")
    parser.add_argument("--shape", default="256,256,28", help="x,y,z voxels (default 256,256,28)")
    parser.add_argument("--jobs", default="1,2", help="comma-separated n_jobs values to time (default 1,2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the cohort (default: a temporary folder)")
    parser.add_argument("--no-shape", action="store_true", help="skip the pyradiomics shape statistics")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    from radhe.datasets import make_ich_cohort

    shape = tuple(int(v) for v in args.shape.split(","))
    results: dict = {"n_cases": args.n, "shape": shape, "timings_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.out) if args.out else Path(tmp)
        manifest = None
        for jobs in (int(j) for j in args.jobs.split(",")):
            out = base / f"jobs{jobs}"
            t0, c0 = time.perf_counter(), time.process_time()
            manifest = make_ich_cohort(args.n, out, shape=shape, random_state=args.seed, n_jobs=jobs)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            results["timings_s"][f"n_jobs={jobs}"] = round(elapsed, 2)
            cpu_note = f"; CPU time of this process {cpu:.1f} s" if jobs == 1 else ""
            print(f"generation of {args.n} cases {shape} with n_jobs={jobs}: {elapsed:.1f} s wall "
                  f"({elapsed / args.n * 1000:.0f} ms per case){cpu_note}")
        oracle = pd.read_csv(Path(manifest.attrs["manifest_dir"]) / "oracle.csv")

        from sklearn.metrics import roc_auc_score

        he = manifest["he"].to_numpy()
        results["he_prevalence"] = float(he.mean())
        results["oracle_auc"] = float(roc_auc_score(he, oracle["he_risk"])) if 0 < he.sum() < len(he) else None
        results["mean_oracle_risk"] = float(oracle["he_risk"].mean())
        vol = manifest["baseline_volume_ml"]
        results["volume_ml"] = {"median": vol.median(), "q1": vol.quantile(0.25), "q3": vol.quantile(0.75),
                                "min": vol.min(), "max": vol.max()}
        markers = ["hypodensity", "blend_sign", "irregular_margin", "fluid_level", "intraventricular_extension",
                   "oedema_rim"]
        results["marker_prevalence"] = {m: float(manifest[m].mean()) for m in markers}
        results["location"] = manifest["location"].value_counts(normalize=True).round(3).to_dict()
        print(f"\nHE prevalence {results['he_prevalence']:.3f} (mean oracle risk "
              f"{results['mean_oracle_risk']:.3f}); oracle AUC {results['oracle_auc']:.3f}")
        print(f"baseline volume (mL): median {vol.median():.1f}, IQR {vol.quantile(.25):.1f}-"
              f"{vol.quantile(.75):.1f}, range {vol.min():.1f}-{vol.max():.1f} "
              f"(target {TARGET_VOLUME_ML[0]:g}, IQR {TARGET_VOLUME_ML[1]:g}-{TARGET_VOLUME_ML[2]:g}, range ~1-100)")
        print("markers:", ", ".join(f"{k} {v:.2f}" for k, v in results["marker_prevalence"].items()))
        print("locations:", ", ".join(f"{k} {v:.2f}" for k, v in results["location"].items()))

        if not args.no_shape:
            feats = shape_features(manifest)
            results["shape"] = {}
            print(f"\n{'feature':<20}{'synthetic median (IQR)':<28}real median (IQR), 545 scans")
            for name, (med, q1, q3) in REAL_SHAPE.items():
                col = feats[name]
                results["shape"][name] = {"median": col.median(), "q1": col.quantile(0.25),
                                          "q3": col.quantile(0.75), "real": [med, q1, q3]}
                print(f"{name:<20}{_iqr(col):<28}{med:g} ({q1:g}-{q3:g})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
