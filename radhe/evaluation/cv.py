"""Out-of-fold predictions with patient-grouped cross-validation and in-fold threshold selection."""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone

from radhe._checks import check_labels
from radhe._log import get_logger
from radhe.errors import ConfigurationError, InputError
from radhe.evaluation.metrics import select_threshold

log = get_logger(__name__)

__all__ = ["CVPredictions", "cross_validate_predictions", "make_cv", "positive_score", "resolve_groups", "fixed_rule"]


@dataclass
class CVPredictions:
    """Out-of-fold predictions of one model.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per case, index of X: ``case_id`` (when X has one), ``patient_id`` (the CV group),
        ``y``, ``fold`` (0-based fold in which the case was held out), ``score`` (probability of
        the positive class, or decision value when the model has no ``predict_proba``),
        ``threshold`` (chosen on that fold's training data), ``y_pred`` (``score >= threshold``).
    score_kind : {"probability", "decision"}
    splits : list of (train_indices, test_indices)
        Positional indices into X, one pair per fold.
    estimators : list or None
        The fitted model of each fold (``return_estimators=True``).
    threshold_method : str
        How thresholds were chosen (``"youden"``, ``"sensitivity=0.90"``, ``"fixed=0.5"``).
    name : str
    extra : dict
        ``"segmentation"``: for a pipeline with a segmenter, its record of every held-out case's
        predicted mask (:func:`radhe.evaluation.segmentation.segmentation_record`, with ``fold``), and
        ``"segmentation_reference_column"``, the manifest column of the reference masks.
    """

    frame: pd.DataFrame
    score_kind: str
    splits: list
    estimators: list | None = None
    threshold_method: str = "youden"
    name: str = "model"
    extra: dict = field(default_factory=dict)

    @property
    def y(self) -> np.ndarray:
        return self.frame["y"].to_numpy(dtype=int)

    @property
    def score(self) -> np.ndarray:
        return self.frame["score"].to_numpy(dtype=float)

    @property
    def y_pred(self) -> np.ndarray:
        return self.frame["y_pred"].to_numpy(dtype=int)

    @property
    def fold(self) -> np.ndarray:
        return self.frame["fold"].to_numpy(dtype=int)

    @property
    def n_splits(self) -> int:
        return len(self.splits)


def positive_score(estimator, X) -> tuple[np.ndarray, str]:
    """Score of the positive class (label 1): ``predict_proba[:, 1]`` if available, else ``decision_function``.

    Estimators whose ranking score is not their probability (a point score such as BAT, a binary
    marker) say so with the attribute ``prefers_decision_function = True``; their
    ``decision_function`` is used.
    """
    classes = list(getattr(estimator, "classes_", [0, 1]))
    prefers_decision = bool(getattr(estimator, "prefers_decision_function", False))
    if hasattr(estimator, "predict_proba") and not (prefers_decision and hasattr(estimator, "decision_function")):
        try:
            proba = np.asarray(estimator.predict_proba(X))
            col = classes.index(1) if 1 in classes else proba.shape[1] - 1
            return proba[:, col].astype(float), "probability"
        except AttributeError:  # e.g. SVC(probability=False) exposes predict_proba but refuses it
            pass
    if hasattr(estimator, "decision_function"):
        dec = np.asarray(estimator.decision_function(X), dtype=float)
        if dec.ndim == 2:
            dec = dec[:, -1]
        if classes and classes[-1] != 1:
            dec = -dec
        return dec, "decision"
    raise ConfigurationError(f"{type(estimator).__name__} has neither predict_proba nor decision_function")


def resolve_groups(X, groups=None) -> np.ndarray:
    """CV groups: ``groups`` if given, else X's ``patient_id`` column, else X's ``case_id``, else one per row."""
    if groups is not None:
        if isinstance(groups, str):
            if not isinstance(X, pd.DataFrame) or groups not in X.columns:
                raise InputError(f"groups column {groups!r} is not a column of X")
            return X[groups].astype(str).to_numpy()
        g = np.asarray(groups)
        if g.shape[0] != len(X):
            raise InputError(f"groups has {g.shape[0]} values for {len(X)} rows of X")
        return g
    if isinstance(X, pd.DataFrame):
        for col in ("patient_id", "case_id"):
            if col in X.columns:
                return X[col].astype(str).to_numpy()
    return np.arange(len(X))


