"""The per-case feature cache: cold vs warm refit, a grid search that re-extracts nothing, key cost.

Usage::

    python benchmarks/bench_cache.py [--cases 12] [--shape 512 512 28]
                                     [--out benchmarks/results/cache.json]

Measures, on the same synthetic cohort as ``bench_radiomics.py``:

* cold: ``RadiomicsFeatures(cache=DIR).fit_transform(X)`` with an empty cache;
* warm: a new, identical estimator refit on the same cases (what every fold / parameter
  combination of a grid search does) -- must be >= 50x faster than cold;
* a ``GridSearchCV`` over ``select__k`` and ``classify__C`` (3 folds) with the radiomics step in
  the pipeline: how many extractions it performs (each case once in total, on the first fit);
* the cost of the cache key: ``os.stat`` (used) vs hashing the files' bytes (SHA-256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_radiomics import make_cohort  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 28], metavar=("X", "Y", "Z"))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "cache.json"))
    args = parser.parse_args(argv)

    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    import radhe.features._radiomics_engine as engine
    from radhe.features.radiomics import RadiomicsFeatures

    calls = []
    extract = engine.extract_case

    def counting(*a, **k):
        calls.append(a[0])
        return extract(*a, **k)

    engine.extract_case = counting  # this process only (n_jobs=1): counts extractions

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        manifest = make_cohort(args.cases, Path(tmp) / "cohort", shape=args.shape)
        cache = Path(tmp) / "cache"

        t0 = time.perf_counter()
        cold = RadiomicsFeatures(cache=cache).fit_transform(manifest)
        t_cold = time.perf_counter() - t0
        n_cold = len(calls)
        warm_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            warm = RadiomicsFeatures(cache=cache).fit_transform(manifest)
            warm_times.append(time.perf_counter() - t0)
        t_warm = min(warm_times)
        assert len(calls) == n_cold, "a warm refit extracted again"
        assert np.array_equal(cold.to_numpy(), warm.to_numpy(), equal_nan=True)

        # Grid search over k and C with a fresh cache: every case is extracted once, in total.
        grid_cache = Path(tmp) / "grid_cache"
        y = np.tile([0, 1], (len(manifest) + 1) // 2)[: len(manifest)]
        pipe = Pipeline([
            ("radiomics", RadiomicsFeatures(cache=grid_cache)),
            ("scale", StandardScaler()),
            ("select", SelectKBest(f_classif)),
            ("classify", LogisticRegression(max_iter=1000)),
        ])
        grid = GridSearchCV(pipe, {"select__k": [5, 10, 20], "classify__C": [0.1, 1.0]},
                            cv=StratifiedKFold(3), n_jobs=1)
        calls.clear()
        t0 = time.perf_counter()
        grid.fit(manifest, y)
        t_grid_cold = time.perf_counter() - t0
        grid_extractions = len(calls)
        calls.clear()
        t0 = time.perf_counter()
        grid.fit(manifest, y)
        t_grid_warm = time.perf_counter() - t0
        grid_warm_extractions = len(calls)
        n_fits = 3 * 3 * 2 + 1

        # Key cost: stat vs content hash
        t0 = time.perf_counter()
        for p in list(manifest["image"]) + list(manifest["mask"]):
            Path(p).stat()
        t_stat = (time.perf_counter() - t0) / len(manifest)
        t0 = time.perf_counter()
        for p in list(manifest["image"]) + list(manifest["mask"]):
            hashlib.sha256(Path(p).read_bytes()).hexdigest()
        t_hash = (time.perf_counter() - t0) / len(manifest)

    result = {
        "cases": args.cases, "shape": args.shape,
        "seconds": {"cold": t_cold, "warm": t_warm, "grid_search_cold_cache": t_grid_cold,
                    "grid_search_warm_cache": t_grid_warm},
        "warm_speedup": t_cold / t_warm,
        "grid_search": {"fits": n_fits, "extractions": grid_extractions,
                        "extractions_second_run": grid_warm_extractions},
        "key_seconds_per_case": {"stat": t_stat, "sha256_content": t_hash,
                                 "extraction": t_cold / args.cases},
    }
    print(f"cold fit_transform ({args.cases} cases): {t_cold:.2f} s")
    print(f"warm refit                       : {t_warm * 1000:.1f} ms  -> {t_cold / t_warm:.0f}x faster")
    print(f"grid search, {n_fits} pipeline fits      : {grid_extractions} extractions for {args.cases} cases "
          f"({t_grid_cold:.2f} s); rerun: {grid_warm_extractions} extractions ({t_grid_warm:.2f} s)")
    print(f"cache key per case: stat {t_stat * 1e6:.0f} us, SHA-256 of the bytes {t_hash * 1000:.1f} ms "
          f"(extraction {t_cold / args.cases * 1000:.0f} ms)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")
    if t_cold / t_warm < 50:
        raise SystemExit("FAIL: warm refit is less than 50x faster than cold")
    if grid_extractions != args.cases:
        raise SystemExit("FAIL: the grid search extracted some case more than once")
    return result


if __name__ == "__main__":
    main()
