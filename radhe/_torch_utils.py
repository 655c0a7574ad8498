"""Private helpers shared by the torch-backed estimators (CNN embedder, marker and two-output classifiers).

Kept free of torch and SimpleITK imports so that importing an estimator's module stays fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from radhe.errors import ConfigurationError, InputError


def check_frame(X, columns, where: str) -> None:
    """Raise `InputError` unless ``X`` is a DataFrame holding ``case_id`` and ``columns``."""
    if not isinstance(X, pd.DataFrame):
        raise InputError(f"{where}: X must be a manifest DataFrame, got {type(X).__name__}")
    missing = [c for c in ("case_id", *columns) if c not in X.columns]
    if missing:
        raise InputError(f"{where}: manifest lacks column(s) {missing}; columns present: {list(X.columns)}")


def check_window(window) -> None:
    """Raise `ConfigurationError` unless ``window`` is ``(low, high)`` HU with ``high > low``."""
    low, high = window
    if not high > low:
        raise ConfigurationError(f"window must be (low, high) with high > low, got {window!r}")


def backward_step(optimizer, loss) -> None:
    """One optimisation step on ``loss`` (gradients cleared first)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def mean_or_nan(losses) -> float:
    """Mean of an epoch's batch losses; NaN when no batch ran."""
    return float(np.mean(losses)) if losses else float("nan")


class NetCacheMixin:
    """Leaves the cached eval-mode network ``_net`` out of pickles (it is rebuilt from ``model_state_``)."""

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_net", None)
        return state
