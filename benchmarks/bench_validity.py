"""Does radhe's default model beat what a statistician writes by hand? Measured on real tables.

Real tables shipped inside kept packages (nothing is downloaded): scikit-survival's
``load_breast_cancer`` (76 gene-expression + 4 clinical variables; outcome: distant metastasis
observed), ``load_gbsg2`` (clinical; recurrence), ``load_whas500`` (clinical; death),
``load_aids`` (clinical; AIDS or death, 8 % events) and scikit-learn's ``load_breast_cancer``
(30 features computed from digitised images; malignant). The survival tables' follow-up time is
left out (it is known only after the outcome). Plus the synthetic ICH cohort (default size, 200
cases; its oracle AUC printed beside).

Every model runs on the same repeated stratified folds (``--splits`` × ``--repeats``, default
5 × 5):

* ``radhe default``: ``radhe.make_pipeline()`` (on the tables the tabular path,
  ``make_pipeline(radiomics=None)``; families found by name), and where a table has more than
  one declared feature family also ``radhe + families`` (``families=`` given);
* ``radhe grid``: ``GridSearchCV(make_pipeline(), radhe.param_grid(...))`` nested in each fold
  (``--grid``; it multiplies the cost by about 13);
* the simple anchors a user writes in scikit-learn: one-hot + median imputation + scaling →
  L2 ``LogisticRegression(C=0.1)`` and ``LogisticRegressionCV`` (C by inner CV, AUC scoring), on
  all columns and on the clinical columns only; on the cohort also volume-only logistic and the
  BAT score.

It prints one table of AUC mean ± SD over the folds, radhe's difference to the best anchor of the
dataset, and the out-of-fold calibration intercept and slope of radhe's default (each repeat's
pooled out-of-fold probabilities; mean over repeats).

    python benchmarks/bench_validity.py                      # everything, 5 x 5 folds
    python benchmarks/bench_validity.py --datasets gbsg2,aids --repeats 2 --grid
    python benchmarks/bench_validity.py --datasets gbsg2,aids,whas500 --subsample 80,160   # small cohorts
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

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REAL_TABLES = ("sksurv_breast_cancer", "gbsg2", "whas500", "aids", "sklearn_breast_cancer")


# ---------------------------------------------------------------------------------------------
# data

def load_table(name: str):
    """(table, y, families, clinical columns or None): a real table as a radhe manifest."""
    if name == "sklearn_breast_cancer":
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer(as_frame=True)
        X = data.data.copy()
        X.columns = [c.replace(" ", "_") for c in X.columns]
        y = (data.target == 0).astype(int).to_numpy()  # malignant
        families = {
            "mean": [c for c in X.columns if c.startswith("mean_")],
            "error": [c for c in X.columns if c.endswith("_error")],
            "worst": [c for c in X.columns if c.startswith("worst_")],
        }
        return _as_manifest(X), y, families, None
    from sksurv import datasets

    if name == "sksurv_breast_cancer":
        X, outcome = datasets.load_breast_cancer()
        y = outcome["e.tdm"]
        clinical = ["age", "er", "grade", "size"]
        families = {"genes": [c for c in X.columns if c not in clinical], "clinical": clinical}
    elif name == "gbsg2":
        X, outcome = datasets.load_gbsg2()
        y, clinical, families = outcome["cens"], list(X.columns), None
    elif name == "whas500":
        X, outcome = datasets.load_whas500()
        y, clinical, families = outcome["fstat"], list(X.columns), None
    elif name == "aids":
        X, outcome = datasets.load_aids()
        y, clinical, families = outcome["censor"], list(X.columns), None
    else:
        raise SystemExit(f"unknown dataset {name!r}; choose from {REAL_TABLES + ('cohort',)}")
    return _as_manifest(X), np.asarray(y).astype(int), families, clinical


def _as_manifest(X: pd.DataFrame) -> pd.DataFrame:
    X = X.reset_index(drop=True)
    ids = pd.Series([f"case{i:04d}" for i in range(len(X))])
    return pd.concat([pd.DataFrame({"case_id": ids, "patient_id": ids}), X], axis=1)


def load_cohort(n: int, folder: Path):
    from radhe.datasets import make_ich_cohort

    manifest = make_ich_cohort(n, folder, random_state=0, n_jobs=2)
    oracle = pd.read_csv(folder / "oracle.csv")["he_risk"].to_numpy()
    return manifest, manifest["he"].to_numpy().astype(int), oracle


# ---------------------------------------------------------------------------------------------
# models

def _hand_preprocessing(columns_numeric, columns_categorical):
    """What a user writes: impute, one-hot, scale."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    if columns_numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), columns_numeric))
    if columns_categorical:
        parts.append(("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                           OneHotEncoder(drop="if_binary", handle_unknown="ignore")),
                      columns_categorical))
    return ColumnTransformer(parts)


