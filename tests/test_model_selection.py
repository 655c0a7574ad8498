"""Patient-grouped cross-validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score

from radhe.errors import InputError
from radhe.model_selection import PatientStratifiedKFold, check_no_patient_overlap, patient_groups


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
