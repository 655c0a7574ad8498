"""Tabular feature branches: a user's precomputed features (:class:`TabularFeatures`) and the
machinery shared with :class:`~radhe.features.ClinicalFeatures`.

Both transformers take the whole case manifest and choose their columns from it. With
``columns="auto"`` they never use

* the reserved manifest columns (``case_id``, ``patient_id``, ``image``, ``mask``; see
  :data:`radhe.io.RESERVED_COLUMNS`) nor a segmenter's ``mask_pred`` column,
* the outcome columns :data:`OUTCOME_COLUMNS` (``followup_volume_ml``, ``he``): predicting the
  outcome from the outcome would be leakage, so these are refused even when named explicitly,
* path-like text columns (values that look like file paths), and
* the columns named in ``exclude``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from radhe.constants import OUTCOME_COLUMNS
from radhe.errors import ConfigurationError, InputError

__all__ = ["TabularFeatures", "OUTCOME_COLUMNS", "NON_FEATURE_COLUMNS", "outcome_columns_in"]

#: Manifest columns that are identifiers or file paths, never features.
NON_FEATURE_COLUMNS = ("case_id", "patient_id", "image", "mask", "mask_pred")

_PATH_SUFFIX = re.compile(r"\.(nii(\.gz)?|nrrd|nhdr|mha|mhd|dcm|png|jpe?g|tiff?|npy|npz|csv|pt|pth)$", re.I)


def outcome_columns_in(columns: Sequence[str]) -> list[str]:
    """Return the members of ``columns`` that are outcome columns (see :data:`OUTCOME_COLUMNS`)."""
    return [c for c in columns if c in OUTCOME_COLUMNS]


def _looks_like_paths(values: pd.Series) -> bool:
    """True when every non-missing value of a text column looks like a file path."""
    present = values.dropna()
    if present.empty or not all(isinstance(v, str) for v in present):
        return False
    sample = present.iloc[:200]
    return bool(sample.map(lambda v: ("/" in v or "\\" in v) or bool(_PATH_SUFFIX.search(v.strip()))).all())


def _is_numeric(series: pd.Series) -> tuple[bool, pd.Series | None]:
    """Whether ``series`` holds numbers (numeric/bool dtype, or objects that all convert)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return True, series.astype(float)
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_datetime64_any_dtype(series):
        return False, None
    present = series.dropna()
    try:
        converted = pd.to_numeric(present, errors="coerce")
    except (TypeError, ValueError):
        return False, None
    if len(present) and converted.notna().all():
        return True, pd.to_numeric(series, errors="coerce").astype(float)
    return False, None


