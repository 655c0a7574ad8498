"""Validation helpers shared across radhe (labels, scores, probabilities, manifests).

One home for the input checks that several layers need — the evaluation metrics, the baseline
models, the estimators — so that no layer imports another's private helper to validate its
inputs (which is what used to tie :mod:`radhe.baselines` and the deep-learning estimators to
:mod:`radhe.evaluation`). Every check raises :class:`radhe.errors.InputError` with a message
that names the offending input. The names carry no underscore because they are used across the
package; the module itself is internal (not part of radhe's public API).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from radhe.errors import InputError

__all__ = ["check_binary", "check_score", "check_probability", "check_both_classes", "check_frame"]


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
    missing = [c for c in ("case_id", *columns) if c not in X.columns]
    if missing:
        raise InputError(f"{where}: manifest lacks column(s) {missing}; columns present: {list(X.columns)}")

