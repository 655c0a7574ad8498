"""Validation helpers shared across radhe (labels, scores, probabilities, manifests).

One home for the input checks that several layers need — the evaluation metrics, the baseline
models, the estimators — so that no layer imports another's private helper to validate its
inputs (which is what used to tie :mod:`radhe.baselines` and the deep-learning estimators to
:mod:`radhe.evaluation`). Every check raises :class:`radhe.errors.InputError` with a message
that names the offending input. The names carry no underscore because they are used across the
package; the module itself is internal (not part of radhe's public API).
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from radhe.errors import InputError

__all__ = ["check_binary", "check_score", "check_probability", "check_both_classes", "check_frame",
           "check_cases", "check_labels", "check_training_data", "check_unique_columns", "MISSING_MARKERS",
           "is_missing", "row_names", "list_cases", "list_values_by_case"]

#: Text read as a missing value: the strings :func:`pandas.read_csv` reads as missing by default
#: (its ``na_values``; surrounding whitespace ignored). Tables and labels given as DataFrames read
#: them the same way, so a manifest gives the same result from a file and from memory.
MISSING_MARKERS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})

#: How many cases (and distinct values) a message lists before "and N more".
_LISTED = 5


def check_binary(y, name: str = "y") -> np.ndarray:
    """``y`` as a 1-D int array of 0/1 labels (bool and 0.0/1.0 accepted).

    Raises
    ------
    radhe.errors.InputError
        Not one-dimensional, missing labels, or values other than 0 and 1.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional; got shape {arr.shape}")
    try:
        as_float = arr.astype(float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must hold 0/1 labels; got values such as {arr[:5].tolist()}") from None
    if np.isnan(as_float).any():
        raise InputError(f"{name} has {int(np.isnan(as_float).sum())} missing label(s)")
    bad = ~np.isin(as_float, (0.0, 1.0))
    if bad.any():
        raise InputError(f"{name} must hold 0/1 labels; found {sorted(set(arr[bad].tolist()))[:5]}")
    return as_float.astype(int)


def check_score(score, n: int, name: str = "score") -> np.ndarray:
    """``score`` as a 1-D float array of ``n`` finite values."""
    arr = np.asarray(score, dtype=float)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name} must be one-dimensional with {n} values (one per label); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} has {int((~np.isfinite(arr)).sum())} non-finite value(s)")
    return arr


def check_probability(prob, n: int) -> np.ndarray:
    """``prob`` as a 1-D float array of ``n`` finite values in [0, 1]."""
    p = check_score(prob, n, "probability")
    if (p < 0).any() or (p > 1).any():
        raise InputError("probabilities must lie in [0, 1]; this score is not a probability")
    return p


def check_both_classes(y: np.ndarray, what: str) -> None:
    """Raise unless the 0/1 labels ``y`` hold both classes (``what`` names the computation)."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise InputError(f"{what} needs both classes; labels hold {n_pos} positive(s) of {y.size}")


def check_frame(X, columns, where: str) -> None:
    """Raise `InputError` unless ``X`` is a manifest DataFrame holding ``case_id`` and ``columns``."""
    if not isinstance(X, pd.DataFrame):
        raise InputError(f"{where}: X must be a manifest DataFrame (see radhe.io.load_manifest), "
                         f"got {type(X).__name__}")
    check_unique_columns(X, where)
    missing = [c for c in ("case_id", *columns) if c not in X.columns]
    if missing:
        raise InputError(f"{where}: manifest lacks column(s) {missing}; columns present: {list(X.columns)}")
    empty = [_is_na(v) or not str(v).strip() for v in X["case_id"]]
    if any(empty):
        rows = [str(r) for r, e in zip(X.index, empty, strict=True) if e][:5]
        raise InputError(f"{where}: case_id is empty in row(s) {', '.join(rows)} (every case needs a name: its mask "
                         "file and the messages are named after it)")


def check_unique_columns(X, where: str) -> None:
    """Raise `InputError` when a DataFrame ``X`` repeats a column name (which column a step reads would be
    ambiguous)."""
    if isinstance(X, pd.DataFrame) and X.columns.duplicated().any():
        repeated = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
        raise InputError(f"{where}: column name(s) {repeated[:10]} appear more than once; rename or drop the "
                         "repeats (radhe.load_manifest renames them when it reads a file)")


def is_missing(value) -> bool:
    """True for None, NaN, NaT, ``pd.NA`` and the text of :data:`MISSING_MARKERS` (whitespace ignored)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in MISSING_MARKERS
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cells
        return False


