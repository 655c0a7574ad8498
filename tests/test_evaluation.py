"""radhe.evaluation: metrics against hand-computed values, DeLong against bootstrap, CV predictions."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score

from radhe.errors import InputError
from radhe.evaluation import (
    average_precision,
    bootstrap_metrics,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
    compare_models,
    confusion_matrix_at,
    cross_validate_predictions,
    delong_covariance,
    delong_test,
    evaluate,
    pr_curve,
    roc_auc_ci,
    roc_curve_band,
    select_threshold,
    summarize,
    threshold_metrics,
)

# ---------------------------------------------------------------------------------------------
# Hand-computed DeLong example. Positives A = (.9, .7, .5), negatives (.7, .4, .2, .1).
# Placement values psi(x, y) = 1 if x > y, 1/2 if tied, 0 otherwise:
#   V10 (each positive vs the 4 negatives) = (1, 3.5/4, 3/4) = (1, .875, .75)   -> AUC = .875
#   V01 (each negative vs the 3 positives) = (1.5/3, 1, 1, 1) = (.5, 1, 1, 1)
#   S10 = var(V10, ddof=1) = .03125/2 = 1/64;  S01 = var(V01, ddof=1) = .1875/3 = 1/16
#   Var(AUC) = S10/3 + S01/4 = 1/192 + 1/64 = 1/48.
# Second score B: positives (.2, .8, .6), negatives (.3, .5, .1, .4):
#   V10 = (.25, 1, 1) -> AUC = .75;  V01 = (2/3, 2/3, 1, 2/3)
#   S10_B = .375/2 = 3/16, S01_B = (1/12)/3 = 1/36 -> Var_B = 3/16/3 + 1/36/4 = 20/288
#   cov(V10_A, V10_B) = -.09375/2, cov(V01_A, V01_B) = (1/24)/3 -> Cov = -.015625 + 1/288 = -3.5/288
#   Var(A - B) = 6/288 + 20/288 + 7/288 = 33/288;  z = .125 / sqrt(33/288).
Y_HAND = np.array([1, 1, 1, 0, 0, 0, 0])
A_HAND = np.array([0.9, 0.7, 0.5, 0.7, 0.4, 0.2, 0.1])
B_HAND = np.array([0.2, 0.8, 0.6, 0.3, 0.5, 0.1, 0.4])


def test_delong_hand_example():
    res = roc_auc_ci(Y_HAND, A_HAND)
    assert res.auc == pytest.approx(0.875)
    assert res.se == pytest.approx(math.sqrt(1 / 48))
    assert res.ci_low == pytest.approx(0.875 - 1.959964 * math.sqrt(1 / 48), abs=1e-6)
    assert res.ci_high == 1.0  # clipped
    aucs, cov = delong_covariance(Y_HAND, np.vstack([A_HAND, B_HAND]))
    np.testing.assert_allclose(aucs, [0.875, 0.75])
    np.testing.assert_allclose(cov * 288, [[6, -3.5], [-3.5, 20]], atol=1e-12)
    t = delong_test(Y_HAND, A_HAND, B_HAND)
    assert t.difference == pytest.approx(0.125)
    assert t.z == pytest.approx(0.125 / math.sqrt(33 / 288))
    assert t.p_value == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(t.z / math.sqrt(2)))))


def test_delong_matches_bootstrap_on_larger_sample():
    rng = np.random.default_rng(1)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    latent = y * 1.0 + rng.normal(size=n)
    a = latent + rng.normal(scale=0.5, size=n)
    b = latent + rng.normal(scale=1.5, size=n)
    delong = roc_auc_ci(y, a)
    boot = roc_auc_ci(y, a, method="bootstrap", n_bootstrap=2000, random_state=0)
    assert delong.auc == pytest.approx(roc_auc_score(y, a))
    assert boot.se == pytest.approx(delong.se, rel=0.12)
    assert boot.ci_low == pytest.approx(delong.ci_low, abs=0.02)
    assert boot.ci_high == pytest.approx(delong.ci_high, abs=0.02)
    # paired difference: DeLong SE vs the SD of bootstrapped AUC differences
    from scipy.stats import rankdata

    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    idx = np.hstack([rng.choice(pos, (1000, pos.size)), rng.choice(neg, (1000, neg.size))])

    def auc(s):  # Mann-Whitney AUC of each bootstrap row (positives first)
        r = rankdata(s[idx], axis=1)[:, : pos.size].sum(axis=1)
        return (r - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size)

    diffs = auc(a) - auc(b)
    t = delong_test(y, a, b)
    assert t.se == pytest.approx(np.std(diffs, ddof=1), rel=0.15)
    assert t.p_value < 0.05  # a is truly better


def test_delong_identical_scores_and_errors():
    t = delong_test(Y_HAND, A_HAND, 2 * A_HAND + 1)  # same ranking
    assert t.difference == 0 and t.p_value == 1.0
    # zero variance, different AUCs (a separating score against a constant one): undefined, not p = 1
    y = np.array([0, 0, 0, 1, 1])
    t = delong_test(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9]), np.full(5, 0.5))
    assert t.difference == 0.5 and math.isnan(t.p_value) and math.isnan(t.z)
    from radhe.evaluation import compare_models

    table = compare_models({"separating": np.array([0.1, 0.2, 0.3, 0.8, 0.9]), "constant": np.full(5, 0.5)}, y=y,
                           reference="separating", n_bootstrap=20)
    assert table.attrs["formatted"]["DeLong p"].tolist() == ["ref.", "n/a"]
    with pytest.raises(InputError, match="both classes"):
        roc_auc_ci([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="0/1"):
        roc_auc_ci([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="non-finite"):
        roc_auc_ci([0, 1, 1], [0.1, np.nan, 0.3])


# 4 positives, 6 negatives; at threshold .5: TP 3, FN 1, FP 2, TN 4.
Y_T = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
S_T = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1, 0.05])


def test_threshold_metrics_hand_values():
    cm = confusion_matrix_at(Y_T, S_T, 0.5)
    assert cm.to_numpy().tolist() == [[4, 2], [1, 3]]
    m = threshold_metrics(Y_T, S_T, 0.5)
    expected = {
        "sensitivity": 3 / 4,
        "specificity": 4 / 6,
        "ppv": 3 / 5,
        "npv": 4 / 5,
        "f1": 2 * 3 / (2 * 3 + 2 + 1),
        "accuracy": 7 / 10,
        "youden": 3 / 4 + 4 / 6 - 1,
        "lr_pos": (3 / 4) / (2 / 6),
        "lr_neg": (1 / 4) / (4 / 6),
    }
    for k, v in expected.items():
        assert m[k] == pytest.approx(v), k
    assert threshold_metrics(Y_T, y_pred=(S_T >= 0.5).astype(int)) == m


def test_threshold_metrics_undefined_values():
    m = threshold_metrics(Y_T, S_T, 2.0)  # nothing predicted positive
    assert m["sensitivity"] == 0 and m["specificity"] == 1
    assert math.isnan(m["ppv"])
    assert math.isnan(m["lr_pos"])  # 0 / 0
    m = threshold_metrics(Y_T, S_T, 0.75)  # TP 2, FP 0
    assert m["lr_pos"] == math.inf


def test_bootstrap_metrics_ci():
    table = bootstrap_metrics(Y_T, S_T, 0.5, n_bootstrap=500, random_state=0)
    assert list(table.columns) == ["estimate", "ci_low", "ci_high"]
    assert table.loc["sensitivity", "estimate"] == pytest.approx(0.75)
    assert (table["ci_low"] <= table["estimate"] + 1e-12).all()
    assert (table["estimate"] <= table["ci_high"] + 1e-12).all()
    # reproducible with a seed
    again = bootstrap_metrics(Y_T, S_T, 0.5, n_bootstrap=500, random_state=0)
    pd.testing.assert_frame_equal(table, again)
    # larger sample: sensitivity CI close to the binomial (Wald) interval
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(200, int), np.zeros(300, int)]
    pred = np.r_[(rng.random(200) < 0.7), (rng.random(300) < 0.2)].astype(int)
    t = bootstrap_metrics(y, y_pred=pred, n_bootstrap=2000, random_state=1)
    sens = pred[:200].mean()
    half = 1.96 * math.sqrt(sens * (1 - sens) / 200)
    assert t.loc["sensitivity", "ci_low"] == pytest.approx(sens - half, abs=0.015)
    assert t.loc["sensitivity", "ci_high"] == pytest.approx(sens + half, abs=0.015)


def test_threshold_metric_intervals_fit_what_each_metric_depends_on():
    """Proportions get exact binomial intervals, which do not collapse at 0 or 1 (a stratified
    bootstrap gave sensitivity 6/6 as 1.00 (1.00-1.00) and, with every case called positive, PPV
    0.100 (0.100-0.100)); PPV and NPV no longer hold the prevalence fixed."""
    from scipy.stats import binomtest

    y = np.r_[np.ones(6, int), np.zeros(54, int)]
    everyone = np.ones(60, int)
    t = bootstrap_metrics(y, y_pred=everyone, n_bootstrap=500, random_state=0)
    exact = binomtest(6, 60).proportion_ci(method="exact")
    assert t.loc["ppv", "estimate"] == pytest.approx(0.1)
    assert (t.loc["ppv", "ci_low"], t.loc["ppv", "ci_high"]) == pytest.approx((exact.low, exact.high))
    assert t.loc["sensitivity", "ci_low"] == pytest.approx(binomtest(6, 6).proportion_ci(method="exact").low)
    assert t.loc["sensitivity", "ci_low"] == pytest.approx(0.541, abs=1e-3) and t.loc["sensitivity", "ci_high"] == 1.0
    # PPV of 16 among 127 called positive at 10 % prevalence: the exact interval, about twice the width
    # the within-class bootstrap gave (0.096-0.154)
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(21, int), np.zeros(179, int)]
    pred = np.r_[np.r_[np.ones(16, int), np.zeros(5, int)], rng.permutation(np.r_[np.ones(111, int), np.zeros(68, int)])]
    t = bootstrap_metrics(y, y_pred=pred, n_bootstrap=2000, random_state=0)
    for metric, hit, n in (("ppv", 16, 127), ("npv", 68, 73), ("accuracy", 84, 200), ("specificity", 68, 179)):
        ci = binomtest(hit, n).proportion_ci(method="exact")
        assert (t.loc[metric, "ci_low"], t.loc[metric, "ci_high"]) == pytest.approx((ci.low, ci.high)), metric
    assert t.loc["ppv", "ci_high"] - t.loc["ppv", "ci_low"] > 0.1
    # F1 (prevalence-dependent): a case bootstrap; Youden: within each class
    for metric in ("f1", "youden", "lr_pos", "lr_neg"):
        assert t.loc[metric, "ci_low"] < t.loc[metric, "estimate"] < t.loc[metric, "ci_high"], metric
    # the likelihood ratios: the log method (Simel 1991), by hand
    tp, fn, fp, tn = 16, 5, 111, 68
    for metric, a, n1, b, n0 in (("lr_pos", tp, tp + fn, fp, fp + tn), ("lr_neg", fn, tp + fn, tn, fp + tn)):
        ratio = (a / n1) / (b / n0)
        se = math.sqrt(1 / a - 1 / n1 + 1 / b - 1 / n0)
        expected = (ratio * math.exp(-1.959964 * se), ratio * math.exp(1.959964 * se))
        assert (t.loc[metric, "ci_low"], t.loc[metric, "ci_high"]) == pytest.approx(expected, rel=1e-5), metric


def test_intervals_at_a_rate_of_0_or_1_are_not_points():
    """No true positive (sensitivity 0 of 9): LR+ 0 was "0.00 (0.00-0.00)" from a bootstrap that can only
    repeat it; the log method with 0.5 added to each cell gives 0 to 18.5. A perfect classification: LR+ ∞
    from 4.8, Youden 1 from 0.38 (exact intervals of both rates), not 1.00 (1.00-1.00)."""
    from scipy.stats import binomtest

    y = np.r_[np.ones(9, int), np.zeros(71, int)]
    t = bootstrap_metrics(y, y_pred=np.r_[np.zeros(9, int), np.ones(3, int), np.zeros(68, int)], random_state=0)
    assert t.loc["lr_pos", "estimate"] == 0 and t.loc["lr_pos", "ci_low"] == 0
    assert t.loc["lr_pos", "ci_high"] == pytest.approx(18.48, abs=0.01)
    y = np.r_[np.ones(6, int), np.zeros(40, int)]
    t = bootstrap_metrics(y, y_pred=y.copy(), random_state=0)
    assert t.loc["lr_pos", "estimate"] == math.inf and t.loc["lr_pos", "ci_high"] == math.inf
    assert 1 < t.loc["lr_pos", "ci_low"] < 10
    assert t.loc["lr_neg", "estimate"] == 0 and 0 < t.loc["lr_neg", "ci_high"] < 2
    sens = binomtest(6, 6).proportion_ci(confidence_level=math.sqrt(0.95), method="exact")
    spec = binomtest(40, 40).proportion_ci(confidence_level=math.sqrt(0.95), method="exact")
    assert t.loc["youden", "ci_low"] == pytest.approx(sens.low + spec.low - 1)
    assert t.loc["youden", "estimate"] == t.loc["youden", "ci_high"] == 1


def test_select_threshold():
    # distinct scores descending: .9 .8 .7 .6 .5 .4 .3 .2 .1 .05; Youden is best cutting after .6
    # (TP 3, FP 1 -> J = .75 - 1/6) vs after .3 (TP 4, FP 3 -> J = 1 - .5): .583 > .5
    thr = select_threshold(Y_T, S_T)
    assert thr == pytest.approx((0.6 + 0.5) / 2)
    # target sensitivity 1: must include .3 -> midpoint between .3 and .2
    assert select_threshold(Y_T, S_T, method="sensitivity", target_sensitivity=1.0) == pytest.approx(0.25)
    assert select_threshold(Y_T, S_T, method="sensitivity", target_sensitivity=0.5) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        select_threshold(Y_T, S_T, method="f1")


def test_pr_ap_brier_calibration_hand_values():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    # AP = sum (R_k - R_{k-1}) P_k = .5 * 1 + .5 * (2/3)
    assert average_precision(y, s) == pytest.approx(0.5 + 0.5 * 2 / 3)
    pr = pr_curve(y, s)
    assert {"recall", "precision", "threshold"} <= set(pr.columns)
    assert brier_score([1, 0], [0.8, 0.3]) == pytest.approx((0.04 + 0.09) / 2)
    with pytest.raises(InputError, match="probabilit"):
        brier_score([1, 0], [1.5, 0.2])
    cal = calibration_curve([0, 0, 1, 1, 1, 0], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], n_bins=2, strategy="uniform")
    assert cal["count"].tolist() == [3, 3]
    assert cal["mean_predicted"].tolist() == pytest.approx([0.2, 0.8])
    assert cal["observed"].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert (cal["observed_low"] <= cal["observed"]).all() and (cal["observed"] <= cal["observed_high"]).all()


def test_calibration_slope_of_calibrated_and_overconfident_predictions():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.random(4000) < p).astype(int)
    fit = calibration_intercept_slope(y, p)
    assert fit["slope"] == pytest.approx(1, abs=0.12)
    assert fit["intercept"] == pytest.approx(0, abs=0.1)
    logit = np.log(p / (1 - p))
    over = 1 / (1 + np.exp(-2 * logit))  # over-confident: slope ~ 0.5
    assert calibration_intercept_slope(y, over)["slope"] == pytest.approx(0.5, abs=0.08)


def test_calibration_intercept_and_slope_are_the_maximum_likelihood_fits():
    """lbfgs at its default tolerance gave slopes up to 0.008 off the maximum (−1.1702 for −1.1623)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    for n in (40, 200):
        p = rng.uniform(0.02, 0.9, n)
        y = (rng.random(n) < p ** 1.3).astype(int)
        lp = np.log(p / (1 - p))

        def nll(w, lp=lp, y=y):
            eta = w[0] + w[1] * lp
            return np.sum(np.logaddexp(0, eta) - y * eta)

        slope = minimize(nll, [0.0, 1.0], method="BFGS", options={"gtol": 1e-12}).x[1]
        intercept = minimize(lambda a, lp=lp, y=y: nll([a[0], 1.0], lp, y), [0.0], method="BFGS",
                             options={"gtol": 1e-12}).x[0]
        fit = calibration_intercept_slope(y, p)
        assert fit["slope"] == pytest.approx(slope, abs=1e-6) and fit["intercept"] == pytest.approx(intercept, abs=1e-6)


