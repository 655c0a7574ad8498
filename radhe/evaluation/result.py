"""Summaries of out-of-fold predictions, the model-comparison table and the one-call :func:`evaluate`."""

from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radhe._checks import check_binary, check_score
from radhe._format import format_delong_p, format_estimate, format_interval
from radhe._log import get_logger
from radhe.errors import ConfigurationError, InputError
from radhe.evaluation.cv import CVPredictions, cross_validate_predictions, make_cv, resolve_groups
from radhe.evaluation.metrics import (
    AUCResult,
    average_precision,
    bootstrap_metrics,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
    confusion_matrix_at,
    delong_test,
    pr_curve,
    roc_auc_ci,
    roc_curve_band,
    select_threshold,
)

log = get_logger(__name__)

__all__ = ["ModelReport", "Report", "EvaluationResult", "summarize", "compare_models", "format_comparison",
           "evaluate", "to_jsonable"]


@dataclass
class ModelReport:
    """Everything measured for one model's (out-of-fold) predictions.

    Attributes
    ----------
    name : str
    y, score, y_pred : ndarray
        Labels, scores and thresholded predictions (per-fold thresholds for CV predictions).
    score_kind : {"probability", "decision"}
        Brier score and calibration are computed for probabilities only.
    auc : AUCResult
        With the DeLong 95 % CI.
    metrics : pandas.DataFrame
        Threshold metrics (sensitivity, specificity, PPV, NPV, F1, accuracy, Youden, LR+, LR−)
        with CIs (exact binomial for the proportions, the log method for the likelihood ratios, bootstrap
        for F1 and Youden: :func:`~radhe.evaluation.metrics.bootstrap_metrics`); columns ``estimate``,
        ``ci_low``, ``ci_high``.
    confusion : pandas.DataFrame
        2×2 confusion matrix of ``y_pred``.
    roc : pandas.DataFrame
        ROC curve on an FPR grid with a bootstrap band (``fpr``, ``tpr``, ``tpr_low``, ``tpr_high``).
    pr : pandas.DataFrame
        Precision-recall curve; ``average_precision`` its summary.
    brier, calibration, calibration_fit
        Brier score, reliability table and calibration intercept/slope (None for decision scores).
    threshold_method : str
    thresholds : list of float
        The decision threshold of each fold.
    predictions : CVPredictions or None
    """

    name: str
    y: np.ndarray
    score: np.ndarray
    y_pred: np.ndarray
    score_kind: str
    auc: AUCResult
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    roc: pd.DataFrame
    pr: pd.DataFrame
    average_precision: float
    brier: float | None
    calibration: pd.DataFrame | None
    calibration_fit: dict | None
    threshold_method: str
    thresholds: list
    predictions: CVPredictions | None = None

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-case arrays)."""
        cm = self.confusion.to_numpy()
        return {
            "name": self.name,
            "n": self.n,
            "n_positive": self.n_positive,
            "score_kind": self.score_kind,
            "auc": self.auc.to_dict(),
            "average_precision": self.average_precision,
            "brier": self.brier,
            "calibration": None if self.calibration_fit is None else {
                k: _json_float(v) for k, v in self.calibration_fit.items()},
            "threshold_method": self.threshold_method,
            "thresholds": [float(t) for t in self.thresholds],
            "confusion_matrix": {"tn": int(cm[0, 0]), "fp": int(cm[0, 1]), "fn": int(cm[1, 0]), "tp": int(cm[1, 1])},
            "metrics": {
                name: {k: _json_float(v) for k, v in row.items()} for name, row in self.metrics.iterrows()
            },
        }


#: Alias: the per-model summary object.
Report = ModelReport


def _json_float(v):
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def summarize(
    predictions=None,
    *,
    y=None,
    score=None,
    y_pred=None,
    threshold: float | None = None,
    name: str | None = None,
    score_kind: str | None = None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    calibration_bins: int = 10,
    roc_band: bool = True,
    random_state=0,
) -> ModelReport:
    """Compute every metric for one model.

    Either pass :class:`CVPredictions` (thresholded per fold already), or ``y`` and ``score`` with
    ``y_pred`` or ``threshold``; with neither, the Youden threshold of these same data is used
    (an *apparent*, optimistic threshold; prefer CV predictions). ``roc_band=False`` skips the
    bootstrap band of the ROC curve (only the main model's is drawn).
    """
    if predictions is not None:
        y, score, y_pred = predictions.y, predictions.score, predictions.y_pred
        score_kind = score_kind or predictions.score_kind
        name = name or predictions.name
        method = predictions.threshold_method
        thresholds = predictions.frame.groupby("fold")["threshold"].first().tolist()
    else:
        if y is None or score is None:
            raise ValueError("give CVPredictions, or y and score")
        y = check_binary(y)
        score = check_score(score, y.size)
        if y_pred is not None:
            y_pred = check_binary(y_pred, "y_pred")
            method, thresholds = "given predictions", []
        else:
            if threshold is None:
                threshold = select_threshold(y, score)
                method = "youden (apparent: chosen on these data)"
            else:
                method = f"fixed={threshold:g}"
            thresholds = [float(threshold)]
            y_pred = (score >= threshold).astype(int)
        if score_kind is None:
            score_kind = "probability" if (score.min() >= 0 and score.max() <= 1) else "decision"
    name = name or "model"
    is_prob = score_kind == "probability"
    auc = roc_auc_ci(y, score, level=level)
    return ModelReport(
        name=name,
        y=np.asarray(y),
        score=np.asarray(score),
        y_pred=np.asarray(y_pred),
        score_kind=score_kind,
        auc=auc,
        metrics=bootstrap_metrics(y, y_pred=y_pred, n_bootstrap=n_bootstrap, level=level, random_state=random_state),
        confusion=confusion_matrix_at(y, y_pred=y_pred),
        roc=roc_curve_band(y, score, n_bootstrap=n_bootstrap if roc_band else 0, level=level, random_state=random_state),
        pr=pr_curve(y, score),
        average_precision=average_precision(y, score),
        brier=brier_score(y, score) if is_prob else None,
        calibration=calibration_curve(y, score, n_bins=calibration_bins) if is_prob else None,
        calibration_fit=_named_calibration_fit(y, score, name) if is_prob else None,
        threshold_method=method,
        thresholds=[float(t) for t in thresholds],
        predictions=predictions,
    )


def _named_calibration_fit(y, score, name) -> dict:
    """:func:`calibration_intercept_slope`, its warning (an undefined slope) naming the model."""
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        fit = calibration_intercept_slope(y, score)
    for w in caught:
        message = f"{name}: {w.message}" if issubclass(w.category, UndefinedMetricWarning) else w.message
        warnings.warn(message, w.category, stacklevel=3)
    return fit


def compare_models(
    models: Mapping,
    *,
    reference: str | None = None,
    y=None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state=0,
) -> pd.DataFrame:
    """Zhong 2021's table: AUC (95 % CI), sensitivity, specificity, LR+, LR− and DeLong p vs the reference.

    Parameters
    ----------
    models : mapping of name -> ModelReport, CVPredictions or array of scores
        All on the same cases in the same order. Arrays need ``y`` and are thresholded at their
        own (apparent) Youden point.
    reference : str, optional
        The model the others are tested against (paired DeLong); default the first.

    Returns
    -------
    pandas.DataFrame
        One row per model (index: name): ``auc``, ``auc_ci_low``, ``auc_ci_high``, and for each of
        ``sensitivity``, ``specificity``, ``lr_pos``, ``lr_neg``, ``ppv``, ``npv`` the estimate with
        ``_ci_low`` / ``_ci_high``; ``delta_auc`` (model − reference), ``delong_z``, ``delong_p``
        (NaN for the reference itself). ``attrs["formatted"]`` holds a display version.
    """
    if not models:
        raise ValueError("compare_models needs at least one model")
    reports: dict[str, ModelReport] = {}
    for name, m in models.items():
        if isinstance(m, ModelReport):
            reports[name] = m
        elif isinstance(m, CVPredictions):
            reports[name] = summarize(m, name=name, n_bootstrap=n_bootstrap, level=level, random_state=random_state)
        else:
            if y is None:
                raise ValueError(f"model {name!r} is given as scores; pass y")
            reports[name] = summarize(y=y, score=m, name=name, n_bootstrap=n_bootstrap, level=level, random_state=random_state)
    ref_name = reference if reference is not None else next(iter(reports))
    if ref_name not in reports:
        raise ValueError(f"reference {ref_name!r} is not one of {list(reports)}")
    ref = reports[ref_name]
    rows = {}
    for name, r in reports.items():
        if r.y.shape != ref.y.shape or not np.array_equal(r.y, ref.y):
            raise InputError(f"model {name!r} was evaluated on different cases (labels differ from {ref_name!r})")
        row = {"auc": r.auc.auc, "auc_ci_low": r.auc.ci_low, "auc_ci_high": r.auc.ci_high}
        for metric in ("sensitivity", "specificity", "lr_pos", "lr_neg", "ppv", "npv"):
            est, lo, hi = r.metrics.loc[metric, ["estimate", "ci_low", "ci_high"]]
            row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = est, lo, hi
        if name == ref_name:
            row.update(delta_auc=0.0, delong_z=np.nan, delong_p=np.nan)
        else:
            t = delong_test(ref.y, r.score, ref.score)
            row.update(delta_auc=t.difference, delong_z=t.z, delong_p=t.p_value)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    table.attrs["reference"] = ref_name
    table.attrs["formatted"] = format_comparison(table)
    return table


def format_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Display form of :func:`compare_models`' table: "0.80 (0.70–0.90)" cells, p-values to 3 places."""
    out = pd.DataFrame(index=table.index)
    out["AUC (95% CI)"] = [format_interval(a, lo, hi, 2)
                           for a, lo, hi in table[["auc", "auc_ci_low", "auc_ci_high"]].itertuples(index=False)]
    for metric, label in (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("lr_pos", "LR+"), ("lr_neg", "LR−")):
        out[label] = [
            format_interval(a, lo, hi, 2)
            for a, lo, hi in table[[metric, f"{metric}_ci_low", f"{metric}_ci_high"]].itertuples(index=False)
        ]
    reference = table.attrs.get("reference")
    out["DeLong p"] = [format_delong_p(name, p, delta, reference) for name, p, delta
                       in zip(table.index, table["delong_p"], table["delta_auc"], strict=True)]
    return out


@dataclass
class EvaluationResult:
    """The result of :func:`evaluate`: the main model, its baselines, the comparison and SHAP.

    Attributes
    ----------
    main : ModelReport
    baselines : dict of name -> ModelReport
    comparison : pandas.DataFrame or None
        :func:`compare_models` table, main model first (reference).
    explanation : radhe.explain.OOFShap or None
        Out-of-fold SHAP values of the main model.
    metadata : dict
        Cohort size, CV description, thresholds, versions, date.
    segmentation : radhe.evaluation.segmentation.SegmentationQuality or None
        Out-of-fold quality of the predicted masks, for a pipeline with a segmenter.
    tracking : radhe.tracking.TrackedRun or None
        The MLflow run the evaluation was logged to (``evaluate(..., mlflow=...)``).
    """

    main: ModelReport
    baselines: dict = field(default_factory=dict)
    comparison: pd.DataFrame | None = None
    explanation: object | None = None
    metadata: dict = field(default_factory=dict)
    segmentation: object | None = None
    tracking: object | None = field(default=None, repr=False, compare=False)

    @property
    def predictions(self) -> pd.DataFrame:
        """Per-case out-of-fold predictions of the main model and the baselines' scores."""
        frame = self.main.predictions.frame.copy() if self.main.predictions is not None else pd.DataFrame(
            {"y": self.main.y, "score": self.main.score, "y_pred": self.main.y_pred}
        )
        for name, r in self.baselines.items():
            frame[f"score[{name}]"] = r.score
        return frame

    def to_dict(self) -> dict:
        out = {
            "metadata": to_jsonable(self.metadata),
            "main": self.main.to_dict(),
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
        }
        if self.segmentation is not None:
            out["segmentation"] = to_jsonable(self.segmentation.to_dict(), infinity_as_null=True)
        conformal = self.conformal_summary()
        if conformal is not None:
            out["conformal"] = to_jsonable(conformal, infinity_as_null=True)
        if self.comparison is not None:
            out["comparison"] = {
                name: {k: _json_float(v) for k, v in row.items()} for name, row in self.comparison.iterrows()
            }
        if self.explanation is not None:
            imp = self.explanation.importance()
            out["feature_importance"] = [
                {k: (_json_float(v) if isinstance(v, (float, np.floating, int, np.integer)) else v) for k, v in row.items()}
                for row in imp.reset_index().to_dict(orient="records")
            ]
            out["family_importance"] = {
                k: _json_float(v) for k, v in self.explanation.family_importance()["mean_abs_shap"].items()
            }
        return out

    def predictions_table(self) -> pd.DataFrame:
        """The main model's out-of-fold prediction of every case, one row per case (the manifest's order).

        Columns ``case_id``, ``patient_id``, ``fold`` (0-based), ``label`` (0/1), ``probability``
        (``score`` instead for a model without probabilities), ``threshold`` (the fold's, chosen on its
        training cases), ``predicted_class`` (``probability >= threshold``) and, when computed,
        ``conformal_set_<confidence %>`` (the case's conformal prediction set, e.g. ``{0, 1}``).
        """
        report = self.main
        if report.predictions is None:
            raise ConfigurationError("this result holds no per-case predictions (it was not cross-validated)")
        frame = report.predictions.frame
        table = pd.DataFrame(index=frame.index)
        table["case_id"] = frame["case_id"] if "case_id" in frame else [str(i) for i in frame.index]
        table["patient_id"] = frame["patient_id"].astype(str)
        table["fold"] = frame["fold"].astype(int)
        table["label"] = frame["y"].astype(int)
        table["probability" if report.score_kind == "probability" else "score"] = frame["score"].astype(float)
        table["threshold"] = frame["threshold"].astype(float)
        table["predicted_class"] = frame["y_pred"].astype(int)
        sets = report.predictions.extra.get("conformal_sets")
        if sets is not None:
            from radhe.evaluation.conformal import format_set

            confidence = report.predictions.extra["conformal_confidence"]
            table[f"conformal_set_{round(100 * confidence)}"] = [format_set(row) for row in sets]
        return table.reset_index(drop=True)

    def write_predictions(self, path) -> Path:
        """Write :meth:`predictions_table` as CSV (``predictions.csv``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.predictions_table().to_csv(path, index=False, float_format="%.6g")
        return path

    def conformal_summary(self) -> pd.DataFrame | None:
        """Out-of-fold coverage and size of the main model's conformal prediction sets (None if not computed)."""
        predictions = self.main.predictions
        if predictions is None or "conformal_sets" not in predictions.extra:
            return None
        from radhe.evaluation.conformal import conformal_summary

        return conformal_summary(predictions.y, predictions.extra["conformal_sets"],
                                 predictions.extra["conformal_confidence"])

    def write_checklist(self, path) -> Path:
        """Write the TRIPOD+AI reporting checklist of this run as Markdown (``checklist.md``)."""
        from radhe.evaluation.checklist import reporting_checklist

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reporting_checklist(self), encoding="utf-8")
        return path

    def write_json(self, path) -> Path:
        """Write :meth:`to_dict` as JSON (``metrics.json``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))
        return path

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"{self.main.name}: AUC {self.main.auc} (DeLong 95% CI), n={self.main.n}, "
            f"{self.main.n_positive} with expansion"
        ]
        m = {k: format_estimate(v, 2) for k, v in self.main.metrics["estimate"].items()}
        lines.append(
            f"  sensitivity {m['sensitivity']}, specificity {m['specificity']}, "
            f"PPV {m['ppv']}, NPV {m['npv']} ({self.main.threshold_method})"
        )
        if self.comparison is not None:
            lines.append(self.comparison.attrs["formatted"].to_string())
        return "\n".join(lines)


def to_jsonable(obj, *, infinity_as_null: bool = False):
    """Convert nested dicts/lists/DataFrames of numpy scalars to JSON values.

    NaN becomes null; ±inf becomes "inf"/"-inf", or null with ``infinity_as_null``; a DataFrame
    becomes ``{row label: {column: value}}``; other objects become their ``str``.
    """
    def convert(value):
        return to_jsonable(value, infinity_as_null=infinity_as_null)

    if isinstance(obj, pd.DataFrame):
        return {str(k): convert(v) for k, v in obj.to_dict(orient="index").items()}
    if isinstance(obj, dict):
        return {str(k): convert(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [convert(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = _json_float(obj)
        return None if infinity_as_null and isinstance(value, str) else value
    if obj is None or isinstance(obj, (str, int)):
        return obj
    return str(obj)


def evaluate(
    pipeline,
    X,
    y=None,
    *,
    cv=5,
    groups=None,
    baselines=True,
    explain: bool = True,
    threshold="youden",
    target_sensitivity: float = 0.9,
    threshold_cv: int | None = 3,
    conformal: float | None = 0.9,
    n_bootstrap: int = 1000,
    label_column: str = "he",
    name: str = "model",
    n_jobs: int | None = 1,
    random_state=0,
    explain_kwargs: dict | None = None,
    mlflow=None,
) -> EvaluationResult:
    """Cross-validate a pipeline, its baselines on the same folds, and explain it — in one call.

    Parameters
    ----------
    pipeline : estimator
        The (unfitted) model, e.g. from :func:`radhe.make_pipeline`.
    X : pandas.DataFrame
        The manifest.
    y : array-like of 0/1, optional
        Labels; default ``X[label_column]`` (``"he"``).
    cv : int or splitter
        Folds (default 5, patient-grouped and stratified) — see :func:`cross_validate_predictions`.
    groups : array-like or column name, optional
        CV groups; default X's ``patient_id``.
    baselines : bool or mapping of name -> estimator
        ``True``: :func:`radhe.baselines.default_baselines` for X's columns; ``False``/``None``: none.
    explain : bool
        Compute out-of-fold SHAP values of the main model (:func:`radhe.explain.oof_shap_values`).
    threshold, target_sensitivity, threshold_cv
        Threshold selection inside each training fold (see :func:`cross_validate_predictions`).
    conformal : float or None
        Confidence of the per-patient conformal prediction sets of the main model (default 0.9),
        calibrated inside each training fold; None: none. Needs ``threshold_cv`` (the inner CV's
        out-of-fold scores calibrate them) and a model with probabilities.
    n_bootstrap : int
        Bootstrap replicates for the CIs of threshold metrics and the ROC band.
    n_jobs : int
        Folds fitted in parallel.
    explain_kwargs : dict
        Passed to :func:`radhe.explain.oof_shap_values` (e.g. ``max_background``, ``n_permutations``).
    mlflow : None, bool, str or mapping
        Track the evaluation with MLflow (:mod:`radhe.tracking`; ``pip install "radhe[mlflow]"``):
        ``True`` mlflow's current tracking URI and active run (else a new run), a string a tracking
        URI, a mapping ``tracking_uri`` / ``experiment`` / ``run_name`` / ``tags``. Parameters,
        metrics and ``metrics.json`` / ``predictions.csv`` / ``checklist.md`` are logged; the run is
        ``result.tracking`` and :func:`radhe.report.write_html` adds the report to it. The store is
        opened before anything is fitted (:class:`~radhe.errors.ConfigurationError` when it cannot be).

    Returns
    -------
    EvaluationResult
    """
    if not isinstance(X, pd.DataFrame):
        raise InputError(f"evaluate needs the manifest as a pandas DataFrame; got {type(X).__name__}")
    from radhe.evaluation.cv import check_threshold_settings

    check_threshold_settings(threshold, target_sensitivity, threshold_cv, conformal)  # before anything is fitted
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, numbers.Integral) or n_bootstrap < 0:
        raise ConfigurationError(f"n_bootstrap must be a whole number >= 0 (0: no bootstrap intervals); got "
                                 f"{n_bootstrap!r}")
    labels_from_column = y is None
    if y is None:
        if label_column not in X.columns:
            raise InputError(f"no labels: pass y or give X a {label_column!r} column")
        y = X[label_column]
    from radhe._checks import check_labels

    y = check_labels(y, X, where="evaluate", aligned=True)  # names the cases; before anything is fitted
    from radhe import _progress, tracking

    tracker = tracking.prepare(mlflow)  # before any fit: a missing mlflow or an unusable store stops here
    began = time.perf_counter()
    g = resolve_groups(X, groups)
    splitter = make_cv(cv, random_state=random_state)
    from radhe.evaluation.cv import _split

    splits = _split(splitter, X, y, g)
    log.log(_progress.level(), "%s: evaluating on %d cases (%d with expansion), %d folds", name, y.size, int(y.sum()),
            len(splits))
    common = dict(
        groups=g,
        threshold=threshold,
        target_sensitivity=target_sensitivity,
        threshold_cv=threshold_cv,
        n_jobs=n_jobs,
        random_state=random_state,
        splits=splits,
    )
    # the fold models are kept: the report describes what they ran, and SHAP explains them
    main_pred = cross_validate_predictions(pipeline, X, y, return_estimators=True, name=name,
                                           conformal=conformal, **common)
    with _progress.timed(log, "%s: metrics with %d bootstrap replicates", name, n_bootstrap):
        main = summarize(main_pred, name=name, n_bootstrap=n_bootstrap, random_state=random_state)

    if baselines is True:
        from radhe.baselines import default_baselines

        baselines = default_baselines(X)
    base_reports: dict[str, ModelReport] = {}
    for bname, est in dict(baselines or {}).items():
        with _progress.timed(log, "baseline '%s' cross-validated and summarised", bname), _progress.inner():
            pred = cross_validate_predictions(est, X, y, name=bname, **{**common, "n_jobs": 1})
            base_reports[bname] = summarize(pred, name=bname, n_bootstrap=n_bootstrap, roc_band=False,
                                            random_state=random_state)
    comparison = None
    if base_reports:
        comparison = compare_models({name: main, **base_reports}, reference=name)

    explanation = None
    if explain:
        from radhe.explain import oof_shap_values

        with _progress.timed(log, "%s: out-of-fold SHAP values of the %d fold models", name, len(splits),
                             start="%s: computing out-of-fold SHAP values of the %d fold models"):
            explanation = oof_shap_values(main_pred, X, **dict(explain_kwargs or {}))
        explanation.meta["family_contributions"] = _family_contributions(main_pred, X)

    import radhe

    metadata = {
        "model": name,
        "pipeline": _describe(pipeline),
        "features": features_that_ran(main_pred.estimators),
        "case_images": _case_images(main_pred, X),
        "n_cases": int(y.size),
        "n_positive": int(y.sum()),
        "n_patients": int(pd.unique(g).size),
        "cv": f"{len(splits)}-fold {type(splitter).__name__}",
        "threshold": main_pred.threshold_method,
        "n_bootstrap": int(n_bootstrap),
        "random_state": random_state if isinstance(random_state, (int, type(None))) else str(random_state),
        "radhe_version": radhe.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    from radhe.evaluation.checklist import run_facts

    metadata.update(run_facts(pipeline, X, label_column=label_column if labels_from_column else None))
    from radhe.evaluation.segmentation import segmentation_quality

    result = EvaluationResult(main=main, baselines=base_reports, comparison=comparison, explanation=explanation,
                              metadata=metadata, segmentation=segmentation_quality(main_pred, X))
    seconds = time.perf_counter() - began
    log.log(_progress.level(), "%s: evaluated in %.1f s: AUC %s", name, seconds, main.auc)
    if tracker is not None:
        tracking.log_evaluation(tracker, result, pipeline=pipeline, seconds=seconds, settings={
            "folds": len(splits), "threshold": threshold, "target_sensitivity": target_sensitivity,
            "threshold_cv": threshold_cv, "conformal": conformal, "n_bootstrap": n_bootstrap, "explain": bool(explain),
            "random_state": random_state, "label_column": label_column if labels_from_column else "(y given)"})
    return result


def _family_contributions(predictions, X):
    """Per family of a stacked model: out-of-fold mean |weight × score| and the meta weight per fold
    (None for a model that is not family-stacked)."""
    from radhe.explain import oof_family_contributions, unwrap_classifier
    from radhe.stacking import FamilyStackingClassifier

    models = [unwrap_classifier(est.steps[-1][1] if hasattr(est, "steps") else est) for est in predictions.estimators]
    if not models or not all(isinstance(m, FamilyStackingClassifier) for m in models):
        return None
    contributions = oof_family_contributions(predictions, X)
    families = [c for c in contributions.columns if c not in ("intercept", "fold")]
    weights = pd.DataFrame([m.weights_.reindex(families).fillna(0.0) for m in models])
    table = pd.DataFrame({
        "mean_abs_contribution": contributions[families].abs().mean(axis=0),
        "sd_contribution": contributions[families].std(axis=0),
        "weight_mean": weights.mean(axis=0),
        "weight_sd": weights.std(axis=0, ddof=1) if len(models) > 1 else 0.0,
        "n_folds_used": (weights > 0).sum(axis=0).astype(int),
    })
    table.index.name = "family"
    return table.sort_values("mean_abs_contribution", ascending=False)


def _case_images(predictions, X) -> dict:
    """``{case_id: CT path}`` of the cases whose predicted masks were recorded (for the report's overlays)."""
    recorded = predictions.extra.get("segmentation")
    if recorded is None or "image" not in X.columns or "case_id" not in X.columns:
        return {}
    images = dict(zip(X["case_id"].astype(str), X["image"].astype(str), strict=True))
    return {str(c): images[str(c)] for c in recorded["case_id"] if str(c) in images}


def features_that_ran(fold_models) -> str | None:
    """What the fitted fold models computed and used, in words (e.g. for a report's header).

    ``"radiomics 14, clinical 9 (23 features); 20 enter the classifier (median over 5 folds)"``: the
    feature step's columns per family (of the first fold's model) and the number left after the
    pipeline's cleaning and selection. None when the models have no ``features`` step.
    """
    import numpy as np

    from radhe.explain import feature_family

    counts, used = None, []
    for model in fold_models or []:
        steps = dict(getattr(model, "steps", []))
        features = steps.get("features")
        if features is None or not hasattr(features, "get_feature_names_out"):
            return None
        names = [str(n) for n in features.get_feature_names_out()]
        if counts is None:
            counts = pd.Series([feature_family(n) for n in names]).value_counts(sort=False)
        try:
            used.append(len(model[:-1].get_feature_names_out()))
        except Exception:  # noqa: BLE001 - a step without feature names (e.g. a sampler last)
            pass
    if counts is None:
        return None
    text = ", ".join(f"{family} {n}" for family, n in counts.items()) + f" ({int(counts.sum())} features)"
    if used:
        text += f"; {int(np.median(used))} enter the classifier (median over {len(used)} folds)"
    return text


def _describe(pipeline) -> str:
    steps = getattr(pipeline, "steps", None)
    if steps:
        return " → ".join(f"{n}: {type(s).__name__ if s not in (None, 'passthrough') else 'passthrough'}" for n, s in steps)
    return type(pipeline).__name__
