"""Family-wise stacking (radhe.stacking), its sub-model (PenalizedLogisticCV) and feature families."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import RandomOverSampler
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_predict

from radhe.classifiers import PenalizedLogisticCV
from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.explain import family_contributions, shap_values
from radhe.families import feature_family_of, group_features
from radhe.model_selection import PatientStratifiedKFold, inner_folds
from radhe.pipeline import make_pipeline, param_grid
from radhe.stacking import POOLED, TREES, FamilyStackingClassifier


def family_table(n_patients=90, scans=2, seed=0):
    """A manifest-like table: a clinical signal, a radiomics-named signal, 25 noise columns named like
    radiomics texture features behind a user prefix; ``scans`` rows per patient."""
    rng = np.random.default_rng(seed)
    n = n_patients * scans
    patient = np.repeat([f"p{i:03d}" for i in range(n_patients)], scans)
    base = np.repeat(rng.normal(size=n_patients), scans)
    age = 70 + 10 * base + rng.normal(scale=2, size=n)
    volume = 20 + 8 * rng.normal(size=n)
    logit = 0.9 * base + 0.12 * (volume - 20) - 1.2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    table = pd.DataFrame({
        "case_id": [f"c{i:04d}" for i in range(n)], "patient_id": patient, "age_years": age,
        "ct_original_shape_MeshVolume": volume,
    })
    for j in range(25):
        table[f"ct_original_glcm_Noise{j}"] = rng.normal(size=n)
    table["he"] = y
    return table, y


class RecordingLogistic(ClassifierMixin, BaseEstimator):
    """A logistic sub-model that logs the index labels of every set of rows it is fitted on."""

    log: list = []

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, X, y):
        RecordingLogistic.log.append(set(X.index))
        self.model_ = LogisticRegression(C=self.C).fit(np.asarray(X), y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(np.asarray(X))


def test_families_by_name():
    assert feature_family_of("radiomics__original_shape_Sphericity") == "radiomics"
    assert feature_family_of("tabular__ct_wavelet-LLH_glcm_Idmn") == "radiomics"
    assert feature_family_of("tabular__log-sigma-3-0-mm-3D_firstorder_Mean") == "radiomics"
    assert feature_family_of("original_gldm_DependenceEntropy") == "radiomics"
    assert feature_family_of("cnn__3") == "cnn"
    assert feature_family_of("marker__blend_sign") == "markers"
    assert feature_family_of("clinical__blend_sign") == "markers"
    assert feature_family_of("clinical__gcs") == "clinical"
    assert feature_family_of("tabular__gcs") == "tabular"
    assert feature_family_of("tabular__originality_score") == "tabular"  # not a pyradiomics key
    grouped = group_features(["clinical__gcs", "radiomics__original_shape_MeshVolume", "clinical__hypodensity"])
    assert grouped == {"radiomics": ["radiomics__original_shape_MeshVolume"], "markers": ["clinical__hypodensity"],
                       "clinical": ["clinical__gcs"]}


def test_declared_families_match_manifest_columns_and_refuse_gaps():
    columns = ["tabular__grade_2", "tabular__grade_3", "tabular__age", "tabular__age_missing", "tabular__gene1"]
    grouped = group_features(columns, {"clinical": ["grade", "age"], "genes": ["gene1", "absent_gene"]})
    assert grouped == {"clinical": ["tabular__grade_2", "tabular__grade_3", "tabular__age", "tabular__age_missing"],
                       "genes": ["tabular__gene1"]}
    with pytest.raises(ConfigurationError, match="in no family"):
        group_features(columns, {"clinical": ["grade", "age"]})
    with pytest.raises(ConfigurationError, match="two families"):
        group_features(columns, {"a": ["age"], "b": ["age", "grade", "gene1"]})


def test_stacking_fits_inside_the_fold_and_groups_patients():
    """A recorder sub-model never sees a held-out row, and inner folds never split a patient."""
    table, y = family_table()
    pipe = make_pipeline(radiomics=None, classifier=RecordingLogistic(), random_state=0)
    # the boosted-tree sub-model is recorded too (the recorder stands in for it)
    pipe.set_params(classify__trees=RecordingLogistic(C=0.5))
    outer = PatientStratifiedKFold(3, random_state=0)
    patient = table["patient_id"]
    for train, test in outer.split(table, y):
        RecordingLogistic.log = []
        pipe.fit(table.iloc[train], y[train])
        held_out = set(table.index[test])
        assert RecordingLogistic.log, "the sub-model was never fitted"
        for rows in RecordingLogistic.log:
            assert not rows & held_out
            # a patient's two scans are together in or out of every inner fit
            seen = patient.loc[sorted(rows)].value_counts()
            assert (seen == 2).all()
        n_families = len(pipe[-1].families_)
        assert len(RecordingLogistic.log) == n_families * (pipe[-1].cv + 1)


@pytest.mark.parametrize("given", ["array", "column"])
def test_groups_given_to_the_cross_validation_also_group_the_inner_folds(given):
    """Patients given as ``groups=`` (an array, or a column other than ``patient_id``) reach every
    fold's fit: the stacking's inner folds never split them either. Before, only a column named
    ``patient_id`` did; on a table of patients scanned twice the meta-model then learnt memorised
    duplicates (outer AUC 0.69 → 0.50 on a planted signal)."""
    from radhe.evaluation import cross_validate_predictions

    table, y = family_table(n_patients=45)
    patients = table.pop("patient_id").to_numpy()
    groups = patients
    if given == "column":
        table["subject"], groups = patients, "subject"
    pipe = make_pipeline(radiomics=None, classifier=RecordingLogistic(), random_state=0)
    pipe.set_params(classify__trees=None)
    RecordingLogistic.log = []
    cross_validate_predictions(pipe, table, y, cv=3, groups=groups, threshold_cv=2, random_state=0)
    assert RecordingLogistic.log
    for rows in RecordingLogistic.log:
        seen = pd.Series(patients, index=table.index).loc[sorted(rows)].value_counts()
        assert (seen == 2).all()


def test_family_contributions_and_shap_sum_to_the_log_odds():
    table, y = family_table()
    pipe = make_pipeline(radiomics=None, random_state=0).fit(table, y)
    model = pipe[-1]
    assert set(model.families_) == {"radiomics", "tabular", POOLED, TREES}
    new = table.drop(columns="he").iloc[:25]
    log_odds = pipe.decision_function(new)
    contributions = family_contributions(pipe, new)
    assert list(contributions.columns) == ["radiomics", "tabular", POOLED, TREES, "intercept"]
    np.testing.assert_allclose(contributions.sum(axis=1), log_odds, atol=1e-10)
    np.testing.assert_allclose(pipe.predict_proba(new)[:, 1], 1 / (1 + np.exp(-log_odds)), atol=1e-12)
    background = table.iloc[25:65]  # fewer rows than max_background (50): all of them are used
    explanation = shap_values(pipe, new, background=background)
    assert explanation.output == "log-odds" and explanation.explainer.startswith("stacked")
    assert "tree, interventional" in explanation.explainer
    # exact up to the trees' single-precision thresholds (TreeSHAP evaluates them in float32)
    np.testing.assert_allclose(explanation.values.sum(axis=1) + explanation.base_value, log_odds, atol=1e-6)
    # one reference for every sub-model: the base value is the background's mean log-odds
    np.testing.assert_allclose(explanation.base_value, pipe.decision_function(background.drop(columns="he")).mean(),
                               atol=1e-6)
    # the signal features lead, the noise trails
    importance = explanation.importance()["mean_abs_shap"]
    assert importance.index[0] in ("tabular__ct_original_shape_MeshVolume", "tabular__age_years")
    assert importance["tabular__ct_original_shape_MeshVolume"] > importance.filter(like="Noise").max()


def test_noise_family_is_down_weighted():
    rng = np.random.default_rng(3)
    n = 240
    signal = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(signal @ [1.2, -0.8, 0.6])))).astype(int)
    X = pd.DataFrame(np.hstack([signal, rng.normal(size=(n, 40))]),
                     columns=[f"s{i}" for i in range(3)] + [f"n{i}" for i in range(40)])
    families = {"signal": [f"s{i}" for i in range(3)], "noise": [f"n{i}" for i in range(40)]}
    model = FamilyStackingClassifier(families=families, pooled=False, random_state=0).fit(X, y)
    contributions = model.family_contributions(X)
    assert contributions["noise"].std() < 0.25 * contributions["signal"].std()
    assert 0.0 < model.shrinkage_ <= 1.0


def test_stacking_is_reproducible_clonable_and_validates_parameters():
    table, y = family_table(60, 1)
    X = table[[c for c in table.columns if c not in ("case_id", "patient_id", "he")]]
    a = FamilyStackingClassifier(random_state=4).fit(X, y).predict_proba(X)
    b = clone(FamilyStackingClassifier(random_state=4)).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="fusion"):
        FamilyStackingClassifier(fusion="mean").fit(X, y)
    with pytest.raises(ValueError, match="cv"):
        FamilyStackingClassifier(cv=1).fit(X, y)
    with pytest.raises(InputError, match="two classes|binary"):
        FamilyStackingClassifier().fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(InputError, match="non-finite"):
        FamilyStackingClassifier().fit(X.assign(age_years=np.nan), y)
    concat = FamilyStackingClassifier(fusion="concat", random_state=0).fit(X, y)
    assert list(concat.families_) == ["all", TREES]
    assert list(FamilyStackingClassifier(fusion="concat", trees=None).fit(X, y).families_) == ["all"]


def test_grid_over_fusion_and_cross_validation():
    table, y = family_table(70, 1)
    pipe = make_pipeline(radiomics=None, random_state=0)
    search = GridSearchCV(pipe, param_grid(pipe), cv=PatientStratifiedKFold(3, random_state=0), scoring="roc_auc")
    search.fit(table, y)
    assert search.best_params_["classify__fusion"] in ("stack", "concat")
    assert search.best_score_ > 0.7
    proba = cross_val_predict(pipe, table, y, cv=PatientStratifiedKFold(3, random_state=0), method="predict_proba")
    assert proba.shape == (len(table), 2) and np.isfinite(proba).all()


def test_penalized_logistic_cv_chooses_splines_only_for_curved_effects():
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 2))
    curved = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * x[:, 0] ** 2 - 2.0)))).astype(int)
    linear = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * x[:, 0])))).astype(int)
    assert PenalizedLogisticCV(random_state=0).fit(x, curved).knots_ == 4
    assert PenalizedLogisticCV(random_state=0).fit(x, linear).knots_ is None
    model = PenalizedLogisticCV(random_state=0).fit(x, curved)
    np.testing.assert_allclose(model.additive_terms(x).sum(axis=1) + model.intercept_[0], model.decision_function(x))
    folds = inner_folds(curved, n_splits=5, random_state=0)
    oof = PenalizedLogisticCV().fit_oof(x, curved, folds)
    assert oof.shape == (n,) and np.isfinite(oof).all()
    with pytest.raises(ConfigurationError, match="spline_knots"):
        PenalizedLogisticCV(spline_knots=1).fit(x, curved)
    with pytest.raises(ConfigurationError, match="Cs"):
        PenalizedLogisticCV(Cs=[-1.0]).fit(x, curved)


def test_inner_folds_group_patients_and_need_two_per_class():
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    for train, test in inner_folds(y, groups, n_splits=5, random_state=0):
        assert not set(groups[train]) & set(groups[test])
    with pytest.raises(InputError, match="at least 2 patients"):
        inner_folds(np.array([0, 0, 0, 1]), n_splits=3)


def test_report_shows_out_of_fold_family_contributions(tmp_path):
    from radhe.evaluation import evaluate
    from radhe.report import write_html

    table, y = family_table(60, 1)
    result = evaluate(make_pipeline(radiomics=None, random_state=0), table, cv=3, n_bootstrap=50,
                      threshold_cv=None, baselines=None)
    stacked = result.explanation.meta["family_contributions"]
    assert set(stacked.index) == {"radiomics", "tabular", POOLED, TREES}
    assert (stacked["mean_abs_contribution"] >= 0).all() and stacked["n_folds_used"].between(0, 3).all()
    html = write_html(result, tmp_path).read_text()
    assert "Feature families of the stacked model" in html


def test_oof_family_contributions_sum_to_each_folds_log_odds():
    from radhe.evaluation import cross_validate_predictions
    from radhe.explain import oof_family_contributions

    table, y = family_table(60, 1)
    pred = cross_validate_predictions(make_pipeline(radiomics=None, random_state=0), table, y, cv=3,
                                      return_estimators=True, threshold_cv=None)
    terms = oof_family_contributions(pred, table)
    assert list(terms.index) == list(table.index)
    for k, (est, (_, test)) in enumerate(zip(pred.estimators, pred.splits, strict=True)):
        rows = terms.iloc[test]
        assert (rows["fold"] == k).all()
        np.testing.assert_allclose(rows.drop(columns="fold").sum(axis=1), est.decision_function(table.iloc[test]),
                                   atol=1e-10)


def test_family_contributions_refuse_models_that_are_not_stacked():
    from radhe.evaluation import cross_validate_predictions
    from radhe.explain import oof_family_contributions

    table, y = family_table(40, 1)
    pooled = make_pipeline(radiomics=None, fusion="concat", random_state=0).fit(table, y)
    with pytest.raises(ConfigurationError, match="family-stacked model"):
        family_contributions(pooled, table)
    pred = cross_validate_predictions(make_pipeline(radiomics=None, random_state=0), table, y, cv=2,
                                      threshold_cv=None)
    with pytest.raises(ConfigurationError, match="return_estimators=True"):
        oof_family_contributions(pred, table)
    with pytest.raises(ValueError, match="families"):
        make_pipeline(radiomics=None, families="by_name").fit(table, y)


def test_boosted_trees_carry_an_interaction_the_additive_models_cannot():
    """An XOR of two features: the additive family models score chance, the tree sub-model finds it,
    and the meta-model gives it the weight; without it (``trees=None``) the stack is near chance."""
    rng = np.random.default_rng(5)
    n = 600
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"x{i}" for i in range(6)])
    logit = 2.5 * np.where((X["x0"] > 0) ^ (X["x1"] > 0), 1.0, -1.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    train, test = np.arange(400), np.arange(400, n)
    from sklearn.metrics import roc_auc_score

    with_trees = FamilyStackingClassifier(random_state=0).fit(X.iloc[train], y[train])
    without = FamilyStackingClassifier(trees=None, random_state=0).fit(X.iloc[train], y[train])
    assert TREES in with_trees.used_families_ and with_trees.weights_[TREES] > 0
    assert TREES not in without.families_
    auc_with = roc_auc_score(y[test], with_trees.predict_proba(X.iloc[test])[:, 1])
    auc_without = roc_auc_score(y[test], without.predict_proba(X.iloc[test])[:, 1])
    assert auc_without < 0.65 < 0.8 < auc_with
    # the sub-model is deterministic: same random_state, same risks
    again = FamilyStackingClassifier(random_state=0).fit(X.iloc[train], y[train])
    np.testing.assert_array_equal(again.predict_proba(X.iloc[test]), with_trees.predict_proba(X.iloc[test]))


class CountingOverSampler(RandomOverSampler):
    """An imbalanced-learn random over-sampler that records how many rows each call resamples."""

    calls: list = []

    def fit_resample(self, X, y, **params):
        CountingOverSampler.calls.append(len(X))
        return super().fit_resample(X, y, **params)


def test_a_sampler_resamples_only_the_training_part_of_the_inner_folds():
    """PenalizedLogisticCV(sampler=...) chooses C on real held-out rows: the resampler sees each inner
    fold's training part and, last, all rows; never a held-out part. (A resampler before it put copies of
    a training row among the held-out rows of its inner folds.)"""
    table, y = family_table(n_patients=60, scans=1)
    X = table[["age_years", "ct_original_shape_MeshVolume"]].to_numpy()
    sampler = CountingOverSampler(random_state=0)
    CountingOverSampler.calls = []
    folds = inner_folds(y, None, n_splits=4, random_state=0)
    model = PenalizedLogisticCV(sampler=sampler, spline_knots=None)
    oof = model.fit_oof(X, y, folds)
    assert CountingOverSampler.calls == [len(train) for train, _ in folds] + [len(y)]
    assert oof.shape == (len(y),) and np.isfinite(oof).all()
    plain = PenalizedLogisticCV(spline_knots=None).fit_oof(X, y, folds)
    assert not np.allclose(oof, plain)  # resampling changed the fits, not the rows scored


def test_an_svm_calibrates_on_real_patient_grouped_rows_with_a_sampler():
    from radhe.classifiers import CalibratedSVC

    table, y = family_table(n_patients=40, scans=2)
    X = table[["age_years", "ct_original_shape_MeshVolume"]].to_numpy()
    groups = table["patient_id"].to_numpy()
    sampler = CountingOverSampler(random_state=0)
    CountingOverSampler.calls = []
    svc = CalibratedSVC(sampler=sampler, random_state=0).fit(X, y, groups=groups)
    for train, test in svc.calibration_folds_:
        assert not set(groups[train]) & set(groups[test])
    assert CountingOverSampler.calls[:len(svc.calibration_folds_)] == [len(t) for t, _ in svc.calibration_folds_]
    assert CountingOverSampler.calls[-1] == len(y)
    proba = svc.predict_proba(X)[:, 1]
    assert np.isfinite(proba).all() and 0 < proba.min() < proba.max() < 1


# ------------------------------------------------------------------ exact terms, names, small data
def _sklearn_breast_cancer():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    X = data.data.copy()
    X.columns = [c.replace(" ", "_") for c in X.columns]
    ids = [f"case{i:04d}" for i in range(len(X))]
    table = pd.concat([pd.DataFrame({"case_id": ids, "patient_id": ids}), X], axis=1)
    return table, (data.target == 0).astype(int).to_numpy()


def test_shap_adds_up_where_a_family_model_is_all_but_certain():
    # real table: image features that nearly separate the classes, so that family log-odds pass ±13.8
    # (a probability of 1e-6), where log-odds read back from clipped probabilities would be cut
    table, y = _sklearn_breast_cancer()
    pipe = make_pipeline(radiomics=None, random_state=0).fit(table, y)
    model = pipe[-1]
    new = table.iloc[:120]
    scores = model.family_scores(pipe[:-1].transform(new))
    assert (scores["tabular"].abs() > 14).sum() >= 3
    explanation = shap_values(pipe, new, background=table.iloc[200:240])
    np.testing.assert_allclose(explanation.values.sum(axis=1) + explanation.base_value, pipe.decision_function(new),
                               atol=1e-6)
    np.testing.assert_allclose(family_contributions(pipe, new).sum(axis=1), pipe.decision_function(new), atol=1e-10)


@pytest.mark.parametrize("sub_models", ["boosting", "pipeline"])
def test_shap_adds_up_with_user_sub_models_whose_margin_is_the_log_odds(sub_models):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline as sklearn_pipeline
    from sklearn.preprocessing import StandardScaler

    table, y = _sklearn_breast_cancer()
    pipe = make_pipeline(radiomics=None, random_state=0)
    if sub_models == "boosting":  # margins far beyond ±13.8
        pipe.set_params(classify__trees=GradientBoostingClassifier(n_estimators=100, learning_rate=0.3,
                                                                   random_state=0))
    else:
        pipe.set_params(classify__estimator=sklearn_pipeline(StandardScaler(), LogisticRegression(C=1e3,
                                                                                                  max_iter=5000)))
    pipe.fit(table, y)
    new = table.iloc[:60]
    explanation = shap_values(pipe, new, background=table.iloc[200:230])
    assert explanation.explainer.startswith("stacked")
    np.testing.assert_allclose(explanation.values.sum(axis=1) + explanation.base_value, pipe.decision_function(new),
                               atol=1e-6)


@pytest.mark.parametrize("name", ["intercept", "fold"])
def test_family_names_of_the_contribution_tables_are_refused(name):
    table, y = family_table(40, 1)
    families = {name: ["age_years"], "radiomics": [c for c in table.columns if c.startswith("ct_")]}
    with pytest.raises(ConfigurationError, match=f"may not be named '{name}'"):
        make_pipeline(radiomics=None, families=families, random_state=0).fit(table, y)


def test_shap_families_are_the_stacked_model_families():
    table, y = family_table(60, 1)
    pipe = make_pipeline(radiomics=None, random_state=0).fit(table, y)
    assert "tabular__ct_original_shape_MeshVolume" in pipe[-1].families_["radiomics"]
    explanation = shap_values(pipe, table.iloc[:10], background=table.iloc[10:40])
    assert explanation.families["tabular__ct_original_shape_MeshVolume"] == "radiomics: shape"
    assert explanation.families["tabular__ct_original_glcm_Noise0"] == "radiomics: texture"
    assert explanation.families["tabular__age_years"] == "tabular"


def test_a_model_that_finds_no_signal_says_its_predictions_are_the_training_rate():
    from sklearn.metrics import roc_auc_score

    from radhe.stacking import RANKING_SPREAD

    def noise_table(seed, n=40):
        rng = np.random.default_rng(seed)
        return pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], **{f"x{j}": rng.normal(size=n) for j in range(6)}})

    y = np.tile([0, 1, 0, 0], 10)
    table = noise_table(1)
    with pytest.warns(InputWarning, match=r"every prediction is the training rate 0\.250 to within a log-odds "
                                          r"spread of 0\.01 \(SD\), ordered by the out-of-fold best family score"):
        pipe = make_pipeline(radiomics=None, random_state=0).fit(table, y)
    model = pipe[-1]
    assert model.shrinkage_ == 0.0
    # the risks are the training rate, in the order of the family score that ranked best out of fold
    aucs = {f: roc_auc_score(y, model.oof_scores_[f]) for f in model.oof_scores_}
    kept = max(aucs, key=aucs.get)
    assert aucs[kept] > 0.5 and model.used_families_ == [kept]
    assert (model.weights_.drop(kept) == 0).all()
    np.testing.assert_allclose(model.oof_scores_[kept].to_numpy().std() * model.weights_[kept], RANKING_SPREAD)
    risks = pipe.predict_proba(table)[:, 1]
    np.testing.assert_allclose(risks.mean(), 0.25, atol=0.002)
    assert risks.std() < 0.01 and np.unique(risks).size > 20
    # where no family score ranks better than chance out of fold, every risk is the training rate
    with pytest.warns(InputWarning, match=r"every prediction is the training rate 0\.250;"):
        constant = make_pipeline(radiomics=None, random_state=0).fit(noise_table(11), y)
    np.testing.assert_allclose(constant.predict_proba(noise_table(11))[:, 1], 0.25)


def test_without_patient_ids_the_case_ids_make_the_fit_independent_of_row_order():
    table, y = family_table(80, 1)
    table = table.drop(columns="patient_id")
    order = np.random.default_rng(0).permutation(len(table))
    first = make_pipeline(radiomics=None, random_state=0).fit(table, y)
    second = make_pipeline(radiomics=None, random_state=0).fit(table.iloc[order], y[order])
    np.testing.assert_allclose(first.predict_proba(table), second.predict_proba(table), atol=1e-12)


def test_missing_patient_ids_and_repeated_column_names_are_refused():
    table, y = family_table(40, 1)
    gaps = table.assign(patient_id=table["patient_id"].where(np.arange(len(table)) % 3 > 0))
    with pytest.raises(InputError, match="patient id missing in row"):
        make_pipeline(radiomics=None, random_state=0).fit(gaps, y)
    repeated = pd.concat([table, table[["age_years"]]], axis=1)
    with pytest.raises(InputError, match=r"column name\(s\) \['age_years'\] appear more than once"):
        make_pipeline(radiomics=None, random_state=0).fit(repeated, y)


def test_out_of_fold_terms_and_shap_keep_the_rows_of_a_repeated_index():
    from radhe.evaluation import cross_validate_predictions
    from radhe.explain import oof_family_contributions, oof_shap_values

    table, y = family_table(60, 1)
    table.index = np.arange(len(table)) % 20  # as after pd.concat of three tables
    pred = cross_validate_predictions(make_pipeline(radiomics=None, random_state=0), table, y, cv=3,
                                      return_estimators=True, threshold_cv=None)
    terms = oof_family_contributions(pred, table)
    shap = oof_shap_values(pred, table, max_background=20)
    assert list(terms.index) == list(table.index) and list(shap.values.index) == list(table.index)
    for est, (_, test) in zip(pred.estimators, pred.splits, strict=True):
        np.testing.assert_allclose(terms.iloc[test].drop(columns="fold").sum(axis=1),
                                   est.decision_function(table.iloc[test]), atol=1e-10)
        np.testing.assert_allclose(shap.data.iloc[test]["tabular__age_years"],
                                   est[:-1].transform(table.iloc[test])["tabular__age_years"], atol=1e-12)
