"""Metrics for a binary risk score: AUC with DeLong CI, paired DeLong test, threshold metrics with
bootstrap CIs, threshold selection, precision-recall, Brier score and calibration.

Conventions
-----------
* ``y`` holds 0/1 labels (1 = haematoma expansion); ``score`` is any score that is larger for
  the positive class (a probability, a decision value, a point score).
* A case is predicted positive when ``score >= threshold``.
* Quantities that are undefined for the data (e.g. PPV when nothing is predicted positive) are NaN,
  never an exception; a likelihood ratio with a zero denominator is ``inf``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from radhe._checks import check_binary, check_both_classes, check_probability, check_score
from radhe.errors import InputError

__all__ = [
    "AUCResult",
    "DeLongResult",
    "roc_auc_ci",
    "delong_test",
    "delong_covariance",
    "confusion_matrix_at",
    "metrics_from_counts",
    "threshold_metrics",
    "bootstrap_metrics",
    "select_threshold",
    "roc_curve_band",
    "pr_curve",
    "average_precision",
    "brier_score",
    "calibration_curve",
    "calibration_intercept_slope",
    "THRESHOLD_METRICS",
]

#: Names of the metrics returned by :func:`threshold_metrics` / :func:`bootstrap_metrics`, in order.
THRESHOLD_METRICS = (
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "accuracy",
    "youden",
    "lr_pos",
    "lr_neg",
)


# ------------------------------------------------------------------------------------------- DeLong
@dataclass(frozen=True)
class AUCResult:
    """Area under the ROC curve with its confidence interval."""

    auc: float
    ci_low: float
    ci_high: float
    se: float
    method: str = "delong"
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        from radhe._format import format_interval

        return format_interval(self.auc, self.ci_low, self.ci_high)


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong test of two correlated ROC curves (same cases, two scores)."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def delong_covariance(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of one or more scores and their DeLong covariance matrix.

    Implements the fast midrank algorithm of Sun & Xu (IEEE Signal Process Lett 2014), which is
    exactly DeLong, DeLong & Clarke-Pearson (Biometrics 1988) in O(k n log n).

    Parameters
    ----------
    y : array-like of shape (n,)
        0/1 labels, both classes present.
    scores : array-like of shape (n,) or (k, n)
        One score per row.

    Returns
    -------
    aucs : ndarray of shape (k,)
    covariance : ndarray of shape (k, k)
    """
    y = check_binary(y)
    check_both_classes(y, "DeLong AUC variance")
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != y.size:
        raise InputError(f"scores must have {y.size} columns (one per label); got shape {s.shape}")
    if not np.isfinite(s).all():
        raise InputError("scores hold non-finite values")
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)  # midranks within positives
    ty = stats.rankdata(neg, axis=1)  # within negatives
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # within all
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n  # placement of each positive among the negatives
    v01 = 1.0 - (tz[:, m:] - ty) / m  # placement of each negative among the positives
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((s.shape[0], s.shape[0]))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((s.shape[0], s.shape[0]))
    return aucs, s10 / m + s01 / n


def roc_auc_ci(
    y,
    score,
    *,
    level: float = 0.95,
    method: str = "delong",
    n_bootstrap: int = 2000,
    random_state=None,
) -> AUCResult:
    """ROC AUC with a confidence interval.

    Parameters
    ----------
    y, score : array-like of shape (n,)
        0/1 labels and scores (higher = more likely positive).
    level : float
        Confidence level of the interval (default 0.95).
    method : {"delong", "bootstrap"}
        ``"delong"``: AUC ± z·SE with the DeLong SE, clipped to [0, 1] (as R's pROC does).
        ``"bootstrap"``: percentile interval of a class-stratified bootstrap; ``se`` is the
        bootstrap SD.
    n_bootstrap, random_state
        Bootstrap settings (``method="bootstrap"`` only).
    """
    y = check_binary(y)
    score = check_score(score, y.size)
    check_both_classes(y, "ROC AUC")
    z = stats.norm.ppf(0.5 + level / 2.0)
    if method == "delong":
        aucs, cov = delong_covariance(y, score)
        auc, se = float(aucs[0]), float(np.sqrt(max(cov[0, 0], 0.0)))
        return AUCResult(auc, max(0.0, auc - z * se), min(1.0, auc + z * se), se, "delong", level)
    if method == "bootstrap":
        auc = float(_auc_rank(y, score[None, :])[0])
        boot = _bootstrap_aucs(y, score, n_bootstrap, random_state)
        lo, hi = np.quantile(boot, [0.5 - level / 2.0, 0.5 + level / 2.0])
        return AUCResult(auc, float(lo), float(hi), float(boot.std(ddof=1)), "bootstrap", level)
    raise ValueError(f"method must be 'delong' or 'bootstrap'; got {method!r}")


