"""radhe.make_pipeline / radhe.param_grid / FeatureFusion, end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from radhe.errors import ConfigurationError, InputError
from radhe.features import ClinicalFeatures, FeatureFusion, RadiomicsFeatures, TabularFeatures
from radhe.model_selection import PatientStratifiedKFold
from radhe.pipeline import make_pipeline, param_grid

CLASSIFIER_NAMES = ("logistic", "svm", "random_forest", "xgboost", "lightgbm")


# ---------------------------------------------------------------------------------------------
# small real transformers standing in for the deep-learning steps (which train networks)


class CopyMaskSegmenter(TransformerMixin, BaseEstimator):
    """A "segmenter" that predicts the reference mask: adds ``output_column`` = the mask paths."""

    def __init__(self, output_column="mask_pred"):
        self.output_column = output_column

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return X.assign(**{self.output_column: X["mask"]})


class MaskVolumeEmbedder(TransformerMixin, BaseEstimator):
    """A one-number "embedding": the haematoma volume (mL) from the mask file."""

    def __init__(self, mask_column="mask"):
        self.mask_column = mask_column

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        volumes = []
        for path in X[self.mask_column]:
            mask = sitk.ReadImage(path)
            volumes.append(np.count_nonzero(sitk.GetArrayViewFromImage(mask)) * np.prod(mask.GetSpacing()) / 1000)
        return pd.DataFrame({"cnn__volume_ml": volumes}, index=X.index)

    def get_feature_names_out(self, input_features=None):
        return np.array(["cnn__volume_ml"], dtype=object)


# ---------------------------------------------------------------------------------------------
# data


def tabular_table(n=90, seed=0):
    """A precomputed-feature table: 2 informative numeric features, noise, a category, gaps."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + 0.6 * rng.normal(size=n) > 0.4).astype(int)
    table = pd.DataFrame(
        {
            "case_id": [f"c{i:03d}" for i in range(n)],
            "patient_id": [f"p{i // 2:03d}" for i in range(n)],  # two scans per patient
            "score_a": signal + 0.3 * rng.normal(size=n),
            "score_b": -signal + 0.8 * rng.normal(size=n),
            "group": rng.choice(["x", "y", "z"], n),
            **{f"noise_{j}": rng.normal(size=n) for j in range(8)},
            "he": y,
        },
        index=pd.RangeIndex(1000, 1000 + n),
    )
    table.loc[1003, "score_a"] = np.nan
    table.loc[1005, "score_b"] = np.inf
    table.loc[1007, "group"] = None
    return table, y


def cv(n_splits=3):
    return PatientStratifiedKFold(n_splits, random_state=0)


# ---------------------------------------------------------------------------------------------
# structure


def test_default_steps_and_defaults():
    pipe = make_pipeline()
    assert [name for name, _ in pipe.steps] == ["features", "clean", "scale", "select", "classify"]
    branches = dict(pipe.named_steps["features"].transformers)
    assert isinstance(branches["radiomics"], RadiomicsFeatures)
    assert branches["radiomics"].get_params() == RadiomicsFeatures().get_params()
    assert isinstance(branches["clinical"], ClinicalFeatures)
    clf = pipe.named_steps["classify"]
    from radhe.classifiers import PenalizedLogisticCV
    from radhe.stacking import FamilyStackingClassifier

    assert isinstance(clf, FamilyStackingClassifier) and clf.fusion == "stack" and clf.families == "auto"
    assert isinstance(clf.estimator, PenalizedLogisticCV)
    assert pipe.named_steps["select"] == "passthrough"  # no univariate pre-selection when stacking
    from imblearn.pipeline import Pipeline

    assert isinstance(pipe, Pipeline)


def test_concat_keeps_the_pooled_pipeline():
    pipe = make_pipeline(fusion="concat")
    clf = pipe.named_steps["classify"]
    assert isinstance(clf, LogisticRegression) and clf.C == 0.1 and clf.class_weight == "balanced"
    assert pipe.named_steps["select"].k == 20
    with pytest.raises(ConfigurationError, match="fusion must be one of"):
        make_pipeline(fusion="mean")


