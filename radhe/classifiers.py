"""Classifiers by name, with class-imbalance defaults (pipeline step ``"classify"``).

==================  ===========================================================================
name                estimator
==================  ===========================================================================
``"logistic"``      L2-penalised logistic regression, ``C=0.1``, ``class_weight="balanced"``
``"svm"``           RBF support-vector machine, ``class_weight="balanced"``; ``predict_proba``
                    from Platt scaling fitted by internal cross-validation on the training fold
                    (AUC scorers use ``decision_function``)
``"random_forest"`` 500 trees, ``min_samples_leaf=3``, ``class_weight="balanced_subsample"``
``"xgboost"``       :class:`BalancedXGBClassifier`: shallow boosted trees whose positive class is
                    re-weighted on the training fold (the ``scale_pos_weight`` ratio, computed in fit)
``"lightgbm"``      small-leaf LightGBM, ``class_weight="balanced"``
==================  ===========================================================================

With ``balanced=False`` (used by :func:`radhe.make_pipeline` when a resampler already balances
the training fold) the class weights are left out.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted
from xgboost import XGBClassifier

from radhe._compat import HasMethods, Interval, StrOptions, validate_params
from radhe.errors import ConfigurationError, InputError

__all__ = ["CLASSIFIERS", "make_classifier", "classifier_name", "BalancedXGBClassifier", "CalibratedSVC",
           "is_tree_model", "PenalizedLogisticCV", "DEFAULT_CS"]

CLASSIFIERS = ("logistic", "svm", "random_forest", "xgboost", "lightgbm")


class _InputTypeError(InputError, TypeError):
    """An :class:`~radhe.errors.InputError` for input of the wrong type (e.g. an object that is not
    a number in X), also a ``TypeError`` as scikit-learn's own error for it is."""


def _validated(estimator, X, y="no_validation", *, reset: bool, **kwargs):
    """``sklearn.utils.validation.validate_data`` with its errors as :class:`~radhe.errors.InputError`.

    scikit-learn's checks and messages (2-D, finite, not sparse or complex, the number and names of
    the features seen in fit, ``y`` given and of the right length), prefixed with the estimator's
    name; the fitted ``n_features_in_`` / ``feature_names_in_`` are set only with ``reset=True``.
    ``y="no_validation"`` (the default) validates X alone.
    """
    from sklearn.utils.validation import validate_data

    try:
        return validate_data(estimator, X, y, reset=reset, **kwargs)
    except TypeError as error:
        raise _InputTypeError(f"{type(estimator).__name__}: {error}") from None
    except ValueError as error:
        raise InputError(f"{type(estimator).__name__}: {error}") from None


def _check_targets(estimator, y) -> None:
    """InputError unless ``y`` holds class labels (scikit-learn's check and message)."""
    from sklearn.utils.multiclass import check_classification_targets

    try:
        check_classification_targets(y)
    except ValueError as error:  # "Unknown label type: continuous ..."
        raise InputError(f"{type(estimator).__name__}: {error}") from None


def _binary_classes(estimator, y) -> np.ndarray:
    """The two classes of ``y``; InputError for a continuous target or another number of classes."""
    _check_targets(estimator, y)
    classes = np.unique(y)
    if classes.size != 2:
        raise InputError(f"Only binary classification is supported: {type(estimator).__name__} got y with "
                         f"{classes.size} class(es) {classes[:5].tolist()}")
    return classes