def delong_test(y, score_a, score_b) -> DeLongResult:
    """Two-sided paired DeLong test of H0: AUC(score_a) == AUC(score_b) on the same cases.

    Returns AUCs, their difference (a − b), its SE, the z statistic and the p-value. When the two
    scores rank the cases identically the difference has zero variance: z = 0 and p = 1. When its
    variance is zero but the AUCs differ (e.g. a constant score, AUC 0.5, against one that separates
    the classes, AUC 1) the test is undefined: z and p are NaN.
    """
    y = check_binary(y)
    a = check_score(score_a, y.size, "score_a")
    b = check_score(score_b, y.size, "score_b")
    aucs, cov = delong_covariance(y, np.vstack([a, b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se <= 1e-12:
        z, p = (0.0, 1.0) if abs(diff) <= 1e-12 else (float("nan"), float("nan"))
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, float(z), p)


def _auc_rank(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each row of ``scores`` (Mann-Whitney via midranks)."""
    m = int(y.sum())
    n = y.size - m
    ranks = stats.rankdata(scores, axis=-1)
    return (ranks[..., y == 1].sum(axis=-1) - m * (m + 1) / 2.0) / (m * n)


def _stratified_indices(y: np.ndarray, n_bootstrap: int, rng) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    ip = pos[rng.integers(0, pos.size, size=(n_bootstrap, pos.size))] if pos.size else np.empty((n_bootstrap, 0), int)
    ineg = neg[rng.integers(0, neg.size, size=(n_bootstrap, neg.size))] if neg.size else np.empty((n_bootstrap, 0), int)
    return ip, ineg


def _bootstrap_aucs(y, score, n_bootstrap, random_state) -> np.ndarray:
    rng = np.random.default_rng(random_state)
    ip, ineg = _stratified_indices(y, n_bootstrap, rng)
    idx = np.concatenate([ip, ineg], axis=1)
    yb = np.concatenate([np.ones(ip.shape[1], int), np.zeros(ineg.shape[1], int)])
    out = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, 500):  # bounded memory
        out[start : start + 500] = _auc_rank(yb, score[idx[start : start + 500]])
    return out


# -------------------------------------------------------------------------------- threshold metrics
def confusion_matrix_at(y, score=None, threshold: float | None = None, *, y_pred=None) -> pd.DataFrame:
    """2×2 confusion matrix (rows: true 0/1, columns: predicted 0/1).

    Give either ``score`` and ``threshold`` (positive when ``score >= threshold``) or ``y_pred``.
    """
    from sklearn.metrics import confusion_matrix

    y = check_binary(y)
    pred = _predictions(y, score, threshold, y_pred)
    counts = confusion_matrix(y, pred, labels=[0, 1])  # [[tn, fp], [fn, tp]]
    return pd.DataFrame(
        counts.astype(int),
        index=pd.Index(["true 0", "true 1"], name="actual"),
        columns=pd.Index(["pred 0", "pred 1"], name="predicted"),
    )


def _predictions(y, score, threshold, y_pred) -> np.ndarray:
    if y_pred is not None:
        return check_binary(y_pred, "y_pred")
    if score is None or threshold is None:
        raise ValueError("give either y_pred, or score and threshold")
    return (check_score(score, y.size) >= threshold).astype(int)


def metrics_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (scalars or arrays, vectorised).

    Returns sensitivity, specificity, PPV, NPV, F1, accuracy, Youden index (sens + spec − 1) and
    the positive / negative likelihood ratios LR+ = sens / (1 − spec), LR− = (1 − sens) / spec.

    Where they are defined, the likelihood ratios equal
    :func:`sklearn.metrics.class_likelihood_ratios` (a test checks it). They are computed here
    because this function works on arrays of counts — the thousands of bootstrap replicates of
    :func:`bootstrap_metrics` in one vectorised step, which scikit-learn's per-prediction function
    cannot do — and because radhe reports LR+ = inf when specificity is 1 and sensitivity is not 0
    (a test with no false positive), where scikit-learn returns NaN with a warning.
    """
    tp, fp, tn, fn = (np.asarray(v, dtype=float) for v in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = tp / (tp + fn)
        spec = tn / (tn + fp)
        ppv = tp / (tp + fp)
        npv = tn / (tn + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
        acc = (tp + tn) / (tp + tn + fp + fn)
        lr_pos = sens / (1 - spec)
        lr_neg = (1 - sens) / spec
    # 0/0 in a likelihood ratio is undefined; x/0 with x > 0 is inf (numpy already gives that).
    return {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": npv,
        "f1": f1,
        "accuracy": acc,
        "youden": sens + spec - 1,
        "lr_pos": lr_pos,
        "lr_neg": lr_neg,
    }


def threshold_metrics(y, score=None, threshold: float | None = None, *, y_pred=None) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV, F1, accuracy, Youden index, LR+ and LR− (point estimates).

    Give ``score`` and ``threshold`` (positive when ``score >= threshold``) or binary ``y_pred``.
    """
    cm = confusion_matrix_at(y, score, threshold, y_pred=y_pred).to_numpy()
    out = metrics_from_counts(tp=cm[1, 1], fp=cm[0, 1], tn=cm[0, 0], fn=cm[1, 0])
    return {k: float(v) for k, v in out.items()}


#: Threshold metrics that are proportions of cases (their CIs: Clopper-Pearson), the likelihood ratios
#: (log method) and Youden's J, which depends only on the within-class rates (bootstrap within each
#: class); F1 depends on the prevalence.
_PROPORTIONS = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp"), "ppv": ("tp", "fp"),
                "npv": ("tn", "fn"), "accuracy": ("tp+tn", "fp+fn")}
_WITHIN_CLASS = ("youden",)
_LIKELIHOOD_RATIOS = ("lr_pos", "lr_neg")


def _likelihood_ratio_interval(name: str, tp: int, fn: int, fp: int, tn: int, level: float) -> tuple[float, float]:
    """Log-method interval of LR+ or LR− (Simel, Samsa & Matchar 1991), as diagnostic-accuracy
    software gives it. With a zero cell 0.5 is added to every cell for the interval (Haldane), which is
    then widened to hold the estimate itself where that is 0 or ∞. NaN without cases of a class."""
    from scipy.stats import norm

    if tp + fn == 0 or fp + tn == 0:
        return np.nan, np.nan
    z = float(norm.ppf(0.5 + level / 2.0))
    if name == "lr_pos":  # sens / (1 - spec): "hits" tp of tp + fn over fp of fp + tn
        a, n1, b, n0 = tp, tp + fn, fp, fp + tn
    else:  # (1 - sens) / spec: fn of tp + fn over tn of fp + tn
        a, n1, b, n0 = fn, tp + fn, tn, fp + tn
    estimate = np.inf if b == 0 and a > 0 else (a / n1) / (b / n0) if b else np.nan
    if min(a, n1 - a, b, n0 - b) == 0:
        a, n1, b, n0 = a + 0.5, n1 + 1.0, b + 0.5, n0 + 1.0
    ratio = (a / n1) / (b / n0)
    se = np.sqrt(1.0 / a - 1.0 / n1 + 1.0 / b - 1.0 / n0)
    low, high = ratio * np.exp(-z * se), ratio * np.exp(z * se)
    if np.isfinite(estimate):
        low, high = min(low, estimate), max(high, estimate)
    elif estimate == np.inf:
        high = np.inf
    return float(low), float(high)


def _rate_rectangle(counts: dict, level: float) -> tuple[float, float]:
    """Youden's J from the exact intervals of sensitivity and specificity, each at ``sqrt(level)``: the
    two classes are independent samples, so both hold together with probability ``level``, and J is
    increasing in each (conservative; used where a rate is 0 or 1 and a bootstrap collapses)."""
    inner = float(np.sqrt(level))
    sens = _exact_interval(counts["tp"], counts["fn"], inner)
    spec = _exact_interval(counts["tn"], counts["fp"], inner)
    return sens[0] + spec[0] - 1.0, sens[1] + spec[1] - 1.0


def _exact_interval(successes: int, failures: int, level: float) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion (NaN for 0 of 0)."""
    from scipy.stats import binomtest

    n = successes + failures
    if n == 0:
        return np.nan, np.nan
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def bootstrap_metrics(
    y,
    score=None,
    threshold: float | None = None,
    *,
    y_pred=None,
    n_bootstrap: int = 2000,
    level: float = 0.95,
    random_state=None,
) -> pd.DataFrame:
    """Threshold metrics with confidence intervals, the predictions (the threshold) held fixed: it was
    chosen on other data.

    Each metric's interval fits what it depends on:

    * sensitivity, specificity, PPV, NPV and accuracy are proportions of cases: exact (Clopper-Pearson)
      binomial intervals, as diagnostic-accuracy reports give them (never narrower than the nominal
      level, and not collapsed at 0 or 1: 6 of 6 is 1.00, 0.54-1.00);
    * the likelihood ratios: the log method (Simel, Samsa & Matchar 1991) — with a zero cell, 0.5 added
      to every cell and the interval widened to hold the estimate 0 or ∞ (``0.000 – 18.5``, not a
      point: a bootstrap collapses there);
    * the Youden index depends only on the within-class rates: percentile interval of a bootstrap
      that resamples cases within each class (as R's pROC does); where a rate is 0 or 1 (every
      resample then repeats it), the exact intervals of sensitivity and specificity at
      ``sqrt(level)`` each, combined (both hold together with probability ``level``);
    * F1 depends on the prevalence too: a bootstrap of the cases, which lets the prevalence vary as it
      does between cohorts. (A within-class bootstrap holds it fixed, and PPV / NPV intervals made that
      way covered the true value in 67 % / 89 % of simulated cohorts instead of 95 %.)

    Replicates where a metric is undefined are ignored for that metric. F1's bootstrap interval is a
    single point when every replicate gives the same value (a perfect classification); read it with
    the exact intervals of sensitivity and specificity, which say how few cases that rests on.

    Returns
    -------
    pandas.DataFrame
        Index: :data:`THRESHOLD_METRICS`; columns ``estimate``, ``ci_low``, ``ci_high``.
    """
    y = check_binary(y)
    pred = _predictions(y, score, threshold, y_pred)
    point = threshold_metrics(y, y_pred=pred)
    counts = {"tp": int(((pred == 1) & (y == 1)).sum()), "fp": int(((pred == 1) & (y == 0)).sum()),
              "tn": int(((pred == 0) & (y == 0)).sum()), "fn": int(((pred == 0) & (y == 1)).sum())}
    counts["tp+tn"], counts["fp+fn"] = counts["tp"] + counts["tn"], counts["fp"] + counts["fn"]
    rng = np.random.default_rng(random_state)
    ip, ineg = _stratified_indices(y, n_bootstrap, rng)
    tp = pred[ip].sum(axis=1)
    fp = pred[ineg].sum(axis=1)
    within_class = metrics_from_counts(tp, fp, ineg.shape[1] - fp, ip.shape[1] - tp)
    cases = rng.integers(0, y.size, size=(n_bootstrap, y.size))
    yb, pb = y[cases], pred[cases]
    tp, fp = (pb & (yb == 1)).sum(axis=1), (pb & (yb == 0)).sum(axis=1)
    tn, fn = ((pb == 0) & (yb == 0)).sum(axis=1), ((pb == 0) & (yb == 1)).sum(axis=1)
    of_cases = metrics_from_counts(tp, fp, tn, fn)
    q = [0.5 - level / 2.0, 0.5 + level / 2.0]
    rows = []
    for name in THRESHOLD_METRICS:
        if name in _PROPORTIONS:
            hit, miss = _PROPORTIONS[name]
            rows.append((point[name], *_exact_interval(counts[hit], counts[miss], level)))
            continue
        if name in _LIKELIHOOD_RATIOS:
            rows.append((point[name], *_likelihood_ratio_interval(name, counts["tp"], counts["fn"], counts["fp"],
                                                                   counts["tn"], level)))
            continue
        at_a_bound = min(counts["tp"], counts["fn"], counts["tn"], counts["fp"]) == 0
        if name in _WITHIN_CLASS and at_a_bound and counts["tp"] + counts["fn"] and counts["tn"] + counts["fp"]:
            rows.append((point[name], *_rate_rectangle(counts, level)))
            continue
        vals = (within_class if name in _WITHIN_CLASS else of_cases)[name]
        vals = vals[~np.isnan(vals)]
        # likelihood ratios can be inf (specificity 1): interpolating between inf values gives
        # NaN, so such metrics take the order statistic instead of interpolating
        method = "inverted_cdf" if np.isinf(vals).any() else "linear"
        lo, hi = np.quantile(vals, q, method=method) if vals.size else (np.nan, np.nan)
        rows.append((point[name], float(lo), float(hi)))
    return pd.DataFrame(rows, index=pd.Index(THRESHOLD_METRICS, name="metric"), columns=["estimate", "ci_low", "ci_high"])


def select_threshold(y, score, *, method: str = "youden", target_sensitivity: float = 0.9) -> float:
    """Choose a decision threshold on (training) data.

    Parameters
    ----------
    method : {"youden", "sensitivity"}
        ``"youden"`` maximises sensitivity + specificity − 1 (ties: the higher threshold);
        ``"sensitivity"`` takes the highest threshold whose sensitivity is at least
        ``target_sensitivity`` (i.e. the best specificity that keeps that sensitivity).

    Returns
    -------
    float
        The threshold, placed half-way between the last score classified positive and the next
        lower distinct score, so new cases between two training scores are treated sensibly.
    """
    y = check_binary(y)
    score = check_score(score, y.size)
    check_both_classes(y, "threshold selection")
    values = np.unique(score)[::-1]  # distinct scores, descending; cut k: positive iff score >= values[k]
    order = np.searchsorted(-values, -score, side="left")  # position of each score among the distinct values
    pos_at = np.bincount(order, weights=(y == 1), minlength=values.size)
    neg_at = np.bincount(order, weights=(y == 0), minlength=values.size)
    tpr = np.cumsum(pos_at) / max(pos_at.sum(), 1)
    fpr = np.cumsum(neg_at) / max(neg_at.sum(), 1)
    if method == "youden":
        k = int(np.argmax(tpr - fpr))
    elif method == "sensitivity":
        if not 0.0 < target_sensitivity <= 1.0:
            raise ValueError(f"target_sensitivity must be in (0, 1]; got {target_sensitivity}")
        k = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    else:
        raise ValueError(f"method must be 'youden' or 'sensitivity'; got {method!r}")
    if k + 1 < values.size:
        return float((values[k] + values[k + 1]) / 2.0)
    return float(values[k])


# --------------------------------------------------------------------------------------- curves
def roc_curve_band(
    y, score, *, n_bootstrap: int = 1000, level: float = 0.95, n_points: int = 101, random_state=None
) -> pd.DataFrame:
    """ROC curve on a fixed FPR grid with a pointwise bootstrap band for the TPR.

    Returns a DataFrame with columns ``fpr``, ``tpr`` (of the data), ``tpr_low``, ``tpr_high``.
    """
    from sklearn.metrics import roc_curve

    y = check_binary(y)
    score = check_score(score, y.size)
    check_both_classes(y, "ROC curve")
    grid = np.linspace(0.0, 1.0, n_points)

    def interp(yy, ss):
        fpr, tpr, _ = roc_curve(yy, ss, drop_intermediate=False)
        # step function: the best sensitivity reachable at a false-positive rate <= the grid point
        return tpr[np.searchsorted(fpr, grid, side="right") - 1]

    rng = np.random.default_rng(random_state)
    ip, ineg = _stratified_indices(y, n_bootstrap, rng)
    idx = np.concatenate([ip, ineg], axis=1)
    yb = np.concatenate([np.ones(ip.shape[1], int), np.zeros(ineg.shape[1], int)])
    curves = np.vstack([interp(yb, score[i]) for i in idx]) if n_bootstrap else np.empty((0, n_points))
    lo, hi = (
        np.quantile(curves, [0.5 - level / 2.0, 0.5 + level / 2.0], axis=0)
        if n_bootstrap
        else (np.full(n_points, np.nan),) * 2
    )
    tpr = interp(y, score)
    return pd.DataFrame({"fpr": grid, "tpr": tpr, "tpr_low": lo, "tpr_high": hi})


def pr_curve(y, score) -> pd.DataFrame:
    """Precision-recall curve: DataFrame with ``recall``, ``precision``, ``threshold`` (NaN at the end point)."""
    from sklearn.metrics import precision_recall_curve

    y = check_binary(y)
    score = check_score(score, y.size)
    precision, recall, thr = precision_recall_curve(y, score)
    return pd.DataFrame({"recall": recall, "precision": precision, "threshold": np.append(thr, np.nan)})


def average_precision(y, score) -> float:
    """Average precision (area under the step PR curve, as scikit-learn defines it)."""
    from sklearn.metrics import average_precision_score

    y = check_binary(y)
    score = check_score(score, y.size)
    check_both_classes(y, "average precision")
    return float(average_precision_score(y, score))


def brier_score(y, prob) -> float:
    """Mean squared difference between predicted probability and outcome (lower is better).

    :func:`sklearn.metrics.brier_score_loss` on radhe's checked 0/1 labels and probabilities.
    """
    from sklearn.metrics import brier_score_loss

    y = check_binary(y)
    p = check_probability(prob, y.size)
    return float(brier_score_loss(y, p, pos_label=1))


def calibration_curve(y, prob, *, n_bins: int = 10, strategy: str = "quantile", level: float = 0.95) -> pd.DataFrame:
    """Reliability table: observed event rate against mean predicted probability per bin.

    Parameters
    ----------
    strategy : {"quantile", "uniform"}
        Bins of equal size (quantiles of ``prob``) or of equal width on [0, 1].

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``bin_low``, ``bin_high``, ``count``, ``mean_predicted``,
        ``observed`` and its Wilson interval ``observed_low`` / ``observed_high``.

    Notes
    -----
    ``mean_predicted`` and ``observed`` are what :func:`sklearn.calibration.calibration_curve`
    returns as ``prob_pred`` and ``prob_true`` (a test checks it), but that function returns
    neither the bins, their counts nor an interval, which the report's table and plot need, so
    the bins are formed here. Bins are ``[low, high)`` (the last one closed): a probability equal
    to a quantile edge goes to the upper bin, where scikit-learn puts it in the lower one.
    """
    y = check_binary(y)
    p = check_probability(prob, y.size)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform'; got {strategy!r}")
    if edges.size < 2:
        edges = np.array([p.min(), p.max()])
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
    z = stats.norm.ppf(0.5 + level / 2.0)
    rows = []
    for b in range(edges.size - 1):
        sel = which == b
        k = int(sel.sum())
        if k == 0:
            continue
        obs = float(y[sel].mean())
        denom = 1 + z**2 / k
        centre = (obs + z**2 / (2 * k)) / denom
        half = z * np.sqrt(obs * (1 - obs) / k + z**2 / (4 * k**2)) / denom
        low, high = max(0.0, min(obs, centre - half)), min(1.0, max(obs, centre + half))
        rows.append((edges[b], edges[b + 1], k, float(p[sel].mean()), obs, low, high))
    return pd.DataFrame(
        rows, columns=["bin_low", "bin_high", "count", "mean_predicted", "observed", "observed_low", "observed_high"]
    )


#: Probabilities are clipped to [CALIBRATION_CLIP, 1 - CALIBRATION_CLIP] before the logit of the
#: calibration fit (logit ±34.5): far below any probability a model means, so only an exact 0 or 1 is clipped.
CALIBRATION_CLIP = 1e-15


def calibration_intercept_slope(y, prob) -> dict[str, float]:
    """Calibration-in-the-large and calibration slope (logistic recalibration on logit(prob)).

    ``slope`` is the coefficient of a logistic regression of ``y`` on logit(prob) (ideal 1; < 1
    means over-confident predictions); ``intercept`` is the intercept with the slope fixed at 1
    (ideal 0; > 0 means risks are under-estimated on average). Both are maximum-likelihood fits.

    Probabilities are clipped to [:data:`CALIBRATION_CLIP`, 1 − :data:`CALIBRATION_CLIP`] before the
    logit. The slope is NaN, with an :class:`sklearn.exceptions.UndefinedMetricWarning`, where no
    finite maximum exists: the predictions separate the classes (every case with the outcome ranked
    at or above every case without; the likelihood grows without bound with the slope), or they are
    all the same; and where a case predicted with certainty (probability exactly 0 or 1: a tree's pure
    leaf, an underflow) has the other outcome: no positive slope gives it a finite likelihood, the
    maximum moves towards 0 as the clip shrinks, and any value would be the clip's, not the model's.
    """
    from scipy.optimize import brentq
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    y = check_binary(y)
    raw = check_probability(prob, y.size)
    p = np.clip(raw, CALIBRATION_CLIP, 1 - CALIBRATION_CLIP)
    check_both_classes(y, "calibration slope")
    lp = np.log(p / (1 - p))
    separated = lp[y == 1].min() >= lp[y == 0].max() or lp[y == 1].max() <= lp[y == 0].min()
    certain_and_wrong = int(np.count_nonzero(((raw <= 0) & (y == 1)) | ((raw >= 1) & (y == 0))))
    if separated or np.ptp(lp) == 0 or certain_and_wrong:
        import warnings

        from sklearn.exceptions import UndefinedMetricWarning

        if np.ptp(lp) == 0:
            why = "all predictions are the same: the likelihood has no finite maximum"
        elif separated:
            why = "the predictions separate the classes: the likelihood has no finite maximum"
        else:
            why = (f"{certain_and_wrong} case(s) predicted with probability 0 or 1 have the other outcome: no "
                   "positive slope gives them a finite likelihood, and the fit would only measure the clip "
                   f"at {CALIBRATION_CLIP:g}; the predictions are over-confident")
        warnings.warn(f"calibration slope undefined ({why}); it is NaN", UndefinedMetricWarning, stacklevel=2)
        slope = float("nan")
    else:
        # Newton's method to the maximum-likelihood fit (lbfgs at its default tolerance stopped up to
        # 0.01 away from it)
        model = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-10, max_iter=200)
        model.fit(lp[:, None], y)
        slope = float(model.coef_[0, 0])

    def score(a):  # the log-likelihood's derivative in the intercept: increasing, 0 at the maximum
        return float(np.sum(expit(a + lp) - y))

    intercept = float(brentq(score, -50.0, 50.0, xtol=1e-12))
    return {"intercept": intercept, "slope": slope}
