"""Reference models a haematoma-expansion model is judged against (Zhong et al. 2021).

Every baseline is a scikit-learn classifier that takes the manifest DataFrame itself (columns
by name), so it runs in the same cross-validation folds as the main pipeline:

* :class:`UnivariateLogistic` — logistic regression on one column; :func:`volume_logistic` is
  the baseline haematoma-volume model.
* :class:`BATScore` — the BAT score (Morotti et al., Stroke 2018): **B**lend sign 1 point, any
  hypodensity (**A**) 2 points, onset-to-CT **T**ime < 2.5 h 2 points (0–5). As a score
  (``logistic=False``; ``decision_function`` is the point total) or as a logistic model on it.
* :class:`MarkerClassifier` — a single binary NCCT marker (present = predicted positive).

:func:`default_baselines` builds all of them for the columns of a manifest;
:func:`radhe.evaluation.compare_models` tabulates them against the main model (this module does not
import :mod:`radhe.evaluation`: evaluation uses the baselines, not the other way round).
:data:`NCCT_MARKERS` is :data:`radhe.constants.NCCT_MARKERS`.
"""

from __future__ import annotations

import datetime
import numbers

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from radhe._checks import check_binary, list_values_by_case, row_names
from radhe._compat import Interval, StrOptions, validate_params
from radhe.constants import MARKER_DISPLAY_NAMES, NCCT_MARKERS
from radhe.errors import ConfigurationError, InputError

__all__ = [
    "UnivariateLogistic",
    "BATScore",
    "MarkerClassifier",
    "bat_score",
    "volume_logistic",
    "default_baselines",
    "NCCT_MARKERS",
]



_HOUR = pd.Timedelta(hours=1)


def _as_hours(value):
    """A duration cell in hours; any other cell unchanged."""
    if isinstance(value, pd.Timedelta | datetime.timedelta | np.timedelta64) and not pd.isna(value):
        return float(pd.Timedelta(value) / _HOUR)
    return value


def _column(X, column: str, owner: str, *, hours: bool = False) -> np.ndarray:
    """Column ``column`` of the manifest ``X`` as floats (NaN where missing).

    Missing values are NaN, None, NaT and the text :func:`pandas.read_csv` reads as missing ("NA",
    ""; :data:`radhe._checks.MISSING_MARKERS`). Numbers written as text ("1.5") are numbers. With
    ``hours=True`` durations (a timedelta64 column, or :class:`pandas.Timedelta` /
    :class:`datetime.timedelta` cells) are converted to hours; otherwise dates and durations are
    refused, as is any other value that is not a number (the error names the values and cases).
    """
    if not isinstance(X, pd.DataFrame):
        raise InputError(f"{owner} needs the manifest as a pandas DataFrame (columns by name); got {type(X).__name__}")
    if column not in X.columns:
        raise InputError(f"{owner}: column {column!r} not in the manifest; columns present: {list(X.columns)[:20]}")
    series = X[column]
    if isinstance(series, pd.DataFrame):
        raise InputError(f"{owner}: the manifest has {series.shape[1]} columns named {column!r}")
    if hours and pd.api.types.is_timedelta64_dtype(series):
        return (series / _HOUR).to_numpy(dtype=float, na_value=np.nan)  # NaT: missing
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        what = "durations" if pd.api.types.is_timedelta64_dtype(series) else "dates/times"
        raise InputError(f"{owner}: column {column!r} holds {what} (dtype {series.dtype}), not numbers")
    from radhe.features.tabular import _parse_numbers  # the one reading of numbers in a manifest's cells

    source = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
    if hours and source.dtype == object:
        source = source.map(_as_hours)
    parsed = _parse_numbers(source)
    bad = parsed.bad
    if bad.any():
        cells = [v.strip() if isinstance(v, str) else v for v in series.astype(object)[bad]]
        n = int(bad.sum())
        kind = "numbers or durations" if hours else "numbers"
        raise InputError(
            f"{owner}: column {column!r} must hold {kind}; {'1 value is' if n == 1 else f'{n} values are'} not: "
            f"{list_values_by_case(cells, row_names(X)[bad])}. Leave a cell empty (or NA) where the value is unknown."
        )
    return parsed.values.to_numpy(dtype=float, na_value=np.nan)


