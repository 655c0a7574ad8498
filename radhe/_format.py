"""How numbers are shown in radhe's tables and reports: one place, so that an undefined value reads "n/a"."""

from __future__ import annotations

import math

__all__ = ["NOT_AVAILABLE", "format_number", "format_estimate", "format_interval", "format_bound", "format_delong_p",
           "defined_number"]

#: What an undefined value (None, NaN, 0/0 such as LR+ with neither true nor false positives) prints as;
#: :func:`format_number` also prints ±inf so, :func:`format_estimate` and :func:`format_bound` print "∞".
NOT_AVAILABLE = "n/a"


def defined_number(value) -> float | None:
    """``value`` as a finite float, or None when it is undefined (None, a bool, non-numeric, NaN, ±inf)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_number(value, digits: int = 3) -> str:
    """``value`` to ``digits`` decimals; :data:`NOT_AVAILABLE` when undefined; text is returned as it is."""
    number = defined_number(value)
    if number is None:
        if isinstance(value, str):
            return value
        return NOT_AVAILABLE
    if round(number, digits) == 0:
        number = 0.0  # -6e-17 reads 0.00, not -0.00
    return f"{number:.{digits}f}"


def format_bound(value, digits: int = 3) -> str | None:
    """A CI bound as shown: a number, "∞" / "−∞" for an unbounded side (an LR+ interval reaching a
    test without false positives), None when undefined."""
    number = defined_number(value)
    if number is not None:
        return format_number(number, digits)
    try:
        infinite = not isinstance(value, bool) and value is not None and math.isinf(float(value))
    except (TypeError, ValueError):
        infinite = False
    if infinite:
        return "∞" if float(value) > 0 else "−∞"
    return None


def format_estimate(value, digits: int = 3) -> str:
    """An estimate that may be infinite: a number, "∞" / "−∞" (LR+ of a test without false positives,
    whose lower bound is still informative), :data:`NOT_AVAILABLE` when undefined (NaN, None)."""
    shown = format_bound(value, digits)
    return NOT_AVAILABLE if shown is None else shown


def format_interval(estimate, low, high, digits: int = 3) -> str:
    """``"0.812 (0.741–0.873)"``, ``"2.448 (0.000–∞)"`` for an unbounded side, ``"∞ (11.160–∞)"`` for an
    infinite estimate (LR+ without false positives); ``"n/a"`` when the estimate is undefined,
    ``"0.812 (CI n/a)"`` when a bound is."""
    shown = format_bound(estimate, digits)
    if shown is None:
        return NOT_AVAILABLE
    lo, hi = format_bound(low, digits), format_bound(high, digits)
    if lo is None or hi is None:
        return f"{shown} (CI {NOT_AVAILABLE})"
    return f"{shown} ({lo}–{hi})"


def format_delong_p(name, p, delta, reference) -> str:
    """A comparison table's DeLong p: "ref." for the reference model (``name == reference``; without a
    known reference, the row with no p and no difference), "<0.001", 3 decimals, or :data:`NOT_AVAILABLE`
    where the test is undefined (a non-zero difference with zero variance)."""
    p = float(p)
    if name == reference or (reference is None and math.isnan(p) and delta == 0):
        return "ref."
    if math.isnan(p):
        return NOT_AVAILABLE
    return "<0.001" if p < 0.001 else f"{p:.3f}"
