"""Family-wise stacking: one sub-model per feature family, combined by a logistic meta-model.

This is the "radiomics nomogram" of the imaging literature made rigorous: a radiomics score, a
clinical score, a marker score, ... each from its own penalised model, combined by logistic
regression. Unlike a single model on all features pooled together, a family whose features carry
no signal gets a meta weight near zero instead of diluting the others, and a strong small family
(a handful of clinical variables) is not drowned by a hundred radiomics features.

Everything is fitted on the rows given to :meth:`FamilyStackingClassifier.fit` (the training
fold): the meta-model is fitted on *out-of-fold* family scores from inner folds of those rows
(grouped by patient when the patients are known), then every sub-model is refitted on all of
them. Because the meta-model is a logistic regression on the family scores, its output is a
recalibrated probability; no class weights are used.
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from radhe._compat import HasMethods, Interval, StrOptions, validate_params
from radhe.errors import ConfigurationError, InputError
from radhe.families import group_features
from radhe.model_selection import inner_folds

__all__ = ["FamilyStackingClassifier", "POOLED", "TREES", "default_tree_model"]

#: Name of the pooled sub-model (all features) among the families of a fitted model.
POOLED = "all features"

#: Name of the boosted-tree sub-model (all features) among the families of a fitted model.
TREES = "all features, boosted trees"

#: Columns of the family-contribution tables besides the families (the meta intercept; the fold of
#: :func:`radhe.explain.oof_family_contributions`): no family may take these names.
RESERVED_COLUMNS = ("intercept", "fold")


def default_tree_model(random_state=None):
    """The boosted-tree sub-model of ``trees="auto"``: shallow, slow-learning, heavily regularised.

    LightGBM, 200 rounds of depth-2 trees (at most 4 leaves, ≥ 20 rows per leaf) at learning rate
    0.03 with an L2 leaf penalty of 1, one thread, no row or column sampling (deterministic). Small
    enough for a few hundred rows: it finds thresholds and two-way interactions the additive family
    models cannot represent, without the variance of deep trees.
    """
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=200, learning_rate=0.03, max_depth=2, num_leaves=4, min_child_samples=20,
                          reg_lambda=1.0, n_jobs=1, verbose=-1,
                          random_state=0 if random_state is None else random_state)

_EPS = 1e-6

#: Log-odds spread (SD) of the one family score a stacked model keeps where its shrinkage factor is 0:
#: risks at the training rate to within it, in that score's order (see ``shrink``).
RANKING_SPREAD = 0.01


def _log_likelihood(eta: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def _heuristic_shrinkage(scores: np.ndarray, y: np.ndarray, weights: np.ndarray, intercept: float) -> float:
    """Van Houwelingen & le Cessie's heuristic shrinkage factor (χ² − df) / χ² of the meta-model.

    χ² is the likelihood-ratio statistic of the meta-model against the intercept-only model, df
    its number of weights. Close to 1 for a strong model on many cases; smaller when the signal
    is weak for the cohort size, where a fitted combination is over-confident on new patients.
    """
    prevalence = np.clip(y.mean(), _EPS, 1 - _EPS)
    null = _log_likelihood(np.full(len(y), np.log(prevalence / (1 - prevalence))), y)
    chi2 = 2.0 * (_log_likelihood(intercept + scores @ weights, y) - null)
    df = len(weights)
    return float(max(chi2 - df, 0.0) / chi2) if chi2 > 0 else 0.0


def _refit_intercept(offset: np.ndarray, y: np.ndarray) -> float:
    """The intercept that makes the mean predicted risk match the observed rate, given the offset."""
    from scipy.optimize import brentq
    from scipy.special import expit

    def gap(a):
        return float(np.mean(expit(a + offset)) - y.mean())

    return float(brentq(gap, -50.0, 50.0))


def _block(frame: pd.DataFrame, columns: list, family: str) -> pd.DataFrame:
    """A family's columns; for the tree model without names (LightGBM refuses some characters in them)."""
    block = frame[columns]
    if family == TREES:
        return pd.DataFrame(block.to_numpy(), index=block.index)
    return block


