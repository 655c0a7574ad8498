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

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted
from xgboost import XGBClassifier

from radhe.errors import ConfigurationError

__all__ = ["CLASSIFIERS", "make_classifier", "classifier_name", "BalancedXGBClassifier", "CalibratedSVC",
           "is_tree_model"]

CLASSIFIERS = ("logistic", "svm", "random_forest", "xgboost", "lightgbm")


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
        Any :class:`xgboost.XGBClassifier` parameter.
    """

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

        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            import warnings

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

    Parameters
    ----------
    C, kernel, gamma, class_weight :
        As for :class:`sklearn.svm.SVC`.
    cv : int, splitter or iterable, default 3
        Internal folds for the calibration (an int is reduced when the minority class is smaller).
    random_state : int or None
        Shuffles the internal folds.

    Attributes
    ----------
    svc_ : sklearn.svm.SVC
        The SVC fitted on all rows.
    calibrated_ : sklearn.calibration.CalibratedClassifierCV
    classes_ : ndarray
    """

    def __init__(self, C=1.0, kernel="rbf", gamma="scale", class_weight="balanced", cv=3, random_state=None):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.class_weight = class_weight
        self.cv = cv
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit the SVC and its calibration on the training rows."""
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import StratifiedKFold
        from sklearn.svm import SVC
        from sklearn.utils.validation import validate_data

        X, y = validate_data(self, X, y, reset=True)
        svc = SVC(C=self.C, kernel=self.kernel, gamma=self.gamma, class_weight=self.class_weight)
        _, counts = np.unique(y, return_counts=True)
        if isinstance(self.cv, numbers.Integral):
            n_folds = int(min(self.cv, counts.min())) if counts.size > 1 else 0
            folds = StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state) if n_folds >= 2 else None
        else:  # a splitter or an iterable of (train, test)
            n_folds, folds = 2, self.cv
        if n_folds >= 2:
            calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)
            calibrated.fit(X, y, sample_weight=sample_weight)
            self.svc_ = calibrated.calibrated_classifiers_[0].estimator
        else:  # fewer than 2 cases of a class: no calibration possible, logistic of the raw score
            calibrated = None
            self.svc_ = svc.fit(X, y, sample_weight=sample_weight)
        self.calibrated_ = calibrated
        self.classes_ = self.svc_.classes_
        return self

    def decision_function(self, X):
        """Signed distance to the separating surface (larger: class ``classes_[1]``)."""
        check_is_fitted(self, "svc_")
        from sklearn.utils.validation import validate_data

        X = validate_data(self, X, reset=False)
        return self.svc_.decision_function(X)

    def predict_proba(self, X):
        """Calibrated class probabilities."""
        check_is_fitted(self, "svc_")
        from sklearn.utils.validation import validate_data

        X = validate_data(self, X, reset=False)
        if self.calibrated_ is None:
            score = self.svc_.decision_function(X)
            p = 1.0 / (1.0 + np.exp(-score))
            return np.column_stack([1 - p, p]) if self.classes_.size == 2 else np.ones((len(X), 1))
        return self.calibrated_.predict_proba(X)

    def predict(self, X):
        """The SVC's prediction (the sign of :meth:`decision_function`, as for ``SVC``)."""
        check_is_fitted(self, "svc_")
        from sklearn.utils.validation import validate_data

        return self.svc_.predict(validate_data(self, X, reset=False))
