"""Outcome labels computed from haematoma volumes.

Haematoma expansion (HE) is defined, as in most of the literature (Brouwers & Greenberg 2013;
Dowlatshahi et al. 2011; the BAT score of Morotti et al. 2018), as growth from the baseline to the
follow-up CT of **more than 6 mL or more than 33 %**. Both comparisons are strict (``>``): a
haematoma that grows by exactly 6 mL, or by exactly 33 %, has not expanded.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from radhe.errors import InputError

__all__ = ["haematoma_expansion"]

#: Growth within this many mL of a threshold counts as equal to it (absorbs floating-point rounding:
#: in binary, 15.96 - 12 exceeds 0.33 * 12).
_TOLERANCE_ML = 1e-9


def haematoma_expansion(baseline_ml, followup_ml, absolute_ml: float | None = 6.0,
                        relative: float | None = 0.33):
    """Haematoma expansion: growth of more than ``absolute_ml`` mL or more than ``relative``.

    Vectorised: scalars, sequences, numpy arrays and pandas Series broadcast against each other.

    Parameters
    ----------
    baseline_ml, followup_ml : float or array-like
        Haematoma volumes (mL) on the admission and follow-up CT. NaN means unknown.
    absolute_ml : float or None, default 6.0
        Absolute growth threshold (mL); ``None`` disables the absolute criterion.
    relative : float or None, default 0.33
        Relative growth threshold (0.33 = 33 %); ``None`` disables the relative criterion.
        It is applied as ``followup - baseline > relative * baseline``, so a zero baseline with any
        positive follow-up volume counts as expansion and no division by zero occurs.
        Growth within 1e-9 mL of a threshold counts as equal to it (floating-point rounding).

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        1.0 where the haematoma expanded, 0.0 where it did not, NaN where either volume is NaN.
        A float is returned for scalar inputs; a Series (same index) when either input is a Series.
        Two Series are paired by index label (the result has ``baseline_ml``'s order).

    Raises
    ------
    radhe.errors.InputError
        A volume is negative or infinite, or a threshold is negative, or both criteria are disabled.

    Examples
    --------
    >>> haematoma_expansion(10.0, 16.0)   # +6 mL and +60 %: expanded by the relative criterion
    1.0
    >>> haematoma_expansion(30.0, 36.0)   # exactly +6 mL, +20 %: not expanded (strict >)
    0.0
    """
    if absolute_ml is None and relative is None:
        raise InputError("haematoma_expansion: at least one of absolute_ml and relative must be given")
    for name, value in (("absolute_ml", absolute_ml), ("relative", relative)):
        if value is not None and (not np.isfinite(value) or value < 0):
            raise InputError(f"haematoma_expansion: {name} must be a non-negative number, got {value!r}")

    if isinstance(baseline_ml, pd.Series) and isinstance(followup_ml, pd.Series) and not (
        baseline_ml.index.equals(followup_ml.index)
    ):
        # pair the volumes by label, as pandas arithmetic would, never by position
        same_cases = (baseline_ml.index.is_unique and followup_ml.index.is_unique
                      and len(baseline_ml) == len(followup_ml) and baseline_ml.index.isin(followup_ml.index).all())
        if not same_cases:
            raise InputError(
                "haematoma_expansion: baseline_ml and followup_ml are Series with different indexes; "
                "align them first (the volumes of one case must be paired)"
            )
        followup_ml = followup_ml.reindex(baseline_ml.index)
    index = None
    for value in (baseline_ml, followup_ml):
        if isinstance(value, pd.Series):
            index = value.index
            break
    scalar = isinstance(baseline_ml, numbers.Number) and isinstance(followup_ml, numbers.Number)
    base = _as_float(baseline_ml, "baseline_ml")
    follow = _as_float(followup_ml, "followup_ml")
    try:
        base, follow = np.broadcast_arrays(base, follow)
    except ValueError:
        raise InputError(
            f"haematoma_expansion: baseline_ml (shape {base.shape}) and followup_ml (shape {follow.shape}) "
            "do not have the same length"
        ) from None

    growth = follow - base
    expanded = np.zeros(growth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if absolute_ml is not None:
            expanded |= growth > absolute_ml + _TOLERANCE_ML
        if relative is not None:
            expanded |= growth > relative * base + _TOLERANCE_ML
    out = expanded.astype(float)
    out[np.isnan(base) | np.isnan(follow)] = np.nan
    if scalar:
        return float(out.reshape(-1)[0])
    if index is not None and out.ndim == 1 and len(out) == len(index):
        return pd.Series(out, index=index, name="he")
    return out


def _as_float(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"haematoma_expansion: {name} must be numeric volumes in mL") from None
    finite = array[~np.isnan(array)]
    if np.any(np.isinf(finite)):
        raise InputError(f"haematoma_expansion: {name} holds infinite volumes")
    if np.any(finite < 0):
        bad = finite[finite < 0][:5].tolist()
        raise InputError(f"haematoma_expansion: {name} holds negative volumes {bad}; volumes are in mL, >= 0")
    return array
