"""Feature cleaning and selection, fitted inside each cross-validation fold.

* :class:`FeatureCleaner` (pipeline step ``"clean"``): non-finite values → training medians;
  all-missing, constant and near-constant features dropped; of every group of highly correlated
  features (|r| > ``correlation_threshold``) only the one most associated with the outcome kept.
* :class:`KBestSelector` (pipeline step ``"select"``): the ``k`` features with the best univariate
  score (ANOVA F or mutual information); ``k`` larger than the number of features left keeps them
  all instead of failing, because the number left after cleaning varies between folds.
"""

from __future__ import annotations

import numbers
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import SelectorMixin, f_classif, mutual_info_classif
from sklearn.utils.validation import check_is_fitted, validate_data

from radhe._compat import Interval, StrOptions, check_feature_names_in, validate_params
from radhe.errors import ConfigurationError, InputError

__all__ = ["FeatureCleaner", "KBestSelector", "SCORE_FUNCTIONS"]

#: Score functions of :class:`KBestSelector` by name.
SCORE_FUNCTIONS = ("f_classif", "mutual_info")


class FeatureCleaner(TransformerMixin, BaseEstimator):
    """Make a feature matrix finite and drop uninformative or redundant features.

    Fitted on the training rows only (inside the fold):

    1. ±inf are treated as missing; every missing value is replaced by the feature's training
       median (a feature with no finite training value is dropped);
    2. constant features, and near-constant ones — a single value in more than ``near_constant``
       of the training rows — are dropped;
    3. correlation filter: features are visited from the most to the least associated with ``y``
       (ANOVA F on the training rows; column order when ``y`` is not given) and one is kept only
       if its absolute Pearson correlation with every feature already kept is at most
       ``correlation_threshold``.

    Parameters
    ----------
    correlation_threshold : float or None, default 0.95
        Drop a feature whose ``|r|`` with an already kept feature exceeds this; ``None`` or ``1.0``
        disables the filter.
    near_constant : float, default 0.98
        Drop a feature whose most frequent value covers more than this fraction of training rows.
        The default removes, e.g., a 0/1 flag present in fewer than 2 % of cases (in small cohorts
        only truly constant features go). ``1.0`` drops only constant features.

    Attributes
    ----------
    medians_ : ndarray of shape (n_features_in_,)
        Imputation values.
    support_ : ndarray of bool, shape (n_features_in_,)
        The features kept.
    drop_reasons_ : dict
        ``{feature name: reason}`` for every dropped feature ("no finite value", "constant",
        "near-constant", "correlated with <name> (r=0.97)").
    """

    _parameter_constraints: dict = {
        "correlation_threshold": [Interval(numbers.Real, 0, 1, closed="right"), None],
        "near_constant": [Interval(numbers.Real, 0.5, 1, closed="both")],
    }

    def __init__(self, correlation_threshold=0.95, near_constant=0.98):
        self.correlation_threshold = correlation_threshold
        self.near_constant = near_constant

    def fit(self, X, y=None):
        """Learn medians and the kept features from the training rows.

        Raises
        ------
        radhe.errors.InputError
            No feature is left (every one constant or without a finite value in the training rows):
            the message names each feature and why it went. Also for a table without rows or columns.
        """
        validate_params(self)
        X = _validated(self, X, reset=True)
        X = np.where(np.isfinite(X), X, np.nan)
        names = self._input_names()
        n_samples, n_features = X.shape
        finite = ~np.isnan(X)
        any_finite = finite.any(axis=0)
        medians = np.zeros(n_features)
        if any_finite.any():
            medians[any_finite] = np.nanmedian(X[:, any_finite], axis=0)
        filled = np.where(finite, X, medians)
        keep = any_finite.copy()
        reasons = {names[j]: "no finite value in training data" for j in np.flatnonzero(~any_finite)}

        for j in np.flatnonzero(keep):
            column = filled[:, j]
            spread = np.ptp(column)
            if spread <= 1e-12 * max(1.0, float(np.max(np.abs(column)))):
                keep[j] = False
                reasons[names[j]] = "constant"
                continue
            if self.near_constant < 1.0:
                _, counts = np.unique(column, return_counts=True)
                if counts.max() / n_samples > self.near_constant:
                    keep[j] = False
                    reasons[names[j]] = f"near-constant ({counts.max()} of {n_samples} rows share one value)"

        threshold = self.correlation_threshold
        if threshold is not None and threshold < 1.0 and keep.sum() > 1 and n_samples > 2:
            candidates = np.flatnonzero(keep)
            order = candidates
            if y is not None:
                scores = _safe_f_scores(filled[:, candidates], y)
                order = candidates[np.argsort(-scores, kind="mergesort")]
            block = filled[:, order]
            block = (block - block.mean(axis=0)) / block.std(axis=0)
            corr = np.abs(block.T @ block) / n_samples
            kept_positions: list[int] = []
            for position, j in enumerate(order):
                if kept_positions:
                    r = corr[position, kept_positions]
                    worst = int(np.argmax(r))
                    if r[worst] > threshold:
                        keep[j] = False
                        partner = names[order[kept_positions[worst]]]
                        reasons[names[j]] = f"correlated with {partner} (|r|={r[worst]:.3f})"
                        continue
                kept_positions.append(position)

        if not keep.any():
            raise InputError(_nothing_left(reasons, n_samples))
        self.medians_ = medians
        self.support_ = keep
        self.drop_reasons_ = reasons
        return self

    def transform(self, X):
        """Replace non-finite values by the training medians and keep the selected features."""
        check_is_fitted(self, "support_")
        X = _validated(self, X, reset=False)
        X = np.where(np.isfinite(X), X, self.medians_)
        return X[:, self.support_]

    def get_support(self, indices=False):
        """Mask (or indices) of the kept input features."""
        check_is_fitted(self, "support_")
        return np.flatnonzero(self.support_) if indices else self.support_.copy()

    def get_feature_names_out(self, input_features=None):
        """Names of the kept features."""
        check_is_fitted(self, "support_")
        names = check_feature_names_in(self, input_features)
        return np.asarray(names, dtype=object)[self.support_]

    def _input_names(self):
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return [f"x{i}" for i in range(self.n_features_in_)]
        return [str(n) for n in names]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _validated(estimator, X, *, reset: bool) -> np.ndarray:
    """``X`` as a float array (NaN and inf allowed); scikit-learn's complaints as an `InputError`."""
    try:
        return validate_data(estimator, X, dtype=np.float64, ensure_all_finite=False, reset=reset)
    except ValueError as error:  # no rows, no columns, text, another number of columns than in fit
        raise InputError(f"{type(estimator).__name__}: {error}") from None


