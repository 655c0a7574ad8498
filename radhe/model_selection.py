"""Patient-grouped cross-validation.

A patient scanned twice (admission and a repeat scan, or both sides of a bilateral bleed) must not
have one scan in the training fold and the other in the test fold: the model would recognise the
patient rather than predict the outcome, and the cross-validated AUC would be optimistic.

:class:`PatientStratifiedKFold` is a drop-in ``cv=`` for :class:`~sklearn.model_selection.GridSearchCV`
and :func:`~sklearn.model_selection.cross_val_score` that reads the patient of every row from the
manifest's ``patient_id`` column; :func:`check_no_patient_overlap` verifies any splitter.

The same holds for the folds a model makes inside its own ``fit`` (a penalty chosen by inner
cross-validation, a stacking meta-model, Platt calibration): :func:`inner_folds` groups them by
patient, :func:`grouped_splits` calls any splitter with the patients (and says so with a
:class:`PatientGroupingWarning` when it cannot), and :func:`warn_ungrouped_inner_searches` finds a
``GridSearchCV`` (or any estimator with a ``cv``) nested in a model whose splitter would put one
patient on both sides of its inner folds.

Examples
--------
>>> from sklearn.model_selection import cross_val_score            # doctest: +SKIP
>>> cv = PatientStratifiedKFold(n_splits=5, random_state=0)         # doctest: +SKIP
>>> cross_val_score(radhe.make_pipeline(), manifest, manifest["he"], cv=cv, scoring="roc_auc")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import numbers
import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator, StratifiedGroupKFold, StratifiedKFold, check_cv

from radhe._compat import Interval, validate_param_values
from radhe.errors import ConfigurationError, InputError, InputWarning

__all__ = ["PatientStratifiedKFold", "PatientGroupingWarning", "check_no_patient_overlap", "patient_groups",
           "inner_folds", "grouped_splits", "splitter_takes_groups", "shared_patients",
           "warn_ungrouped_inner_searches"]


class PatientGroupingWarning(InputWarning):
    """Folds that should keep each patient's rows together cannot, or do not.

    Raised as a warning (the outer evaluation stays honest: radhe's cross-validation refuses outer
    folds that split a patient) when a model's *inner* folds — a calibration, a grid search —
    would put rows of one patient on both sides, or when a splitter cannot take the patients.
    """


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
        labels = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(groups))
        rows = [str(r) for r in labels[missing.to_numpy()][:5]]
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

    _parameter_constraints = {
        "n_splits": [Interval(numbers.Integral, 2, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "group_column": [str],
    }

    def __init__(self, n_splits=5, *, shuffle=True, random_state=None, group_column="patient_id"):
        # validated here, as scikit-learn's splitters do (a splitter has no fit, and no set_params)
        validate_param_values(
            self._parameter_constraints,
            {"n_splits": n_splits, "shuffle": shuffle, "random_state": random_state, "group_column": group_column},
            type(self).__name__,
        )
        if not shuffle and random_state is not None:
            raise ConfigurationError(
                "PatientStratifiedKFold: random_state has no effect with shuffle=False; leave random_state "
                f"to its default (None) or set shuffle=True (got random_state={random_state!r})"
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
        classes, counts = np.unique(np.asarray(y), return_counts=True)
        if len(classes) and (counts < self.n_splits).all():
            held = ", ".join(f"{int(k)} with y={c}" for c, k in zip(classes, counts, strict=True))
            raise InputError(
                f"cannot make {self.n_splits} stratified folds from {len(patients)} case(s) ({held}): each outcome "
                "has fewer cases than folds; lower n_splits"
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


def shared_patients(patients, splits) -> np.ndarray:
    """The patients that some split puts in both its training and its test rows (sorted, unique).

    Parameters
    ----------
    patients : array-like of shape (n_samples,)
        Patient of each row.
    splits : iterable of (train indices, test indices)

    Returns
    -------
    ndarray
        Empty when every split keeps each patient on one side.
    """
    patients = np.asarray(patients, dtype=object).astype(str)
    shared = [np.intersect1d(patients[np.asarray(train)], patients[np.asarray(test)]) for train, test in splits]
    return np.unique(np.concatenate(shared)) if shared else np.array([], dtype=str)


def _listing(values, limit=10) -> str:
    values = list(values)
    return ", ".join(map(repr, values[:limit])) + (" ..." if len(values) > limit else "")


def _raise_if_shared(patients, train, test, fold):
    shared = np.intersect1d(patients[train], patients[test])
    if shared.size:
        listing = _listing(shared.tolist())
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


def splitter_takes_groups(cv) -> bool:
    """Whether ``cv.split`` has a ``groups`` parameter (or takes ``**kwargs``), read from its signature.

    A splitter whose signature cannot be read is taken to accept ``groups`` (it is then called with
    them, and any error it raises is reported, never retried without them).
    """
    try:
        parameters = inspect.signature(cv.split).parameters
    except (TypeError, ValueError):
        return True
    return "groups" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _repeats(groups) -> bool:
    values = pd.Series(np.asarray(groups, dtype=object).astype(str))
    return bool(values.duplicated().any())


def grouped_splits(cv, X, y=None, groups=None, *, owner="cross-validation") -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train, test)`` folds of splitter ``cv``, given the patients when its ``split`` takes ``groups``.

    A splitter whose ``split`` has no ``groups`` parameter (read from its signature) is called
    without them; when patients have several rows a :class:`PatientGroupingWarning` says that
    grouping is not applied. Nothing is retried: an error raised by the splitter (with or without
    the groups) reaches the caller. Whether the folds actually keep patients together is the
    caller's check (:func:`shared_patients`), since a splitter may take ``groups`` and ignore them
    (``StratifiedKFold`` does).

    Parameters
    ----------
    cv : splitter
        An object with ``split(X, y[, groups])``.
    X : array-like or pandas.DataFrame
    y : array-like, optional
    groups : array-like of shape (n_samples,), optional
        Patient of each row.
    owner : str
        Who is splitting, for the warning (e.g. ``"CalibratedSVC's calibration folds"``).

    Returns
    -------
    list of (ndarray, ndarray)
        Positional row indices.

    Raises
    ------
    radhe.errors.ConfigurationError
        ``cv`` has no ``split`` method.
    """
    if not hasattr(cv, "split"):
        raise ConfigurationError(
            f"{owner}: cv must be a splitter with split(X, y, groups) (or an int where allowed), got {cv!r}")
    if splitter_takes_groups(cv):
        splits = cv.split(X, y, groups=groups)
    else:
        if groups is not None and _repeats(groups):
            warnings.warn(
                f"{owner}: {type(cv).__name__}.split takes no groups, so the folds are not grouped by patient "
                "although some patients have several rows; use radhe.model_selection.PatientStratifiedKFold "
                "or another group-aware splitter",
                PatientGroupingWarning, stacklevel=2,
            )
        splits = cv.split(X, y)
    return [(np.asarray(train), np.asarray(test)) for train, test in splits]


