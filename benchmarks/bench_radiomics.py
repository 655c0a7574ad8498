"""RadiomicsFeatures vs a plain pyradiomics loop: speed and equality, on CT volumes of 512x512x28.

Usage::

    python benchmarks/bench_radiomics.py [--cases 16] [--shape 512 512 28] [--params PRESET_OR_YAML]
                                         [--out benchmarks/results/radiomics.json]

Measures, on a synthetic cohort (``radhe.datasets.make_ich_cohort`` when available, otherwise the
CT-like generator below):

* plain: ``RadiomicsFeatureExtractor(params).execute(image, mask)`` in a sequential loop (what
  users run today; SimpleITK with its default threads);
* radhe, ``n_jobs=1`` and ``n_jobs=2``: ``RadiomicsFeatures(params, n_jobs=...).fit_transform``;
  for ``n_jobs=2`` both a first call (no worker running: it starts the two worker processes when
  they pay) and a second call (workers already running, as in the next fold of a cross-validation)
  are timed;
* the largest relative difference, over every feature of every case, between the two;
* with LoG in the parameters: how many float32 LoG values inside the ROI boxes differ from
  SimpleITK's filter run on the whole volume (radhe filters a margin of 24 sigma around the box).

Every variant is timed ``--repeat`` times and the fastest run is reported (on a shared machine the
fastest run is the one least disturbed by other jobs); the plain loop and radhe's runs alternate.
The sequential variants' CPU time (all threads of this process) is reported too: unlike wall
time, it does not depend on what else the machine is running.

Both sides read the images from disk; pyradiomics' logging is silenced for both.
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

import numpy as np
import pandas as pd
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_case(shape=(512, 512, 28), seed=0):
    """A CT-like head (HU) with an irregular haematoma; ``shape`` is (x, y, z); life-size spacing."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    head_mm = (180.0, 220.0, 140.0)
    spacing = (head_mm[0] * 1.3 / nx, head_mm[1] * 1.15 / ny, head_mm[2] / nz)
    z, y, x = np.indices((nz, ny, nx), dtype=np.float32)
    cx, cy, cz = nx / 2, ny / 2, nz / 2
    r = np.sqrt(((x - cx) * spacing[0] / (head_mm[0] / 2)) ** 2 + ((y - cy) * spacing[1] / (head_mm[1] / 2)) ** 2
                + ((z - cz) * spacing[2] / (head_mm[2] / 2)) ** 2)
    ct = np.full(r.shape, -1000.0, np.float32)
    ct[r < 1.0] = 1200.0
    ct[r < 0.93] = 32.0
    ct += rng.normal(0, 6, ct.shape).astype(np.float32)
    hx = cx + rng.uniform(-25, 25) / spacing[0]
    hy = cy + rng.uniform(-25, 25) / spacing[1]
    hz = cz + rng.uniform(-1, 1)
    radius = rng.uniform(10, 22)
    d = np.sqrt(((x - hx) * spacing[0]) ** 2 + ((y - hy) * spacing[1]) ** 2 + ((z - hz) * spacing[2] * 0.8) ** 2)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, d.shape).astype(np.float32), (1, 8, 8))
    blob = d < radius * (1 + 1.5 * noise)
    lab, n = ndimage.label(blob)
    if n > 1:
        blob = lab == 1 + int(np.argmax(ndimage.sum(blob, lab, range(1, n + 1))))
    ct[blob] = 65 + rng.normal(0, 8, int(blob.sum()))
    image = sitk.GetImageFromArray(np.round(ct).astype(np.int16))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(blob.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def make_cohort(n_cases, out_dir, shape=(512, 512, 28)) -> pd.DataFrame:
    """The benchmark cohort: radhe's generator when present, else :func:`synthetic_case`."""
    out_dir = Path(out_dir)
    try:
        from radhe.datasets import make_ich_cohort
    except ImportError:
        make_ich_cohort = None
    if make_ich_cohort is not None:
        manifest = make_ich_cohort(n_cases, out_dir, shape=tuple(shape), random_state=0, n_jobs=2)
        return manifest[["case_id", "image", "mask"]].copy()
    rows = []
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        image, mask = synthetic_case(tuple(shape), seed=i)
        img, msk = out_dir / "images" / f"case{i:03d}.nii", out_dir / "masks" / f"case{i:03d}.nii"
        sitk.WriteImage(image, str(img))
        sitk.WriteImage(mask, str(msk))
        rows.append({"case_id": f"case{i:03d}", "image": str(img), "mask": str(msk)})
    return pd.DataFrame(rows)


def plain_pyradiomics(manifest, params):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from radhe.features.radiomics import _resolve

    extractor = RadiomicsFeatureExtractor(_resolve(params).as_params())
    rows = []
    for case in manifest.itertuples():
        out = extractor.execute(case.image, case.mask)
        rows.append({k: float(v) for k, v in out.items() if not k.startswith("diagnostics_")})
    return pd.DataFrame(rows, index=manifest.index)


def max_relative_difference(ours: pd.DataFrame, plain: pd.DataFrame) -> tuple[float, str]:
    names = ["radiomics__" + c for c in plain.columns]
    if list(ours.columns) != names:
        raise AssertionError("feature names differ from pyradiomics'")
    a, b = ours.to_numpy(float), plain.to_numpy(float)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
    rel = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b) / scale)
    j = int(np.unravel_index(np.argmax(rel), rel.shape)[1])
    return float(rel.max()), str(plain.columns[j])


