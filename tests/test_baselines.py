"""radhe.baselines: the BAT score, volume and single-marker models, and the comparison table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from radhe.baselines import (
    NCCT_MARKERS,
    BATScore,
    MarkerClassifier,
    UnivariateLogistic,
    bat_score,
    default_baselines,
    volume_logistic,
)
from radhe.errors import InputError
from radhe.evaluation import compare_models, cross_validate_predictions, roc_auc_ci


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """200 synthetic cases on a coarse grid (the baselines read only the manifest's columns)."""
    from radhe.datasets import make_ich_cohort

    return make_ich_cohort(200, tmp_path_factory.mktemp("baseline_cohort"), shape=(32, 32, 8), random_state=0)


def _frame():
    return pd.DataFrame(
        {
            "blend_sign": [0, 1, 0, 1, 1, 0, np.nan, 0],
            "hypodensity": [0, 0, 1, 1, 1, 0, 1, 0],
            "onset_to_ct_h": [5.0, 5.0, 5.0, 1.0, 2.49, 2.5, np.nan, 0.5],
            "baseline_volume_ml": [5.0, 10, 20, 40, 80, np.nan, 30, 15],
            "he": [0, 0, 1, 1, 1, 0, 1, 0],
        }
    )


def test_bat_score_points():
    # blend 1 + hypodensity 2 + onset-to-CT < 2.5 h 2; 2.5 h itself is not early; missing = 0 points
    expected = [0, 1, 2, 5, 5, 0, 2, 2]
    assert bat_score(_frame()).tolist() == expected
    assert bat_score(_frame(), time_cutoff_h=3.0).tolist() == [0, 1, 2, 5, 5, 2, 2, 2]
    with pytest.raises(InputError, match="blend_sign"):
        bat_score(_frame().drop(columns="blend_sign"))


def test_bat_score_classifier_contract():
    X, y = _frame(), _frame()["he"]
    est = BATScore().fit(X, y)
    assert est.classes_.tolist() == [0, 1]
    assert est.decision_function(X).tolist() == [0, 1, 2, 5, 5, 0, 2, 2]
    assert est.predict(X).tolist() == [0, 0, 0, 1, 1, 0, 0, 0]  # Morotti cut-off >= 3
    p = est.predict_proba(X)
    assert p.shape == (8, 2) and np.allclose(p.sum(axis=1), 1)
    # probabilities rank cases as the score does
    order = np.argsort(est.decision_function(X), kind="stable")
    assert np.all(np.diff(p[order, 1]) >= -1e-12)
    assert est.prefers_decision_function
    logistic = clone(BATScore(logistic=True, cutoff=2)).fit(X, y)
    assert not logistic.prefers_decision_function
    assert logistic.get_params()["cutoff"] == 2
    assert logistic.predict_proba(X).shape == (8, 2)
    assert logistic.logistic_.coef_[0, 0] > 0  # more points, more expansion


def test_univariate_logistic_and_marker():
    X, y = _frame(), _frame()["he"]
    vol = volume_logistic().fit(X, y)
    assert isinstance(vol, UnivariateLogistic) and vol.fill_value_ == pytest.approx(20.0)  # median of finite
    assert vol.logistic_.coef_[0, 0] > 0
    assert np.isfinite(vol.predict_proba(X)).all()
    log_vol = UnivariateLogistic(transform="log").fit(X, y)
    assert log_vol.decision_function(X).shape == (8,)
    m = MarkerClassifier("hypodensity").fit(X, y)
    assert m.decision_function(X).tolist() == X["hypodensity"].tolist()
    assert m.predict(X).tolist() == X["hypodensity"].tolist()
    # smoothed rates: present 4/4 positives -> (4 + 0.5) / 5, absent 0/4 -> 0.5 / 5
    assert m.rate_present_ == pytest.approx(4.5 / 5) and m.rate_absent_ == pytest.approx(0.5 / 5)
    with pytest.raises(InputError, match="DataFrame"):
        MarkerClassifier().fit(X.to_numpy(), y)
    with pytest.raises(InputError, match="both classes"):
        BATScore().fit(X, np.zeros(8))


def test_default_baselines_follow_columns():
    all_models = default_baselines()
    assert list(all_models)[:3] == ["Volume (logistic)", "BAT score", "BAT (logistic)"]
    assert len(all_models) == 3 + len(NCCT_MARKERS)
    some = default_baselines(_frame())
    assert set(some) == {"Volume (logistic)", "BAT score", "BAT (logistic)", "Hypodensity", "Blend sign"}
    assert default_baselines(_frame().drop(columns="onset_to_ct_h")).keys() >= {"Volume (logistic)"}
    assert "BAT score" not in default_baselines(_frame().drop(columns="onset_to_ct_h"))


def test_baselines_on_synthetic_cohort(cohort):
    y = cohort["he"].to_numpy()
    assert 0.1 < y.mean() < 0.5
    # the BAT score carries signal in the synthetic cohort (its generative model is BAT-like)
    bat = roc_auc_ci(y, bat_score(cohort))
    assert bat.auc > 0.62 and bat.ci_low > 0.5
    models = default_baselines(cohort)
    assert set(models) == {"Volume (logistic)", "BAT score", "BAT (logistic)"} | {
        n.replace("_", " ").capitalize() for n in NCCT_MARKERS
    }
    preds = {
        name: cross_validate_predictions(est, cohort, y, cv=5, threshold_cv=None, name=name)
        for name, est in models.items()
    }
    # the out-of-fold BAT score is the score itself: same AUC as the raw score
    assert roc_auc_ci(y, preds["BAT score"].score).auc == pytest.approx(bat.auc)
    table = compare_models(preds, reference="BAT score", n_bootstrap=200)
    assert table.loc["BAT score", "auc"] > 0.62
    assert table.loc["Volume (logistic)", "auc"] > 0.55
    # single markers: AUC of a binary marker = (sensitivity + specificity) / 2
    hyp = table.loc["Hypodensity"]
    assert hyp["auc"] == pytest.approx((hyp["sensitivity"] + hyp["specificity"]) / 2)
    assert (table["lr_pos"] > 0).all()
    assert np.isnan(table.loc["BAT score", "delong_p"]) and table["delong_p"].drop("BAT score").between(0, 1).all()


def test_a_marker_is_a_fixed_rule_and_its_metrics_are_its_counts(cohort):
    """Present = positive in every fold (no tuned threshold at 0): sensitivity, specificity, tp from counts."""
    from radhe.evaluation import summarize

    y = cohort["he"].to_numpy()
    rng = np.random.default_rng(4)
    X = cohort.copy()
    rare = np.zeros(len(X), dtype=int)
    rare[rng.choice(len(X), 5, replace=False)] = 1  # a rare marker: 5 of 200 cases
    X["fluid_level"] = rare
    for column in ("fluid_level", "blend_sign"):
        marker = X[column].to_numpy() > 0
        pred = cross_validate_predictions(MarkerClassifier(column), X, y, cv=5, threshold_cv=3)
        assert (pred.frame["y_pred"].to_numpy() == marker).all()
        assert pred.threshold_method == "the model's own rule (score >= 0.5)"
        report = summarize(pred, name=column, n_bootstrap=50)
        tp, fn = int((marker & (y == 1)).sum()), int((~marker & (y == 1)).sum())
        tn, fp = int((~marker & (y == 0)).sum()), int((marker & (y == 0)).sum())
        assert report.to_dict()["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        assert report.metrics.loc["sensitivity", "estimate"] == pytest.approx(tp / (tp + fn))
        assert report.metrics.loc["specificity", "estimate"] == pytest.approx(tn / (tn + fp))


def test_the_bat_score_baseline_applies_morottis_cutoff(cohort):
    y = cohort["he"].to_numpy()
    pred = cross_validate_predictions(BATScore(), cohort, y, cv=5)
    assert (pred.frame["y_pred"].to_numpy() == (bat_score(cohort).to_numpy() >= 3)).all()
    # the logistic BAT model is a model like any other: its threshold is tuned in each training fold
    logistic = cross_validate_predictions(BATScore(logistic=True), cohort, y, cv=5)
    assert logistic.threshold_method.startswith("youden")