def hand_logistic(table: pd.DataFrame, columns, *, tuned: bool):
    """L2 logistic regression by hand (C = 0.1, or C by 5-fold inner CV on AUC)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline

    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(table[c]) and not
               isinstance(table[c].dtype, pd.CategoricalDtype)]
    categorical = [c for c in columns if c not in numeric]
    model = (LogisticRegressionCV(Cs=10, cv=5, scoring="roc_auc", max_iter=5000) if tuned
             else LogisticRegression(C=0.1, max_iter=5000))
    return make_pipeline(_hand_preprocessing(numeric, categorical), model)


class _Columns:
    """Restrict a model to some columns (the hand-written anchors take the table)."""

    def __init__(self, model, columns):
        self.model, self.columns = model, list(columns)

    def fit(self, X, y):
        self.model.fit(X[self.columns], y)
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(X[self.columns])


def radhe_default(tabular: bool, families=None, cache=None):
    import radhe

    kwargs = {"random_state": 0}
    if tabular:
        kwargs["radiomics"] = None
    if families is not None:
        kwargs["families"] = families
    if cache is not None:
        kwargs["memory"] = str(cache)
    return radhe.make_pipeline(**kwargs)


def radhe_grid(tabular: bool, families=None, cache=None):
    from sklearn.model_selection import GridSearchCV

    import radhe

    pipe = radhe_default(tabular, families, cache)
    return GridSearchCV(pipe, radhe.param_grid(pipe), scoring="roc_auc",
                        cv=radhe.model_selection.PatientStratifiedKFold(3, random_state=0))


# ---------------------------------------------------------------------------------------------
# evaluation

def _fit_fold(make, X, y, train, test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make().fit(X.iloc[train], y[train])
        return np.asarray(model.predict_proba(X.iloc[test]))[:, 1]


def cross_validate(models: dict, X: pd.DataFrame, y: np.ndarray, *, splits: int, repeats: int, n_jobs: int):
    """Out-of-fold probabilities of every model on the same folds: {model: (repeats, n) array}."""
    from joblib import Parallel, delayed
    from sklearn.model_selection import RepeatedStratifiedKFold

    folds = list(RepeatedStratifiedKFold(n_splits=splits, n_repeats=repeats, random_state=0).split(X, y))
    out, seconds = {}, {}
    for name, make in models.items():
        t0 = time.perf_counter()
        probs = Parallel(n_jobs=n_jobs)(delayed(_fit_fold)(make, X, y, tr, te) for tr, te in folds)
        seconds[name] = time.perf_counter() - t0
        oof = np.full((repeats, len(y)), np.nan)
        for k, ((_, test), p) in enumerate(zip(folds, probs, strict=True)):
            oof[k // splits, test] = p
        out[name] = oof
    return folds, out, seconds


def summarise(y, folds, oof: dict, splits: int, seconds: dict) -> pd.DataFrame:
    from sklearn.metrics import roc_auc_score

    from radhe.evaluation.metrics import calibration_intercept_slope

    rows = []
    for name, probs in oof.items():
        aucs = [roc_auc_score(y[test], probs[k // splits, test]) for k, (_, test) in enumerate(folds)]
        cal = [calibration_intercept_slope(y, probs[r]) for r in range(probs.shape[0])]
        # NaN where a repeat's risks separate the classes (no finite slope): the mean of the others
        slopes = np.array([c["slope"] for c in cal], dtype=float)
        rows.append({
            "model": name, "auc": float(np.mean(aucs)), "auc_sd": float(np.std(aucs, ddof=1)),
            "cal_intercept": float(np.mean([c["intercept"] for c in cal])),
            "cal_slope": float(np.nanmean(slopes)) if np.isfinite(slopes).any() else None,
            "repeats_without_slope": int(np.sum(~np.isfinite(slopes))),
            "seconds": seconds[name],
        })
    return pd.DataFrame(rows).set_index("model")


def _slope(row) -> str:
    """The mean calibration slope as printed, with the repeats that had none (risks separating the classes)."""
    slope = row["cal_slope"]
    missing = int(row.get("repeats_without_slope", 0) or 0)
    text = "n/a" if slope is None or not np.isfinite(slope) else f"{slope:.2f}"
    return text + (f" ({missing} repeat(s) without one)" if missing else "")


def run_dataset(name: str, args, workdir: Path) -> tuple[pd.DataFrame, dict]:
    extra: dict = {}
    if name == "cohort":
        X, y, oracle = load_cohort(args.cohort_n, workdir / "cohort")
        from sklearn.metrics import roc_auc_score

        from radhe.baselines import BATScore, volume_logistic
        from radhe.datasets._clinical import CLINICAL_COLUMNS

        extra["oracle_auc"] = float(roc_auc_score(y, oracle))
        cache = workdir / "cache"
        clinical = [c for c in list(CLINICAL_COLUMNS) + ["location", "baseline_volume_ml"] if c in X.columns]
        markers = ["hypodensity", "blend_sign", "irregular_margin", "fluid_level", "intraventricular_extension",
                   "oedema_rim"]
        everything = clinical + [m for m in markers if m in X.columns]
        models = {"radhe default": lambda: radhe_default(False, cache=cache)}
        if args.grid:
            models["radhe grid"] = lambda: radhe_grid(False, cache=cache)
        models.update({
            "L2 logistic C=0.1, all": lambda: _Columns(hand_logistic(X, everything, tuned=False), everything),
            "L2 logistic CV-C, all": lambda: _Columns(hand_logistic(X, everything, tuned=True), everything),
            "L2 logistic C=0.1, clinical": lambda: _Columns(hand_logistic(X, clinical, tuned=False), clinical),
            "L2 logistic CV-C, clinical": lambda: _Columns(hand_logistic(X, clinical, tuned=True), clinical),
            "volume-only logistic": lambda: volume_logistic(),
            "BAT score (logistic)": lambda: BATScore(logistic=True),
        })
        # the radiomics cache fills once, outside the timed folds
        radhe_default(False, cache=cache).named_steps["features"].fit_transform(X, y)
    else:
        X, y, families, clinical = load_table(name)
        features = [c for c in X.columns if c not in ("case_id", "patient_id")]
        models = {"radhe default": lambda: radhe_default(True)}
        if families is not None:
            models["radhe + families"] = lambda: radhe_default(True, families)
        if args.grid:
            models["radhe grid"] = lambda: radhe_grid(True, families)
        models["L2 logistic C=0.1, all"] = lambda: _Columns(hand_logistic(X, features, tuned=False), features)
        models["L2 logistic CV-C, all"] = lambda: _Columns(hand_logistic(X, features, tuned=True), features)
        if clinical is not None and len(clinical) < len(features):
            models["L2 logistic C=0.1, clinical"] = lambda: _Columns(hand_logistic(X, clinical, tuned=False), clinical)
            models["L2 logistic CV-C, clinical"] = lambda: _Columns(hand_logistic(X, clinical, tuned=True), clinical)
    extra.update({"n": int(len(y)), "events": int(y.sum())})
    folds, oof, seconds = cross_validate(models, X, y, splits=args.splits, repeats=args.repeats, n_jobs=args.jobs)
    return summarise(y, folds, oof, args.splits, seconds), extra


def _subsample_draw(name: str, n: int, draw: int) -> dict:
    """One draw of ``--subsample``: the default and the C = 0.1 anchor trained on ``n`` random rows of a real
    table (at least 8 of each class), their test AUC on the other rows."""
    from sklearn.metrics import roc_auc_score

    X, y, _, _ = load_table(name)
    features = [c for c in X.columns if c not in ("case_id", "patient_id")]
    rng = np.random.default_rng(1000 + draw)
    while True:
        order = rng.permutation(len(y))
        train, test = order[:n], order[n:]
        if 8 <= y[train].sum() <= n - 8:
            break
    models = {"radhe default": radhe_default(True),
              "L2 logistic C=0.1, all": _Columns(hand_logistic(X, features, tuned=False), features)}
    out = {}
    for model_name, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X.iloc[train], y[train])
            out[model_name] = float(roc_auc_score(y[test], np.asarray(model.predict_proba(X.iloc[test]))[:, 1]))
    return out


def run_subsamples(args) -> dict:
    """``--subsample N``: small cohorts drawn from the real tables (the table above starts at 198 rows)."""
    from joblib import Parallel, delayed

    results = {}
    for name in [d for d in args.datasets.split(",") if d != "cohort"]:
        for n in (int(v) for v in args.subsample.split(",")):
            draws = Parallel(n_jobs=args.jobs)(delayed(_subsample_draw)(name, n, k) for k in range(args.draws))
            means = {m: float(np.mean([d[m] for d in draws])) for m in draws[0]}
            results[f"{name}, n={n}"] = {"draws": draws, "mean_auc": means}
            print(f"{name}: {n} training rows, {args.draws} draws: radhe default AUC {means['radhe default']:.3f}, "
                  f"L2 logistic C=0.1 {means['L2 logistic C=0.1, all']:.3f} "
                  f"({means['radhe default'] - means['L2 logistic C=0.1, all']:+.3f})", flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(REAL_TABLES + ("cohort",)))
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grid", action="store_true", help="also radhe's small grid, nested (slow)")
    parser.add_argument("--cohort-n", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="parallel folds (joblib)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--subsample", default=None,
                        help="instead: train on this many random rows of each real table (comma-separated sizes), "
                             "test on the rest, --draws times")
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args(argv)
    if args.subsample:
        sub = run_subsamples(args)
        if args.json:
            Path(args.json).write_text(json.dumps(sub, indent=2))
        return 0

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            t0 = time.perf_counter()
            table, extra = run_dataset(name, args, Path(tmp))
            anchors = table.loc[[m for m in table.index if not m.startswith("radhe")]]
            best = anchors["auc"].idxmax()
            table["vs best anchor"] = table["auc"] - anchors.loc[best, "auc"]
            results[name] = {"table": table, "best_anchor": best, **extra}
            head = f"\n{name}: n={extra['n']}, events={extra['events']}"
            if "oracle_auc" in extra:
                head += f", oracle AUC {extra['oracle_auc']:.3f}"
            print(f"{head} ({time.perf_counter() - t0:.0f} s; {args.splits}x{args.repeats} folds)")
            for model, row in table.iterrows():
                radhe_row = model.startswith("radhe")
                delta = f"{row['vs best anchor']:+.3f}" if radhe_row else ("best anchor" if model == best else "")
                print(f"  {model:<30} AUC {row['auc']:.3f} ± {row['auc_sd']:.3f}  {delta:<12} "
                      f"calibration intercept {row['cal_intercept']:+.2f} slope {_slope(row)}  "
                      f"({row['seconds']:.0f} s)", flush=True)

    real = [n for n in results if n != "cohort"]
    if real:
        deltas = [results[n]["table"].loc["radhe default", "vs best anchor"] for n in real]
        print(f"\nradhe default vs the best anchor of each real table: mean {np.mean(deltas):+.3f}, "
              f"worst {np.min(deltas):+.3f} ({len(real)} tables)")
    if "cohort" in results:
        row = results["cohort"]["table"].loc["radhe default"]
        oracle = results["cohort"]["oracle_auc"]
        volume = results["cohort"]["table"].loc["volume-only logistic", "auc"]
        print(f"cohort: radhe default {row['auc']:.3f} = oracle {row['auc'] - oracle:+.3f}, "
              f"volume-only logistic {row['auc'] - volume:+.3f}")
    if args.json:
        def records(table):  # valid JSON: an undefined value (a slope no repeat had) is null, not NaN
            return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
                    for row in table.reset_index().to_dict("records")]

        payload = {n: {**{k: v for k, v in r.items() if k != "table"}, "table": records(r["table"])}
                   for n, r in results.items()}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=float, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