def test_optional_steps_order():
    pipe = make_pipeline(segmenter=CopyMaskSegmenter(), cnn=MaskVolumeEmbedder(), sampler="random_over",
                         fusion="concat")
    assert [name for name, _ in pipe.steps] == [
        "segment", "features", "clean", "scale", "select", "sample", "classify"
    ]
    assert list(dict(pipe.named_steps["features"].transformers)) == ["radiomics", "cnn", "clinical"]
    # a sampler balances the fold: the classifier drops its class weights
    assert pipe.named_steps["classify"].class_weight is None
    # stacked: the sampler resamples inside each family sub-model, never before the meta-model; the
    # default sub-model (inner folds of its own) resamples only their training parts
    stacked = make_pipeline(sampler="random_over")
    assert "sample" not in stacked.named_steps
    assert stacked.named_steps["classify"].estimator.sampler is not None
    sub = make_pipeline(sampler="random_over", classifier="random_forest").named_steps["classify"].estimator
    assert [name for name, _ in sub.steps] == ["sample", "classify"]
    # an SVM calibrated on inner folds takes the sampler itself, with concat too
    svm = make_pipeline(sampler="smote", classifier="svm", fusion="concat")
    assert "sample" not in svm.named_steps and svm.named_steps["classify"].sampler is not None


def test_segmenter_rewires_mask_column_without_touching_user_objects():
    segmenter = CopyMaskSegmenter(output_column="auto_mask")
    radiomics = RadiomicsFeatures(mask_column="mask")
    embedder = MaskVolumeEmbedder()
    pipe = make_pipeline(segmenter=segmenter, radiomics=radiomics, cnn=embedder)
    branches = dict(pipe.named_steps["features"].transformers)
    assert branches["radiomics"].mask_column == "auto_mask"
    assert branches["cnn"].mask_column == "auto_mask"
    assert "auto_mask" in branches["clinical"].exclude
    assert radiomics.mask_column == "mask" and embedder.mask_column == "mask"  # untouched
    assert branches["radiomics"] is not radiomics and pipe.named_steps["segment"] is not segmenter


@pytest.mark.parametrize("fusion", ["stack", "concat"])
def test_tree_models_skip_scaling(fusion):
    assert make_pipeline(classifier="random_forest", fusion=fusion).named_steps["scale"] == "passthrough"
    assert make_pipeline(classifier="xgboost", fusion=fusion).named_steps["scale"] == "passthrough"
    assert make_pipeline(classifier="svm", fusion=fusion).named_steps["scale"] != "passthrough"


def test_user_estimator_is_cloned_and_untouched():
    mine = LogisticRegression(C=3.0)
    pipe = make_pipeline(radiomics=None, classifier=mine, random_state=5, fusion="concat")
    assert pipe.named_steps["classify"] is not mine
    assert pipe.named_steps["classify"].get_params() == mine.get_params()
    assert param_grid(pipe)["classify__C"]  # recognised as logistic regression
    stacked = make_pipeline(radiomics=None, classifier=mine, random_state=5)
    sub = stacked.named_steps["classify"].estimator
    assert sub is not mine and sub.get_params() == mine.get_params()