def _nested_cv_estimators(estimator):
    """(path, estimator) of ``estimator`` and every estimator among its deep parameters that has a ``cv``."""
    found = []
    candidates = [("", estimator)]
    if hasattr(estimator, "get_params"):
        candidates += [(key, value) for key, value in estimator.get_params(deep=True).items()
                       if hasattr(value, "get_params") and not isinstance(value, type)]
    seen = set()
    for path, candidate in candidates:
        if id(candidate) in seen or not hasattr(candidate, "fit"):
            continue
        seen.add(id(candidate))
        try:
            params = candidate.get_params(deep=False)
        except TypeError:  # a class given as a parameter
            continue
        if "cv" in params:
            found.append((path, candidate))
    return found


def _takes_groups_in_fit(estimator) -> bool:
    try:
        return "groups" in inspect.signature(estimator.fit).parameters
    except (TypeError, ValueError):
        return False


def warn_ungrouped_inner_searches(estimator, X, y, groups, splits=None) -> list[str]:
    """Warn about inner searches nested in ``estimator`` whose folds would split a patient.

    A ``GridSearchCV`` (or any estimator with a ``cv`` parameter: ``RandomizedSearchCV``,
    ``CalibratedClassifierCV``, ``StackingClassifier``, ...) inside a model fitted by radhe's
    cross-validation gets the training rows and no patients, so its splitter must read them from
    the manifest (:class:`PatientStratifiedKFold` does) or it mixes one patient's scans between
    its inner training and test parts — its choices (a penalty, a calibration) are then made on
    leaked patients. Each such search is split on every outer training fold, as it will be when
    fitted (``split(X_train, y_train)``, no groups), and a :class:`PatientGroupingWarning` names it,
    its splitter and the patients split. radhe's own estimators whose ``fit`` takes ``groups``
    (they get the patients from :class:`radhe.pipeline.RadhePipeline` and group their folds
    themselves) and ``cv`` values that are fixed folds are not checked. Nothing is fitted.

    Parameters
    ----------
    estimator : estimator
        The model cross-validation will fit (a pipeline, a search, ...).
    X : pandas.DataFrame or array-like
        All rows.
    y : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,)
        Patient of each row.
    splits : list of (train, test), optional
        The outer folds; each training part is checked (default: all rows, once).

    Returns
    -------
    list of str
        The warning messages (empty when every inner search keeps patients together, or when no
        patient has several rows).
    """
    from sklearn.base import is_classifier

    patients = np.asarray(groups, dtype=object).astype(str)
    if not _repeats(patients):
        return []
    y = np.asarray(y)
    parts = [np.arange(len(patients))] if splits is None else [np.asarray(train) for train, _ in splits]
    messages = []
    for path, nested in _nested_cv_estimators(estimator):
        if _takes_groups_in_fit(nested):
            continue
        cv = nested.get_params(deep=False)["cv"]
        if not (cv is None or isinstance(cv, numbers.Integral) or hasattr(cv, "split")):
            continue  # fixed folds (an iterable of index pairs) are the user's own choice
        where = "the model" if not path else f"step {path!r}"
        shared = set()
        problem = None
        for train in parts:
            Xtr = X.iloc[train] if hasattr(X, "iloc") else np.asarray(X)[train]
            splitter = check_cv(cv, y[train], classifier=is_classifier(nested))
            try:
                folds = [(np.asarray(a), np.asarray(b)) for a, b in splitter.split(Xtr, y[train])]
            except (ValueError, TypeError, InputError) as error:
                # e.g. GroupKFold, which needs groups that the search does not get inside cross-validation
                problem = f"its splitter {type(splitter).__name__} cannot split the training rows without groups ({error})"
                break
            shared.update(shared_patients(patients[train], folds).tolist())
        if problem is None and not shared:
            continue
        if problem is None:
            problem = (f"its splitter {type(splitter).__name__} puts {len(shared)} patient(s) in both the training and "
                       f"the test part of an inner fold ({_listing(sorted(shared))})")
        message = (f"{type(nested).__name__} ({where}): {problem}; inside cross-validation it gets no patient ids, "
                   "so use cv=radhe.model_selection.PatientStratifiedKFold(...), which reads them from the "
                   "manifest's patient_id column")
        warnings.warn(message, PatientGroupingWarning, stacklevel=2)
        messages.append(message)
    return messages
