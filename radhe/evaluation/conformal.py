"""Per-patient uncertainty: label-conditional conformal prediction sets for the expansion label (crepes).

A predicted risk says how likely expansion is; a conformal prediction set says which outcomes cannot be
ruled out at a chosen confidence: ``{0}`` (no expansion), ``{1}`` (expansion), ``{0, 1}`` (either: the
model cannot tell for this patient) or ``{}``. With label-conditional (Mondrian by label) calibration,
at confidence 90 % the set holds the true outcome for about 90 % of the patients who expand *and*
90 % of those who do not — the property a clinician needs for the rarer class.

In radhe's cross-validation each training fold calibrates its own conformal classifier on the
out-of-fold scores of the fold's inner cross-validation (the scores that also choose the fold's
threshold): calibration never sees the held-out cases. The sets come from crepes'
:class:`crepes.ConformalClassifier`; the non-conformity score is the hinge ``1 − p(label)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_CONFIDENCE", "conformal_sets", "conformal_summary", "format_set"]

#: Confidence of the prediction sets of a report.
DEFAULT_CONFIDENCE = 0.9


def conformal_sets(y_calibration, p_calibration, p_test, *, confidence: float = DEFAULT_CONFIDENCE,
                   seed: int = 0) -> np.ndarray | None:
    """Label-conditional conformal prediction sets, ``(n_test, 2)`` booleans (column k: label k in the set).

    Parameters
    ----------
    y_calibration : array-like of 0/1
        Labels of the calibration cases.
    p_calibration, p_test : array-like
        Probabilities of expansion (label 1) of the calibration and the test cases, from models that
        did not see the cases they score.
    confidence : float
        Target coverage of the true label, per label.

    Returns
    -------
    ndarray or None
        None when a label has fewer than 2 calibration cases (no meaningful p-value).
    """
    from crepes import ConformalClassifier

    y = np.asarray(y_calibration, dtype=int)
    p_cal = np.clip(np.asarray(p_calibration, dtype=float), 0, 1)
    p_test = np.clip(np.asarray(p_test, dtype=float), 0, 1)
    probabilities_test = np.column_stack([1 - p_test, p_test])
    sets = np.zeros((len(p_test), 2), dtype=bool)
    for label in (0, 1):
        calibration = p_cal[y == label]
        if calibration.size < 2:
            return None
        hinge_calibration = 1 - (calibration if label == 1 else 1 - calibration)
        classifier = ConformalClassifier().fit(hinge_calibration, seed=seed)
        hinge_test = 1 - probabilities_test[:, [label]]
        sets[:, label] = classifier.predict_set(hinge_test, confidence=confidence, seed=seed)[:, 0].astype(bool)
    return sets


def format_set(row) -> str:
    """``"{0}"``, ``"{1}"``, ``"{0, 1}"`` or ``"{}"`` for a ``(2,)`` boolean row; "" when NaN (not computed)."""
    if row is None or (isinstance(row, float) and np.isnan(row)):
        return ""
    labels = [str(k) for k, inside in enumerate(row) if inside]
    return "{" + ", ".join(labels) + "}"


def conformal_summary(y, sets: np.ndarray, confidence: float) -> pd.DataFrame:
    """Out-of-fold coverage and set sizes, overall and per true label.

    Rows ``all``, ``no expansion (0)``, ``expansion (1)``; columns ``n``, ``coverage`` (share of cases
    whose set holds their label), ``target``, ``mean_set_size``, ``singletons`` (share of one-label
    sets: the decisive ones), ``empty``.
    """
    y = np.asarray(y, dtype=int)
    covered = sets[np.arange(len(y)), y]
    size = sets.sum(axis=1)
    rows = {}
    for name, keep in (("all", np.ones(len(y), bool)), ("no expansion (0)", y == 0), ("expansion (1)", y == 1)):
        if keep.any():
            rows[name] = {"n": int(keep.sum()), "coverage": float(covered[keep].mean()), "target": confidence,
                          "mean_set_size": float(size[keep].mean()), "singletons": float((size[keep] == 1).mean()),
                          "empty": float((size[keep] == 0).mean())}
    return pd.DataFrame.from_dict(rows, orient="index")