def make_cv(cv=5, *, random_state=0):
    """The default splitter: patient-grouped, stratified K-fold.

    ``cv`` may be an int (number of folds) or a splitter (returned unchanged). Uses
    :class:`radhe.model_selection.PatientStratifiedKFold` when available, else scikit-learn's
    ``StratifiedGroupKFold``.
    """
    if not isinstance(cv, (int, np.integer)):
        return cv
    try:
        from radhe.model_selection import PatientStratifiedKFold
    except ImportError:
        PatientStratifiedKFold = None
    if PatientStratifiedKFold is not None:
        return PatientStratifiedKFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(n_splits=int(cv), shuffle=True, random_state=random_state)


def _take(X, idx):
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]


def check_threshold_settings(threshold, target_sensitivity, threshold_cv, conformal) -> None:
    """Refuse, before anything is fitted, settings of the in-fold threshold and conformal sets that
    would run and report nonsense (a NaN threshold predicts no case positive).

    Raises
    ------
    radhe.errors.ConfigurationError
    """
    if isinstance(threshold, str):
        if threshold not in ("youden", "sensitivity"):
            raise ConfigurationError(f"threshold must be 'youden', 'sensitivity' or a number; got {threshold!r}")
    elif isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise ConfigurationError(f"threshold must be 'youden', 'sensitivity' or a finite number; got {threshold!r}")
    if isinstance(target_sensitivity, bool) or not isinstance(target_sensitivity, numbers.Real) or not (
            0 < target_sensitivity <= 1):
        raise ConfigurationError(f"target_sensitivity must be a number in (0, 1]; got {target_sensitivity!r}")
    if threshold_cv is not None and (isinstance(threshold_cv, bool) or not isinstance(threshold_cv, numbers.Integral)
                                     or threshold_cv == 1 or threshold_cv < 0):
        raise ConfigurationError(f"threshold_cv must be None, 0 (the training fold's own scores) or an integer "
                                 f">= 2 (inner folds); got {threshold_cv!r}")
    if conformal is not None and (isinstance(conformal, bool) or not isinstance(conformal, numbers.Real)
                                  or not 0 < conformal < 1):
        raise ConfigurationError(f"conformal must be None or a confidence in (0, 1), e.g. 0.9; got {conformal!r}")


def _fit_fold(pipeline, X, y, groups, train, test, threshold, target_sensitivity, threshold_cv, random_state,
              conformal=None):
    sets = None
    est = clone(pipeline)
    Xtr, ytr = _take(X, train), y[train]
    est.fit(Xtr, ytr, **_patient_params(est, Xtr, groups[train]))
    score, kind = positive_score(est, _take(X, test))
    from radhe.evaluation.segmentation import segmentation_record

    segmentation = segmentation_record(est, _take(X, test))  # the held-out cases' masks, just written
    rule = fixed_rule(est, kind)
    if rule is not None:
        thr = rule
    elif isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        thr = float(threshold)
        if kind == "probability" and not 0 <= thr <= 1:
            raise ConfigurationError(f"threshold={threshold:g} lies outside [0, 1], where the model's scores "
                                     f"(probabilities of {type(est).__name__}) lie: no case or every case "
                                     "would be predicted positive")
    else:
        method = "sensitivity" if threshold == "sensitivity" else "youden"
        # Not sklearn's TunedThresholdClassifierCV: it averages each inner fold's objective curve on
        # a grid of candidate thresholds and has no "highest threshold with sensitivity >= target"
        # objective; radhe pools the inner out-of-fold scores and cuts half-way between two of
        # them (select_threshold), so a switch would change every reported threshold.
        if threshold_cv:
            # Inner cross-validation on the training fold: thresholds chosen on predictions for
            # cases the inner model did not see, so over-fitted models do not bias them.
            inner = make_cv(int(threshold_cv), random_state=random_state)
            tr_score = np.empty(len(train))
            try:
                inner_splits = _split(inner, Xtr, ytr, groups[train])
            except InputError as exc:
                raise InputError(f"threshold_cv={threshold_cv}, the inner cross-validation choosing a fold's "
                                 f"threshold on its {len(train)} training case(s): {exc}; or pass a smaller "
                                 "threshold_cv (None: the training fold's own scores)") from None
            for itr, ite in inner_splits:
                m = clone(pipeline)
                m.fit(_take(Xtr, itr), ytr[itr], **_patient_params(m, _take(Xtr, itr), groups[train][itr]))
                tr_score[ite] = positive_score(m, _take(Xtr, ite))[0]
        else:
            tr_score = positive_score(est, Xtr)[0]
        thr = select_threshold(ytr, tr_score, method=method, target_sensitivity=target_sensitivity)
        if threshold_cv and kind == "probability" and conformal:
            from radhe.evaluation.conformal import conformal_sets

            # calibrated on the inner out-of-fold scores of the training fold: never on held-out cases
            sets = conformal_sets(ytr, tr_score, score, confidence=conformal)
    return est, score, kind, thr, segmentation, sets