def _marker_column(X, column: str, owner: str) -> np.ndarray:
    """An NCCT marker column (1 = present, 0 = absent; True/False; missing = absent) as booleans.

    Any other value (a 1/2 coding, -1, a probability, inf) is refused naming the values and cases:
    reading "> 0" as present would count every case of a 1/2 coding as positive.
    """
    values = _column(X, column, owner)
    wrong = ~np.isnan(values) & ~np.isin(values, (0.0, 1.0))
    if wrong.any():
        raise InputError(
            f"{owner}: column {column!r} (an NCCT marker) must hold 1 (present) or 0 (absent); got "
            f"{list_values_by_case(values[wrong].tolist(), row_names(X)[wrong])}. Recode it (e.g. 1/2 → 0/1); "
            "leave a cell empty (or NA) where the marker was not read (counted as absent)."
        )
    return np.nan_to_num(values) == 1.0


class _ColumnClassifier(ClassifierMixin, BaseEstimator):
    """Shared machinery: a 1-D score from X, optionally turned into probabilities by a logistic fit."""

    def _score(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_logistic(self, s: np.ndarray, y: np.ndarray) -> None:
        # Near-unpenalised logistic regression (large C) on the standardised score; standardising
        # keeps lbfgs well conditioned for volumes in mL.
        self.centre_ = float(np.mean(s))
        self.scale_ = float(np.std(s)) or 1.0
        self.logistic_ = LogisticRegression(C=self.C, max_iter=1000)
        self.logistic_.fit(((s - self.centre_) / self.scale_)[:, None], y)

    def _logit(self, s: np.ndarray) -> np.ndarray:
        return self.logistic_.decision_function(((s - self.centre_) / self.scale_)[:, None])

    def _set_classes(self, y):
        y = check_binary(y)
        if np.unique(y).size < 2:
            raise InputError(f"{type(self).__name__}.fit needs both classes in y")
        self.classes_ = np.array([0, 1])
        return y

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self._logit(self._score(X))


class UnivariateLogistic(_ColumnClassifier):
    """Logistic regression of the outcome on one manifest column (e.g. baseline haematoma volume).

    Parameters
    ----------
    column : str
        Manifest column (numeric). Missing values are replaced by the training median.
    transform : {None, "log"}
        ``"log"`` fits on log(1 + value) (volumes are right-skewed). The AUC is unaffected.
    C : float
        Inverse L2 penalty of the logistic regression (large = practically unpenalised).
    """

    _parameter_constraints = {
        "column": [str],
        "transform": [StrOptions({"log"}), None],
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(self, column: str = "baseline_volume_ml", *, transform: str | None = None, C: float = 1e4):
        self.column = column
        self.transform = transform
        self.C = C

    def _raw(self, X) -> np.ndarray:
        v = _column(X, self.column, type(self).__name__)
        if self.transform == "log":
            v = np.log1p(np.clip(v, 0, None))
        return v

    def fit(self, X, y):
        """Fit the logistic regression on the column (missing values: the training median).

        Parameters
        ----------
        X : pandas.DataFrame
            The manifest (``column`` read by name).
        y : array-like of 0/1

        Returns
        -------
        self
        """
        validate_params(self)
        y = self._set_classes(y)
        v = self._raw(X)
        finite = np.isfinite(v)
        if not finite.any():
            raise InputError(f"UnivariateLogistic: column {self.column!r} has no finite value")
        self.fill_value_ = float(np.median(v[finite]))
        self._fit_logistic(np.where(finite, v, self.fill_value_), y)
        self.feature_names_in_ = np.array([self.column], dtype=object)
        return self

    def _score(self, X) -> np.ndarray:
        v = self._raw(X)
        return np.where(np.isfinite(v), v, self.fill_value_)


def bat_score(
    X: pd.DataFrame,
    *,
    blend_column: str = "blend_sign",
    hypodensity_column: str = "hypodensity",
    time_column: str = "onset_to_ct_h",
    time_cutoff_h: float = 2.5,
    points: tuple[float, float, float] = (1, 2, 2),
) -> pd.Series:
    """The BAT score per case: blend sign (1) + hypodensity (2) + onset-to-CT < ``time_cutoff_h`` h (2).

    A missing marker counts as absent and a missing onset time as not early (0 points); the
    score is therefore conservative for incompletely documented cases.

    Parameters
    ----------
    X : pandas.DataFrame
        The manifest; the three columns are read by name. Missing values are NaN, None, NaT or the
        text :func:`pandas.read_csv` reads as missing ("NA", "").
    blend_column, hypodensity_column : str
        The markers: 1 (present) or 0 (absent), or True/False; missing is absent; other values are refused.
    time_column : str
        Onset-to-CT time in hours (numbers, or numbers written as text), or as durations (a
        ``timedelta64`` column, :class:`pandas.Timedelta` or :class:`datetime.timedelta` cells),
        which are converted to hours (``pd.Timedelta("90min")`` is 1.5 h).
    time_cutoff_h : float, default 2.5
        A case is early when its onset-to-CT time is below this, in hours.
    points : tuple of three floats, default (1, 2, 2)
        Points for blend sign, hypodensity and early onset-to-CT time.

    Returns
    -------
    pandas.Series
        The score per case (float), index of ``X``, named ``"bat_score"``.

    Raises
    ------
    radhe.errors.InputError
        ``X`` is not a DataFrame or lacks a column; a column holds a value that is not a number
        (text such as "2 h" or "unknown"; a date), a marker column a value other than 0 and 1, or the
        onset-to-CT time is negative or infinite: the message names the column, the values and the
        cases.
    """
    owner = "bat_score"
    blend = _marker_column(X, blend_column, owner)
    hypo = _marker_column(X, hypodensity_column, owner)
    t = _column(X, time_column, owner, hours=True)
    wrong = ~np.isnan(t) & (~np.isfinite(t) | (t < 0))
    if wrong.any():
        raise InputError(
            f"{owner}: column {time_column!r} (onset-to-CT time, hours) must be a finite time >= 0; got "
            f"{list_values_by_case(t[wrong].tolist(), row_names(X)[wrong])}. Leave a cell empty (or NA) where the "
            "time is unknown (scored as not early)."
        )
    early = ~np.isnan(t) & (t < time_cutoff_h)
    score = points[0] * blend + points[1] * hypo + points[2] * early
    return pd.Series(score.astype(float), index=X.index, name="bat_score")


class BATScore(_ColumnClassifier):
    """The BAT score as a classifier.

    Parameters
    ----------
    logistic : bool
        ``False`` (default): the score itself. ``decision_function`` returns the 0–5 point total,
        ``predict`` applies Morotti's cut-off (score ≥ ``cutoff``), and ``predict_proba`` is the
        observed expansion rate at each score value in the training data (smoothed, monotone in
        the score). Evaluation (:func:`radhe.evaluation.cross_validate_predictions`) ranks
        cases by the score itself (``prefers_decision_function``).
        ``True``: a logistic regression on the score (Zhong 2021's "BAT model").
    cutoff : float
        Score from which a case is called high-risk (Morotti 2018: ≥ 3).
    blend_column, hypodensity_column, time_column, time_cutoff_h, points
        See :func:`bat_score`.
    C : float
        Inverse penalty of the logistic regression (``logistic=True``).
    """

    _parameter_constraints = {
        "logistic": ["boolean"],
        "cutoff": [Interval(numbers.Real, None, None, closed="neither")],
        "blend_column": [str],
        "hypodensity_column": [str],
        "time_column": [str],
        "time_cutoff_h": [Interval(numbers.Real, 0, None, closed="neither")],
        "points": ["array-like"],
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        logistic: bool = False,
        cutoff: float = 3,
        blend_column: str = "blend_sign",
        hypodensity_column: str = "hypodensity",
        time_column: str = "onset_to_ct_h",
        time_cutoff_h: float = 2.5,
        points: tuple = (1, 2, 2),
        C: float = 1e4,
    ):
        self.logistic = logistic
        self.cutoff = cutoff
        self.blend_column = blend_column
        self.hypodensity_column = hypodensity_column
        self.time_column = time_column
        self.time_cutoff_h = time_cutoff_h
        self.points = points
        self.C = C

    @property
    def prefers_decision_function(self) -> bool:
        """The score itself (not the fold-specific rates) ranks the cases in evaluation."""
        return not self.logistic

    @property
    def fixed_threshold(self) -> float | None:
        """The published rule (score ≥ ``cutoff``) is the decision: evaluation does not tune a threshold
        for the score; None for the logistic model, whose threshold is chosen like any model's."""
        return None if self.logistic else float(self.cutoff)

    def _score(self, X) -> np.ndarray:
        return bat_score(
            X,
            blend_column=self.blend_column,
            hypodensity_column=self.hypodensity_column,
            time_column=self.time_column,
            time_cutoff_h=self.time_cutoff_h,
            points=tuple(self.points),
        ).to_numpy()

    def fit(self, X, y):
        """Fit the score's rates (or its logistic regression) on these cases.

        Parameters
        ----------
        X : pandas.DataFrame
            The manifest (the three columns read by name).
        y : array-like of 0/1

        Returns
        -------
        self
        """
        validate_params(self)
        points = np.asarray(self.points, dtype=object).ravel()
        if points.size != 3 or not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in points):
            raise ConfigurationError(
                "The 'points' parameter of BATScore must be three finite numbers (blend sign, hypodensity, "
                f"early onset-to-CT). Got {self.points!r} instead.")
        y = self._set_classes(y)
        s = self._score(X)
        if self.logistic:
            self._fit_logistic(s, y)
        else:
            # Observed rate per score value, +1/+2 smoothed, made monotone (isotonic) in the score.
            from sklearn.isotonic import IsotonicRegression

            values = np.unique(s)
            rates = np.array([(y[s == v].sum() + y.mean()) / ((s == v).sum() + 1) for v in values])
            weights = np.array([(s == v).sum() for v in values])
            self.iso_ = IsotonicRegression(out_of_bounds="clip", y_min=1e-3, y_max=1 - 1e-3)
            self.iso_.fit(values, rates, sample_weight=weights)
        self.feature_names_in_ = np.array([self.blend_column, self.hypodensity_column, self.time_column], dtype=object)
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        s = self._score(X)
        return self._logit(s) if self.logistic else s

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        if self.logistic:
            return super().predict_proba(X)
        s = self._score(X)
        # isotonic rates can tie between score values; a tiny tilt keeps the ranking of the score.
        p = np.clip(self.iso_.predict(s) + 1e-6 * s, 0.0, 1.0)
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        if self.logistic:
            return super().predict(X)
        check_is_fitted(self, "classes_")
        return (self._score(X) >= self.cutoff).astype(int)


class MarkerClassifier(_ColumnClassifier):
    """One binary NCCT marker as a predictor: present = predicted positive.

    ``decision_function`` is the marker (0/1; missing = absent); ``predict_proba`` the training
    expansion rate among cases with / without the marker (smoothed), which equals what an
    unpenalised univariate logistic regression on the marker would give.
    """

    #: evaluation ranks cases by the marker itself (0/1), not by fold-specific rates
    prefers_decision_function = True
    #: a marker is a fixed rule (present = positive): evaluation applies it instead of tuning a threshold
    fixed_threshold = 0.5

    _parameter_constraints = {"column": [str]}

    def __init__(self, column: str = "blend_sign"):
        self.column = column

    def _score(self, X) -> np.ndarray:
        return _marker_column(X, self.column, type(self).__name__).astype(float)

    def fit(self, X, y):
        """Learn the expansion rate with and without the marker.

        Parameters
        ----------
        X : pandas.DataFrame
            The manifest (``column`` read by name; missing = absent).
        y : array-like of 0/1

        Returns
        -------
        self
        """
        validate_params(self)
        y = self._set_classes(y)
        m = self._score(X)
        prior = y.mean()
        self.rate_absent_ = float((y[m == 0].sum() + prior) / ((m == 0).sum() + 1))
        self.rate_present_ = float((y[m == 1].sum() + prior) / ((m == 1).sum() + 1))
        self.feature_names_in_ = np.array([self.column], dtype=object)
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self._score(X)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        p = np.where(self._score(X) > 0, self.rate_present_, self.rate_absent_)
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self._score(X).astype(int)


def volume_logistic(column: str = "baseline_volume_ml", **kwargs) -> UnivariateLogistic:
    """Logistic regression on baseline haematoma volume (Zhong 2021's volume model)."""
    return UnivariateLogistic(column, **kwargs)


def default_baselines(
    X: pd.DataFrame | None = None,
    *,
    volume_column: str = "baseline_volume_ml",
    markers=NCCT_MARKERS,
    bat: bool = True,
    bat_kwargs: dict | None = None,
) -> dict[str, BaseEstimator]:
    """The reference models of Zhong 2021, keyed by display name.

    Volume (logistic), BAT score, BAT (logistic) and one :class:`MarkerClassifier` per NCCT marker.
    With ``X`` given, models whose columns X lacks are left out.
    """
    cols = set(X.columns) if isinstance(X, pd.DataFrame) else None
    bat_kwargs = dict(bat_kwargs or {})
    bat_cols = {
        bat_kwargs.get("blend_column", "blend_sign"),
        bat_kwargs.get("hypodensity_column", "hypodensity"),
        bat_kwargs.get("time_column", "onset_to_ct_h"),
    }
    out: dict[str, BaseEstimator] = {}
    if cols is None or volume_column in cols:
        out["Volume (logistic)"] = volume_logistic(volume_column)
    if bat and (cols is None or bat_cols <= cols):
        out["BAT score"] = BATScore(**bat_kwargs)
        out["BAT (logistic)"] = BATScore(logistic=True, **bat_kwargs)
    for m in markers:
        if cols is None or m in cols:
            out[MARKER_DISPLAY_NAMES.get(m, m)] = MarkerClassifier(m)
    return out