def log_voxel_check(manifest, params) -> dict | None:
    """radhe's LoG images inside each ROI box against SimpleITK's filter on the whole volume.

    None when ``params`` has no LoG. Counts the voxels (over every case and sigma) whose float32
    value differs, and the largest difference in units in the last place.
    """
    from radhe.features._radiomics_engine import _log_images
    from radhe.features.radiomics import _resolve

    config = _resolve(params)
    if "LoG" not in config.image_types:
        return None
    kwargs = dict(config.settings)
    kwargs.update(config.image_types["LoG"])
    compared = differing = 0
    max_ulp = 0
    for case in manifest.itertuples():
        image = sitk.ReadImage(case.image)
        z, y, x = np.nonzero(sitk.GetArrayFromImage(sitk.ReadImage(case.mask)) == int(kwargs.get("label", 1)))
        bbox = np.array([x.min(), x.max(), y.min(), y.max(), z.min(), z.max()])
        for filtered, name, _, inner in _log_images(image, bbox, kwargs):
            sigma = float(name.split("-sigma-")[1].split("-mm")[0].replace("-", "."))
            whole = sitk.LaplacianRecursiveGaussianImageFilter()
            whole.SetNormalizeAcrossScale(True)
            whole.SetSigma(sigma)
            reference = sitk.GetArrayFromImage(whole.Execute(image))[
                bbox[4]:bbox[5] + 1, bbox[2]:bbox[3] + 1, bbox[0]:bbox[1] + 1]
            ours = sitk.GetArrayFromImage(filtered)[
                inner[4]:inner[5] + 1, inner[2]:inner[3] + 1, inner[0]:inner[1] + 1]
            compared += ours.size
            differ = ours != reference
            differing += int(differ.sum())
            if differ.any():
                # units in the last place of the larger magnitude: a value near zero does not inflate it
                scale = np.maximum(np.abs(ours[differ]), np.abs(reference[differ]))
                ulp = np.abs(ours[differ].astype(np.float64) - reference[differ]) / np.spacing(scale)
                max_ulp = max(max_ulp, float(ulp.max()))
    return {"voxels_compared": compared, "voxels_differing": differing, "max_difference_ulp": max_ulp}


_CPU = {}