def _patient_params(estimator, X, groups) -> dict:
    """Fit parameters that give ``estimator`` the patients of its rows, where it can use them.

    The groups of the cross-validation (``groups=`` of :func:`cross_validate_predictions`, else the
    ``patient_id`` column) also group the folds inside each fold's fit: a stacking meta-model's
    inner folds and a penalty chosen by cross-validation never split a patient's scans
    (:meth:`radhe.pipeline.RadhePipeline.fit`); a bare classifier whose ``fit`` takes ``groups`` gets them.
    """
    if hasattr(estimator, "_with_patient_groups"):
        return estimator._with_patient_groups(X, {}, groups)
    from radhe.stacking import _accepts

    return {"groups": groups} if _accepts(getattr(estimator, "fit", None), "groups") else {}


def fixed_rule(model, score_kind: str = "decision") -> float | None:
    """The threshold of a model that *is* a decision rule (a 0/1 marker, a published score cut-off).

    Such a model declares ``fixed_threshold`` on its ``decision_function`` scale (e.g.
    :class:`radhe.baselines.MarkerClassifier`: present = positive); evaluation applies it rather than
    tuning a threshold on each training fold (which, on a 0/1 score, can land at 0: "every case
    positive"). None for other models.
    """
    threshold = getattr(model, "fixed_threshold", None)
    if threshold is None or score_kind != "decision":
        return None
    return float(threshold)


def _split(cv, X, y, groups):
    """The splitter's folds, given the patients when its ``split`` takes ``groups`` (by its signature).

    A splitter without a ``groups`` parameter is called without them, with a
    :class:`~radhe.model_selection.PatientGroupingWarning` when patients repeat; any error the
    splitter raises propagates (no retry). :func:`radhe.model_selection.grouped_splits`.
    """
    from radhe.model_selection import grouped_splits

    return grouped_splits(cv, X, y, groups, owner="cross-validation")