def test_calibration_slope_is_nan_with_a_warning_where_no_maximum_exists():
    from sklearn.exceptions import UndefinedMetricWarning

    y = np.array([0, 0, 0, 1, 1])
    for p, why in ((np.array([0.1, 0.2, 0.3, 0.6, 0.9]), "separate the classes"),
                   (np.array([0.0, 0.0, 1.0, 1.0, 1.0])[[0, 1, 0, 2, 3]], "separate the classes"),
                   (np.full(5, 0.3), "all predictions are the same")):
        with pytest.warns(UndefinedMetricWarning, match=why):
            fit = calibration_intercept_slope(y, p)
        assert math.isnan(fit["slope"]) and math.isfinite(fit["intercept"])
    # overlapping classes: a finite slope, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isfinite(calibration_intercept_slope(y, np.array([0.1, 0.7, 0.3, 0.6, 0.9]))["slope"])


def test_calibration_slope_of_certain_and_wrong_predictions_is_nan_not_the_clip():
    """A tree's pure leaf predicts 0 or 1; where such a case has the other outcome, the maximum-likelihood
    slope goes to 0 as the clip shrinks: any finite number would be the clip's, so it is NaN."""
    from sklearn.exceptions import UndefinedMetricWarning

    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(int)
    p = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.1, 200), 0.01, 0.99)
    finite = calibration_intercept_slope(y, p)
    assert math.isfinite(finite["slope"])
    wrong = p.copy()
    wrong[np.flatnonzero(y == 0)[0]] = 1.0  # certain of expansion, without it
    with pytest.warns(UndefinedMetricWarning, match="probability 0 or 1 have the other outcome"):
        fit = calibration_intercept_slope(y, wrong)
    assert math.isnan(fit["slope"]) and math.isfinite(fit["intercept"])
    # nearly certain, not certain: a number (the clip lies far below what a model means)
    tiny = p.copy()
    tiny[np.flatnonzero(y == 0)[0]] = 1 - 1e-7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isfinite(calibration_intercept_slope(y, tiny)["slope"])
    # certain and right: the clip changes nothing that matters, the slope stays a number
    right = p.copy()
    right[np.flatnonzero(y == 1)[0]] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isfinite(calibration_intercept_slope(y, right)["slope"])