def timed(func, *args):
    """Run ``func(*args)``; return its output and wall time (CPU time of this process in ``_CPU``)."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = func(*args)
    _CPU[getattr(func, "__name__", "?")] = time.process_time() - c0
    return out, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 28], metavar=("X", "Y", "Z"))
    parser.add_argument("--params", default=None, help="preset name or parameter file (default: pyradiomics')")
    parser.add_argument("--repeat", type=int, default=2,
                        help="time every variant this many times, report the fastest (the CI machine is shared)")
    parser.add_argument("--workdir", default=None, help="where the cohort is written (default: a temp folder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "radiomics.json"))
    args = parser.parse_args(argv)

    import radiomics  # noqa: F401

    from radhe.features.radiomics import RadiomicsFeatures
    from radhe.parallel import stop_workers

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        manifest = make_cohort(args.cases, tmp, shape=args.shape)
        print(f"cohort: {args.cases} cases of {tuple(args.shape)} written in {time.perf_counter() - t0:.1f} s")

        t_plain = t1 = t2_first = t2 = cpu_plain = cpu1 = float("inf")
        for rep in range(args.repeat):
            plain, t = timed(plain_pyradiomics, manifest, args.params)
            t_plain = min(t_plain, t)
            cpu_plain = min(cpu_plain, _CPU["plain_pyradiomics"])
            ours1, t = timed(RadiomicsFeatures(args.params, n_jobs=1).fit_transform, manifest)
            t1 = min(t1, t)
            cpu1 = min(cpu1, _CPU["fit_transform"])
            # a first parallel call starts the worker processes: every repetition starts cold (no worker
            # of radhe's pool, none left by the cohort generator's joblib pool)
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)
            stop_workers()
            ours2, t = timed(RadiomicsFeatures(args.params, n_jobs=2).fit_transform, manifest)
            t2_first = min(t2_first, t)
            ours2b, t = timed(RadiomicsFeatures(args.params, n_jobs=2).fit_transform, manifest)
            t2 = min(t2, t)
            print(f"  run {rep + 1}: plain {t_plain:.2f} s, n_jobs=1 {t1:.2f} s, n_jobs=2 {t2:.2f} s (best so far)")

        diff, worst = max(max_relative_difference(o, plain) for o in (ours1, ours2, ours2b))
        log_check = log_voxel_check(manifest, args.params)
        result = {
            "cases": args.cases, "shape": args.shape, "repeat": args.repeat, "params": args.params or "pyradiomics defaults",
            "n_features": int(plain.shape[1]), "cpu_count": os.cpu_count(),
            "seconds": {"plain_pyradiomics": t_plain, "radhe_n_jobs_1": t1,
                        "radhe_n_jobs_2_first_call": t2_first, "radhe_n_jobs_2": t2},
            "speedup": {"n_jobs_1": t_plain / t1, "n_jobs_2_first_call": t_plain / t2_first,
                        "n_jobs_2": t_plain / t2},
            "cpu_seconds": {"plain_pyradiomics": cpu_plain, "radhe_n_jobs_1": cpu1},
            "cpu_speedup_n_jobs_1": cpu_plain / cpu1,
            "n_jobs_2_over_n_jobs_1": {"first_call": t1 / t2_first, "workers_running": t1 / t2},
            "load_average_1min_at_end": os.getloadavg()[0],
            "max_relative_difference": diff, "worst_feature": worst,
        }
        if log_check is not None:
            result["log_inside_roi_vs_whole_volume"] = log_check
    print(f"features per case: {result['n_features']}")
    print(f"plain pyradiomics loop : {t_plain:7.2f} s  ({t_plain / args.cases * 1000:6.0f} ms/case)")
    print(f"radhe n_jobs=1         : {t1:7.2f} s  speed-up {t_plain / t1:5.1f}x")
    print(f"radhe n_jobs=2 (start) : {t2_first:7.2f} s  speed-up {t_plain / t2_first:5.1f}x  (includes starting workers)")
    print(f"radhe n_jobs=2         : {t2:7.2f} s  speed-up {t_plain / t2:5.1f}x  (workers running)")
    print(f"n_jobs=2 against n_jobs=1: {t1 / t2_first:.2f}x on the first call, {t1 / t2:.2f}x with workers running "
          f"(goal: >= 1.0x at any size, >= 1.8x at 50 cases)")
    print(f"CPU time (this process): plain {cpu_plain:.2f} s, radhe n_jobs=1 {cpu1:.2f} s "
          f"-> {cpu_plain / cpu1:.1f}x (independent of other load on the machine)")
    print(f"max relative difference: {diff:.2e} ({worst})")
    if log_check is not None:
        print(f"LoG values inside the ROI boxes vs SimpleITK on the whole volume: {log_check['voxels_differing']} of "
              f"{log_check['voxels_compared']} voxels differ, by at most {log_check['max_difference_ulp']:.0f} "
              "unit(s) in the last place")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")
    if diff > 1e-6:
        raise SystemExit("FAIL: features differ from pyradiomics by more than 1e-6")
    return result


if __name__ == "__main__":
    main()
