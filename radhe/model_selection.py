"""Patient-grouped cross-validation.

A patient scanned twice (admission and a repeat scan, or both sides of a bilateral bleed) must not
have one scan in the training fold and the other in the test fold: the model would recognise the
patient rather than predict the outcome, and the cross-validated AUC would be optimistic.

:class:`PatientStratifiedKFold` is a drop-in ``cv=`` for :class:`~sklearn.model_selection.GridSearchCV`
and :func:`~sklearn.model_selection.cross_val_score` that reads the patient of every row from the
manifest's ``patient_id`` column; :func:`check_no_patient_overlap` verifies any splitter.

Examples
--------
>>> from sklearn.model_selection import cross_val_score            # doctest: +SKIP
>>> cv = PatientStratifiedKFold(n_splits=5, random_state=0)         # doctest: +SKIP
>>> cross_val_score(radhe.make_pipeline(), manifest, manifest["he"], cv=cv, scoring="roc_auc")  # doctest: +SKIP
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator, StratifiedGroupKFold, StratifiedKFold, check_cv

from radhe.errors import ConfigurationError, InputError

__all__ = ["PatientStratifiedKFold", "check_no_patient_overlap", "patient_groups", "inner_folds"]


def patient_groups(X, groups=None, *, group_column="patient_id") -> np.ndarray:
    """Return the patient of every row: ``groups`` when given, else ``X[group_column]``.

    Raises
    ------
    radhe.errors.InputError
        Neither is available, or the lengths differ, or a patient id is missing.
    """
    if groups is None:
        if isinstance(X, pd.DataFrame) and group_column in X.columns:
            groups = X[group_column]
        else:
            have = list(X.columns) if isinstance(X, pd.DataFrame) else type(X).__name__
            raise InputError(
                f"patient-grouped cross-validation needs the patient of every row: pass X as a manifest "
                f"DataFrame with a '{group_column}' column, or groups=<patient ids> (X has: {have})"
            )
    groups = np.asarray(groups, dtype=object)
    if len(groups) != len(X):
        raise InputError(f"groups has {len(groups)} entries but X has {len(X)} rows")
    missing = pd.isna(pd.Series(groups))
    if missing.any():
        rows = [str(r) for r in np.flatnonzero(missing.to_numpy())[:5]]
        raise InputError(
            f"patient id missing in row(s) {', '.join(rows)}; fill '{group_column}' (radhe.load_manifest "
            "fills it from case_id)"
        )
    return groups.astype(str)


class PatientStratifiedKFold(BaseCrossValidator):
    """Stratified K-fold that never splits a patient's scans between training and test.

    :class:`sklearn.model_selection.StratifiedGroupKFold` on the patients, with the groups read
    from the manifest, and every split verified (an overlap raises instead of being returned).

    Parameters
    ----------
    n_splits : int, default 5
        Number of folds (at most the number of patients of the rarer class; sklearn warns when a
        class has fewer patients than folds).
    shuffle : bool, default True
        Shuffle patients before forming folds (class balance across folds is kept either way).
    random_state : int or None, default None
        Seed of the shuffle; fix it for reproducible folds.
    group_column : str, default "patient_id"
        Manifest column naming the patient of each row, used when ``split`` gets no ``groups``.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"patient_id": ["p1", "p1", "p2", "p3", "p4", "p5"]})
    >>> y = [0, 0, 1, 0, 1, 1]
    >>> cv = PatientStratifiedKFold(n_splits=2, random_state=0)
    >>> check_no_patient_overlap(cv, X, y)
    2
    """

    # a consumer of ``groups`` (the metadata-routing request scikit-learn's group-aware splitters
    # declare): with routing enabled, ``groups`` given to a meta-estimator reaches ``split``
    __metadata_request__split = {"groups": True}

    def __init__(self, n_splits=5, *, shuffle=True, random_state=None, group_column="patient_id"):
        # the checks (and messages) of scikit-learn's K-fold splitters
        if not isinstance(n_splits, numbers.Integral):
            raise ValueError(
                f"The number of folds must be of Integral type. {n_splits!r} of type {type(n_splits)} was passed."
            )
        if n_splits <= 1:
            raise ValueError(
                "k-fold cross-validation requires at least one train/test split by setting n_splits=2 or "
                f"more, got n_splits={n_splits}."
            )
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False; got {shuffle}")
        if not shuffle and random_state is not None:
            raise ValueError(
                "Setting a random_state has no effect since shuffle is False. You should leave random_state "
                "to its default (None), or set shuffle=True."
            )
        self.n_splits = int(n_splits)
        self.shuffle = shuffle
        self.random_state = random_state
        self.group_column = group_column

    def split(self, X, y=None, groups=None):
        """Yield ``(train, test)`` index arrays; groups default to ``X[group_column]``.

        Raises
        ------
        radhe.errors.InputError
            No patient ids; ``y`` missing; fewer patients than folds.
        """
        if y is None:
            raise InputError("PatientStratifiedKFold.split needs y (the outcome) to stratify the folds")
        patients = patient_groups(X, groups, group_column=self.group_column)
        n_patients = len(np.unique(patients))
        if n_patients < self.n_splits:
            raise InputError(
                f"cannot make {self.n_splits} patient-grouped folds from {n_patients} patient(s); "
                "lower n_splits"
            )
        inner = StratifiedGroupKFold(
            n_splits=self.n_splits, shuffle=self.shuffle, random_state=self.random_state if self.shuffle else None
        )
        for fold, (train, test) in enumerate(inner.split(np.zeros(len(patients)), np.asarray(y), patients)):
            _raise_if_shared(patients, train, test, fold)
            yield train, test

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of folds."""
        return self.n_splits