def make_classifier(name="logistic", *, random_state=None, balanced=True):
    """Return a new classifier.

    Parameters
    ----------
    name : str or estimator, default "logistic"
        One of :data:`CLASSIFIERS`, or a scikit-learn compatible classifier (returned cloned,
        its parameters untouched).
    random_state : int or None
        Seed of the named estimators that use randomness.
    balanced : bool, default True
        Weight classes inversely to their training-fold frequency.

    Returns
    -------
    estimator
    """
    if not isinstance(name, str):
        if not (hasattr(name, "fit") and (hasattr(name, "predict_proba") or hasattr(name, "decision_function"))):
            raise ConfigurationError(
                f"classifier must be one of {CLASSIFIERS} or an estimator with fit and predict_proba / "
                f"decision_function, got {name!r}"
            )
        return clone(name)
    weight = "balanced" if balanced else None
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=0.1, class_weight=weight, max_iter=5000, random_state=random_state)
    if name == "svm":
        return CalibratedSVC(C=1.0, kernel="rbf", gamma="scale", class_weight=weight, random_state=random_state)
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=500, min_samples_leaf=3, max_features="sqrt",
            class_weight="balanced_subsample" if balanced else None, n_jobs=1, random_state=random_state,
        )
    if name == "xgboost":
        return BalancedXGBClassifier(
            balanced=balanced, n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8,
            colsample_bytree=0.8, min_child_weight=1.0, reg_lambda=1.0, n_jobs=1, random_state=random_state,
            tree_method="hist", eval_metric="logloss", verbosity=0,
        )
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(
            n_estimators=300, learning_rate=0.05, num_leaves=7, min_child_samples=10, subsample=0.8,
            subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0, class_weight=weight, n_jobs=1,
            random_state=random_state, verbose=-1,
        )
    raise ConfigurationError(f"unknown classifier {name!r}; choose one of {CLASSIFIERS} or pass an estimator")


def classifier_name(estimator) -> str | None:
    """The :data:`CLASSIFIERS` name matching an estimator's type (``None`` for other estimators)."""
    cls_name = type(estimator).__name__
    module = type(estimator).__module__
    if cls_name == "LogisticRegression" or cls_name == "LogisticRegressionCV":
        return "logistic"
    if cls_name in ("SVC", "NuSVC", "CalibratedSVC"):
        return "svm"
    if cls_name in ("RandomForestClassifier", "ExtraTreesClassifier"):
        return "random_forest"
    if module.startswith("xgboost") or isinstance(estimator, XGBClassifier):
        return "xgboost"
    if module.startswith("lightgbm"):
        return "lightgbm"
    return None


def is_tree_model(estimator) -> bool:
    """True for tree ensembles, which need no feature scaling."""
    if classifier_name(estimator) in ("random_forest", "xgboost", "lightgbm"):
        return True
    module = type(estimator).__module__
    return any(part in module for part in ("tree", "forest", "gradient_boosting", "catboost"))