def test_tabular_table_is_passed_through():
    table, _ = tabular_table()
    pipe = make_pipeline(radiomics=None)
    assert list(dict(pipe.named_steps["features"].transformers)) == ["tabular"]
    names = pipe.named_steps["features"].fit(table).get_feature_names_out()
    assert all(n.startswith("tabular__") for n in names)
    assert "tabular__he" not in names and "tabular__case_id" not in names


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classifier": "deep_forest"}, "unknown classifier"),
        ({"classifier": object()}, "classifier"),
        ({"sampler": "adasyn"}, "sampler"),
        ({"selector": "chi2"}, "selector"),
        ({"k": 0, "selector": "f_classif"}, "k must"),
        ({"k": "many", "fusion": "concat"}, "k must"),
        ({"families": "single", "fusion": "concat"}, "families is used with fusion='stack'"),
        ({"radiomics": None, "clinical": None}, "at least one"),
        ({"clinical": "default", "tabular": "default"}, "both use every column"),
        ({"segmenter": "unet"}, "segmenter"),
    ],
)
def test_configuration_errors(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        make_pipeline(**kwargs)


def test_clinical_and_tabular_split_the_columns():
    table, y = tabular_table()
    pipe = make_pipeline(radiomics=None, clinical="default", tabular=["score_a", "score_b"])
    branches = dict(pipe.named_steps["features"].transformers)
    assert isinstance(branches["clinical"], ClinicalFeatures) and {"score_a", "score_b"} <= set(branches["clinical"].exclude)
    names = list(pipe.named_steps["features"].fit(table, y).get_feature_names_out())
    assert "tabular__score_a" in names and "clinical__score_a" not in names and "clinical__noise_0" in names


# ---------------------------------------------------------------------------------------------
# param_grid


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
@pytest.mark.parametrize("size", ["small", "medium"])
def test_param_grid_keys_exist(name, size):
    pipe = make_pipeline(radiomics=None, classifier=name, fusion="concat")
    grid = param_grid(pipe, size=size)
    params = pipe.get_params()
    assert "select__k" in grid
    assert len(grid) >= 2
    for key in grid:
        assert key in params, key
    n = int(np.prod([len(v) for v in grid.values()]))
    assert n <= 12 if size == "small" else n <= 400


def test_param_grid_for_an_unknown_classifier_and_bad_size():
    from sklearn.naive_bayes import GaussianNB

    assert param_grid(make_pipeline(radiomics=None, classifier=GaussianNB(), fusion="concat")) == {
        "select__k": [10, 20, 40]}
    assert param_grid(make_pipeline(radiomics=None, classifier=GaussianNB())) == {"classify__fusion": ["stack", "concat"]}
    with pytest.raises(ConfigurationError, match="size"):
        param_grid(make_pipeline(radiomics=None), size="huge")
    with pytest.raises(ConfigurationError, match="classify"):
        param_grid(LogisticRegression())


# ---------------------------------------------------------------------------------------------
# end to end on a tabular table


def test_param_grid_of_the_stacked_default():
    pipe = make_pipeline(radiomics=None)
    grid = param_grid(pipe)
    assert grid == {"classify__fusion": ["stack", "concat"], "classify__estimator__spline_knots": ["auto", None, 4]}
    params = pipe.get_params()
    assert all(key in params for key in param_grid(pipe, size="medium"))


def test_grid_search_on_a_tabular_table():
    table, y = tabular_table()
    pipe = make_pipeline(radiomics=None, random_state=0, fusion="concat")
    search = GridSearchCV(pipe, param_grid(pipe), cv=cv(), scoring="roc_auc").fit(table, y)
    assert search.best_score_ > 0.75
    best = search.best_estimator_
    selected = best[:-1].transform(table)
    assert isinstance(selected, pd.DataFrame)
    assert list(selected.index) == list(table.index)
    assert list(selected.columns) == list(best[:-1].get_feature_names_out())
    assert selected.shape[1] == min(search.best_params_["select__k"], selected.shape[1])
    assert np.isfinite(selected.to_numpy()).all()
    assert {"tabular__score_a", "tabular__score_b"} <= set(selected.columns)
    proba = search.predict_proba(table)
    assert proba.shape == (len(table), 2) and np.isfinite(proba).all()


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_every_named_classifier_cross_validates(name):
    table, y = tabular_table()
    pipe = make_pipeline(radiomics=None, classifier=name, random_state=0)
    if name == "random_forest":
        pipe.set_params(classify__estimator__n_estimators=50)
    scores = cross_val_score(pipe, table, y, cv=cv(), scoring="roc_auc")
    assert scores.mean() > 0.65, scores


@pytest.mark.parametrize("sampler", ["smote", pytest.param("random_over", marks=pytest.mark.slow),
                                     pytest.param("random_under", marks=pytest.mark.slow)])
def test_samplers_run_only_in_fit(sampler):
    table, y = tabular_table()
    pipe = make_pipeline(radiomics=None, sampler=sampler, random_state=0).fit(table, y)
    assert pipe.predict_proba(table).shape == (len(table), 2)  # no resampling at predict time
    assert pipe[:-1].transform(table).shape[0] == len(table)
    assert cross_val_score(pipe, table, y, cv=cv(), scoring="roc_auc").mean() > 0.65


def test_imblearn_sampler_object():
    from imblearn.under_sampling import RandomUnderSampler

    table, y = tabular_table()
    sampler = RandomUnderSampler(random_state=1)
    pipe = make_pipeline(radiomics=None, sampler=sampler, fusion="concat").fit(table, y)
    assert pipe.named_steps["sample"] is not sampler
    stacked = make_pipeline(radiomics=None, sampler=sampler).fit(table, y)
    assert stacked.named_steps["classify"].estimators_["tabular"].sampler is not sampler


def test_k_larger_than_the_features_and_mutual_information():
    table, y = tabular_table()
    pipe = make_pipeline(radiomics=None, k=500, selector="mutual_info", random_state=0, fusion="concat")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # the table holds an inf on purpose: that it is named (not silently imputed) is expected
        warnings.filterwarnings("ignore", message=r"TabularFeatures: infinite values", category=UserWarning)
        pipe.fit(table, y)
    assert pipe.named_steps["select"].k_ == pipe.named_steps["clean"].support_.sum()


def test_bad_values_and_unseen_categories_at_predict_time():
    table, y = tabular_table()
    pipe = make_pipeline(radiomics=None, random_state=0).fit(table, y)
    new = table.drop(columns="he").iloc[:4].copy()
    new["group"] = ["never_seen", None, "x", "y"]
    new["score_a"] = [np.nan, np.inf, -np.inf, 1.0]
    proba = pipe.predict_proba(new)
    assert proba.shape == (4, 2) and np.isfinite(proba).all()


def test_xgboost_class_weight_is_computed_in_fit():
    from radhe.classifiers import BalancedXGBClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + rng.normal(size=200) > 1.6).astype(int)  # ~10 % positives
    balanced = BalancedXGBClassifier(n_estimators=30, max_depth=2, random_state=0).fit(X, y)
    plain = BalancedXGBClassifier(balanced=False, n_estimators=30, max_depth=2, random_state=0).fit(X, y)
    assert "balanced" not in balanced.get_xgb_params()
    assert clone(balanced).get_params()["balanced"] is True
    # re-weighting the rare class raises its predicted probabilities
    assert balanced.predict_proba(X)[:, 1].mean() > 1.5 * plain.predict_proba(X)[:, 1].mean()