def _raise_if_shared(patients, train, test, fold):
    shared = np.intersect1d(patients[train], patients[test])
    if shared.size:
        listing = ", ".join(map(repr, shared[:10].tolist())) + (" ..." if shared.size > 10 else "")
        raise InputError(
            f"cross-validation fold {fold} has {shared.size} patient(s) in both its training and test rows "
            f"({listing}): scans of one patient must stay in one fold, or the evaluation is optimistic. "
            "Use radhe.model_selection.PatientStratifiedKFold (or another group-aware splitter with "
            "groups=patient ids)."
        )


def check_no_patient_overlap(cv, X, y=None, groups=None, *, group_column="patient_id") -> int:
    """Verify that no split of ``cv`` puts one patient in both training and test rows.

    Parameters
    ----------
    cv : int, splitter or iterable of (train, test)
        Anything accepted as ``cv=`` by scikit-learn (an int means stratified K-fold, which does
        not know about patients and fails this check as soon as a patient has two scans).
    X : pandas.DataFrame
        The manifest (patients read from ``X[group_column]`` unless ``groups`` is given).
    y : array-like, optional
        The outcome, for stratified splitters.
    groups : array-like, optional
        Patient ids; also passed to the splitter (group-aware splitters need them).

    Returns
    -------
    int
        The number of splits checked.

    Raises
    ------
    radhe.errors.InputError
        A fold shares patients between training and test (the message names them).
    """
    patients = patient_groups(X, groups, group_column=group_column)
    splitter = check_cv(cv, y, classifier=True)
    n = 0
    for fold, (train, test) in enumerate(splitter.split(X, y, groups)):
        _raise_if_shared(patients, np.asarray(train), np.asarray(test), fold)
        n += 1
    if n == 0:
        raise ConfigurationError("the cross-validation splitter produced no split")
    return n


def inner_folds(y, groups=None, *, n_splits=5, random_state=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and, with ``groups``, patient-grouped) folds of a training fold, for the choices a
    model makes inside its own ``fit`` (a penalty strength, a stacking meta-model).

    The number of folds is reduced to the number of patients (rows without ``groups``) of the rarer
    class when that is smaller.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Binary labels.
    groups : array-like of shape (n_samples,), optional
        Patient of each row; no patient is split between the two parts of a fold.
    n_splits : int, default 5
    random_state : int or None
        Seed of the shuffle.

    Returns
    -------
    list of (train indices, test indices)

    Raises
    ------
    radhe.errors.InputError
        Not two classes, or fewer than 2 patients of one class.
    """
    y = np.asarray(y)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size != 2:
        raise InputError(f"inner cross-validation needs two classes in the training rows, got {classes.size}")
    if groups is not None:
        groups = np.asarray(groups, dtype=object).astype(str)
        if len(groups) != len(y):
            raise InputError(f"groups has {len(groups)} entries but y has {len(y)}")
        smallest = min(len(np.unique(groups[codes == k])) for k in (0, 1))
    else:
        smallest = int(np.bincount(codes).min())
    k = int(min(n_splits, smallest))
    if k < 2:
        raise InputError(
            f"inner cross-validation needs at least 2 patients of each class in the training rows; the rarer "
            f"class has {smallest}"
        )
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state)
        return list(splitter.split(np.zeros(len(y)), codes, groups))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state).split(np.zeros(len(y)), codes))