def test_roc_curve_band():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.4).astype(int)
    s = y + rng.normal(size=200)
    band = roc_curve_band(y, s, n_bootstrap=200, random_state=0)
    assert band["fpr"].iloc[0] == 0 and band["fpr"].iloc[-1] == 1
    assert (band["tpr_low"] <= band["tpr"] + 1e-9).all() and (band["tpr"] <= band["tpr_high"] + 1e-9).all()
    assert band["tpr"].is_monotonic_increasing
    # area under the gridded curve ~ AUC
    assert np.trapezoid(band["tpr"], band["fpr"]) == pytest.approx(roc_auc_score(y, s), abs=0.02)


# ------------------------------------------------------------------------------------------- CV
def _manifest(n=120, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "case_id": [f"ich{i:04d}" for i in range(n)],
            "patient_id": [f"p{i // 2:03d}" for i in range(n)],  # two scans per patient
            "f1": rng.normal(size=n),
            "f2": rng.normal(size=n),
        }
    )
    frame["he"] = (frame["f1"] + 0.7 * rng.normal(size=n) > 0.3).astype(int)
    return frame


class _Recorder(ClassifierMixin, BaseEstimator):
    """Logistic on f1/f2 that records which cases every fit saw (class-level log; clones share it)."""

    log: list = []

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        type(self).log.append(set(X["case_id"]))
        self.model_ = LogisticRegression().fit(X[["f1", "f2"]], y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X[["f1", "f2"]])