# ---------------------------------------------------------------------------------------------
# FeatureFusion


class _Rows(TransformerMixin, BaseEstimator):
    def __init__(self, mode="ok"):
        self.mode = mode

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        out = pd.DataFrame({"v": np.arange(len(X), dtype=float)}, index=X.index)
        if self.mode == "short":
            return out.iloc[1:]
        if self.mode == "reordered":
            return out.iloc[::-1]
        if self.mode == "array":
            return out.to_numpy()
        return out


def test_fusion_checks_rows_and_prefixes_names():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0]}, index=[10, 20, 30])
    out = FeatureFusion([("extra", _Rows()), ("tabular", TabularFeatures()), ("off", "drop")]).fit_transform(X)
    assert list(out.columns) == ["extra__v", "tabular__a"]
    assert list(out.index) == [10, 20, 30]
    assert list(FeatureFusion([("arr", _Rows("array"))]).fit_transform(X).columns) == ["arr__0"]
    with pytest.raises(InputError, match="2 rows for 3 input rows"):
        FeatureFusion([("bad", _Rows("short"))]).fit_transform(X)
    with pytest.raises(InputError, match="index differs"):
        FeatureFusion([("bad", _Rows("reordered"))]).fit_transform(X)
    with pytest.raises(ConfigurationError, match="several branches"):
        FeatureFusion([("t1", TabularFeatures()), ("t2", TabularFeatures())]).fit_transform(X)
    with pytest.raises(ConfigurationError, match="at least one"):
        FeatureFusion([("off", "drop")]).fit(X)


def test_fusion_nested_params():
    pipe = make_pipeline(radiomics=None, clinical=ClinicalFeatures())
    pipe.set_params(features__clinical__exclude=("site", "gcs"), features__clinical__missing_indicator=False)
    clinical = dict(pipe.named_steps["features"].transformers)["clinical"]
    assert clinical.exclude == ("site", "gcs") and clinical.missing_indicator is False


# ---------------------------------------------------------------------------------------------
# on a generated cohort (images, masks, clinical variables)


def test_grid_search_on_cohort_clinical_only(small_cohort):
    y = small_cohort["he"]
    pipe = make_pipeline(radiomics=None, clinical=ClinicalFeatures(), random_state=0)
    search = GridSearchCV(pipe, param_grid(pipe), cv=cv(4), scoring="roc_auc").fit(small_cohort, y)
    names = search.best_estimator_[:-1].get_feature_names_out()
    assert all(n.startswith("clinical__") for n in names)
    assert not any(o in n for n in names for o in ("followup", "__he", "site", "case_id", "image"))


