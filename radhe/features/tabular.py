"""Tabular feature branches: a user's precomputed features (:class:`TabularFeatures`) and the
machinery shared with :class:`~radhe.features.ClinicalFeatures`.

Both transformers take the whole case manifest and choose their columns from it. With
``columns="auto"`` they never use

* the reserved manifest columns (``case_id``, ``patient_id``, ``image``, ``mask``; see
  :data:`radhe.io.RESERVED_COLUMNS`) nor a segmenter's ``mask_pred`` column,
* the outcome columns :data:`OUTCOME_COLUMNS` (``followup_volume_ml``, ``he``): predicting the
  outcome from the outcome would be leakage, so these are refused even when named explicitly,
* text columns of file paths (every value ends in a suffix of :data:`PATH_SUFFIXES` or in a path
  separator, or is absolute or starts with ``./``, ``../``, ``~``; relative paths such as ``dicom/c01``
  may sit among these; ``"160/90"`` and ``"DOAC/apixaban"`` are not paths),
* identifier columns: named like one (``id``, ``*_id``, ``studyID``, ``mrn``, ``accession``) or
  text whose values mostly occur once (free text, accession numbers: their number of distinct
  values grows with the number of cases),
* date/time columns (datetime dtype or text such as ``2021-03-04 14:30``), and
* the columns named in ``exclude``.

Every column left out for what it holds (not the reserved, outcome or excluded ones) is named in a
warning and in ``dropped_columns_``. A column used whose values determine ``y`` in :meth:`fit`
(a copy of the outcome, a recoding such as "yes"/"no", an inverted 0/1) is named in a warning, and
input columns whose features would share a name (a numeric ``sex_M`` next to the text column ``sex``)
are refused.

Hostile values are refused, not encoded: a column of numbers with text among them ("unknown",
"150 mmHg", "1,2") raises :class:`~radhe.errors.InputError` naming the column, the values and the
cases, in :meth:`fit` and in :meth:`transform` (one-hot encoding it would turn every number into a
category). The strings :func:`pandas.read_csv` reads as missing ("NA", "NaN", "" ...; see
:data:`radhe._checks.MISSING_MARKERS`) are missing values here too, and text values are read with
surrounding whitespace removed, so a table gives the same features from a file and from memory.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from radhe._checks import is_missing, list_cases, list_values_by_case, row_names
from radhe._compat import HasMethods, Interval, StrOptions, validate_params
from radhe.constants import OUTCOME_COLUMNS
from radhe.errors import ConfigurationError, InputError, InputWarning

__all__ = ["TabularFeatures", "OUTCOME_COLUMNS", "NON_FEATURE_COLUMNS", "outcome_columns_in"]

#: Manifest columns that are identifiers or file paths, never features.
NON_FEATURE_COLUMNS = ("case_id", "patient_id", "image", "mask", "mask_pred")

#: File suffixes of what radhe reads: the images of :data:`radhe.io.image.IMAGE_SUFFIXES` (kept equal to
#: it; that module needs SimpleITK, which importing the table branches should not), the data files of
#: MetaImage headers, tables, arrays, pictures and model files.
PATH_SUFFIXES = (
    ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".dcm",  # IMAGE_SUFFIXES
    ".raw", ".zraw", ".csv", ".tsv", ".parquet", ".pq", ".npy", ".npz", ".png", ".jpg", ".jpeg", ".tif",
    ".tiff", ".pt", ".pth", ".skops", ".joblib", ".pkl",
)
_PATH_SUFFIX = re.compile("(" + "|".join(re.escape(s) for s in PATH_SUFFIXES) + ")$", re.I)
#: The start of an absolute or explicitly relative path: ``/``, ``C:\`` or ``C:/``, ``\\server``,
#: ``./``, ``../``, ``~/``, ``~user/``, or a URL (``s3://``, ``file://``).
_PATH_START = re.compile(r"^(/|[A-Za-z]:[\\/]|\\\\|\.{1,2}[\\/]|~[\w.-]*[\\/]|[A-Za-z][\w+.-]*://)")


def _is_path(text: str) -> bool:
    """True when ``text`` is a path: it ends in a suffix of :data:`PATH_SUFFIXES` or a path separator
    (a folder, e.g. of DICOM files), or is absolute or explicitly relative (``./``, ``../``, ``~``).
    ``"160/90"`` (a blood pressure) and ``"DOAC/apixaban"`` (a drug) are not paths."""
    text = text.strip()
    if text in ("", "/", "\\") or any(c in text for c in "\n\r\t"):  # a lone "/" is a blank, not the root
        return False
    return bool(_PATH_SUFFIX.search(text) or text.endswith(("/", "\\")) or _PATH_START.match(text))


def outcome_columns_in(columns: Sequence[str]) -> list[str]:
    """Return the members of ``columns`` that are outcome columns (see :data:`OUTCOME_COLUMNS`)."""
    return [c for c in columns if c in OUTCOME_COLUMNS]


def _path_example(values: pd.Series) -> str | None:
    """A value of a text column of file paths (to name it), or None when the column is not one.

    It is one when every non-missing value is text shaped as a path: a path by :func:`_is_path`, or
    a relative path such as ``images/ich0001`` (a separator, no space) next to at least one path by
    :func:`_is_path` (a column of only ``"160/90"`` or ``"DOAC/apixaban"`` is not one)."""
    present = values[~values.map(is_missing).to_numpy(dtype=bool)]
    if present.empty or not all(isinstance(v, str) for v in present):
        return None
    example = None
    for value in pd.unique(present.map(str.strip)):
        if _is_path(value):
            example = value if example is None else example
        elif not (("/" in value or "\\" in value) and not any(c.isspace() for c in value)):
            return None
    return example


#: Column names of identifiers (case-insensitive; ``*_id`` also with a space or hyphen).
_IDENTIFIER_NAME = re.compile(r"^(id|uid|uuid|mrn|accession([ _-]?(number|no|nr))?)$|[ _-](id|uid|uuid)$", re.I)
#: camelCase identifier names: ``studyID``, ``SeriesInstanceUID``, ``patientId``.
_CAMEL_IDENTIFIER_NAME = re.compile(r"[a-z0-9](ID|Id|UID|Uid)$")

#: Text dates and times: ISO ``2021-03-04[ 14:30[:00]]``, ``04.03.2021``, ``3/4/21``, ``14:30``.
_DATE = re.compile(
    r"^(\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[./]\d{1,2}[./]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?)?"
    r"|\d{1,2}:\d{2}(:\d{2})?)$"
)

#: Text that is a number written with a unit ("150 mmHg", "37.5°C", "8%", "5 h"), a comparison
#: ("<5") or a decimal comma / thousands separator ("1,2", "1,000").
_NUMBER_IN_TEXT = re.compile(
    r"^[<>≤≥~]?\s*[-+]?(\d+([.,]\d+)?|\d{1,3}(,\d{3})+(\.\d+)?|[.,]\d+)"
    r"(\s*%|\s*°\w*|\s+[^\W\d_][\w/^·µ°%.-]*|[^\W\d_][\w/^·µ°%.-]+)?$"
)

#: A batch with no value in a column is warned about when that is less likely than this at the
#: column's training missing rate (see ``_warn_empty``).
_EMPTY_BY_CHANCE = 1e-3
#: A column with missing values is checked for determining the outcome (see ``_warn_if_outcome``) on at
#: least this many rows with a value (a column without missing values on every row).
_OUTCOME_MIN_ROWS = 30
#: ... and with at least this many of those rows in each class of y.
_OUTCOME_MIN_CLASS = 5

#: A text column whose levels mostly (more than this share) occur once is free text or an identifier.
_SINGLETON_SHARE = 0.5


def _is_identifier_name(name) -> bool:
    name = str(name)
    return bool(_IDENTIFIER_NAME.search(name) or _CAMEL_IDENTIFIER_NAME.search(name))


class _Parsed:
    """A column read as numbers: ``values`` (float, NaN where missing or not a number), ``missing``
    (no value: NaN, None, or a missing-value marker such as "NA"), ``bad`` (a value that is not a
    number) and ``text`` (the bad values that are strings); the last three are boolean arrays."""

    def __init__(self, values, missing, bad, text):
        self.values, self.missing, self.bad, self.text = values, missing, bad, text

    @property
    def n_present(self) -> int:
        return int((~self.missing).sum())


#: Cell types read as numbers (strings are parsed).
_NUMBER_TYPES = (int, float, np.integer, np.floating, bool, np.bool_)


def _parse_numbers(series: pd.Series) -> _Parsed | None:
    """``series`` read as numbers (see :class:`_Parsed`); None for a categorical or date/time dtype."""
    n = len(series)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.astype(float)
        return _Parsed(values, values.isna().to_numpy(), np.zeros(n, bool), np.zeros(n, bool))
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_datetime64_any_dtype(series) or \
            pd.api.types.is_timedelta64_dtype(series):
        return None
    cells = series.astype(object)
    missing = cells.map(is_missing).to_numpy(dtype=bool)
    is_text = cells.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    stripped = cells.map(lambda v: v.strip() if isinstance(v, str) else v)
    candidates = stripped.where(~missing, np.nan)
    # numbers and number strings; anything else (text, a dict, a list) becomes NaN here
    numbers = pd.to_numeric(candidates.map(lambda v: v if isinstance(v, (str, *_NUMBER_TYPES)) else np.nan),
                            errors="coerce").astype(float)
    bad = ~missing & numbers.isna().to_numpy()
    return _Parsed(numbers.where(~missing & ~bad), missing, bad, bad & is_text)


#: Integral floats up to this magnitude are the integer they hold (2**53: every such float is exact).
_EXACT_INTEGER = 2.0**53


def category_of(value) -> str:
    """The category a present (not missing) cell stands for, as the text the one-hot names use.

    Categories are compared as values: a number is the same category whatever its type, so ``1``,
    ``1.0``, ``np.int64(1)`` and ``np.float32(1)`` are all ``"1"`` (a column of codes read as
    float because one cell is blank matches the integer codes seen in fit), while ``1.5`` stays
    ``"1.5"``. Text is taken without surrounding whitespace and is otherwise compared as written
    (``"m"`` is not ``"M"``; the text ``"01"`` is not the number 1). True/False stay ``"True"`` /
    ``"False"``.
    """
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number) and number.is_integer() and abs(number) <= _EXACT_INTEGER:
            return str(int(number))
    return str(value)


def _text_levels(column: pd.Series) -> pd.Series:
    """The non-missing values of a column as their categories (:func:`category_of`; index kept)."""
    column = column.astype(object)
    present = column[~column.map(is_missing).to_numpy(dtype=bool)]
    return present.map(category_of)


def _looks_like_dates(levels: pd.Series) -> bool:
    return len(levels) > 0 and bool(levels.map(lambda v: bool(_DATE.match(v))).all())


def _mostly_numbers(column: pd.Series, parsed: _Parsed) -> bool:
    """True when at least half of the present values are numbers or numbers written as text ("150 mmHg")."""
    numbers = int((~parsed.missing & ~parsed.bad).sum())
    text = column.astype(object)[parsed.text]
    written = int(text.map(lambda v: bool(_NUMBER_IN_TEXT.match(v.strip()))).sum())
    return numbers + written >= 0.5 * parsed.n_present

class _TableTransformer(TransformerMixin, BaseEstimator):
    """Shared implementation: column choice, numeric handling, one-hot encoding, names."""

    _family = "tabular"

    _parameter_constraints: dict = {
        # the values themselves ("auto" or a list, names present in X) are checked in fit, with the columns
        "columns": [HasMethods(["__iter__"])],
        "exclude": [None, HasMethods(["__iter__"])],
        "categorical": [None, HasMethods(["__iter__"])],
        "max_categories": [Interval(numbers.Integral, 1, None, closed="left")],
        "handle_unknown": [StrOptions({"error", "ignore"})],
    }

    # -- input handling --------------------------------------------------------------------
    def _frame(self, X, *, reset: bool) -> pd.DataFrame:
        where = type(self).__name__
        if isinstance(X, pd.DataFrame):
            if reset:
                # Records n_features_in_ / feature_names_in_ without converting mixed dtypes.
                validate_data(self, X, skip_check_array=True, reset=True)
            frame = X
        else:
            try:
                array = validate_data(self, X, reset=reset, dtype=None, ensure_all_finite=False)
            except ValueError as error:  # no rows, no columns, another number of columns than in fit
                raise InputError(f"{where}: {error}") from None
            frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
        if frame.shape[0] == 0:
            raise InputError(f"{where}: the table has no cases: Found array with 0 sample(s) (shape={frame.shape}) "
                             "while a minimum of 1 is required.")
        return frame

    def _choose_columns(self, frame: pd.DataFrame, dropped: dict) -> list[str]:
        """The columns to read; with "auto", the file paths and identifier names left out are recorded in
        ``dropped``."""
        exclude = self._excluded()
        if isinstance(self.columns, str):
            if self.columns != "auto":
                raise ConfigurationError(f"columns must be 'auto' or a list of column names, got {self.columns!r}")
            chosen = []
            for name in frame.columns:
                if name in NON_FEATURE_COLUMNS or name in OUTCOME_COLUMNS or name in exclude:
                    continue
                column = frame[name]
                example = None if pd.api.types.is_numeric_dtype(column) else _path_example(column)
                if example is not None:
                    dropped[name] = f"file paths such as '{example}'"
                    continue
                if _is_identifier_name(name):
                    dropped[name] = "an identifier, by its name"
                    continue
                chosen.append(name)
            return chosen
        columns = list(self.columns)
        repeated = list(dict.fromkeys(c for i, c in enumerate(columns) if c in columns[:i]))
        if repeated:
            raise ConfigurationError(
                f"{type(self).__name__}: column(s) {repeated} listed more than once in columns={columns}; "
                "list each column once"
            )
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
        y : array-like, optional
            Only used to warn about a column whose values determine it (the outcome under another name:
            a copy, a recoding such as "yes"/"no", or an inverted copy).

        Returns
        -------
        self

        Raises
        ------
        radhe.errors.InputError
            The table has no rows; a column of numbers holds text ("unknown", "150 mmHg", "1,2"):
            the message names the column, the values and the cases; input columns whose features
            would get the same name (a numeric ``sex_M`` next to the text column ``sex``): the
            message names the columns and the name.
        radhe.errors.ConfigurationError
            A parameter outside its allowed values (e.g. ``handle_unknown="drop"``); a column listed
            twice in ``columns``.

        Warns
        -----
        UserWarning
            Naming the columns left out (``dropped_columns_``), and the columns used whose values
            determine ``y`` (an outcome under another name).
        """
        validate_params(self)
        frame = self._frame(X, reset=True)
        dropped: dict = {}
        columns = self._choose_columns(frame, dropped)
        forced = set(self._forced_categorical())
        unknown = sorted(str(c) for c in forced if c not in frame.columns)
        if unknown:
            # a misspelt name would otherwise leave the column it meant to be read as numbers
            raise InputError(f"{type(self).__name__}: categorical column(s) {unknown} not found; columns present: "
                             f"{list(frame.columns)}")
        auto = isinstance(self.columns, str)
        numeric, categorical, medians, indicators, categories, infinite = [], [], {}, [], {}, {}
        binary: dict = {}  # columns with two values: {name: (rows with a value, is the second value, values)}
        for name in columns:
            column = frame[name]
            parsed = None if name in forced else _parse_numbers(column)
            if parsed is not None and parsed.n_present == 0:
                dropped[name] = f"no value in any of the {len(frame)} rows"
                continue
            if parsed is not None and not parsed.bad.any():
                values = parsed.values
                inf = np.isinf(values.to_numpy(dtype=float))
                if inf.any():
                    infinite[name] = row_names(frame)[inf]
                values = values.mask(inf)
                numeric.append(name)
                if y is not None:
                    present = values.notna().to_numpy()
                    two = np.unique(values.to_numpy(dtype=float)[present])
                    if two.size == 2:
                        binary[name] = (present, values.to_numpy(dtype=float)[present] == two[1],
                                        [category_of(v) for v in two])
                medians[name] = float(values.median()) if values.notna().any() else 0.0
                if self._impute_numeric and self.missing_indicator and values.isna().any():
                    indicators.append(name)
                continue
            if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
                dropped[name] = "date/time column"
                continue
            levels = _text_levels(column)
            if levels.empty:
                dropped[name] = f"no value in any of the {len(frame)} rows"
                continue
            if _looks_like_dates(levels):
                dropped[name] = f"dates/times such as '{levels.iloc[0]}'"
                continue
            if parsed is not None and parsed.text.any() and _mostly_numbers(column, parsed):
                raise self._not_numbers_error(frame, name, parsed, "fit")
            counts = levels.value_counts(sort=False)
            if auto and name not in forced:
                if len(counts) > self.max_categories:
                    dropped[name] = (f"text column with {len(counts)} distinct values "
                                     f"(> max_categories={self.max_categories})")
                    continue
                once = int((counts == 1).sum())
                if len(counts) > 2 and once > _SINGLETON_SHARE * len(counts):
                    dropped[name] = (f"text with {len(counts)} distinct values in {len(levels)} cases, {once} of them "
                                     "seen once: free text or an identifier, not a category")
                    continue
            order = sorted(counts.index)
            # most frequent level (ties: first in sorted order) imputes missing values
            mode = max(order, key=lambda v: (counts[v], -order.index(v)))
            categorical.append(name)
            categories[name] = (order, mode)
            if y is not None and len(order) == 2:
                present = ~column.astype(object).map(is_missing).to_numpy(dtype=bool)
                binary[name] = (present, levels.to_numpy() == order[1], order)
        if y is not None:
            self._warn_if_outcome(binary, y, len(frame), auto)
        if dropped:
            listing = "; ".join(f"'{k}' ({v})" for k, v in dropped.items())
            warnings.warn(
                f"{type(self).__name__}: column(s) not used: {listing}. Pass columns=[...] or categorical=[...] "
                "to choose them explicitly.",
                UserWarning,
                stacklevel=2,
            )
        self._warn_infinite(infinite)
        self.columns_ = numeric + categorical
        self.numeric_columns_ = numeric
        self.categorical_columns_ = categorical
        self.medians_ = medians
        self.indicator_columns_ = indicators
        self.categories_ = {k: v[0] for k, v in categories.items()}
        self.modes_ = {k: v[1] for k, v in categories.items()}
        self.dropped_columns_ = dropped
        self.missing_fraction_ = {name: float(frame[name].astype(object).map(is_missing).mean())
                                  for name in self.columns_}
        names = self._names()
        if len(set(names)) < len(names):
            raise self._name_collision_error(auto)
        self.feature_names_out_ = np.asarray(names, dtype=object)
        return self

    def _name_collision_error(self, auto: bool) -> InputError:
        """The error for input columns whose features would get the same name (a numeric ``sex_M``
        next to the text column ``sex`` of categories F and M: both would be ``<family>__sex_M``)."""
        sources: dict = {}
        for column, names in self.value_columns().items():
            for name in names:
                what = (f"the numeric column '{column}'" if column in self.numeric_columns_ else
                        f"category '{name[len(f'{self._family}__{column}_'):]}' of the column '{column}'")
                sources.setdefault(name, []).append((column, what))
        for column in self.indicator_columns_:
            sources.setdefault(f"{self._family}__{column}_missing", []).append(
                (column, f"the missing-value indicator of the column '{column}'"))
        clashes = {name: found for name, found in sources.items() if len(found) > 1}
        if not clashes:  # not reached: input column names are unique (validate_data, columns=[...] checked)
            names = self._names()
            return InputError(f"{type(self).__name__}: feature names repeated: "
                              f"{sorted({n for n in names if names.count(n) > 1})}")
        listing = "; ".join(f"'{name}' from {' and from '.join(what for _, what in found)}"
                            for name, found in clashes.items())
        columns = list(dict.fromkeys(column for found in clashes.values() for column, _ in found))
        first = next(iter(clashes.values()))
        renamed = first[0][0] if first[0][0] in self.numeric_columns_ else first[-1][0]
        leave_out = "exclude=[...]" if auto else "columns=[...] without one of them"
        return InputError(
            f"{type(self).__name__}: the input columns {columns} would give features with the same name: "
            f"{listing}. Two features of one name cannot be told apart; rename one of the columns in the table "
            f"(e.g. '{renamed}' to '{renamed}_value'), or leave one out ({leave_out})."
        )

    def _not_numbers_error(self, frame: pd.DataFrame, name, parsed: _Parsed, step: str) -> InputError:
        """The error for a column of numbers holding text (``step``: "fit" or "transform")."""
        cells = frame[name].astype(object)[parsed.bad]
        values = [v.strip() if isinstance(v, str) else v for v in cells]
        names = row_names(frame)[parsed.bad]
        what = "holds numbers" if step == "fit" else "held numbers in fit"
        hint = ""
        with_unit = [v for v in values if isinstance(v, str) and _NUMBER_IN_TEXT.match(v)]
        if with_unit:
            hint = (f" A value such as '{with_unit[0]}' carries a unit, a comparison or a decimal comma: write the "
                    "number alone, with a decimal point (a unit belongs in the column name).")
        return InputError(
            f"{type(self).__name__}: column '{name}' {what}, but "
            f"{'1 value is not a number' if len(values) == 1 else f'{len(values)} values are not numbers'}: "
            f"{list_values_by_case(values, names)}.{hint} Leave a cell empty (or NA) where the value is "
            f"unknown; to read the column as categories instead, pass categorical=['{name}']."
        )

    def _warn_empty(self, frame: pd.DataFrame) -> None:
        """Warn about columns used that hold no value in any of two or more rows (every case imputed).

        One case without a value is what imputation is for; a column empty for a whole batch is most
        often an export that lost it or renamed it, and every case then gets the training value. A
        column often missing in training is empty in a small batch by chance (a test fold of a
        cross-validation): only a batch that empty with a chance under 1 in 1000 at the training
        fold's missing rate is warned about.
        """
        missing_fraction = getattr(self, "missing_fraction_", None)  # None: saved before 2026-12-07
        if len(frame) < 2 or missing_fraction is None:
            return
        empty = [name for name in self.columns_ if missing_fraction[name] ** len(frame) < _EMPTY_BY_CHANCE
                 and frame[name].astype(object).map(is_missing).all()]
        if not empty:
            return
        def filled(name) -> str:
            if name in self.modes_:
                return f"'{name}' = '{self.modes_[name]}' (training's most frequent category)"
            if self._impute_numeric:
                return f"'{name}' = {self.medians_[name]:.4g} (training median)"
            return f"'{name}' (left missing: the model's imputer gives it its training value)"

        warnings.warn(
            f"{type(self).__name__}: column(s) used by the model hold no value for any of the {len(frame)} cases, "
            f"so every case gets the value imputed from training: {'; '.join(map(filled, empty))}; cases "
            f"{list_cases(row_names(frame))}. Check that the table holds these variables under the names seen "
            "in fit.",
            InputWarning,
            stacklevel=3,
        )

    def _warn_infinite(self, infinite: dict) -> None:
        if infinite:
            listing = "; ".join(f"'{k}' ({list_cases(v)})" for k, v in infinite.items())
            what = ("replaced by the training median, as missing values" if self._impute_numeric else
                    "passed on (the pipeline's clean step replaces them by the training median)")
            warnings.warn(
                f"{type(self).__name__}: infinite values {what}: {listing}",
                UserWarning,
                stacklevel=3,
            )

    def _warn_if_outcome(self, binary: dict, y, n_rows: int, auto: bool) -> None:
        """Warn about the columns used whose values determine ``y`` (an outcome under another name).

        A column determines y when, on the training rows where it has a value, its two values map one
        to one onto y's two classes: an exact copy, a recoding ("yes"/"no", True/False) or an inverted
        copy. ``binary`` holds the used columns with two values (see :meth:`fit`). A column with missing
        values is judged on at least :data:`_OUTCOME_MIN_ROWS` rows, so that a few measurements do not
        match y by chance; a predictive but imperfect column is never named.
        """
        target = pd.Series(np.asarray(y).ravel())
        if target.shape[0] != n_rows or not binary:
            return
        codes, classes = pd.factorize(target, sort=True)
        if (codes < 0).any() or len(classes) != 2:
            return
        second = codes == 1
        same = {}
        for name, (present, is_second, values) in binary.items():
            n_present = int(present.sum())
            outcome = second[present]
            if n_present < n_rows and (n_present < _OUTCOME_MIN_ROWS
                                       or min(int(outcome.sum()), n_present - int(outcome.sum())) < _OUTCOME_MIN_CLASS):
                # a marker measured in a few cases matches y there by chance (a rare sign in a small fold)
                continue
            if np.array_equal(is_second, outcome):
                pairs = zip(values, classes, strict=True)
            elif np.array_equal(is_second, ~outcome):
                pairs = zip(values, classes[::-1], strict=True)
            else:
                continue
            rows = (f"{n_present} training rows" if n_present == n_rows else
                    f"the {n_present} of {n_rows} training rows with a value")
            same[name] = (", ".join(f"'{v}' is y={category_of(c)}" for v, c in pairs), rows)
        if same:
            listing = "; ".join(f"'{k}': {m} on {r}" for k, (m, r) in same.items())
            hint = "leave them out (exclude=[...]) or drop them from X" if auto else "remove them from columns=[...]"
            warnings.warn(
                f"{type(self).__name__}: column(s) {list(same)} equal the outcome y (as a copy, a recoding or an "
                f"inverted copy: their values determine y exactly) and are used as predictors ({listing}); "
                f"if they hold the outcome, {hint}",
                UserWarning,
                stacklevel=3,
            )

    def _names(self) -> list[str]:
        valued = self.value_columns()
        names = [valued[c][0] for c in self.numeric_columns_]
        names += [f"{self._family}__{c}_missing" for c in self.indicator_columns_]
        for c in self.categorical_columns_:
            names += valued[c]
        return names

    def value_columns(self) -> dict[str, list[str]]:
        """The output columns holding each input column's value: ``{column: [names]}``, its one
        column for a numeric column, its one-hot columns for a categorical one (a single column for a
        two-level variable); missing-value indicators are not among them."""
        family = self._family
        out = {c: [f"{family}__{c}"] for c in self.numeric_columns_}
        for c in self.categorical_columns_:
            levels = self.categories_[c]
            out[c] = [f"{family}__{c}_{level}" for level in (levels[1:] if len(levels) == 2 else levels)]
        return out

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

        Raises
        ------
        radhe.errors.InputError
            A column seen in fit is missing; a numeric column holds text; with
            ``handle_unknown="error"``, a categorical column holds a category not seen in fit (the
            message names the column, the categories, their cases and the categories seen in fit).

        Warns
        -----
        radhe.errors.InputWarning
            With ``handle_unknown="ignore"``, for categories not seen in fit (encoded as zeros); for
            columns used that hold no value in any of two or more rows (every case then gets the
            training median or most frequent category).
        """
        check_is_fitted(self, "feature_names_out_")
        frame = self._frame(X, reset=False)
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise InputError(
                f"{type(self).__name__}: column(s) {missing} seen in fit are missing from X; "
                f"columns present: {list(frame.columns)}"
            )
        blocks, indicators, infinite = [], {}, {}
        for name in self.numeric_columns_:
            column = frame[name]
            parsed = _parse_numbers(column)
            if parsed is None:  # e.g. a categorical dtype now: read its values
                parsed = _parse_numbers(column.astype(object))
            if parsed.bad.any():
                raise self._not_numbers_error(frame, name, parsed, "transform")
            values = parsed.values.to_numpy(dtype=float)
            inf = np.isinf(values)
            if inf.any():
                infinite[name] = row_names(frame)[inf]
            if self._impute_numeric:
                values = np.where(np.isfinite(values), values, self.medians_[name])
            blocks.append(values)
            if name in self.indicator_columns_:
                indicators[name] = (~np.isfinite(parsed.values.to_numpy(dtype=float))).astype(float)
        blocks += [indicators[name] for name in self.indicator_columns_]
        unknown, names = [], None
        for name in self.categorical_columns_:
            levels = self.categories_[name]
            cells = [None if is_missing(v) else self._category_of(v) for v in frame[name].astype(object)]
            unseen = np.asarray([v is not None and v not in levels for v in cells], dtype=bool)
            if unseen.any():
                names = row_names(frame) if names is None else names
                values = [v for v, u in zip(cells, unseen, strict=True) if u]
                seen = ", ".join(f"'{v}'" for v in levels)
                unknown.append(f"column '{name}': {list_values_by_case(values, names[unseen])} "
                               f"(categories seen in fit: {seen})")
            # missing values take the training mode; unseen categories get zeros in every one-hot column
            text = np.asarray([self.modes_[name] if v is None else v for v in cells], dtype=object)
            if len(levels) == 2:
                blocks.append((text == levels[1]).astype(float))
            else:
                blocks += [(text == level).astype(float) for level in levels]
        if unknown:
            self._unknown_categories(unknown)
        self._warn_infinite(infinite)
        self._warn_empty(frame)
        n = len(frame)
        data = np.column_stack(blocks) if blocks else np.empty((n, 0))
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(data, index=index, columns=list(self.feature_names_out_))

    def __setstate__(self, state):
        # a transformer saved by radhe before `handle_unknown` existed (before 2026-12-04) encoded an
        # unseen category as zeros and compared categories by their text ("1.0" for a float code): it
        # keeps doing so, now with a warning, so that its model's features keep their names and values
        if "handle_unknown" not in state:
            state = {**state, "handle_unknown": "ignore"}
            if "categories_" in state:
                state["_text_categories"] = True
        super().__setstate__(state)

    def _category_of(self, value) -> str:
        if getattr(self, "_text_categories", False):
            return value.strip() if isinstance(value, str) else str(value)
        return category_of(value)

    def _unknown_categories(self, unknown: list[str]) -> None:
        """Refuse (``handle_unknown="error"``) or warn about categories not seen in fit."""
        if self.handle_unknown == "error":
            raise InputError(
                f"{type(self).__name__}: categories not seen in fit: {'; '.join(unknown)}. Text is compared as "
                "written, without surrounding whitespace ('m' is not 'M'). Correct or recode these values (a missing "
                "value takes the most frequent training category), or pass handle_unknown='ignore' to encode an "
                "unseen category as no category (zeros in every one-hot column of the variable)."
            )
        warnings.warn(
            f"{type(self).__name__}: categories not seen in fit encoded as zeros in every one-hot column of "
            f"their variable (for a two-level variable: its first category) (handle_unknown='ignore'): "
            f"{'; '.join(unknown)}",
            InputWarning,
            stacklevel=3,
        )

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


class TabularFeatures(_TableTransformer):
    """Pass a table's precomputed features through, named ``tabular__<column>``.

    For users who already have feature tables (radiomics computed elsewhere, scores, lab values):
    numeric columns are passed through unchanged (missing and infinite values are left to the
    pipeline's ``"clean"`` step, which imputes them with training-fold medians; infinite values get
    a warning naming the cases); text columns are one-hot encoded (missing values take the most
    frequent category; a category unseen in fit is refused, or with ``handle_unknown="ignore"``
    encoded as zeros with a warning). Hostile values are handled as in
    :class:`~radhe.features.ClinicalFeatures`: text among numbers ("unknown", "150 mmHg", "1,2") is
    an :class:`~radhe.errors.InputError` naming the column, values and cases; the text
    :func:`pandas.read_csv` reads as missing ("NA", "NaN", "") is missing; whitespace around text
    is ignored.

    Parameters
    ----------
    columns : "auto" or list of str, default "auto"
        Columns to use. "auto": every column except the reserved manifest columns (``case_id``,
        ``patient_id``, ``image``, ``mask``, ``mask_pred``), the outcome columns
        :data:`OUTCOME_COLUMNS`, text columns of file paths, identifiers (by name, ``*_id``, or by
        values: free text whose distinct values mostly occur once), dates/times, columns without a
        value, and ``exclude``; those left out for what they hold are named in a warning. Outcome
        columns are refused even when listed explicitly (:class:`~radhe.errors.ConfigurationError`).
    exclude : sequence of str, default ("site",)
        Further columns never used with ``columns="auto"``. ``site`` is excluded by default, as in
        :class:`~radhe.features.ClinicalFeatures`: a model that learns each hospital's base rate does
        not transfer to a new hospital. Pass ``exclude=()`` to use it.
    categorical : sequence of str, optional
        Columns to one-hot encode even though they hold numbers (e.g. a numeric site code).
    max_categories : int, default 50
        With ``columns="auto"``, a text column with more distinct values is not used (an identifier
        or free text, not a category); a warning names it. Smaller cohorts are judged by the share
        of distinct values seen once (see ``columns``).
    handle_unknown : {"error", "ignore"}, default "error"
        A category of a text column not seen in :meth:`fit`, as in
        :class:`~radhe.features.ClinicalFeatures`: refused, or encoded as zeros with a warning.

    Attributes
    ----------
    columns_ : list of str
        The input columns used.
    feature_names_out_ : ndarray of str
        Output names.
    dropped_columns_ : dict
        Columns considered but not used, with the reason.
    missing_fraction_ : dict
        Share of the training rows without a value, per column used (judges whether a column empty
        for a whole batch in ``transform`` is worth a warning).

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

    def __init__(self, columns="auto", *, exclude=("site",), categorical=None, max_categories=50,
                 handle_unknown="error"):
        self.columns = columns
        self.exclude = exclude
        self.categorical = categorical
        self.max_categories = max_categories
        self.handle_unknown = handle_unknown