def test_cross_validate_predictions_is_out_of_fold_and_patient_grouped():
    X = _manifest()
    _Recorder.log = []
    pred = cross_validate_predictions(_Recorder(), X, X["he"], cv=4, threshold_cv=2, return_estimators=True)
    f = pred.frame
    assert list(f.index) == list(X.index)
    assert set(f["fold"]) == {0, 1, 2, 3}
    assert f.groupby("patient_id")["fold"].nunique().max() == 1  # a patient's scans stay together
    assert ((f["score"] >= f["threshold"]).astype(int) == f["y_pred"]).all()
    assert f.groupby("fold")["threshold"].nunique().max() == 1
    assert len(pred.estimators) == 4 and pred.score_kind == "probability"
    # 4 outer fits + 4 x 2 inner fits; no fit ever saw a case of the fold it serves
    assert len(_Recorder.log) == 4 * 3
    held_out = [set(X["case_id"].iloc[te]) for _, te in pred.splits]
    for k in range(4):
        fits_of_fold = _Recorder.log[k * 3 : (k + 1) * 3]
        assert all(not (seen & held_out[k]) for seen in fits_of_fold)
    assert roc_auc_score(pred.y, pred.score) > 0.7


def test_cross_validate_predictions_refuses_a_splitter_that_splits_patients():
    from sklearn.model_selection import KFold

    X = _manifest()  # two scans per patient, adjacent rows
    with pytest.raises(InputError, match="both its training and test rows"):
        cross_validate_predictions(_Recorder(), X, X["he"], cv=KFold(3, shuffle=True, random_state=0), threshold_cv=None)
    # explicit splits are verified too; a group-aware splitter with the patients passes
    bad = [(np.arange(1, 120), np.array([0])), (np.array([0]), np.arange(1, 120))]
    with pytest.raises(InputError, match="p000"):
        cross_validate_predictions(_Recorder(), X, X["he"], splits=bad, threshold_cv=None)
    from sklearn.model_selection import GroupKFold

    ok = cross_validate_predictions(_Recorder(), X, X["he"], cv=GroupKFold(3), threshold_cv=None)
    assert ok.frame.groupby("patient_id")["fold"].nunique().max() == 1