def test_grid_search_on_cohort_with_radiomics(small_cohort, tmp_path):
    """The issue's acceptance test: GridSearchCV(make_pipeline(), param_grid(...), cv=<grouped>)."""
    y = small_cohort["he"]
    pipe = make_pipeline(random_state=0, memory=tmp_path / "cache", fusion="concat")
    search = GridSearchCV(pipe, param_grid(pipe), cv=cv(4), scoring="roc_auc").fit(small_cohort, y)
    assert 0.0 <= search.best_score_ <= 1.0
    best = search.best_estimator_
    families = {n.split("__", 1)[0] for n in best.named_steps["features"].get_feature_names_out()}
    assert families == {"radiomics", "clinical"}
    selected = best[:-1].transform(small_cohort)
    assert selected.shape == (len(small_cohort), best.named_steps["select"].k_)
    # the radiomics branch wrote one cache entry per case: folds and candidates re-read them
    radiomics = dict(best.named_steps["features"].transformers)["radiomics"]
    assert radiomics.cache == str(tmp_path / "cache" / "radiomics")
    from radhe.cache import FeatureCache

    assert len(FeatureCache(radiomics.cache)) == len(small_cohort)


def test_segmenter_and_cnn_branches_on_cohort(small_cohort):
    y = small_cohort["he"]
    pipe = make_pipeline(
        segmenter=CopyMaskSegmenter(), cnn=MaskVolumeEmbedder(), clinical=None, random_state=0, k=5,
        selector="f_classif",
    )
    pipe.fit(small_cohort, y)
    names = pipe.named_steps["features"].get_feature_names_out()
    assert "cnn__volume_ml" in names and any(n.startswith("radiomics__") for n in names)
    assert pipe.predict_proba(small_cohort.drop(columns=["he", "followup_volume_ml"])).shape == (len(small_cohort), 2)


@pytest.mark.slow
def test_default_pipeline_learns_on_a_larger_cohort(tmp_path):
    """make_pipeline() with no tuning: clearly better than chance, below the generator's oracle."""
    from radhe.datasets import make_ich_cohort

    manifest = make_ich_cohort(200, tmp_path / "cohort", shape=(96, 96, 16), random_state=1, n_jobs=2)
    oracle = pd.read_csv(tmp_path / "cohort" / "oracle.csv")
    from sklearn.metrics import roc_auc_score

    oracle_auc = roc_auc_score(manifest["he"], oracle["he_risk"])
    scores = cross_val_score(
        make_pipeline(random_state=0, memory=tmp_path / "cache"), manifest, manifest["he"],
        cv=PatientStratifiedKFold(5, random_state=0), scoring="roc_auc",
    )
    assert 0.65 < scores.mean() <= oracle_auc + 0.05, (scores.mean(), oracle_auc)


# ---------------------------------------------------------------------------------------------
# make_pipeline's switches, explicit


def test_every_named_classifier_has_a_grid():
    from radhe.classifiers import CLASSIFIERS
    from radhe.pipeline import _CLASSIFIER_GRIDS

    assert set(_CLASSIFIER_GRIDS) == set(CLASSIFIERS)


def test_clinical_auto_and_default():
    branches = lambda pipe: dict(pipe.named_steps["features"].transformers)  # noqa: E731
    # "auto" (the default) on a table without image branches: a tabular branch
    assert isinstance(branches(make_pipeline(radiomics=None))["tabular"], TabularFeatures)
    assert list(branches(make_pipeline(radiomics=None, clinical="auto"))) == ["tabular"]
    # "default" always means ClinicalFeatures
    assert list(branches(make_pipeline(radiomics=None, clinical="default"))) == ["clinical"]
    # with an image branch, "auto" is ClinicalFeatures
    assert isinstance(branches(make_pipeline())["clinical"], ClinicalFeatures)
    with pytest.raises(ConfigurationError, match="tabular must be None, 'default'"):
        make_pipeline(tabular="auto")


def test_radiomics_cache_is_explicit(tmp_path):
    radiomics = lambda pipe: dict(pipe.named_steps["features"].transformers)["radiomics"]  # noqa: E731
    assert radiomics(make_pipeline(memory=tmp_path)).cache == str(tmp_path / "radiomics")  # "auto"
    assert radiomics(make_pipeline(memory=tmp_path, radiomics_cache=None)).cache is None
    assert radiomics(make_pipeline(radiomics_cache=tmp_path / "rad")).cache == str(tmp_path / "rad")
    own = RadiomicsFeatures(cache=str(tmp_path / "own"))
    assert radiomics(make_pipeline(radiomics=own, memory=tmp_path)).cache == str(tmp_path / "own")
    with pytest.raises(ConfigurationError, match="already has cache"):
        make_pipeline(radiomics=own, radiomics_cache=tmp_path / "other")
    with pytest.raises(ConfigurationError, match="no radiomics branch"):
        make_pipeline(radiomics=None, radiomics_cache=tmp_path)