class _TableTransformer(TransformerMixin, BaseEstimator):
    """Shared implementation: column choice, numeric handling, one-hot encoding, names."""

    _family = "tabular"

    # -- input handling --------------------------------------------------------------------
    def _frame(self, X, *, reset: bool) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            if reset:
                # Records n_features_in_ / feature_names_in_ without converting mixed dtypes.
                validate_data(self, X, skip_check_array=True, reset=True)
            if X.shape[0] == 0:
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
            return X
        array = validate_data(self, X, reset=reset, dtype=None, ensure_all_finite=False)
        return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])

    def _choose_columns(self, frame: pd.DataFrame) -> list[str]:
        exclude = self._excluded()
        if isinstance(self.columns, str):
            if self.columns != "auto":
                raise ConfigurationError(f"columns must be 'auto' or a list of column names, got {self.columns!r}")
            chosen = []
            for name in frame.columns:
                if name in NON_FEATURE_COLUMNS or name in OUTCOME_COLUMNS or name in exclude:
                    continue
                column = frame[name]
                if not pd.api.types.is_numeric_dtype(column) and _looks_like_paths(column):
                    continue
                chosen.append(name)
            return chosen
        columns = list(self.columns)
        leaking = outcome_columns_in(columns)
        if leaking:
            raise ConfigurationError(
                f"{type(self).__name__}: column(s) {leaking} hold the outcome (radhe OUTCOME_COLUMNS = "
                f"{OUTCOME_COLUMNS}) and cannot be used as predictors"
            )
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(
                f"{type(self).__name__}: column(s) {missing} not found; columns present: {list(frame.columns)}"
            )
        return columns

    def _excluded(self) -> set:
        exclude = self.exclude
        if exclude is None:
            return set()
        if isinstance(exclude, str):
            return {exclude}
        return set(exclude)

    # -- fit / transform -------------------------------------------------------------------
    def fit(self, X, y=None):
        """Learn the columns, the imputation values and the categories from the training rows.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_columns)
            The case manifest (or any table). Arrays get column names ``x0, x1, ...``.
        y : ignored

        Returns
        -------
        self
        """
        frame = self._frame(X, reset=True)
        columns = self._choose_columns(frame)
        forced = set(self._forced_categorical())
        auto = isinstance(self.columns, str)
        numeric, categorical, medians, indicators, categories, dropped = [], [], {}, [], {}, {}
        for name in columns:
            column = frame[name]
            is_num, values = (False, None) if name in forced else _is_numeric(column)
            if is_num:
                values = values.replace([np.inf, -np.inf], np.nan)
                numeric.append(name)
                median = float(values.median()) if values.notna().any() else 0.0
                medians[name] = median
                if self._impute_numeric and self.missing_indicator and values.isna().any():
                    indicators.append(name)
                continue
            if pd.api.types.is_datetime64_any_dtype(column):
                dropped[name] = "date/time column"
                continue
            levels = column.dropna().map(str)
            counts = levels.value_counts(sort=False)
            if auto and name not in forced and len(counts) > self.max_categories:
                dropped[name] = f"text column with {len(counts)} distinct values (> max_categories={self.max_categories})"
                continue
            if counts.empty:
                dropped[name] = "no value present"
                continue
            order = sorted(counts.index)
            # most frequent level (ties: first in sorted order) imputes missing values
            mode = max(order, key=lambda v: (counts[v], -order.index(v)))
            categorical.append(name)
            categories[name] = (order, mode)
        if auto and y is not None:
            self._warn_if_outcome(frame, numeric, y)
        if dropped:
            listing = "; ".join(f"'{k}' ({v})" for k, v in dropped.items())
            warnings.warn(
                f"{type(self).__name__}: column(s) not used: {listing}. Pass columns=[...] or categorical=[...] "
                "to choose them explicitly.",
                UserWarning,
                stacklevel=2,
            )
        self.columns_ = numeric + categorical
        self.numeric_columns_ = numeric
        self.categorical_columns_ = categorical
        self.medians_ = medians
        self.indicator_columns_ = indicators
        self.categories_ = {k: v[0] for k, v in categories.items()}
        self.modes_ = {k: v[1] for k, v in categories.items()}
        self.dropped_columns_ = dropped
        self.feature_names_out_ = np.asarray(self._names(), dtype=object)
        return self

    def _warn_if_outcome(self, frame: pd.DataFrame, numeric: list[str], y) -> None:
        """Warn about an automatically chosen column that equals ``y`` (an outcome under another name)."""
        target = pd.to_numeric(pd.Series(np.asarray(y).ravel()), errors="coerce").to_numpy(dtype=float)
        if target.shape[0] != len(frame) or np.isnan(target).any() or np.unique(target).size < 2:
            return
        same = [name for name in numeric
                if np.array_equal(_is_numeric(frame[name])[1].to_numpy(dtype=float), target)]
        if same:
            warnings.warn(
                f"{type(self).__name__}: column(s) {same} equal the outcome y on every training row and are used "
                "as predictors; if they hold the outcome, leave them out (exclude=[...]) or drop them from X",
                UserWarning,
                stacklevel=3,
            )

    def _names(self) -> list[str]:
        family = self._family
        names = [f"{family}__{c}" for c in self.numeric_columns_]
        names += [f"{family}__{c}_missing" for c in self.indicator_columns_]
        for c in self.categorical_columns_:
            levels = self.categories_[c]
            if len(levels) == 2:
                names.append(f"{family}__{c}_{levels[1]}")
            else:
                names += [f"{family}__{c}_{level}" for level in levels]
        return names

    def transform(self, X):
        """Return the feature table.

        Parameters
        ----------
        X : pandas.DataFrame or array-like
            Must hold the columns seen in :meth:`fit` (others, e.g. outcome columns absent for new
            patients, are ignored).

        Returns
        -------
        pandas.DataFrame
            One row per row of ``X``, same index, float columns named ``<family>__<column>``;
            one-hot columns ``<family>__<column>_<category>`` (a single column for two-level
            variables); missing-value indicators ``<family>__<column>_missing``.
        """
        check_is_fitted(self, "feature_names_out_")
        frame = self._frame(X, reset=False)
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise InputError(
                f"{type(self).__name__}: column(s) {missing} seen in fit are missing from X; "
                f"columns present: {list(frame.columns)}"
            )
        blocks = []
        for name in self.numeric_columns_:
            ok, values = _is_numeric(frame[name])
            if not ok:
                values = pd.to_numeric(frame[name], errors="coerce").astype(float)
            if self._impute_numeric:
                values = values.replace([np.inf, -np.inf], np.nan).fillna(self.medians_[name])
            blocks.append(values.to_numpy(dtype=float))
        for name in self.indicator_columns_:
            values = pd.to_numeric(frame[name], errors="coerce").astype(float)
            blocks.append((~np.isfinite(values.to_numpy(dtype=float))).astype(float))
        for name in self.categorical_columns_:
            column = frame[name]
            levels = self.categories_[name]
            text = np.asarray([self.modes_[name] if _missing(v) else str(v) for v in column], dtype=object)
            if len(levels) == 2:
                blocks.append((text == levels[1]).astype(float))
            else:
                # unseen categories get zeros in every one-hot column of the variable
                blocks += [(text == level).astype(float) for level in levels]
        n = len(frame)
        data = np.column_stack(blocks) if blocks else np.empty((n, 0))
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(data, index=index, columns=list(self.feature_names_out_))

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns, ``<family>__<name>``."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def _forced_categorical(self) -> list[str]:
        forced = getattr(self, "categorical", None)
        if forced is None:
            return []
        return [forced] if isinstance(forced, str) else list(forced)

    def __sklearn_tags__(self):
        return mixed_table_tags(super().__sklearn_tags__())