class BalancedXGBClassifier(XGBClassifier):
    """:class:`xgboost.XGBClassifier` that re-weights classes from the training fold.

    With ``balanced=True`` each sample gets the weight ``n / (2 n_class)`` computed in :meth:`fit`
    from the labels it is given. For two classes this gives the positive class ``n_negative /
    n_positive`` times the weight of the negative class — XGBoost's recommended ``scale_pos_weight``
    — while the total weight (which ``min_child_weight`` is relative to) stays ``n``. Because it is
    computed inside ``fit``, each cross-validation fold uses its own ratio and nothing leaks from
    the test rows. SHAP's ``TreeExplainer`` accepts it as an ``XGBClassifier``.

    Parameters
    ----------
    balanced : bool, default True
        Re-weight classes (multiplies any ``sample_weight`` passed to fit).
    **kwargs
        Any :class:`xgboost.XGBClassifier` parameter. The sizes and rates (``n_estimators``,
        ``max_depth``, ``learning_rate``, ``subsample``, the ``colsample_*`` fractions, ``gamma``,
        ``min_child_weight``, ``reg_alpha``, ``reg_lambda``, ...) are checked in :meth:`fit`
        against XGBoost's documented ranges, with a message naming the parameter and value; the
        rest are XGBoost's to check (``"no_validation"`` in ``_parameter_constraints``).
    """

    # XGBoost's documented ranges (https://xgboost.readthedocs.io/en/stable/parameter.html); None
    # is XGBoost's own default for each of them
    _parameter_constraints = {
        "balanced": ["boolean"],
        "n_estimators": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_depth": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "max_leaves": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "max_bin": [Interval(numbers.Integral, 2, None, closed="left"), None],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="left"), None],
        "gamma": [Interval(numbers.Real, 0, None, closed="left"), None],
        "min_child_weight": [Interval(numbers.Real, 0, None, closed="left"), None],
        "max_delta_step": [Interval(numbers.Real, 0, None, closed="left"), None],
        "subsample": [Interval(numbers.Real, 0, 1, closed="right"), None],
        "colsample_bytree": [Interval(numbers.Real, 0, 1, closed="right"), None],
        "colsample_bylevel": [Interval(numbers.Real, 0, 1, closed="right"), None],
        "colsample_bynode": [Interval(numbers.Real, 0, 1, closed="right"), None],
        "reg_alpha": [Interval(numbers.Real, 0, None, closed="left"), None],
        "reg_lambda": [Interval(numbers.Real, 0, None, closed="left"), None],
        "scale_pos_weight": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "num_parallel_tree": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "n_jobs": [numbers.Integral, None],
        **{name: "no_validation" for name in (
            "base_score", "booster", "callbacks", "device", "early_stopping_rounds", "enable_categorical",
            "eval_metric", "feature_types", "feature_weights", "grow_policy", "importance_type",
            "interaction_constraints", "max_cat_threshold", "max_cat_to_onehot", "missing", "monotone_constraints",
            "multi_strategy", "objective", "random_state", "sampling_method", "tree_method",
            "validate_parameters", "verbosity")},
    }

    def __init__(self, *, balanced=True, **kwargs):
        self.balanced = balanced
        super().__init__(**kwargs)

    def get_xgb_params(self):
        params = super().get_xgb_params()
        params.pop("balanced", None)
        return params

    def fit(self, X, y, *, sample_weight=None, **kwargs):
        """Fit with class weights from ``y`` (see the class description).

        Unlike ``XGBClassifier``, any class labels work (e.g. ``"yes"``/``"no"``, ``1``/``2``): they
        are encoded to ``0 .. n_classes-1`` for XGBoost and decoded by :meth:`predict`.
        """
        from sklearn.preprocessing import LabelEncoder

        validate_params(self)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            from sklearn.exceptions import DataConversionWarning

            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
                "(n_samples,), for example using ravel().", DataConversionWarning, stacklevel=2,
            )
            y = y.ravel()
        # multi-label indicator matrices go to XGBoost as they are
        encoder = LabelEncoder().fit(y) if y.ndim == 1 else None
        encoded = encoder.transform(y) if encoder is not None else y
        if self.balanced:
            weights = compute_sample_weight("balanced", encoded)
            sample_weight = weights if sample_weight is None else np.asarray(sample_weight) * weights
        self.label_encoder_ = None  # XGBoost checks the encoded labels against classes_ during fit
        super().fit(X, encoded, sample_weight=sample_weight, **kwargs)
        self.label_encoder_ = encoder
        return self

    @property
    def classes_(self) -> np.ndarray:
        encoder = getattr(self, "label_encoder_", None)
        return encoder.classes_ if encoder is not None else np.arange(self.n_classes_)

    def predict(self, X, **kwargs):
        """Predicted class labels (as given to :meth:`fit`)."""
        predicted = super().predict(X, **kwargs)
        encoder = getattr(self, "label_encoder_", None)
        if encoder is None or kwargs.get("output_margin"):
            return predicted
        return encoder.classes_[np.asarray(predicted).astype(int)]


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """Support-vector classifier with probabilities calibrated on the training fold.

    An :class:`sklearn.svm.SVC` fitted on all the rows given to :meth:`fit`, whose
    ``decision_function`` is mapped to probabilities by Platt (sigmoid) scaling fitted on
    out-of-fold decision values of an internal stratified ``cv``-fold split of those same rows
    (:class:`sklearn.calibration.CalibratedClassifierCV` with ``ensemble=False``). Nothing from
    the outer test rows is used. ``decision_function`` (what AUC scorers use) is the SVC's own.

    With ``groups`` (the patient of each row) the internal folds never split a patient: a
    patient's second scan in the calibration-training part would make the out-of-fold scores of
    the first look better than they are, and the probabilities over-confident.
    :class:`radhe.pipeline.RadhePipeline` passes the manifest's ``patient_id`` (as
    :class:`~radhe.stacking.FamilyStackingClassifier` does to its sub-models); with scikit-learn's
    metadata routing enabled, ``groups`` given to a meta-estimator (``GridSearchCV.fit(X, y,
    groups=...)``, ``cross_validate(..., params={"groups": ...})``) reach it too, since it requests
    them by default.

    Parameters
    ----------
    C : float > 0, default 1.0
        SVC regularisation (as for :class:`sklearn.svm.SVC`).
    kernel : {"linear", "poly", "rbf", "sigmoid"} or callable, default "rbf"
        As for ``SVC`` ("precomputed" is not supported: the calibration folds split rows only).
    gamma : {"scale", "auto"} or float >= 0, default "scale"
        Kernel coefficient, as for ``SVC``.
    class_weight : "balanced", dict or None, default "balanced"
        As for ``SVC``.
    cv : int >= 2, splitter or list of (train, test), default 3
        Internal folds for the calibration. An int means stratified folds (grouped by patient with
        ``groups``), reduced to the number of rows (patients, with ``groups``) of the rarest class
        when that is smaller; with fewer than 2, no calibration (``calibrated_`` is None and
        ``predict_proba`` is the logistic of the decision value). A splitter is called with the
        groups when its ``split`` takes them; a :class:`~radhe.model_selection.PatientGroupingWarning`
        says when its folds (or the given list's) put a patient on both sides anyway.
    sampler : imbalanced-learn resampler or None, default None
        Resamples the calibration-training part of every internal fold and the rows the SVC is
        finally fitted on; the calibration is fitted on the real held-out rows only (a resampler
        before this model would calibrate on copies or synthetic rows, and split patients).
    random_state : int, RandomState or None, default None
        Shuffles the internal folds of an int ``cv``.

    Attributes
    ----------
    svc_ : sklearn.svm.SVC or imblearn.pipeline.Pipeline
        The SVC fitted on all rows (with ``sampler``: the resampler and the SVC).
    calibrated_ : sklearn.calibration.CalibratedClassifierCV or None
    calibration_folds_ : list of (ndarray, ndarray) or None
        The ``(train, test)`` row positions of the internal calibration folds (None without calibration).
    classes_ : ndarray
    n_features_in_ : int
    """

    _parameter_constraints = {
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
        "kernel": [StrOptions({"linear", "poly", "rbf", "sigmoid"}), callable],
        "gamma": [StrOptions({"scale", "auto"}), Interval(numbers.Real, 0, None, closed="left")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "cv": [Interval(numbers.Integral, 2, None, closed="left"), HasMethods(["split", "get_n_splits"]), list],
        "sampler": [HasMethods(["fit_resample"]), None],
        "random_state": ["random_state"],
    }

    # metadata routing: a consumer of ``groups`` in fit by default (they are always patient ids here)
    __metadata_request__fit = {"groups": True}

    def __init__(self, C=1.0, kernel="rbf", gamma="scale", class_weight="balanced", cv=3, sampler=None,
                 random_state=None):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.class_weight = class_weight
        self.cv = cv
        self.sampler = sampler
        self.random_state = random_state

    def __setstate__(self, state):
        # saved before `sampler` existed (before 2026-12-04): no sampler
        super().__setstate__({"sampler": None, **state})

    def _calibration_folds(self, X, y, groups):
        """The internal folds (list of (train, test)) or None when a class has fewer than 2 rows/patients."""
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

        from radhe.model_selection import PatientGroupingWarning, grouped_splits, shared_patients

        owner = "CalibratedSVC's calibration folds"
        if isinstance(self.cv, numbers.Integral):
            classes, codes = np.unique(y, return_inverse=True)
            if classes.size < 2:
                return None
            if groups is None:
                smallest = int(np.bincount(codes).min())
            else:
                smallest = min(len(np.unique(groups[codes == k])) for k in range(classes.size))
            n_folds = int(min(self.cv, smallest))
            if n_folds < 2:
                return None
            if groups is None:
                splitter = StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state)
                return [(train, test) for train, test in splitter.split(X, y)]
            splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=self.random_state)
            return [(train, test) for train, test in splitter.split(X, y, groups)]
        if isinstance(self.cv, list):
            folds = [(np.asarray(train), np.asarray(test)) for train, test in self.cv]
        else:
            folds = grouped_splits(self.cv, X, y, groups, owner=owner)
        if groups is not None:
            shared = shared_patients(groups, folds)
            if shared.size:
                listing = ", ".join(map(repr, shared[:10].tolist())) + (" ..." if shared.size > 10 else "")
                warnings.warn(
                    f"{owner} put {shared.size} patient(s) in both the calibration-training and the "
                    f"calibration-test rows ({listing}): the calibration is over-confident; use an int cv "
                    "(grouped by patient) or a group-aware splitter such as "
                    "radhe.model_selection.PatientStratifiedKFold", PatientGroupingWarning, stacklevel=3,
                )
        return folds

    def fit(self, X, y, sample_weight=None, groups=None):
        """Fit the SVC and its calibration on the training rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        groups : array-like of shape (n_samples,), optional
            Patient of each row: the internal calibration folds never split a patient.

        Returns
        -------
        self
        """
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        validate_params(self)
        X, y = _validated(self, X, y, reset=True)
        _check_targets(self, y)
        if groups is not None:
            from radhe.model_selection import patient_groups

            groups = patient_groups(X, groups)
        svc = SVC(C=self.C, kernel=self.kernel, gamma=self.gamma, class_weight=self.class_weight)
        if self.sampler is not None:
            from imblearn.pipeline import Pipeline as ImbalancedPipeline

            if sample_weight is not None:
                raise ConfigurationError("CalibratedSVC: sample_weight and a sampler cannot be combined")
            # resampled inside every calibration fold's training part, and for the final fit
            svc = ImbalancedPipeline([("sample", clone(self.sampler)), ("svc", svc)])
        folds = self._calibration_folds(X, y, groups)
        if folds is not None:
            weights = {} if sample_weight is None else {"sample_weight": sample_weight}
            calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)
            calibrated.fit(X, y, **weights)
            self.svc_ = calibrated.calibrated_classifiers_[0].estimator
        else:  # fewer than 2 cases of a class: no calibration possible, logistic of the raw score
            calibrated = None
            self.svc_ = svc.fit(X, y, **({} if sample_weight is None else {"sample_weight": sample_weight}))
        self.calibrated_ = calibrated
        self.calibration_folds_ = folds
        self.classes_ = self.svc_.classes_
        return self

    def decision_function(self, X):
        """Signed distance to the separating surface (larger: class ``classes_[1]``)."""
        check_is_fitted(self, "svc_")
        X = _validated(self, X, reset=False)
        return self.svc_.decision_function(X)

    def predict_proba(self, X):
        """Calibrated class probabilities."""
        check_is_fitted(self, "svc_")
        X = _validated(self, X, reset=False)
        if self.calibrated_ is None:
            score = self.svc_.decision_function(X)
            p = 1.0 / (1.0 + np.exp(-score))
            return np.column_stack([1 - p, p]) if self.classes_.size == 2 else np.ones((len(X), 1))
        return self.calibrated_.predict_proba(X)

    def predict(self, X):
        """The SVC's prediction (the sign of :meth:`decision_function`, as for ``SVC``)."""
        check_is_fitted(self, "svc_")
        return self.svc_.predict(_validated(self, X, reset=False))