def row_names(X, n: int | None = None, index=None) -> np.ndarray:
    """How messages name each row of ``X``: its ``case_id`` (a manifest), else ``row <index label>``.

    ``index`` (e.g. a label Series' index) is used when ``X`` is not a DataFrame.
    """
    if isinstance(X, pd.DataFrame):
        if "case_id" in X.columns:
            return X["case_id"].astype(str).to_numpy()
        index = X.index
    if index is None:
        index = range(len(X) if n is None else n)
    return np.asarray([f"row {label}" for label in index], dtype=object)


def list_cases(names, limit: int = _LISTED) -> str:
    """``"case 'a'"``, ``"cases 'a', 'b'"`` or ``"cases 'a', 'b', ... (12 in all)"``; rows stay ``row 3``."""
    names = [str(n) for n in names]
    quoted = [n if n.startswith("row ") else f"'{n}'" for n in names[:limit]]
    rows = all(n.startswith("row ") for n in names)
    noun = ("row" if rows else "case") + ("" if len(names) == 1 else "s")
    if rows:
        quoted = [q[4:] for q in quoted]
    text = f"{noun} {', '.join(quoted)}"
    if len(names) > limit:
        text += f", ... ({len(names)} in all)"
    return text


def list_values_by_case(values, names, limit: int = _LISTED) -> str:
    """``"'unknown' (cases 'a', 'b'), '150 mmHg' (case 'c')"``: each distinct value with the cases holding it."""
    groups: dict[str, list] = {}
    for value, name in zip(values, names, strict=True):
        groups.setdefault(repr(value) if not isinstance(value, str) else f"'{value}'", []).append(name)
    parts = [f"{value} ({list_cases(cases, limit)})" for value, cases in list(groups.items())[:limit]]
    if len(groups) > limit:
        parts.append(f"... ({len(groups)} distinct values in all)")
    return ", ".join(parts)


def _label_value(value) -> float:
    """A label as a float: NaN when missing, inf when not a number."""
    if is_missing(value):
        return np.nan
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return np.inf
    return np.inf


def check_cases(X, n: int, where: str) -> None:
    """Raise `InputError` when there are no cases (``n == 0``) or a manifest repeats a ``case_id``."""
    if n == 0:
        raise InputError(f"{where}: no cases (the manifest has 0 rows; a file with a header only?); "
                         "add the cases to learn from")
    check_unique_columns(X, where)
    if isinstance(X, pd.DataFrame) and "case_id" in X.columns:
        ids = X["case_id"].astype(str)
        duplicated = ids[ids.duplicated()].unique().tolist()
        if duplicated:
            raise InputError(f"{where}: case_id must be unique (one row per scan); duplicated: "
                             f"{list_cases(duplicated, 10)}")


def _is_na(value) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _differ(a, b) -> bool:
    """Whether two index labels differ (missing labels equal each other, as in ``Index.equals``)."""
    if _is_na(a) or _is_na(b):
        return not (_is_na(a) and _is_na(b))
    try:
        return not bool(a == b)
    except (TypeError, ValueError):
        return True


def _first_misaligned(index: pd.Index, X: pd.DataFrame) -> int | None:
    """The first position where a label Series' index differs from the manifest's (by value: an
    ``Int64`` index equal to an ``int64`` one is aligned); None when none does."""
    if index.equals(X.index):
        return None
    return next((i for i, (a, b) in enumerate(zip(index, X.index, strict=True)) if _differ(a, b)), None)


