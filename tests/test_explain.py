"""radhe.explain: SHAP values per classifier family, names, families, out-of-fold aggregation; plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from radhe.evaluation import cross_validate_predictions
from radhe.explain import (
    FAMILIES,
    OOFShap,
    display_name,
    feature_family,
    oof_shap_values,
    shap_values,
    unwrap_classifier,
)

CLASSIFIERS = ["logistic", "svm", "random_forest", "xgboost", "lightgbm"]
EXPECTED = {  # explainer, output scale
    "logistic": ("linear", "log-odds"),
    "svm": ("permutation", "probability"),
    "random_forest": ("tree", "probability"),
    "xgboost": ("tree", "log-odds"),
    "lightgbm": ("tree", "log-odds"),
}
NAMES = [
    "radiomics__original_shape_Sphericity",
    "radiomics__original_firstorder_Mean",
    "radiomics__original_glcm_Contrast",
    "radiomics__wavelet-LLH_glszm_ZoneEntropy",
    "cnn__roi_003",
    "clinical__age_years",
    "clinical__sex_M",
    "tabular__extra",
]


def _data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(NAMES))), columns=NAMES)
    logit = 1.2 * frame[NAMES[0]] - 1.0 * frame[NAMES[4]] + 0.8 * frame[NAMES[5]]
    y = (logit + rng.normal(scale=0.7, size=n) > 0).astype(int).to_numpy()
    frame.insert(0, "case_id", [f"ich{i:04d}" for i in range(n)])
    frame.insert(1, "patient_id", frame["case_id"])
    return frame, y


class _Columns(TransformerMixin, BaseEstimator):
    """Stands in for the "features" step: the family-named columns of the manifest."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X[NAMES].copy()

    def get_feature_names_out(self, input_features=None):
        return np.array(NAMES, dtype=object)


def _pipeline(classifier, k=5, sampler=False):
    """A radhe-shaped imblearn pipeline on precomputed, family-named columns (fast: no images)."""
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.pipeline import Pipeline
    from sklearn.feature_selection import SelectKBest
    from sklearn.preprocessing import StandardScaler

    from radhe.classifiers import make_classifier

    clf = make_classifier(classifier, random_state=0)
    if classifier in ("random_forest", "xgboost", "lightgbm"):
        clf.set_params(n_estimators=40)
    return Pipeline(
        [
            ("features", _Columns()),
            ("scale", StandardScaler()),
            ("select", SelectKBest(k=k)),
            *([("sample", RandomOverSampler(random_state=0))] if sampler else []),
            ("classify", clf),
        ]
    ).set_output(transform="pandas")


def test_feature_family_and_display_name():
    fams = [feature_family(n) for n in NAMES]
    assert fams == [
        "radiomics: shape",
        "radiomics: first-order",
        "radiomics: texture",
        "radiomics: filtered",
        "CNN",
        "clinical",
        "clinical",
        "tabular",
    ]
    assert feature_family("radiomics__log-sigma-3-0-mm-3D_firstorder_Mean") == "radiomics: filtered"
    assert feature_family("no_prefix") == "other"
    assert feature_family("marker__blend_sign") == "NCCT markers (CNN)"
    assert feature_family("clinical__blend_sign") == "NCCT markers (read)"
    assert feature_family("clinical__hypodensity") == "NCCT markers (read)"
    assert set(fams) <= set(FAMILIES)
    assert display_name("radiomics__original_shape_Sphericity") == "original shape Sphericity (radiomics)"
    assert display_name("clinical__age_years") == "age years (clinical)"
    # a radiologist's marker read is labelled as its own family, as its colour and table row say
    assert display_name("clinical__blend_sign") == "blend sign (NCCT marker, read)"


@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_shap_values_per_classifier(classifier):
    X, y = _data()
    pipe = _pipeline(classifier).fit(X, y)
    ex = shap_values(pipe, X.iloc[:25], background=X, max_background=30, n_permutations=1)
    assert (ex.explainer, ex.output) == EXPECTED[classifier]
    selected = list(pipe[:-1].get_feature_names_out())
    assert ex.values.shape == (25, 5) and ex.data.shape == (25, 5)
    assert ex.feature_names == selected and set(selected) <= set(NAMES)
    assert list(ex.values.index) == list(X.index[:25])
    # additivity: contributions sum to the model output minus the base value
    out = ex.values.sum(axis=1).to_numpy() + ex.base_value
    clf = pipe[-1]
    Z = pipe[:-1].transform(X.iloc[:25])
    if ex.output == "probability":
        ref = clf.predict_proba(Z)[:, 1]
    else:
        core = unwrap_classifier(clf)
        ref = core.predict(Z, output_margin=True) if classifier == "xgboost" else clf.decision_function(Z)
        if classifier == "lightgbm":
            ref = core.predict(Z, raw_score=True)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    imp = ex.importance()
    assert imp["mean_abs_shap"].is_monotonic_decreasing and set(imp["family"]) <= set(FAMILIES)
    fam = ex.family_importance()
    assert fam["share"].sum() == pytest.approx(1.0)
    assert fam["n_features"].sum() == 5


def test_shap_values_with_sampler_step():
    """With a sampler before the classifier, imblearn's ``pipe[:-1]`` has no transform; steps are applied one by one."""
    X, y = _data()
    pipe = _pipeline("xgboost", sampler=True).fit(X, y)
    ex = shap_values(pipe, X.iloc[:10])
    assert ex.values.shape == (10, 5) and ex.explainer == "tree"
    assert list(ex.data.columns) == list(pipe.named_steps["select"].get_feature_names_out())