def mixed_table_tags(tags):
    """Estimator tags of a step taking a table of mixed columns: numbers, text, categories, missing values."""
    tags.input_tags.allow_nan = True
    tags.input_tags.string = True
    tags.input_tags.categorical = True
    tags.transformer_tags.preserves_dtype = []
    return tags


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


class TabularFeatures(_TableTransformer):
    """Pass a table's precomputed features through, named ``tabular__<column>``.

    For users who already have feature tables (radiomics computed elsewhere, scores, lab values):
    numeric columns are passed through unchanged (missing and infinite values are left to the
    pipeline's ``"clean"`` step, which imputes them with training-fold medians); text columns are
    one-hot encoded (missing values take the most frequent category; categories unseen in fit give
    zeros).

    Parameters
    ----------
    columns : "auto" or list of str, default "auto"
        Columns to use. "auto": every column except the reserved manifest columns (``case_id``,
        ``patient_id``, ``image``, ``mask``, ``mask_pred``), the outcome columns
        :data:`OUTCOME_COLUMNS`, path-like text columns, and ``exclude``. Outcome columns are refused
        even when listed explicitly (:class:`~radhe.errors.ConfigurationError`).
    exclude : sequence of str, default ("site",)
        Further columns never used with ``columns="auto"``. ``site`` is excluded by default, as in
        :class:`~radhe.features.ClinicalFeatures`: a model that learns each hospital's base rate does
        not transfer to a new hospital. Pass ``exclude=()`` to use it.
    categorical : sequence of str, optional
        Columns to one-hot encode even though they hold numbers (e.g. a numeric site code).
    max_categories : int, default 50
        With ``columns="auto"``, a text column with more distinct values is not used (an identifier
        or free text, not a category); a warning names it.

    Attributes
    ----------
    columns_ : list of str
        The input columns used.
    feature_names_out_ : ndarray of str
        Output names.
    dropped_columns_ : dict
        Columns "auto" considered but did not use, with the reason.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"case_id": ["a", "b"], "volume": [10.0, 20.0], "he": [0, 1]})
    >>> TabularFeatures().fit_transform(table).columns.tolist()
    ['tabular__volume']
    """

    _family = "tabular"
    _impute_numeric = False
    missing_indicator = False

    def __init__(self, columns="auto", *, exclude=("site",), categorical=None, max_categories=50):
        self.columns = columns
        self.exclude = exclude
        self.categorical = categorical
        self.max_categories = max_categories