def _misaligned_message(index: pd.Index, X: pd.DataFrame, position: int, name: str, where: str) -> str:
    """What is wrong when a label Series' index is not the manifest's, naming the first row that differs."""
    try:
        same_labels = bool(index.is_unique and set(index) == set(X.index))
    except TypeError:  # unhashable labels
        same_labels = False

    def shown(label) -> str:
        return repr(label.item() if isinstance(label, np.generic) else label)

    case = f" (case '{X['case_id'].iloc[position]}')" if "case_id" in X.columns else ""
    problem = ("holds the manifest's row labels in another order" if same_labels
               else "has other row labels than the manifest")
    fix = ("pass the labels in the manifest's order, e.g. y.loc[manifest.index]" if same_labels
           else "pass its values (y.to_numpy()) if they are in the manifest's row order")
    return (f"{where}: the outcome {name} {problem}: row {position} of the manifest has index "
            f"{shown(X.index[position])}{case}, the label in that position has index {shown(index[position])}; "
            f"labels are paired with cases by position, so cases would get other cases' labels: {fix}")


def check_labels(y, X=None, *, where: str = "fit", aligned: bool = False) -> np.ndarray:
    """The 0/1 outcome of every case as an int array, or an error saying which cases to fix.

    Run where fitting starts, before any image is read or any network trained.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        The labels: 0/1, bool, 0.0/1.0 or the text "0"/"1".
    X : pandas.DataFrame or array-like, optional
        The manifest; its ``case_id`` names the cases in messages, and its length must be ``y``'s.
    where : str
        What is checking (prefixes the messages).
    aligned : bool, default False
        Also refuse a Series ``y`` whose index is not the DataFrame ``X``'s (sorted, filtered or
        re-indexed apart from it: pairing by position would give cases other cases' labels). For
        where a user hands radhe the manifest and its labels (:func:`radhe.evaluate`, the command
        line), not for ``fit``: scikit-learn's tools pair by position and some shuffle ``y`` alone
        (``permutation_test_score``).

    Returns
    -------
    numpy.ndarray of int

    Raises
    ------
    radhe.errors.InputError
        No cases; a manifest ``X`` with a repeated ``case_id``; ``y`` not one-dimensional or of
        another length than ``X``; with ``aligned``, a Series ``y`` whose index is not ``X``'s; missing
        labels (naming the cases); values other than 0/1, e.g. "yes"/"no" or a 3-level grade (naming
        the values and cases); a single class.
    """
    if isinstance(y, pd.DataFrame) and y.shape[1] == 1:
        y = y.iloc[:, 0]  # a one-column table (manifest[["he"]]): its column, index kept for the alignment check
        column_vector = True
    else:
        column_vector = False
    name = f"'{y.name}'" if isinstance(y, pd.Series) and y.name is not None else "y"
    values = np.asarray(y.to_numpy(dtype=object) if isinstance(y, pd.Series | pd.DataFrame) else y, dtype=object)
    if values.ndim == 2 and values.shape[1] == 1:
        values, column_vector = values[:, 0], True
    if column_vector:
        import warnings

        from sklearn.exceptions import DataConversionWarning

        warnings.warn(f"{where}: the outcome {name} was given as a column (one column, one row per case); it is "
                      "read as one label per case", DataConversionWarning, stacklevel=3)
    if values.ndim != 1:
        raise InputError(f"{where}: the outcome {name} must be one-dimensional (one label per case); "
                         f"got shape {values.shape}")
    if X is not None and len(X) != values.size:
        raise InputError(f"{where}: the manifest has {len(X)} rows but the outcome {name} has {values.size} labels")
    check_cases(X, values.size, where)
    if aligned and isinstance(y, pd.Series) and isinstance(X, pd.DataFrame):
        position = _first_misaligned(y.index, X)
        if position is not None:
            raise InputError(_misaligned_message(y.index, X, position, name, where))
    names = row_names(X, values.size, y.index if isinstance(y, pd.Series) else None)
    as_float = np.asarray([_label_value(v) for v in values], dtype=float)
    missing = np.isnan(as_float)
    if missing.any():
        raise InputError(
            f"{where}: the outcome {name} is missing for {int(missing.sum())} of {values.size} cases "
            f"({list_cases(names[missing])}); fill the labels in or leave those cases out of the manifest "
            "(radhe drops no case itself)"
        )
    bad = ~np.isin(as_float, (0.0, 1.0))
    if bad.any():
        text = [v for v in values[bad] if isinstance(v, str) and np.isinf(_label_value(v))
                and v.strip().lower().lstrip("+-") not in ("inf", "infinity")]
        hint = ""
        if text:
            example = sorted(set(v.strip() for v in text))[-1]
            column = name.strip("'") if name != "y" else "he"
            hint = (f"; text labels are not guessed: convert them, e.g. "
                    f"y = (manifest['{column}'] == '{example}').astype(int)")
        raise InputError(
            f"{where}: the outcome {name} must be 0/1 (1 = haematoma expansion); {int(bad.sum())} of "
            f"{values.size} cases hold other values: {list_values_by_case(values[bad], names[bad])}{hint}"
        )
    labels = as_float.astype(int)
    n_positive = int(labels.sum())
    if n_positive in (0, labels.size):
        raise InputError(
            f"{where}: the outcome {name} has one class only: all {labels.size} cases are {labels[0]}; "
            "a model needs cases with expansion (1) and without (0)"
        )
    return labels