def _accepts(method, name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _fit(estimator, X, y, groups):
    if groups is not None and _accepts(estimator.fit, "groups"):
        return estimator.fit(X, y, groups=groups)
    return estimator.fit(X, y)


def _margin_is_log_odds(model) -> bool:
    """Whether a fitted binary classifier's ``decision_function`` is the log-odds of its probabilities."""
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, SGDClassifier

    from radhe.classifiers import PenalizedLogisticCV

    if isinstance(model, PenalizedLogisticCV | LogisticRegression | LogisticRegressionCV):
        return True
    if isinstance(model, SGDClassifier):
        return model.loss == "log_loss"
    if isinstance(model, GradientBoostingClassifier | HistGradientBoostingClassifier):
        return model.loss in ("log_loss", "deviance")
    return False


def _exact_log_odds(estimator, X) -> np.ndarray | None:
    """The positive class's log-odds straight from a model that computes them (logistic regression,
    gradient boosting's margin, LightGBM's raw score, XGBoost's output margin; also as the last step of
    a scikit-learn ``Pipeline``); None for any other model."""
    from sklearn.pipeline import Pipeline

    if len(getattr(estimator, "classes_", ())) != 2:
        return None
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if _margin_is_log_odds(final):
        return np.asarray(estimator.decision_function(X), dtype=float).reshape(len(X), -1)[:, -1]
    if isinstance(estimator, Pipeline):
        return None
    name = type(estimator).__name__
    if name == "LGBMClassifier":
        return np.asarray(estimator.predict(X, raw_score=True), dtype=float).reshape(len(X))
    if name in ("XGBClassifier", "XGBRFClassifier") and getattr(estimator, "objective", None) in (
            None, "binary:logistic"):
        return np.asarray(estimator.predict(X, output_margin=True), dtype=float).reshape(len(X))
    return None


def _score(estimator, X) -> np.ndarray:
    """Log-odds of the positive class (the decision function of models without probabilities).

    Taken from the model's own log-odds where it computes them (:func:`_exact_log_odds`): through
    its probabilities they would be cut at ±13.8 (probabilities clipped to [1e-6, 1 − 1e-6]), and the
    stacked log-odds would then differ from the sum of its terms that SHAP values explain.
    """
    exact = _exact_log_odds(estimator, X)
    if exact is not None:
        return exact
    if hasattr(estimator, "predict_proba"):
        try:
            p = np.asarray(estimator.predict_proba(X))[:, -1]
        except AttributeError:
            p = None
        if p is not None:
            p = np.clip(p.astype(float), _EPS, 1 - _EPS)
            return np.log(p) - np.log1p(-p)
    return np.asarray(estimator.decision_function(X), dtype=float).reshape(len(X), -1)[:, -1]


class FamilyStackingClassifier(ClassifierMixin, BaseEstimator):
    """One penalised sub-model per feature family, combined by logistic regression on their scores.

    Parameters
    ----------
    estimator : estimator, default None
        The sub-model fitted on each family's columns (cloned per family). Its positive-class
        log-odds (``predict_proba``, else ``decision_function``) is the family score. Its ``fit`` gets
        ``groups`` when it accepts them. A sub-model with a ``fit_oof(X, y, folds)`` method (as
        :class:`~radhe.classifiers.PenalizedLogisticCV`) tunes itself on the stacking's inner folds
        and returns its out-of-fold scores in one pass; any other is fitted once per inner fold
        and once on all rows. None: ``PenalizedLogisticCV`` (L2 logistic regression with additive
        spline terms, strength chosen by inner cross-validation).
    families : "auto", "single" or mapping, default "auto"
        How columns are grouped (:func:`radhe.families.group_features`): "auto" by name (radiomics,
        CNN, markers, clinical, other), "single" all columns in one family, or ``{family: [columns]}``.
    fusion : {"stack", "concat"}, default "stack"
        "stack": one sub-model per family. "concat": one sub-model on all columns (``families`` is
        ignored), still recalibrated by the meta-model (with the boosted trees, when ``trees``);
        searchable in a grid as ``classify__fusion``.
    pooled : bool, default True
        With more than one family, also a sub-model on all features together (named
        :data:`POOLED`) among the meta-model's inputs: a super learner (van der Laan et al. 2007)
        whose non-negative meta weights choose between, or mix, the family scores and the pooled
        score in each training fold — so stacking never has to lose what a pooled model finds
        in features that only help together.
    trees : "auto", estimator or None, default "auto"
        Also a boosted-tree model on all features (named :data:`TREES`) among the meta-model's
        inputs, with either fusion: "auto" is :func:`default_tree_model`; an estimator is cloned
        and used instead (it is given the columns without their names: LightGBM refuses some
        characters in them); None leaves it out. The additive family models cannot represent a
        threshold or an interaction; the trees can. Their meta weight is learnt like any family's,
        so where the risk is additive it is noise, not zero. On ``benchmarks/bench_validity.py`` they add
        +0.001 to +0.019 AUC on the five real tables and cost 0.005 on the synthetic cohort
        (whose risk is additive).
    final_C : float, default 1.0
        Inverse L2 strength of the meta logistic regression (its inputs are log-odds, on one scale).
    non_negative : bool, default True
        A family whose meta weight comes out negative (a score that, combined with the others,
        points the wrong way: noise) is dropped and the meta-model refitted, until every weight
        is ≥ 0. Its sub-model is kept for inspection but not used.
    shrink : bool, default True
        Multiply the meta weights by the heuristic shrinkage factor (χ² − df)/χ² of the meta-model
        (van Houwelingen & le Cessie 1990) and re-estimate the intercept so that the mean risk
        matches the training rate. A small cohort with weak signal otherwise gets over-confident
        risks (calibration slope < 1 on new patients); on a large or strong cohort the factor is
        close to 1. Where it is 0 (scores no better than chance for the number of rows), the risks
        are the training rate, kept in the order of the family score with the highest out-of-fold AUC
        (at a log-odds spread of :data:`RANKING_SPREAD`, SD; all equal where no score beats 0.5 AUC),
        and an :class:`~radhe.errors.InputWarning` says so. All tying instead cost 0.006 to 0.032 AUC
        on 80- and 160-row samples of GBSG2 and AIDS (``bench_validity.py --subsample``), where a
        few events leave the meta-model no detectable signal.
    cv : int, default 5
        Inner folds for the out-of-fold family scores (stratified; grouped by patient when ``fit``
        gets ``groups``).
    random_state : int or None
        Seed of the inner folds (and of sub-models that take one and have none set).

    Attributes
    ----------
    families_ : dict
        ``{family: [columns]}`` as fitted (with ``pooled``, an entry :data:`POOLED` and with
        ``trees`` an entry :data:`TREES`, each all columns, after the families).
    estimators_ : dict
        ``{family: fitted sub-model}``, each refitted on all training rows.
    final_estimator_ : sklearn.linear_model.LogisticRegression
        The meta-model, on the used families' scores.
    weights_ : pandas.Series
        Meta weight of every family (0 for a dropped family).
    intercept_ : float
        Meta intercept (after shrinkage).
    shrinkage_ : float
        The factor applied to the meta weights (1.0 with ``shrink=False``; 0.0: only the ranking of one
        family score is kept, see ``shrink``).
    used_families_ : list of str
        Families with a positive meta weight.
    oof_scores_ : pandas.DataFrame
        Out-of-fold family scores of the training rows (what the meta-model was fitted on).
    classes_ : ndarray
    n_features_in_, feature_names_in_

    Notes
    -----
    The log-odds is ``intercept_ + Σ_f weights_[f] · score_f(x_f)``; :meth:`family_contributions`
    returns the terms, which sum to :meth:`decision_function`.
    """

    _parameter_constraints = {
        "estimator": [None, HasMethods(["fit"])],
        "families": [StrOptions({"auto", "single"}), dict],
        "fusion": [StrOptions({"stack", "concat"})],
        "pooled": ["boolean"],
        "trees": [StrOptions({"auto"}), HasMethods(["fit"]), None],
        "final_C": [Interval(numbers.Real, 0, None, closed="neither")],
        "non_negative": ["boolean"],
        "shrink": ["boolean"],
        "cv": [Interval(numbers.Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }

    # metadata routing: a consumer of ``groups`` in fit by default (they are always patient ids here)
    __metadata_request__fit = {"groups": True}

    def __init__(self, estimator=None, *, families="auto", fusion="stack", pooled=True, trees="auto", final_C=1.0,
                 non_negative=True, shrink=True, cv=5, random_state=None):
        self.estimator = estimator
        self.families = families
        self.fusion = fusion
        self.pooled = pooled
        self.trees = trees
        self.final_C = final_C
        self.non_negative = non_negative
        self.shrink = shrink
        self.cv = cv
        self.random_state = random_state

    # -- fitting ----------------------------------------------------------------------------
    def _sub_model(self, family=None):
        if family == TREES:
            if isinstance(self.trees, str):
                return default_tree_model(self.random_state)
            model = clone(self.trees)
        elif self.estimator is None:
            from radhe.classifiers import PenalizedLogisticCV

            return PenalizedLogisticCV(random_state=self.random_state)
        else:
            model = clone(self.estimator)
        params = model.get_params(deep=False)
        if "random_state" in params and params["random_state"] is None and self.random_state is not None:
            model.set_params(random_state=self.random_state)
        return model

    def _frame(self, X, *, reset: bool) -> pd.DataFrame:
        """X as a float DataFrame (its own column names and index, else ``x0, x1, ...``), validated.

        scikit-learn's checks (2-D, numeric, not sparse, the number and names of the features
        seen in fit; ``n_features_in_`` / ``feature_names_in_`` set with ``reset``), then finite
        values, each failure an :class:`~radhe.errors.InputError`.
        """
        from radhe.classifiers import _validated

        index = X.index if isinstance(X, pd.DataFrame) else None
        names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else None
        values = _validated(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False)
        if names is None:
            names = [f"x{i}" for i in range(values.shape[1])]
        bad = ~np.isfinite(values)
        if bad.any():
            columns = [names[j] for j in np.flatnonzero(bad.any(axis=0))]
            listing = ", ".join(map(repr, columns[:10])) + (" ..." if len(columns) > 10 else "")
            raise InputError(
                f"FamilyStackingClassifier got {int(bad.sum())} non-finite feature value(s) (NaN or inf) in "
                f"column(s) {listing}; impute them first (the pipeline's 'clean' step does)")
        return pd.DataFrame(values, index=index, columns=names)

    def fit(self, X, y, groups=None):
        """Fit the family sub-models and the meta-model on these rows.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            Finite feature values; the column names decide the families.
        y : array-like of shape (n_samples,)
            Binary outcome.
        groups : array-like of shape (n_samples,), optional
            Patient of each row: inner folds never split a patient (:class:`radhe.pipeline.RadhePipeline`
            passes the manifest's ``patient_id``).

        Returns
        -------
        self
        """
        from sklearn.utils.validation import check_consistent_length, column_or_1d

        from radhe.classifiers import _binary_classes

        validate_params(self)
        frame = self._frame(X, reset=True)
        if y is None:
            raise InputError("FamilyStackingClassifier requires y to be passed, but the target y is None")
        try:  # one label per row; a column vector is ravelled with scikit-learn's DataConversionWarning
            y = column_or_1d(y, warn=True)
            check_consistent_length(frame, y)
        except ValueError as error:
            raise InputError(f"FamilyStackingClassifier: {error}") from None
        self.classes_ = _binary_classes(self, y)
        target = (y == self.classes_[1]).astype(int)
        grouping = "single" if self.fusion == "concat" else self.families
        families = group_features(list(frame.columns), grouping)
        if not families:
            raise InputError("FamilyStackingClassifier got a feature table with no columns")
        for reserved in (POOLED, TREES):
            if reserved in families:
                raise ConfigurationError(f"a family may not be named {reserved!r} (a sub-model on all features)")
        for reserved in RESERVED_COLUMNS:
            if reserved in families:
                raise ConfigurationError(
                    f"a family may not be named {reserved!r}: family contributions have a column of that name")
        if self.pooled and len(families) > 1:
            families[POOLED] = list(frame.columns)
        if self.trees is not None:
            families[TREES] = list(frame.columns)
        folds = inner_folds(target, groups, n_splits=self.cv, random_state=self.random_state)
        groups_arr = None if groups is None else np.asarray(groups, dtype=object)

        oof = pd.DataFrame(0.0, index=frame.index, columns=list(families))
        estimators = {}
        for family, columns in families.items():
            block = _block(frame, columns, family)
            model = self._sub_model(family)
            if hasattr(model, "fit_oof"):
                # one pass over the folds tunes the sub-model and gives its out-of-fold scores
                scores = np.asarray(model.fit_oof(block, target, folds), dtype=float)
            else:
                scores = np.empty(len(frame))
                for train, test in folds:
                    sub = _fit(self._sub_model(family), block.iloc[train], target[train],
                               None if groups_arr is None else groups_arr[train])
                    scores[test] = _score(sub, block.iloc[test])
                model = _fit(model, block, target, groups_arr)
            oof[family] = scores
            estimators[family] = model

        used = list(families)
        while True:
            meta = LogisticRegression(C=self.final_C, max_iter=1000).fit(oof[used].to_numpy(), target)
            weights = meta.coef_[0]
            if not self.non_negative or (weights >= 0).all() or len(used) == 1:
                break
            used = [f for f, w in zip(used, weights, strict=True) if w >= 0] or [used[int(np.argmax(weights))]]
        weights = meta.coef_[0].copy()
        intercept = float(meta.intercept_[0])
        self.shrinkage_ = 1.0
        if self.shrink:
            self.shrinkage_ = _heuristic_shrinkage(oof[used].to_numpy(), target, weights, intercept)
            weights = weights * self.shrinkage_
            intercept = _refit_intercept(oof[used].to_numpy() @ weights, target)
            if self.shrinkage_ == 0.0:
                n_weights = len(used)
                used, weights, intercept, kept = self._ranking_only(oof, target, used, weights, intercept)
                self._warn_no_signal(target, n_weights, kept)
        self.families_ = families
        self.estimators_ = estimators
        self.used_families_ = used
        self.final_estimator_ = meta
        self.weights_ = pd.Series(0.0, index=list(families), name="weight")
        self.weights_[used] = weights
        self.intercept_ = intercept
        self.oof_scores_ = oof
        return self

    @staticmethod
    def _ranking_only(oof: pd.DataFrame, target: np.ndarray, used: list, weights: np.ndarray, intercept: float):
        """Where the shrinkage factor is 0: the family score of the highest out-of-fold AUC (above 0.5) at a
        log-odds spread of :data:`RANKING_SPREAD` (SD), the intercept refitted; ``(used, weights,
        intercept, kept family or None)``. The risks stay at the training rate to within that spread, and
        the cases keep that score's order instead of all tying."""
        from sklearn.metrics import roc_auc_score

        aucs = {f: float(roc_auc_score(target, oof[f])) if np.ptp(oof[f].to_numpy()) > 0 else 0.5 for f in oof}
        best = max(aucs, key=aucs.get)
        if aucs[best] <= 0.5:
            return used, weights, intercept, None
        scores = oof[best].to_numpy()
        weight = RANKING_SPREAD / float(scores.std())
        return [best], np.array([weight]), _refit_intercept(scores * weight, target), best

    def _warn_no_signal(self, target: np.ndarray, n_weights: int, kept) -> None:
        import warnings

        from radhe.errors import InputWarning

        what = (f"every prediction is the training rate {target.mean():.3f}" if kept is None else
                f"every prediction is the training rate {target.mean():.3f} to within a log-odds spread of "
                f"{RANKING_SPREAD:g} (SD), ordered by the out-of-fold best family score {kept!r}")
        warnings.warn(
            f"FamilyStackingClassifier: on these {len(target)} rows ({int(target.sum())} positive) the family "
            f"scores do not beat a constant risk by more than chance (heuristic shrinkage factor 0: the "
            f"meta-model's likelihood-ratio chi-square is at most its {n_weights} weight(s)), so {what}; more "
            "cases, fewer features, or shrink=False for an unshrunk model", InputWarning, stacklevel=3)

    # -- prediction -------------------------------------------------------------------------
    def family_scores(self, X) -> pd.DataFrame:
        """Each family sub-model's log-odds for the rows of X (columns: families)."""
        check_is_fitted(self, "estimators_")
        frame = self._frame(X, reset=False)
        return pd.DataFrame(
            {f: _score(self.estimators_[f], _block(frame, cols, f)) for f, cols in self.families_.items()},
            index=frame.index
        )

    def family_contributions(self, X) -> pd.DataFrame:
        """The terms of the log-odds: ``weight × family score`` per family, and ``"intercept"``.

        Each row sums to :meth:`decision_function` of that row.
        """
        scores = self.family_scores(X)
        contributions = scores * self.weights_.reindex(scores.columns).to_numpy()
        contributions["intercept"] = self.intercept_
        return contributions

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the positive class ``classes_[1]``."""
        scores = self.family_scores(X)
        return self.intercept_ + scores.to_numpy() @ self.weights_.reindex(scores.columns).to_numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of ``classes_``: the meta-model's logistic of the combined log-odds."""
        from scipy.special import expit

        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """The class with probability above 0.5."""
        check_is_fitted(self, "estimators_")
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