def test_permutation_explainer_matches_exact_linear_shap():
    """For a linear decision function with independent features SHAP is w_j (x_j - mean_bg_j)."""
    from sklearn.svm import LinearSVC

    X, y = _data()
    Z = X[NAMES]
    clf = LinearSVC().fit(Z, y)
    ex = shap_values(clf, Z.iloc[:10], background=Z, max_background=40, explainer="permutation", n_permutations=1)
    bg = Z.sample(n=40, random_state=0)
    expected = (Z.iloc[:10] - bg.mean()) * clf.coef_[0]
    np.testing.assert_allclose(ex.values.to_numpy(), expected.to_numpy(), atol=1e-10)
    assert ex.output == "decision"


def test_oof_shap_aggregates_folds():
    X, y = _data(120, seed=2)
    pred = cross_validate_predictions(_pipeline("logistic", k=3), X, y, cv=4, threshold_cv=None, return_estimators=True)
    oof = oof_shap_values(pred, X)
    assert isinstance(oof, OOFShap) and len(oof.folds) == 4
    assert oof.values.shape[0] == len(X) and list(oof.values.index) == list(X.index)
    # every case explained by its own fold's model: exactly its fold's 3 features are non-missing
    assert (oof.values.notna().sum(axis=1) == 3).all()
    for k, ex in enumerate(oof.folds):
        test = pred.splits[k][1]
        assert set(ex.values.index) == set(X.index[test])
    imp = oof.importance()
    assert {"mean_abs_shap", "fold_mean", "fold_sd", "n_folds", "family"} <= set(imp.columns)
    assert imp.index[0] in NAMES[:1] + NAMES[4:6]  # an informative feature ranks first
    assert imp["n_folds"].between(1, 4).all()
    fam = oof.family_importance()
    assert "fold_sd" in fam.columns and fam["share"].sum() == pytest.approx(1.0)
    ex, label = oof.explanation_for("ich0007")
    assert label == X.index[7] and label in ex.values.index
    with pytest.raises(KeyError):
        oof.explanation_for("nobody")
    with pytest.raises(Exception, match="return_estimators"):
        oof_shap_values(cross_validate_predictions(_pipeline("logistic"), X, y, threshold_cv=None), X)


def test_plots_render_png(tmp_path):
    from radhe import plots
    from radhe.evaluation import summarize

    X, y = _data(100, seed=4)
    pred = cross_validate_predictions(_pipeline("logistic", k=4), X, y, cv=4, threshold_cv=None, return_estimators=True)
    rep = summarize(pred, n_bootstrap=100)
    oof = oof_shap_values(pred, X)
    figs = {
        "roc": plots.plot_roc([rep]),
        "pr": plots.plot_pr(rep),
        "cal": plots.plot_calibration(rep),
        "cm": plots.plot_confusion_matrix(rep),
        "bar": plots.plot_importance(oof, top=15),
        "fam": plots.plot_family_importance(oof),
        "bee": plots.plot_beeswarm(oof),
        "wf": plots.plot_waterfall(oof, "ich0003"),
        "wf_single": plots.plot_waterfall(oof.folds[0], 0),
    }
    for name, fig in figs.items():
        path = plots.save_png(fig, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000, name
    assert plots.to_base64_png(figs["roc"]).startswith("iVBOR")


def test_waterfall_labels_show_the_values_the_user_gave():
    """Not the standardised model input: onset 8.71 h reads 8.71, a 0/1 flag reads 0 or 1."""
    import radhe
    from radhe.explain import shap_values
    from radhe.plots import feature_value_text, plot_waterfall

    rng = np.random.default_rng(3)
    n = 120
    X = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "onset_to_ct_h": rng.uniform(0.5, 24, n).round(2),
                      "anticoagulant": (rng.random(n) < 0.3).astype(int), "age_years": rng.normal(70, 10, n)})
    X.loc[5, "onset_to_ct_h"] = 8.71
    X.loc[7, "age_years"] = np.nan  # missing: imputed for the model, shown as missing
    X["sex"] = np.where(rng.random(n) < 0.5, "F", "M")
    y = (rng.random(n) < 1 / (1 + np.exp(-(3 - 0.3 * X["onset_to_ct_h"] + X["anticoagulant"])))).astype(int)
    X.loc[9, "onset_to_ct_h"] = np.nan  # imputed (the training median) inside the features step itself
    X.loc[11, "sex"] = None             # imputed (the most frequent category) there too
    model = radhe.make_pipeline(radiomics=None, random_state=0).fit(X, y)
    ex = shap_values(model, X)
    assert ex.raw_data is not None and list(ex.raw_data.columns) == list(ex.values.columns)
    onset = next(c for c in ex.raw_data.columns if c.endswith("onset_to_ct_h"))
    np.testing.assert_allclose(ex.raw_data[onset], X["onset_to_ct_h"])  # NaN where the user gave none
    assert np.isfinite(ex.data[onset]).all()  # the model saw a value there
    sex = [c for c in ex.raw_data.columns if "sex" in c]
    assert sex and ex.raw_data.loc[11, sex].isna().all() and ex.raw_data.drop(index=11)[sex].notna().all().all()
    labels = [t.get_text() for t in plot_waterfall(ex, 9, top=30).axes[0].get_yticklabels()]
    assert any("onset" in lbl and lbl.endswith("= missing") for lbl in labels), labels
    assert not np.allclose(ex.data[onset], X["onset_to_ct_h"])  # the model saw scaled values
    fig = plot_waterfall(ex, 5, top=3)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("onset" in lbl and lbl.endswith("= 8.71") for lbl in labels), labels
    labels = [t.get_text() for t in plot_waterfall(ex, 7, top=10).axes[0].get_yticklabels()]
    assert any("age" in lbl and lbl.endswith("= missing") for lbl in labels), labels
    assert feature_value_text(1.0) == "1" and feature_value_text(2.6049) == "2.6"
