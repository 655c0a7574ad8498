"""Patient-grouped cross-validation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score

from radhe.classifiers import CalibratedSVC
from radhe.errors import ConfigurationError, InputError
from radhe.model_selection import (
    PatientGroupingWarning,
    PatientStratifiedKFold,
    check_no_patient_overlap,
    patient_groups,
    warn_ungrouped_inner_searches,
)


def two_scans_per_patient(n_patients=30, seed=0):
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"p{i:03d}" for i in range(n_patients)], 2)
    y_patient = rng.integers(0, 2, n_patients)
    X = pd.DataFrame(
        {
            "case_id": [f"c{i:03d}" for i in range(2 * n_patients)],
            "patient_id": patients,
            "x": rng.normal(size=2 * n_patients),
        }
    )
    return X, np.repeat(y_patient, 2)


def test_folds_never_share_a_patient_and_are_stratified():
    X, y = two_scans_per_patient()
    cv = PatientStratifiedKFold(n_splits=5, random_state=0)
    splits = list(cv.split(X, y))
    assert len(splits) == cv.get_n_splits() == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(len(X)))  # every row tested once
    for train, test in splits:
        assert not set(X.patient_id.iloc[train]) & set(X.patient_id.iloc[test])
        assert abs(y[test].mean() - y.mean()) < 0.25
    assert check_no_patient_overlap(cv, X, y) == 5


def test_reproducible_with_random_state():
    X, y = two_scans_per_patient()
    a = [test.tolist() for _, test in PatientStratifiedKFold(4, random_state=1).split(X, y)]
    b = [test.tolist() for _, test in PatientStratifiedKFold(4, random_state=1).split(X, y)]
    assert a == b


def test_groups_argument_overrides_the_column():
    X, y = two_scans_per_patient()
    other = np.arange(len(X)) // 3
    for train, test in PatientStratifiedKFold(3, random_state=0).split(X, y, groups=other):
        assert not set(other[train]) & set(other[test])


def test_plain_stratified_kfold_is_refused_with_the_patient_named():
    X, y = two_scans_per_patient()
    with pytest.raises(InputError, match=r"fold 0 has \d+ patient\(s\) in both .*'p0"):
        check_no_patient_overlap(StratifiedKFold(5, shuffle=True, random_state=0), X, y)
    shuffled = X.sample(frac=1.0, random_state=0)
    with pytest.raises(InputError, match="patient"):
        check_no_patient_overlap(5, shuffled, y[shuffled.index.to_numpy()])


def test_group_aware_splitter_passes_with_groups():
    X, y = two_scans_per_patient()
    assert check_no_patient_overlap(GroupKFold(3), X, y, groups=X["patient_id"]) == 3


def test_one_scan_per_patient_manifest():
    X, y = two_scans_per_patient()
    X = X.drop_duplicates("patient_id")
    y = y[::2]
    assert check_no_patient_overlap(StratifiedKFold(3), X, y) == 3


def test_needs_patient_ids():
    X, y = two_scans_per_patient()
    with pytest.raises(InputError, match="patient_id"):
        list(PatientStratifiedKFold(3).split(X.drop(columns="patient_id"), y))
    with pytest.raises(InputError, match="patient_id"):
        list(PatientStratifiedKFold(3).split(X.to_numpy(), y))
    gappy = X.copy()
    gappy.loc[4, "patient_id"] = None
    with pytest.raises(InputError, match="missing in row"):
        patient_groups(gappy)
    with pytest.raises(InputError, match="needs y"):
        list(PatientStratifiedKFold(3).split(X))


def test_too_few_patients():
    X, y = two_scans_per_patient(n_patients=3)
    with pytest.raises(InputError, match="3 patient"):
        list(PatientStratifiedKFold(5).split(X, y))


def test_usable_as_cv_in_sklearn_with_groups():
    from sklearn.linear_model import LogisticRegression

    X, y = two_scans_per_patient()
    scores = cross_val_score(
        LogisticRegression(), X[["x"]].to_numpy(), y, groups=X["patient_id"].to_numpy(),
        cv=PatientStratifiedKFold(3, random_state=0),
    )
    assert len(scores) == 3


# -------------------------------------------------------------------------------------------------
# parameters of the splitter

@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_splits": 1}, r"The 'n_splits' parameter of PatientStratifiedKFold must be an int in the range \[2, inf\)\. Got 1"),
        ({"n_splits": 2.5}, r"'n_splits' parameter of PatientStratifiedKFold .* Got 2\.5 instead"),
        ({"shuffle": "yes"}, r"'shuffle' parameter of PatientStratifiedKFold must be .*bool.* Got 'yes' instead"),
        ({"random_state": "seed"}, r"'random_state' parameter of PatientStratifiedKFold .* Got 'seed' instead"),
        ({"group_column": 3}, r"'group_column' parameter of PatientStratifiedKFold must be .*str.* Got 3 instead"),
        ({"shuffle": False, "random_state": 0}, r"PatientStratifiedKFold: random_state has no effect with shuffle=False.*random_state=0"),
    ],
)
def test_splitter_parameters_are_validated_with_a_message_naming_them(params, message):
    with pytest.raises(ConfigurationError, match=message):
        PatientStratifiedKFold(**params)


# -------------------------------------------------------------------------------------------------
# CalibratedSVC: the internal calibration folds are grouped by patient

def noise_patients(n_patients=60, scans=2, seed=0):
    """``scans`` near-identical scans per patient, labels per patient and unrelated to the features."""
    rng = np.random.default_rng(seed)
    features = np.repeat(rng.normal(size=(n_patients, 5)), scans, axis=0)
    features += rng.normal(scale=0.01, size=features.shape)
    y = np.repeat(rng.integers(0, 2, n_patients), scans)
    patients = np.repeat([f"p{i:03d}" for i in range(n_patients)], scans)
    return features, y, patients


def _patients_split(folds, patients):
    return [sorted(set(patients[train]) & set(patients[test])) for train, test in folds]


def test_calibrated_svc_calibration_folds_never_split_a_patient():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    X, y, patients = noise_patients()
    model = CalibratedSVC(random_state=0).fit(X, y, groups=patients)
    folds = model.calibration_folds_
    assert len(folds) == 3
    assert sorted(np.concatenate([test for _, test in folds])) == list(range(len(y)))  # a partition
    assert _patients_split(folds, patients) == [[], [], []]
    # these are the folds the Platt scaling was fitted on: scikit-learn's calibration on them gives the same
    reference = CalibratedClassifierCV(SVC(class_weight="balanced"), method="sigmoid", cv=folds, ensemble=False)
    np.testing.assert_allclose(model.predict_proba(X), reference.fit(X, y).predict_proba(X), atol=1e-10)
    # without the patients, the same data's folds do split them (what the groups prevent)
    ungrouped = CalibratedSVC(random_state=0).fit(X, y).calibration_folds_
    assert any(_patients_split(ungrouped, patients))


def test_grouped_calibration_is_not_over_confident_on_repeated_patients():
    """Labels are noise: out-of-fold scores whose patient's other scan was in the calibration-training
    rows look informative, and Platt scaling turns them into confident risks for new patients."""
    X, y, patients = noise_patients()
    new = np.random.default_rng(1).normal(size=(200, 5))
    leaky = CalibratedSVC(C=10.0, random_state=0).fit(X, y).predict_proba(new)[:, 1]
    grouped = CalibratedSVC(C=10.0, random_state=0).fit(X, y, groups=patients).predict_proba(new)[:, 1]
    assert leaky.std() > 0.2 and (leaky.min() < 0.05 or leaky.max() > 0.95)
    assert grouped.std() < 0.1 and np.all(np.abs(grouped - 0.5) < 0.3)


def test_calibrated_svc_gets_the_patients_in_a_pipeline_and_in_stacking():
    from radhe.pipeline import make_pipeline

    X, y, patients = noise_patients(40)
    table = pd.DataFrame(X, columns=[f"lab_{j}" for j in range(X.shape[1])]).assign(
        case_id=[f"c{i:03d}" for i in range(len(y))], patient_id=patients)
    pooled = make_pipeline(radiomics=None, fusion="concat", classifier="svm", random_state=0).fit(table, y)
    assert _patients_split(pooled[-1].calibration_folds_, patients) == [[]] * len(pooled[-1].calibration_folds_)
    stacked = make_pipeline(radiomics=None, classifier="svm", random_state=0).fit(table, y)
    from radhe.stacking import TREES

    sub_models = {family: model for family, model in stacked[-1].estimators_.items() if family != TREES}
    assert sub_models
    for sub_model in sub_models.values():
        assert not any(_patients_split(sub_model.calibration_folds_, patients))


def test_metadata_routing_brings_the_patients_to_calibrated_svc():
    from sklearn import config_context
    from sklearn.model_selection import GridSearchCV

    from radhe.pipeline import make_pipeline

    X, y, patients = noise_patients(45)
    with config_context(enable_metadata_routing=True):
        search = GridSearchCV(CalibratedSVC(random_state=0), {"C": [0.5, 2.0]}, cv=GroupKFold(3))
        search.fit(X, y, groups=patients)
        # radhe's pipeline hands the manifest's patients on as routed metadata
        table = pd.DataFrame(X, columns=[f"lab_{j}" for j in range(X.shape[1])]).assign(
            case_id=[f"c{i:03d}" for i in range(len(y))], patient_id=patients)
        pipe = make_pipeline(radiomics=None, fusion="concat", classifier="svm", random_state=0).fit(table, y)
    folds = search.best_estimator_.calibration_folds_
    assert len(folds) == 3 and not any(_patients_split(folds, patients))
    assert pipe[-1].calibration_folds_ and not any(_patients_split(pipe[-1].calibration_folds_, patients))


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored by StratifiedKFold:UserWarning")
def test_calibrated_svc_warns_when_its_splitter_ignores_the_patients():
    X, y, patients = noise_patients(30)
    with pytest.warns(PatientGroupingWarning, match=r"calibration folds put \d+ patient\(s\) in both .*'p0"):
        CalibratedSVC(cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y, groups=patients)
    with pytest.warns(PatientGroupingWarning, match="HalvesSplitter.split takes no groups"):
        CalibratedSVC(cv=HalvesSplitter()).fit(X, y, groups=patients)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PatientGroupingWarning)
        model = CalibratedSVC(cv=GroupKFold(3)).fit(X, y, groups=patients)  # a group-aware splitter: silent
    assert not any(_patients_split(model.calibration_folds_, patients))


class HalvesSplitter:
    """A real (if simple) splitter whose ``split`` takes no ``groups``: first half / second half of the rows."""

    def split(self, X, y=None):
        n = len(X)
        first, second = np.arange(n // 2), np.arange(n // 2, n)
        yield first, second
        yield second, first

    def get_n_splits(self, X=None, y=None, groups=None):
        return 2


class StrictGroupKFold(GroupKFold):
    """GroupKFold that raises TypeError for patient ids that are not strings."""

    def split(self, X, y=None, groups=None):
        if groups is None or not all(isinstance(g, str) for g in groups):
            raise TypeError("StrictGroupKFold needs string patient ids")
        return super().split(X, y, groups)


# -------------------------------------------------------------------------------------------------
# radhe's cross-validation: splitters that cannot or do not group

def test_cross_validation_never_retries_a_splitter_without_the_groups():
    from radhe.baselines import UnivariateLogistic
    from radhe.evaluation import cross_validate_predictions

    X, y = two_scans_per_patient()
    numeric_ids = np.arange(len(X)) // 2  # patients as ints: the splitter's own TypeError must reach the caller
    with pytest.raises(TypeError, match="string patient ids"):
        cross_validate_predictions(UnivariateLogistic("x"), X, y, cv=StrictGroupKFold(3), groups=numeric_ids,
                                   threshold_cv=None)
    pred = cross_validate_predictions(UnivariateLogistic("x"), X, y, cv=StrictGroupKFold(3), threshold_cv=None)
    assert pred.n_splits == 3


def test_cross_validation_warns_for_a_splitter_without_groups_then_refuses_its_folds():
    from radhe.baselines import UnivariateLogistic
    from radhe.evaluation import cross_validate_predictions

    X, y = two_scans_per_patient()
    shuffled = X.sample(frac=1.0, random_state=0).reset_index(drop=True)  # a patient's scans apart
    labels = y[X.sample(frac=1.0, random_state=0).index.to_numpy()]
    with pytest.warns(PatientGroupingWarning, match="HalvesSplitter.split takes no groups"), \
            pytest.raises(InputError, match="in both its training and test rows"):
        cross_validate_predictions(UnivariateLogistic("x"), shuffled, labels, cv=HalvesSplitter(), threshold_cv=None)
    # one scan per patient: nothing to group, no warning
    single = X.drop_duplicates("patient_id").reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PatientGroupingWarning)
        pred = cross_validate_predictions(UnivariateLogistic("x"), single, y[::2], cv=HalvesSplitter(),
                                          threshold_cv=None)
    assert pred.n_splits == 2


def test_an_inner_grid_search_whose_splitter_ignores_patients_is_named():
    from sklearn.model_selection import GridSearchCV

    from radhe.baselines import UnivariateLogistic
    from radhe.evaluation import cross_validate_predictions

    X, y = two_scans_per_patient(40)
    leaky = GridSearchCV(UnivariateLogistic("x"), {"C": [1.0, 100.0]}, cv=StratifiedKFold(3, shuffle=True,
                                                                                            random_state=0))
    with pytest.warns(PatientGroupingWarning, match=r"GridSearchCV \(the model\): its splitter StratifiedKFold puts "
                                                    r"\d+ patient\(s\) in both .*PatientStratifiedKFold"):
        cross_validate_predictions(leaky, X, y, cv=3, threshold_cv=None)
    # an int cv is scikit-learn's StratifiedKFold too
    with pytest.warns(PatientGroupingWarning, match="StratifiedKFold"):
        assert len(warn_ungrouped_inner_searches(leaky.set_params(cv=3), X, y, X["patient_id"])) == 1
    grouped = GridSearchCV(UnivariateLogistic("x"), {"C": [1.0, 100.0]}, cv=PatientStratifiedKFold(3, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PatientGroupingWarning)
        pred = cross_validate_predictions(grouped, X, y, cv=3, threshold_cv=None)
    assert pred.n_splits == 3
    # radhe's own estimators group their folds themselves (they get the patients): not flagged
    assert warn_ungrouped_inner_searches(CalibratedSVC(), X[["x"]], y, X["patient_id"]) == []