def _nothing_left(reasons: dict, n_samples: int, limit: int = 10) -> str:
    """The message of a feature table in which no feature is usable."""
    listing = "; ".join(f"{name}: {why}" for name, why in list(reasons.items())[:limit])
    if len(reasons) > limit:
        listing += f"; ... ({len(reasons)} features in all)"
    return (
        f"FeatureCleaner: no usable feature in the training data ({n_samples} sample(s)): every feature is "
        f"missing, constant or near-constant ({listing}). Check the manifest's feature columns (are they filled in, "
        "do they vary between cases?) and the extraction (a failed case gives a row of NaN)"
    )


def _safe_f_scores(X, y):
    y = np.asarray(y)
    if np.unique(y).size < 2:
        return np.zeros(X.shape[1])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        scores, _ = f_classif(X, y)
    return np.nan_to_num(scores, nan=0.0, posinf=np.finfo(float).max)


class KBestSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features with the highest univariate score.

    Like :class:`sklearn.feature_selection.SelectKBest`, kept as its own class for what
    ``SelectKBest`` does not do:

    * ``score_func`` is given by name, so it can be tuned in a grid (``select__score_func``) and
      "mutual_info" gets the selector's ``random_state``;
    * a ``k`` larger than the number of features is clipped to that number silently (the chosen
      number is ``k_``) — after cleaning, the number of features differs between folds, so a fixed
      grid value such as ``k=40`` must neither fail nor warn in every fold;
    * non-finite scores (F of a constant feature: NaN; inf) rank last, and among equal scores the
      earlier feature wins (``SelectKBest`` keeps the later one), so the selection is stable.

    Parameters
    ----------
    k : int or "all", default 20
        Number of features to keep.
    score_func : {"f_classif", "mutual_info"} or callable, default "f_classif"
        "f_classif": ANOVA F (linear association, fast, deterministic); "mutual_info": mutual
        information (also non-linear; uses ``random_state``); a callable ``(X, y) -> scores`` or
        ``-> (scores, p-values)``.
    random_state : int, RandomState or None, default None
        For "mutual_info".

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        Feature scores (non-finite scores count as lowest).
    k_ : int
        The number of features kept.
    """

    _parameter_constraints: dict = {
        "k": [Interval(numbers.Integral, 0, None, closed="left"), StrOptions({"all"})],
        "score_func": [StrOptions({"f_classif", "mutual_info", "mutual_info_classif"}), callable],
        "random_state": ["random_state"],
    }

    def __init__(self, k=20, score_func="f_classif", random_state=None):
        self.k = k
        self.score_func = score_func
        self.random_state = random_state

    def fit(self, X, y):
        """Score the features on the training rows."""
        validate_params(self)
        if isinstance(self.k, bool):  # an int to the constraints
            raise ConfigurationError(f"k must be a non-negative integer or 'all', got {self.k!r}")
        X, y = validate_data(self, X, y, dtype=np.float64, reset=True)
        k = self.k
        func = self._score_function()
        import warnings

        with warnings.catch_warnings():
            # constant features give F = nan (0/0); they rank last
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message="Features .* are constant", category=UserWarning)
            result = func(X, y)
        scores = result[0] if isinstance(result, tuple | list) else result
        scores = np.asarray(scores, dtype=float)
        self.scores_ = scores
        self.k_ = X.shape[1] if isinstance(k, str) else min(int(k), X.shape[1])
        return self

    def _score_function(self):
        func = self.score_func
        if callable(func):
            return func
        if func == "f_classif":
            return f_classif
        if func in ("mutual_info", "mutual_info_classif"):
            return partial(mutual_info_classif, random_state=self.random_state)
        raise ConfigurationError(f"score_func must be one of {SCORE_FUNCTIONS} or a callable, got {func!r}")

    def _get_support_mask(self):
        check_is_fitted(self, "scores_")
        mask = np.zeros(self.scores_.shape, dtype=bool)
        if self.k_ == 0:
            return mask
        scores = np.where(np.isfinite(self.scores_), self.scores_, -np.inf)
        # stable: among equal scores the earlier feature wins
        top = np.argsort(-scores, kind="mergesort")[: self.k_]
        mask[top] = True
        return mask

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