def cross_validate_predictions(
    pipeline,
    X,
    y,
    *,
    cv=5,
    groups=None,
    threshold="youden",
    target_sensitivity: float = 0.9,
    threshold_cv: int | None = 3,
    return_estimators: bool = False,
    n_jobs: int | None = 1,
    random_state=0,
    name: str = "model",
    splits=None,
    conformal: float | None = None,
) -> CVPredictions:
    """Out-of-fold predictions of ``pipeline`` on (X, y).

    Each fold fits a clone of ``pipeline`` on the training cases only (feature selection, scaling,
    resampling all happen inside), predicts the held-out cases and chooses the decision threshold
    on the training cases only.

    Parameters
    ----------
    pipeline : estimator
        Any scikit-learn/imblearn classifier or pipeline (not fitted; it is cloned).
    X : pandas.DataFrame or array-like
        The manifest (or feature matrix); rows are cases.
    y : array-like of 0/1
    cv : int or splitter
        Number of folds (default 5) for the default patient-grouped stratified splitter, or any
        splitter with ``split(X, y, groups)``.
    groups : array-like or column name, optional
        Grouping for CV. Default: X's ``patient_id`` column (scans of one patient stay in one fold).
        Every fold is verified: a splitter that ignores groups and puts one patient in both the
        training and the test rows raises :class:`~radhe.errors.InputError`.
    threshold : {"youden", "sensitivity"} or float
        How each fold's threshold is chosen on its training data; a float fixes it.
    target_sensitivity : float
        For ``threshold="sensitivity"``: the smallest acceptable training sensitivity.
    threshold_cv : int or None
        Folds of the inner CV on each training fold whose out-of-fold scores choose the threshold
        (default 3). ``None``: use the training fold's own (in-sample) scores: cheaper, but biased
        for models that fit their training data closely (random forests, boosted trees).
    return_estimators : bool
        Keep each fold's fitted model (needed for out-of-fold SHAP).
    conformal : float or None
        Also give every held-out case a label-conditional conformal prediction set at this confidence
        (e.g. 0.9), calibrated on the training fold's inner out-of-fold scores
        (:mod:`radhe.evaluation.conformal`); needs ``threshold_cv`` and probabilities. Stored in
        ``extra["conformal_sets"]`` (``(n, 2)`` booleans).
    n_jobs : int
        Folds fitted in parallel (joblib).
    splits : list of (train, test) index arrays, optional
        Use these folds instead of calling ``cv`` (used to evaluate several models on identical folds).

    Returns
    -------
    CVPredictions
    """
    check_threshold_settings(threshold, target_sensitivity, threshold_cv, conformal)
    y = check_labels(y, X, where="cross_validate_predictions", aligned=True)  # names the cases; checks the length
    g = resolve_groups(X, groups)
    if splits is None:
        splits = _split(make_cv(cv, random_state=random_state), X, y, g)
    else:
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in splits]
    covered = np.concatenate([te for _, te in splits])
    if np.unique(covered).size != y.size or covered.size != y.size:
        raise ConfigurationError("the CV folds must hold out every case exactly once (a K-fold partition)")
    # a splitter that ignores groups (e.g. StratifiedKFold) can put one patient's scans on both sides
    from radhe.model_selection import _raise_if_shared

    patients = np.asarray(g).astype(str)
    for k, (tr, te) in enumerate(splits):
        _raise_if_shared(patients, tr, te, k)
    from radhe.model_selection import warn_ungrouped_inner_searches

    warn_ungrouped_inner_searches(pipeline, X, y, patients, splits)  # a nested GridSearchCV's folds
    args = (threshold, target_sensitivity, threshold_cv, random_state, conformal)
    from radhe import _progress

    lvl = _progress.level()  # INFO; DEBUG for a model whose folds are part of a step reported as a whole
    if n_jobs in (None, 1):
        results = []
        for k, (tr, te) in enumerate(splits):
            start = time.perf_counter()
            with _progress.inner():  # the fold's pipeline fit and inner CV report at DEBUG: one line per fold
                results.append(_fit_fold(pipeline, X, y, g, tr, te, *args))
            log.log(lvl, "%s: fold %d/%d fitted and scored in %.1f s", name, k + 1, len(splits),
                    time.perf_counter() - start)
    else:
        from joblib import delayed

        from radhe.parallel import make_parallel  # workers that end when this process is killed

        start = time.perf_counter()
        results = make_parallel(n_jobs=n_jobs)(delayed(_fit_fold)(pipeline, X, y, g, tr, te, *args) for tr, te in splits)
        log.log(lvl, "%s: %d folds fitted and scored in parallel (n_jobs=%s) in %.1f s", name, len(splits), n_jobs,
                time.perf_counter() - start)

    n = y.size
    score = np.empty(n)
    fold = np.empty(n, dtype=int)
    thr = np.empty(n)
    kinds = set()
    segmentation = []
    sets = np.zeros((n, 2), dtype=bool) if conformal else None
    for k, ((_, te), (_, s, kind, t, seg, fold_sets)) in enumerate(zip(splits, results, strict=True)):
        score[te], fold[te], thr[te] = s, k, t
        kinds.add(kind)
        if sets is not None:
            if fold_sets is None:
                sets = None
            else:
                sets[te] = fold_sets
        if seg is not None:
            record, reference_column = seg
            segmentation.append(record.assign(fold=k))
    index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(n)
    frame = pd.DataFrame(index=index)
    if isinstance(X, pd.DataFrame) and "case_id" in X.columns:
        frame["case_id"] = X["case_id"].astype(str).to_numpy()
    frame["patient_id"] = g.astype(str) if g.dtype.kind not in "iu" else g
    frame["y"] = y
    frame["fold"] = fold
    frame["score"] = score
    frame["threshold"] = thr
    frame["y_pred"] = (score >= thr).astype(int)
    rule = fixed_rule(pipeline, "decision" if kinds == {"decision"} else "probability")
    if rule is not None:
        method = f"the model's own rule (score >= {rule:g})"
    elif isinstance(threshold, str):
        method = "youden" if threshold == "youden" else f"sensitivity>={target_sensitivity:.2f}"
        method += f", inner {threshold_cv}-fold CV" if threshold_cv else ", training-fold scores"
    else:
        method = f"fixed={float(threshold):g}"
    return CVPredictions(
        frame=frame,
        score_kind="probability" if kinds == {"probability"} else "decision",
        splits=splits,
        estimators=[r[0] for r in results] if return_estimators else None,
        threshold_method=method,
        name=name,
        extra={**({} if not segmentation else {"segmentation": pd.concat(segmentation, ignore_index=True),
                                               "segmentation_reference_column": reference_column}),
               **({} if sets is None else {"conformal_sets": sets, "conformal_confidence": float(conformal)})},
    )