def test_cross_validate_predictions_threshold_options():
    from sklearn.linear_model import LogisticRegression

    X = _manifest()
    Xf = X[["f1", "f2"]].assign(patient_id=X["patient_id"])
    clf = _Recorder()
    fixed = cross_validate_predictions(clf, X, X["he"], threshold=0.5)
    assert (fixed.frame["threshold"] == 0.5).all() and fixed.threshold_method == "fixed=0.5"
    sens = cross_validate_predictions(clf, X, X["he"], threshold="sensitivity", target_sensitivity=0.95, threshold_cv=None)
    youden = cross_validate_predictions(clf, X, X["he"], threshold="youden", threshold_cv=None)
    assert sens.y_pred.sum() >= youden.y_pred.sum()
    assert threshold_metrics(sens.y, y_pred=sens.y_pred)["sensitivity"] > 0.8
    # plain arrays and an explicit groups vector work too; decision_function-only models give "decision"
    from sklearn.svm import LinearSVC

    arr = cross_validate_predictions(LinearSVC(), X[["f1", "f2"]].to_numpy(), X["he"].to_numpy(), groups=X["patient_id"])
    assert arr.score_kind == "decision"
    assert cross_validate_predictions(LogisticRegression(), Xf.drop(columns="patient_id"), X["he"], groups=X["patient_id"]).n_splits == 5
    with pytest.raises(InputError):
        cross_validate_predictions(clf, X, X["he"].iloc[:10])