#: Inverse L2 strengths searched by :class:`PenalizedLogisticCV` (1e-3 to 1e2).
DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 2, 11))

#: Knots of the spline design that ``spline_knots="auto"`` weighs against linear terms.
_AUTO_KNOTS = 4


class PenalizedLogisticCV(ClassifierMixin, BaseEstimator):
    """L2 logistic regression on scaled features, its strength chosen by inner cross-validation.

    ``fit`` scales the features (continuous ones by two standard deviations, flags by their range,
    so that one penalty treats both alike; Gelman 2008), optionally adds a natural-spline-like basis of every
    continuous feature (an additive model: a risk that rises, flattens or turns with age, volume
    or a lab value, as clinical prediction models are recommended to allow), and picks ``C`` from
    ``Cs`` by the held-out log-loss over stratified inner folds of the training rows — grouped
    by patient when ``groups`` are given — then refits on all of them. No class weights: the
    probabilities estimate the risk in the population the rows come from.

    Parameters
    ----------
    Cs : sequence of float, default 11 values from 1e-3 to 1e2 (log-spaced)
        Candidate inverse regularisation strengths.
    cv : int, default 5
        Inner folds (see :func:`radhe.model_selection.inner_folds`).
    spline_knots : "auto", int or None, default "auto"
        Knots (at training quantiles) of the cubic B-spline basis added for every continuous
        feature (one with at least ``min_unique`` distinct training values); linear beyond the
        boundary knots. None: linear terms only. "auto": with at most ``max_spline_features``
        continuous features, linear terms and a 4-knot basis are both fitted on the inner folds
        and the splines kept only when their held-out log-loss is lower by more than one standard
        error (the one-SE rule); with more, linear terms. Splines capture the non-linear effects
        of a few clinical variables (+0.006 to +0.014 AUC on the real clinical tables of
        ``benchmarks/bench_validity.py``) but multiply the parameters of a hundred radiomics or
        gene features beyond what a cohort supports (−0.02 on 76 genes), and add only variance
        where effects are linear (−0.013 on the synthetic cohort, whose risk model is linear).
    max_spline_features : int, default 20
        See ``spline_knots="auto"``.
    min_unique : int, default 10
        Features with fewer distinct training values (flags, one-hot columns, scores) stay linear.
    max_iter : int, default 5000
    sampler : imbalanced-learn resampler or None, default None
        Resamples the training part of every inner fold and the rows of the final refit; the held-out
        part of each inner fold, on which ``C`` is chosen (and the out-of-fold scores of
        :meth:`fit_oof`), stays the real rows. (A resampler before this model would put copies or
        synthetic rows on both sides of the inner folds, and choose a far weaker penalty.)
    random_state : int or None
        Seed of the inner folds.

    Attributes
    ----------
    C_ : float
        The strength of the refitted model: the candidate chosen on the inner folds, times (mean
        inner training size / number of rows, both after resampling), so that the penalty per row
        stays the one chosen.
    knots_ : int or None
        The chosen design (None: linear).
    cv_log_loss_ : pandas.DataFrame
        Held-out log-loss of every candidate ``C`` (rows) and design (columns).
    spline_columns_ : ndarray of int
        Input columns given a spline basis.
    model_ : sklearn.linear_model.LogisticRegression
        The model refitted on all rows.
    coef_, intercept_ : ndarray
        ``model_``'s coefficients, on the scaled expanded features.
    n_iter_ : ndarray of shape (1,)
        ``model_``'s solver iterations.
    classes_ : ndarray
    n_features_in_, feature_names_in_
    """

    def __init__(self, Cs=DEFAULT_CS, cv=5, *, spline_knots="auto", max_spline_features=20, min_unique=10,
                 max_iter=5000, sampler=None, random_state=None):
        self.Cs = Cs
        self.cv = cv
        self.spline_knots = spline_knots
        self.max_spline_features = max_spline_features
        self.min_unique = min_unique
        self.max_iter = max_iter
        self.sampler = sampler
        self.random_state = random_state

    _parameter_constraints = {
        "Cs": ["array-like"],
        "cv": [Interval(numbers.Integral, 2, None, closed="left")],
        "spline_knots": [StrOptions({"auto"}), Interval(numbers.Integral, 2, None, closed="left"), None],
        "max_spline_features": [Interval(numbers.Integral, 0, None, closed="left")],
        "min_unique": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "sampler": [HasMethods(["fit_resample"]), None],
        "random_state": ["random_state"],
    }

    # metadata routing: a consumer of ``groups`` in fit by default (they are always patient ids here)
    __metadata_request__fit = {"groups": True}

    def __setstate__(self, state):
        # saved before `sampler` existed (before 2026-12-04): no sampler
        super().__setstate__({"sampler": None, **state})

    def _check_params(self):
        """Validate the parameters; return the sorted candidate ``Cs``."""
        validate_params(self)
        try:
            Cs = np.asarray(self.Cs, dtype=float).ravel()
        except (TypeError, ValueError):
            Cs = np.array([np.nan])
        if Cs.size == 0 or not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
            raise ConfigurationError(
                f"The 'Cs' parameter of PenalizedLogisticCV must be a non-empty sequence of positive finite "
                f"numbers. Got {self.Cs!r} instead.")
        return np.sort(Cs)

    def _design(self, X, *, fit: bool) -> np.ndarray:
        """Scaled features plus the scaled spline basis of the continuous ones."""
        from sklearn.preprocessing import SplineTransformer

        if fit:
            self.center_, self.scale_ = _gelman_scaling(X)
        Z = (X - self.center_) / self.scale_
        if fit:
            self.spline_columns_ = np.asarray(
                [j for j in range(X.shape[1]) if self.knots_ is not None
                 and np.unique(X[:, j]).size >= self.min_unique], dtype=int)
            self.splines_ = None
            if self.spline_columns_.size:
                self.splines_ = SplineTransformer(n_knots=int(self.knots_), degree=3, knots="quantile",
                                                  extrapolation="linear", include_bias=False)
                self.splines_.fit(Z[:, self.spline_columns_])
        if self.splines_ is None:
            return Z
        basis = self.splines_.transform(Z[:, self.spline_columns_])
        if fit:
            self.basis_center_, self.basis_scale_ = _gelman_scaling(basis)
        return np.hstack([Z, (basis - self.basis_center_) / self.basis_scale_])

    def fit(self, X, y, groups=None):
        """Choose ``C`` on inner folds of these rows and refit on all of them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite feature values.
        y : array-like of shape (n_samples,)
            Binary labels.
        groups : array-like of shape (n_samples,), optional
            Patient of each row (inner folds never split a patient).
        """
        from radhe.model_selection import inner_folds

        Cs = self._check_params()
        X, y = _validated(self, X, y, dtype=np.float64, reset=True)
        _binary_classes(self, y)
        folds = inner_folds(y, groups, n_splits=self.cv, random_state=self.random_state)
        self._fit_folds(X, y, folds, Cs)
        return self

    def fit_oof(self, X, y, folds):
        """Fit with ``C`` chosen on the given folds; return the out-of-fold log-odds at that ``C``.

        One pass over the folds serves both the choice of ``C`` and the out-of-fold scores a
        stacking meta-model needs (:class:`radhe.stacking.FamilyStackingClassifier` uses it),
        instead of a second level of cross-validation inside every fold.

        Parameters
        ----------
        X, y :
            As for :meth:`fit`.
        folds : list of (train indices, test indices)
            Folds covering every row once as test (e.g. :func:`radhe.model_selection.inner_folds`).

        Returns
        -------
        ndarray of shape (n_samples,)
            Log-odds of ``classes_[1]`` for each row, from the model of the fold holding it out.
        """
        Cs = self._check_params()
        X, y = _validated(self, X, y, dtype=np.float64, reset=True)
        return self._fit_folds(X, y, folds, Cs)

    def _fit_folds(self, X, y, folds, Cs):
        """:meth:`fit_oof` on validated arrays (``n_features_in_`` / ``feature_names_in_`` already set)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self.classes_ = _binary_classes(self, y)
        target = (y == self.classes_[1]).astype(float)
        base = LogisticRegression(max_iter=self.max_iter)
        knots = self.spline_knots
        n_continuous = sum(np.unique(X[:, j]).size >= self.min_unique for j in range(X.shape[1]))
        if isinstance(knots, str):  # "auto": linear, and splines where few continuous features
            candidates = [None, _AUTO_KNOTS] if 0 < n_continuous <= self.max_spline_features else [None]
        else:
            candidates = [knots if n_continuous else None]
        paths, losses = {}, {}
        # the training part of each fold, resampled (the held-out part stays the real rows)
        fold_rows = [self._resampled(X[train], y[train]) for train, _ in folds]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in candidates:
                oof = np.full((len(y), Cs.size), np.nan)
                for (_, test), (Xtr, ytr) in zip(folds, fold_rows, strict=True):
                    probe = clone(self)
                    probe.knots_ = k
                    Ztr = probe._design(Xtr, fit=True)
                    Zte = probe._design(X[test], fit=False)
                    model = clone(base).set_params(warm_start=True)
                    for j, C in enumerate(Cs):  # strongest penalty first; warm starts follow the path
                        oof[test, j] = model.set_params(C=float(C)).fit(Ztr, ytr).decision_function(Zte)
                if np.isnan(oof).any():
                    raise InputError("PenalizedLogisticCV.fit_oof: the folds do not hold out every row once")
                paths[k] = oof
                # held-out log-loss of every C, pooled over the folds
                losses[k] = np.mean(np.logaddexp(0.0, oof) - target[:, None] * oof, axis=0)
            chosen, best = _choose_design(paths, losses, target)
            self.knots_ = chosen
            # scikit-learn's C multiplies the summed loss: refitting on all n rows with the C chosen on
            # folds of ~n(k-1)/k rows would penalise less per row and spread the scores wider than the
            # out-of-fold ones a stacking meta-model was calibrated on; keep the penalty per row
            train_size = float(np.mean([len(ytr) for _, ytr in fold_rows]))
            X_all, y_all = self._resampled(X, y)
            self.C_ = float(Cs[best]) * train_size / len(y_all)
            self.cv_log_loss_ = _log_loss_table(losses, Cs)
            Z = self._design(X_all, fit=True)
            self.model_ = clone(base).set_params(C=self.C_).fit(Z, y_all)
        self.coef_ = self.model_.coef_
        self.intercept_ = self.model_.intercept_
        self.n_iter_ = self.model_.n_iter_
        return paths[chosen][:, best]

    def _resampled(self, X, y):
        """``(X, y)`` through a fresh copy of ``sampler`` (unchanged without one)."""
        if self.sampler is None:
            return X, y
        Xs, ys = clone(self.sampler).fit_resample(X, y)
        return np.asarray(Xs, dtype=np.float64), np.asarray(ys)

    def decision_function(self, X):
        """Log-odds of ``classes_[1]``."""
        check_is_fitted(self, "model_")
        X = _validated(self, X, dtype=np.float64, reset=False)
        return self.model_.decision_function(self._design(X, fit=False))

    def predict_proba(self, X):
        """Class probabilities (columns ordered as ``classes_``)."""
        check_is_fitted(self, "model_")
        X = _validated(self, X, dtype=np.float64, reset=False)
        return self.model_.predict_proba(self._design(X, fit=False))

    def predict(self, X):
        """The class of higher probability."""
        check_is_fitted(self, "model_")
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def additive_terms(self, X):
        """Each input feature's term of the log-odds (its linear and spline parts together).

        The model is additive: ``decision_function(X) == intercept_ + additive_terms(X).sum(axis=1)``,
        so exact interventional SHAP values are these terms minus their mean over a background.

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self, "model_")
        X = _validated(self, X, dtype=np.float64, reset=False)
        Z = self._design(X, fit=False)
        weighted = Z * self.coef_[0]
        p = X.shape[1]
        terms = weighted[:, :p].copy()
        if self.splines_ is not None:
            per_feature = (Z.shape[1] - p) // len(self.spline_columns_)
            for position, j in enumerate(self.spline_columns_):
                start = p + position * per_feature
                terms[:, j] += weighted[:, start:start + per_feature].sum(axis=1)
        return terms