def check_training_data(estimator, X, y, *, where: str | None = None):
    """Check what an estimator is about to be fitted on, before it reads an image or trains anything.

    * ``X`` has rows, and a manifest's ``case_id`` values are unique;
    * a classifier gets 0/1 labels of both classes, one per row (:func:`check_labels`); they are
      returned as ints;
    * any other estimator (a regressor, a feature pipeline) gets ``y`` back unchanged, after a
      check that it has one value per row.

    Raises
    ------
    radhe.errors.InputError
        Naming the cases concerned.
    """
    from sklearn.base import is_classifier

    where = where or f"{type(estimator).__name__}.fit"
    n = len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]
    classifier = is_classifier(estimator)
    if classifier and y is not None:
        return check_labels(y, X, where=where)
    check_cases(X, n, where)
    if y is None:
        if classifier:
            raise InputError(f"{where}: no labels; pass y, the 0/1 outcome of every case (e.g. manifest['he'])")
        return None
    n_values = len(y) if hasattr(y, "__len__") else np.asarray(y).shape[0]
    if n_values != n:
        raise InputError(f"{where}: the manifest has {n} rows but y has {n_values} values")
    return y


def manifest_outcome(manifest: pd.DataFrame, label: str, *, where: str) -> tuple[pd.DataFrame, pd.Series]:
    """Split a manifest into (the cases' table without a non-standard outcome column, 0/1 labels).

    The one reading of an outcome column named by a user (the command line's and the pipelines'
    ``--label``). The feature branches leave out only the known outcome columns
    (:data:`radhe.constants.OUTCOME_COLUMNS`); any other column named as the outcome is dropped
    from the table here, or it would be a predictor of itself.

    Raises
    ------
    radhe.errors.InputError
        ``label`` is not a column of ``manifest``; the labels fail :func:`check_labels`.
    """
    from radhe.constants import OUTCOME_COLUMNS

    if label not in manifest.columns:
        raise InputError(f"{where} has no outcome column '{label}' (pass --label); columns: {list(manifest.columns)}")
    labels = check_labels(manifest[label], manifest, where=where)
    y = pd.Series(labels, index=manifest.index, name=label)
    if label not in OUTCOME_COLUMNS:
        manifest = manifest.drop(columns=[label])
    return manifest, y