def test_summarize_and_compare_models():
    X = _manifest(160, seed=3)
    good = cross_validate_predictions(_Recorder(), X, X["he"], threshold_cv=None, name="good")
    noise = np.random.default_rng(0).normal(size=len(X))
    table = compare_models({"good": good, "noise": noise}, y=X["he"], n_bootstrap=200)
    assert list(table.index) == ["good", "noise"]
    for col in ("auc", "auc_ci_low", "auc_ci_high", "sensitivity", "specificity", "lr_pos", "lr_neg", "delong_p"):
        assert col in table.columns
    assert math.isnan(table.loc["good", "delong_p"])
    assert table.loc["noise", "delong_p"] < 0.05
    formatted = table.attrs["formatted"]
    assert formatted.loc["good", "DeLong p"] == "ref."
    assert formatted.loc["good", "AUC (95% CI)"].startswith(f"{table.loc['good', 'auc']:.2f} (")
    rep = summarize(good, n_bootstrap=200)
    assert rep.auc.auc == pytest.approx(roc_auc_score(good.y, good.score))
    assert rep.brier is not None and rep.calibration is not None
    assert rep.confusion.to_numpy().sum() == len(X)
    json.dumps(rep.to_dict())


def test_evaluate_with_baselines_and_json(tmp_path):
    from imblearn.pipeline import Pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    rng = np.random.default_rng(5)
    X = _manifest(140, seed=5)
    X["baseline_volume_ml"] = np.exp(rng.normal(2.5, 0.7, len(X))) + 5 * X["he"]
    X["onset_to_ct_h"] = rng.uniform(0.5, 6, len(X))
    X["blend_sign"] = ((X["he"] == 1) & (rng.random(len(X)) < 0.5)).astype(int)
    X["hypodensity"] = (rng.random(len(X)) < 0.3).astype(int)
    pipe = Pipeline(
        [
            ("features", FunctionTransformer(lambda d: d[["f1", "f2"]].add_prefix("tabular__"))),
            ("scale", StandardScaler()),
            ("classify", LogisticRegression()),
        ]
    ).set_output(transform="pandas")
    res = evaluate(pipe, X, cv=4, explain=False, n_bootstrap=200, threshold_cv=2, name="main")
    assert set(res.baselines) == {"Volume (logistic)", "BAT score", "BAT (logistic)", "Hypodensity", "Blend sign"}
    assert list(res.comparison.index)[0] == "main"
    assert res.main.n == 140 and res.metadata["cv"].startswith("4-fold")
    # all models evaluated on the same folds
    folds = res.main.predictions.fold
    for r in res.baselines.values():
        np.testing.assert_array_equal(r.predictions.fold, folds)
    assert res.baselines["BAT score"].score_kind == "decision"  # ranked by the 0-5 score itself
    path = res.write_json(tmp_path / "metrics.json")
    data = json.loads(path.read_text())
    assert data["main"]["auc"]["auc"] == pytest.approx(res.main.auc.auc)
    assert "Blend sign" in data["comparison"]
    assert "main" in res.summary()
    assert "score[BAT score]" in res.predictions.columns