def _gelman_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) putting binary and continuous inputs on one footing (Gelman 2008): a
    continuous column divided by two standard deviations, a two-valued one (a flag, a one-hot level)
    by its range — so one L2 penalty treats a flag like a ±1 SD change of a continuous feature.
    Plain standardisation would divide a rare flag by its small SD and penalise it far less."""
    centre = X.mean(axis=0)
    scale = np.ones(X.shape[1])
    for j in range(X.shape[1]):
        values = np.unique(X[:, j])
        if values.size == 2:
            scale[j] = values[1] - values[0]
        elif values.size > 2:
            scale[j] = 2.0 * X[:, j].std()
    scale[~(scale > 0)] = 1.0
    return centre, scale


def _choose_design(paths: dict, losses: dict, target: np.ndarray):
    """(design, index of C): the best C of each design; a spline design only when it beats the linear
    one by more than one standard error of the paired per-row log-loss difference (the one-SE
    rule: the simpler model unless the data clearly say otherwise)."""
    best = {k: int(np.argmin(v)) for k, v in losses.items()}
    if None not in best or len(best) == 1:
        k = min(best, key=lambda d: losses[d][best[d]])
        return k, best[k]
    linear = paths[None][:, best[None]]
    chosen, index = None, best[None]
    for k, j in best.items():
        if k is None:
            continue
        other = paths[k][:, j]
        gain = (np.logaddexp(0.0, linear) - target * linear) - (np.logaddexp(0.0, other) - target * other)
        se = gain.std(ddof=1) / np.sqrt(len(gain))
        if gain.mean() > se and losses[k][j] < losses[chosen][index]:
            chosen, index = k, j
    return chosen, index


def _log_loss_table(losses: dict, Cs):
    """Held-out log-loss, rows C, one column per design ("linear", "<k> knots")."""
    import pandas as pd

    return pd.DataFrame({("linear" if k is None else f"{k} knots"): v for k, v in losses.items()},
                        index=pd.Index(np.asarray(Cs, dtype=float), name="C"))