# ---------------------------------------------------------------------------------------------
# radhe's metrics agree with scikit-learn's where both are defined


def test_metrics_agree_with_sklearn():
    import warnings

    from sklearn.calibration import calibration_curve as sk_calibration_curve
    from sklearn.metrics import brier_score_loss, class_likelihood_ratios, confusion_matrix

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    prob = np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1)
    pred = (prob >= 0.5).astype(int)
    assert np.array_equal(confusion_matrix_at(y, y_pred=pred).to_numpy(), confusion_matrix(y, pred))
    assert brier_score(y, prob) == pytest.approx(brier_score_loss(y, prob))
    tm = threshold_metrics(y, y_pred=pred)
    lr_pos, lr_neg = class_likelihood_ratios(y, pred)
    assert tm["lr_pos"] == pytest.approx(lr_pos) and tm["lr_neg"] == pytest.approx(lr_neg)
    # no false positive: radhe says LR+ = inf where scikit-learn says NaN (and warns)
    perfect = threshold_metrics([0, 0, 1, 1], y_pred=[0, 0, 1, 0])
    assert perfect["lr_pos"] == math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(class_likelihood_ratios([0, 0, 1, 1], [0, 0, 1, 0])[0])
    # uniform bins (no probability on an edge): the reliability table is sklearn's curve
    table = calibration_curve(y, prob, n_bins=10, strategy="uniform")
    prob_true, prob_pred = sk_calibration_curve(y, prob, n_bins=10, strategy="uniform")
    assert np.allclose(table["observed"], prob_true) and np.allclose(table["mean_predicted"], prob_pred)


def test_conformal_sets_cover_each_label_out_of_fold():
    """Label-conditional sets at 90 %: on a well-specified model, each label's coverage is near 0.9."""
    from sklearn.linear_model import LogisticRegression

    from radhe.evaluation import conformal_sets, cross_validate_predictions
    from radhe.evaluation.conformal import conformal_summary, format_set

    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.2 * X["a"] - 1.5)))).astype(int).to_numpy()
    pred = cross_validate_predictions(LogisticRegression(), X, y, cv=5, threshold_cv=3, conformal=0.9)
    sets = pred.extra["conformal_sets"]
    assert sets.shape == (n, 2) and sets.dtype == bool
    summary = conformal_summary(y, sets, 0.9)
    for label in ("no expansion (0)", "expansion (1)"):
        assert abs(summary.loc[label, "coverage"] - 0.9) < 0.06, summary
    assert 1.0 <= summary.loc["all", "mean_set_size"] < 2.0  # informative: not every set is {0, 1}
    assert format_set(np.array([True, True])) == "{0, 1}" and format_set(np.array([False, True])) == "{1}"
    # a label with fewer than two calibration cases gives no sets (not fake ones)
    assert conformal_sets([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], [0.5]) is None
