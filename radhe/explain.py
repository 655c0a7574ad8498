"""SHAP explanations of a fitted radhe pipeline, in the selected-feature space.

The pipeline's last step (``"classify"``) is explained on the matrix its earlier steps produce
(``pipe[:-1].transform(X)``), whose columns carry family-prefixed names (``radiomics__…``,
``cnn__…``, ``clinical__…``, ``tabular__…``). The explainer follows the model:

* tree ensembles (xgboost, lightgbm, random forest, extra trees, gradient boosting, decision
  tree): ``shap.TreeExplainer`` (exact, path-dependent; xgboost/lightgbm explain log-odds,
  scikit-learn forests the probability);
* linear models (logistic regression, linear SVM, SGD): ``shap.LinearExplainer`` (log-odds,
  features independent, background = training cases);
* anything else (SVM with a kernel, wrappers, ...): a model-agnostic permutation explainer on
  the positive-class probability with a small background sample (interventional Shapley values
  by antithetic permutation sampling, implemented here in numpy: shap's own permutation
  explainer JIT-compiles for several seconds in every new process).

:func:`oof_shap_values` explains every case with the model of the fold that held it out.
shap is imported only when an explanation is computed.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from radhe.errors import ConfigurationError
from radhe.families import feature_family_of, radiomics_key

__all__ = [
    "ShapExplanation",
    "OOFShap",
    "shap_values",
    "oof_shap_values",
    "feature_family",
    "display_name",
    "unwrap_classifier",
    "family_contributions",
    "oof_family_contributions",
    "FAMILIES",
]

#: Families used to group importance, in display order.
FAMILIES = (
    "radiomics: shape",
    "radiomics: first-order",
    "radiomics: texture",
    "radiomics: filtered",
    "CNN",
    "NCCT markers (CNN)",
    "NCCT markers (read)",
    "clinical",
    "tabular",
    "other",
)

_TREE_MODELS = {
    "XGBClassifier",
    "XGBRFClassifier",
    "LGBMClassifier",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "DecisionTreeClassifier",
    "ExtraTreeClassifier",
    "Booster",
}
_LINEAR_MODELS = {"LogisticRegression", "LogisticRegressionCV", "SGDClassifier", "LinearSVC", "RidgeClassifier"}
_PROBABILITY_TREES = {"RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier", "ExtraTreeClassifier"}
_TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm", "glrlm")


def feature_family(name: str) -> str:
    """The family of a feature from its ``<family>__<name>`` column name (one of :data:`FAMILIES`).

    Radiomics features (the ``radiomics__`` branch, or a column whose name holds a pyradiomics key, as
    :func:`radhe.families.feature_family_of` finds them) are split by that
    ``<image type>_<class>_<feature>`` key: any image
    type other than ``original`` (wavelet, LoG, square, ...) is "filtered"; original ones are
    "shape", "first-order" or "texture" (GLCM, GLRLM, GLSZM, GLDM, NGTDM). Radiologist reads of
    the NCCT markers (``clinical__blend_sign``, ...) are "NCCT markers (read)", not "clinical".
    """
    family, sep, rest = str(name).partition("__")
    if not sep:
        family, rest = "", str(name)
    key = rest if family == "radiomics" else None
    if family in ("", "clinical", "tabular"):
        # a pyradiomics name in a table the user brought (``tabular__ct_original_shape_MeshVolume``):
        # radiomics, as the stacked model's families have it
        key = radiomics_key(rest)
    if key is not None:
        parts = key.split("_")
        image_type = parts[0].lower()
        cls = parts[1].lower() if len(parts) > 2 else ""
        if image_type != "original":
            return "radiomics: filtered"
        if cls.startswith("shape"):
            return "radiomics: shape"
        if cls == "firstorder":
            return "radiomics: first-order"
        if cls in _TEXTURE:
            return "radiomics: texture"
        return "radiomics: texture" if cls else "other"
    if family in ("clinical", "tabular"):
        if feature_family_of(name) == "markers":  # a radiologist's marker read, e.g. clinical__blend_sign
            return "NCCT markers (read)"
    families = {"cnn": "CNN", "marker": "NCCT markers (CNN)", "clinical": "clinical", "tabular": "tabular"}
    return families.get(family, "other")


def _family(name: str, family_of: dict | None) -> str:
    if family_of and name in family_of:
        return family_of[name]
    return feature_family(name)


def display_name(name: str) -> str:
    """A readable label: ``"radiomics__original_shape_Sphericity"`` → ``"original shape Sphericity (radiomics)"``."""
    family, sep, rest = str(name).partition("__")
    if not sep:
        return str(name)
    rest = re.sub(r"_+", " ", rest).strip()
    label = {"cnn": "CNN", "clinical": "clinical", "radiomics": "radiomics", "tabular": "tabular"}.get(family, family)
    if family in ("clinical", "tabular"):
        if feature_family_of(name) == "markers":  # a radiologist's read (clinical__blend_sign): its own family
            label = "NCCT marker, read"
    return f"{rest} ({label})"


def _mro_names(model) -> set[str]:
    return {c.__name__ for c in type(model).__mro__}


def _model_family(model) -> str:
    """"tree", "linear" or "other", by the model's class and its base classes (so subclasses such
    as radhe's BalancedXGBClassifier count as their parent)."""
    names = _mro_names(model)
    if names & _TREE_MODELS:
        return "tree"
    if names & _LINEAR_MODELS:
        return "linear"
    return "other"


def unwrap_classifier(model):
    """The fitted model inside common wrappers (search CVs, pipelines, radhe wrappers).

    Follows fitted attributes ``best_estimator_``, ``estimator_``, ``classifier_``, ``model_``,
    ``base_estimator_`` and a pipeline's last step, while the wrapper itself is not a known model.
    """
    seen = 0
    while _model_family(model) == "other" and seen < 10:
        seen += 1
        inner = None
        for attr in ("best_estimator_", "estimator_", "classifier_", "model_", "base_estimator_"):
            candidate = getattr(model, attr, None)
            if candidate is not None and hasattr(candidate, "predict"):
                inner = candidate
                break
        if inner is None and hasattr(model, "steps"):
            inner = model.steps[-1][1]
        if inner is None:
            break
        model = inner
    return model


@dataclass
class ShapExplanation:
    """SHAP values of one fitted model for some cases.

    Attributes
    ----------
    values : pandas.DataFrame
        Cases × selected features (names ``<family>__<name>``), contribution to the model output.
    data : pandas.DataFrame
        The feature values the classifier saw (after cleaning/scaling/selection), same shape.
    base_value : float
        Expected model output over the background (``values`` sum to output − base_value).
    output : {"log-odds", "probability", "decision"}
        The scale of ``values`` and ``base_value``.
    explainer : {"tree", "linear", "permutation"}
    model : str
        Class name of the explained model.
    """

    values: pd.DataFrame
    data: pd.DataFrame
    base_value: float
    output: str
    explainer: str
    model: str
    family_of: dict | None = None
    #: The same features as the user's data gave them — the ``features`` step's output, before
    #: cleaning, imputation and scaling (NaN: missing, imputed for the model); None when unknown.
    raw_data: pd.DataFrame | None = None

    @property
    def feature_names(self) -> list[str]:
        return list(self.values.columns)

    @property
    def families(self) -> pd.Series:
        """Family of every feature: the stacked model's families when it has them, else by name."""
        return pd.Series([_family(c, self.family_of) for c in self.values.columns], index=self.values.columns,
                         name="family")

    def importance(self) -> pd.DataFrame:
        """Mean |SHAP| per feature, largest first.

        Columns ``mean_abs_shap``, ``ci_low`` / ``ci_high`` (95 % bootstrap interval of that mean over
        the cases: never below zero) and ``family``.
        """
        imp = self.values.abs().mean(axis=0)
        low, high = mean_abs_interval(self.values)
        out = pd.DataFrame({"mean_abs_shap": imp, "ci_low": low, "ci_high": high, "family": self.families})
        out.index.name = "feature"
        return out.sort_values("mean_abs_shap", ascending=False)

    def family_importance(self) -> pd.DataFrame:
        """Sum of the features' mean |SHAP| per family, its share of the total and its 95 % bootstrap interval."""
        return _family_table(self.importance(), _family_interval(self.values, self.families))


def _family_interval(values: pd.DataFrame, families: pd.Series) -> dict:
    """``ci_low``/``ci_high`` of each family's summed mean |SHAP| (a bootstrap over cases of their totals)."""
    totals = values.abs().fillna(0.0).T.groupby(families.reindex(values.columns).to_numpy()).sum().T
    low, high = mean_abs_interval(totals)
    return {"ci_low": low, "ci_high": high}


#: Bootstrap replicates (over cases) of the mean |SHAP| intervals the importance tables and plots show.
IMPORTANCE_BOOTSTRAP = 1000


def mean_abs_interval(values: pd.DataFrame, *, level: float = 0.95, n_bootstrap: int = IMPORTANCE_BOOTSTRAP,
                      random_state=0) -> tuple[pd.Series, pd.Series]:
    """Percentile bootstrap interval of each column's mean |value| over the rows (cases).

    Missing values count as 0 (a feature a fold did not select contributes nothing). An interval of
    a mean of absolute values, so, unlike mean ± SD, it never goes below zero.
    """
    a = values.abs().fillna(0.0).to_numpy(dtype=float)
    n = a.shape[0]
    if n == 0:
        empty = pd.Series(np.nan, index=values.columns)
        return empty, empty.copy()
    rows = np.random.default_rng(random_state).integers(0, n, size=(n_bootstrap, n))
    means = np.stack([a[:, j][rows].mean(axis=1) for j in range(a.shape[1])], axis=1) if a.shape[1] else \
        np.zeros((n_bootstrap, 0))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0) if a.shape[1] else (np.array([]), np.array([]))
    return pd.Series(low, index=values.columns), pd.Series(high, index=values.columns)


def _family_table(imp: pd.DataFrame, extra: dict | None = None) -> pd.DataFrame:
    grouped = imp.groupby("family")["mean_abs_shap"].agg(["sum", "size"])
    grouped.columns = ["mean_abs_shap", "n_features"]
    total = grouped["mean_abs_shap"].sum()
    grouped["share"] = grouped["mean_abs_shap"] / total if total > 0 else np.nan
    if extra:
        for k, v in extra.items():
            grouped[k] = v.reindex(grouped.index)
    order = [f for f in FAMILIES if f in grouped.index] + [f for f in grouped.index if f not in FAMILIES]
    grouped = grouped.loc[order]
    grouped.index.name = "family"
    return grouped.sort_values("mean_abs_shap", ascending=False)


def _split_pipeline(fitted):
    """(feature part or None, classifier)."""
    if hasattr(fitted, "steps") and len(fitted.steps) > 1:
        return fitted[:-1], fitted.steps[-1][1]
    if hasattr(fitted, "steps"):
        return None, fitted.steps[-1][1]
    return None, fitted


def _features(front, X, *, keep_raw: bool = False):
    """The classifier's input: X through every step of ``front`` except samplers.

    ``pipe[:-1].transform`` is not available in imblearn when the step before the classifier is a
    sampler, so the steps are applied one by one (samplers only act during fit). With ``keep_raw``,
    returns ``(Z, raw)``: ``raw`` is the output of the step named ``"features"`` (the feature values
    before cleaning, imputation and scaling; a value a table transformer in that step imputed is
    missing there again, as the user's data gave it), or X itself for a bare classifier; None if
    unknown.
    """
    Z = X
    last = None
    raw = X if front is None and isinstance(X, pd.DataFrame) else None
    if front is not None:
        for name, step in front.steps:
            if step is None or step == "passthrough" or hasattr(step, "fit_resample"):
                continue
            given, Z = Z, step.transform(Z)
            last = step
            if name == "features" and isinstance(Z, pd.DataFrame):
                raw = _as_given(step, given, Z) if keep_raw else Z
    Z = _as_named_frame(Z, last, X)
    if not keep_raw:
        return Z
    if raw is not None:
        raw = raw.copy()
        raw.columns = [str(c) for c in raw.columns]
        raw = raw.apply(pd.to_numeric, errors="coerce").reindex(index=Z.index, columns=Z.columns)
    return Z, raw


def _as_given(step, X, features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with NaN where a table transformer in ``step`` (:class:`radhe.features.ClinicalFeatures`
    and its kin) filled in a value missing in ``X``: its numeric column, or every one-hot column of
    its categorical variable. The model saw the filled-in value; the user's data had none."""
    from radhe._checks import is_missing
    from radhe.features.tabular import _TableTransformer

    def fitted_tables(obj, depth=0):
        # the fitted branches of a fusion (transformers_) and the steps of a pipeline, not the parameters
        if isinstance(obj, _TableTransformer) and hasattr(obj, "feature_names_out_"):
            yield obj
        if depth < 5:
            for _, inner in [*(getattr(obj, "transformers_", None) or []), *(getattr(obj, "steps", None) or [])]:
                yield from fitted_tables(inner, depth + 1)

    tables = list(fitted_tables(step))
    if not tables or not isinstance(X, pd.DataFrame):
        return features
    out = features.copy()
    for table in tables:
        for column, names in table.value_columns().items():
            names = [n for n in names if n in out.columns]
            if column not in X.columns or not names:
                continue
            missing = np.fromiter((is_missing(v) for v in X[column]), dtype=bool, count=len(X))
            if missing.any():
                out.loc[missing, names] = np.nan
    return out


def _as_named_frame(Z, last, X) -> pd.DataFrame:
    if isinstance(Z, pd.DataFrame):
        Z = Z.copy()
        Z.columns = [str(c) for c in Z.columns]
        return Z
    Z = np.asarray(Z, dtype=float)
    names = None
    if last is not None:
        try:
            names = [str(n) for n in last.get_feature_names_out()]
        except Exception:  # noqa: BLE001 - any step may lack get_feature_names_out
            names = None
    if names is None or len(names) != Z.shape[1]:
        names = [f"x{i}" for i in range(Z.shape[1])]
    index = X.index if isinstance(X, pd.DataFrame) else None
    return pd.DataFrame(Z, columns=names, index=index)


def _sample(frame: pd.DataFrame, k: int, random_state) -> pd.DataFrame:
    if len(frame) <= k:
        return frame
    return frame.sample(n=k, random_state=random_state)


def _positive_column(classes) -> int:
    classes = list(classes) if classes is not None else [0, 1]
    return classes.index(1) if 1 in classes else len(classes) - 1


def shap_values(
    fitted_pipeline,
    X,
    *,
    background=None,
    max_background: int = 50,
    n_permutations: int = 3,
    explainer: str = "auto",
    random_state=0,
) -> ShapExplanation:
    """SHAP values of a fitted pipeline (or bare classifier) for the cases in X.

    Parameters
    ----------
    fitted_pipeline : fitted estimator
        A pipeline from :func:`radhe.make_pipeline` (its last step is the classifier) or a bare classifier.
    X : pandas.DataFrame
        The cases to explain (the manifest rows, or features for a bare classifier).
    background : pandas.DataFrame, optional
        Reference cases (same columns as X, e.g. the training cases) for the linear and
        permutation explainers; default X itself. At most ``max_background`` rows are used.
    n_permutations : int
        Permutation explainer: number of random feature orderings, each used forwards and
        backwards (antithetic sampling); each costs 2 × (n_features + 1) × background-size model
        evaluations per case. The values are exactly additive whatever the number.
    explainer : {"auto", "tree", "linear", "permutation"}
        Force an explainer.

    Returns
    -------
    ShapExplanation
    """
    import shap

    front, clf = _split_pipeline(fitted_pipeline)
    Z, user_values = _features(front, X, keep_raw=True)
    Zb = _features(front, background) if background is not None else Z
    Zb = _sample(Zb, max_background, random_state)
    core = unwrap_classifier(clf)
    from radhe.stacking import FamilyStackingClassifier

    if isinstance(core, FamilyStackingClassifier) and explainer == "auto":
        stacked = _stacked_shap(core, Z, Zb, max_background=max_background, n_permutations=n_permutations,
                                random_state=random_state)
        if stacked is not None:
            stacked.raw_data = None if user_values is None else user_values[stacked.values.columns]
            return stacked
    kind = type(core).__name__
    family = _model_family(core)
    if explainer == "auto":
        explainer = family if family in ("tree", "linear") else "permutation"
    p = Z.shape[1]
    if p == 0:
        raise ConfigurationError("the pipeline selects no feature; nothing to explain")

    if explainer == "tree":
        ex = shap.TreeExplainer(core)
        with warnings.catch_warnings():  # lightgbm: "output has changed to a list of ndarray"
            warnings.simplefilter("ignore", UserWarning)
            raw = ex.shap_values(Z)
        base = ex.expected_value
        output = "probability" if _mro_names(core) & _PROBABILITY_TREES else "log-odds"
    elif explainer == "linear":
        ex = shap.LinearExplainer(core, shap.maskers.Independent(Zb.to_numpy(dtype=float), max_samples=max_background))
        raw = ex.shap_values(Z.to_numpy(dtype=float))
        base = ex.expected_value
        output = "log-odds" if hasattr(core, "predict_proba") else "decision"
    elif explainer == "permutation":
        pos = _positive_column(getattr(clf, "classes_", None))
        names = list(Z.columns)
        use_proba = _has_proba(clf, Zb)

        def f(a):
            frame = pd.DataFrame(np.asarray(a, dtype=float), columns=names)
            if use_proba:
                return np.asarray(clf.predict_proba(frame))[:, pos]
            return np.asarray(clf.decision_function(frame), dtype=float).reshape(len(frame), -1)[:, -1]

        output = "probability" if use_proba else "decision"
        raw, base = _permutation_shap(
            f, Z.to_numpy(dtype=float), Zb.to_numpy(dtype=float), n_permutations=n_permutations,
            random_state=random_state,
        )
    else:
        raise ConfigurationError(f"explainer must be 'auto', 'tree', 'linear' or 'permutation'; got {explainer!r}")

    values = _positive_class_values(raw, len(Z), p, getattr(core, "classes_", None))
    base_value = _positive_base(base, getattr(core, "classes_", None))
    return ShapExplanation(
        values=pd.DataFrame(values, index=Z.index, columns=Z.columns),
        data=Z,
        base_value=base_value,
        output=output,
        explainer=explainer,
        model=kind,
        raw_data=user_values,
    )


def _stacked_shap(model, Z: pd.DataFrame, Zb: pd.DataFrame, **kwargs) -> ShapExplanation | None:
    """SHAP values of a family-stacked model, family by family.

    The stacked log-odds is ``intercept + Σ_f w_f · score_f(x_f)``: linear in the family scores, so
    each feature's interventional SHAP value is ``Σ_f w_f · φ_f(feature)`` — its SHAP value in each
    sub-model that uses it (its family's and the pooled one), on the log-odds scale, times that
    sub-model's meta weight. Exact for additive sub-models (:class:`radhe.classifiers.PenalizedLogisticCV`);
    other sub-models are explained by :func:`shap_values` and must explain log-odds (tree
    boosting, linear models); None when one does not, or when the values do not add up to the
    stacked log-odds within 1e-4 (the caller then explains the whole model).
    """
    from radhe.classifiers import PenalizedLogisticCV
    from radhe.stacking import TREES, _block

    values = pd.DataFrame(0.0, index=Z.index, columns=Z.columns)
    base = model.intercept_
    explainers = set()
    for family in model.used_families_:
        weight = float(model.weights_[family])
        columns = model.families_[family]
        sub = model.estimators_[family]
        if isinstance(sub, PenalizedLogisticCV):
            terms = sub.additive_terms(Z[columns])
            reference = sub.additive_terms(Zb[columns]).mean(axis=0)
            values[columns] += weight * (terms - reference)
            base += weight * (float(sub.intercept_[0]) + float(reference.sum()))
            explainers.add("additive")
            continue
        data, background = _block(Z, columns, family), _block(Zb, columns, family)  # as the sub-model was fitted
        if family == TREES:
            if _model_family(sub) == "tree" and not _mro_names(sub) & _PROBABILITY_TREES:
                tree_values, tree_base = _interventional_tree_shap(sub, data, background)
                values[columns] += weight * tree_values
                base += weight * tree_base
                explainers.add("tree, interventional")
                continue
        ex = shap_values(sub, data, background=background, **kwargs)
        if ex.output not in ("log-odds", "decision"):
            return None
        values[columns] += weight * ex.values.to_numpy()  # the columns of ``data``, in order
        base += weight * ex.base_value
        explainers.add(ex.explainer)
    used = sorted({c for f in model.used_families_ for c in model.families_[f]}, key=list(Z.columns).index)
    # a sub-model whose explained output is not the score the stack combines (e.g. log-odds read
    # through probabilities that saturate) would not add up: the whole model is explained instead
    if not np.allclose(values[used].sum(axis=1).to_numpy() + base, model.decision_function(Z), rtol=0, atol=1e-4):
        return None
    return ShapExplanation(
        values=values[used], data=Z[used], base_value=float(base), output="log-odds",
        explainer="stacked (" + ", ".join(sorted(explainers)) + ")", model=type(model).__name__,
        family_of=_declared_families(model),
    )


def _interventional_tree_shap(model, data: pd.DataFrame, background: pd.DataFrame) -> tuple[np.ndarray, float]:
    """(SHAP values, base value) of a boosted-tree model's log-odds against ``background``.

    Interventional TreeSHAP: the same reference (the mean over the background rows) as the
    additive family terms of a stacked model, so the stacked base value is the background's mean
    log-odds; path-dependent TreeSHAP would use the training rows instead.
    """
    import shap

    explainer = shap.TreeExplainer(model, data=background.to_numpy(dtype=float),
                                   feature_perturbation="interventional", model_output="raw")
    with warnings.catch_warnings():  # lightgbm: "output has changed to a list of ndarray"
        warnings.simplefilter("ignore", UserWarning)
        raw = explainer.shap_values(data.to_numpy(dtype=float), check_additivity=False)
    if isinstance(raw, list):
        raw = raw[-1]
    raw = np.asarray(raw, dtype=float)
    if raw.ndim == 3:
        raw = raw[..., -1]
    return raw, float(np.ravel(explainer.expected_value)[-1])


def _declared_families(model) -> dict | None:
    """{column: family} of a stacked model with declared families (None: families by name)."""
    from radhe.stacking import POOLED, TREES

    if isinstance(model.families, str):
        return None
    return {c: f for f, cols in model.families_.items() if f not in (POOLED, TREES) for c in cols}


def family_contributions(fitted_pipeline, X) -> pd.DataFrame:
    """Each feature family's term of a stacked model's log-odds for the cases in X.

    Parameters
    ----------
    fitted_pipeline : fitted estimator
        A pipeline whose classifier is a :class:`radhe.stacking.FamilyStackingClassifier` (the
        default of :func:`radhe.make_pipeline`), or that classifier.
    X : pandas.DataFrame
        The cases (manifest rows).

    Returns
    -------
    pandas.DataFrame
        Cases × (families, ``"intercept"``): meta weight × family score; each row sums to the
        model's log-odds for that case.
    """
    from radhe.stacking import FamilyStackingClassifier

    front, clf = _split_pipeline(fitted_pipeline)
    core = unwrap_classifier(clf)
    if not isinstance(core, FamilyStackingClassifier):
        raise ConfigurationError(
            f"family contributions need a family-stacked model (make_pipeline(fusion='stack')), got {type(core).__name__}"
        )
    return core.family_contributions(_features(front, X))


def oof_family_contributions(predictions, X) -> pd.DataFrame:
    """Out-of-fold family contributions: each case by the stacked model of the fold that held it out.

    Parameters
    ----------
    predictions : radhe.evaluation.CVPredictions
        From :func:`radhe.evaluation.cross_validate_predictions` with ``return_estimators=True``.
    X : pandas.DataFrame
        The same X the predictions were made on.

    Returns
    -------
    pandas.DataFrame
        Cases (X's index) × (families, ``"intercept"``, ``"fold"``); a family a fold's model did not
        have is 0 for its cases.
    """
    if predictions.estimators is None:
        raise ConfigurationError("family contributions need the fold models: cross-validate with return_estimators=True")
    parts = []
    for k, (est, (_, test)) in enumerate(zip(predictions.estimators, predictions.splits, strict=True)):
        part = family_contributions(est, X.iloc[test])
        part["fold"] = k
        parts.append(part)
    out = _held_out_rows(parts, predictions.splits, X.index).fillna(0.0)
    columns = [c for c in out.columns if c not in ("intercept", "fold")] + ["intercept", "fold"]
    return out[columns]


def _held_out_rows(parts: list, splits, index: pd.Index, columns=None) -> pd.DataFrame:
    """The folds' tables of their held-out rows (``parts[k]`` for ``splits[k]``'s test rows) as one table
    in the rows' order, with ``index``. Assembled by position, so the index may repeat labels (a
    manifest after ``pd.concat``)."""
    order = np.concatenate([np.asarray(test) for _, test in splits])
    if len(order) != len(index) or len(np.unique(order)) != len(order):
        raise ConfigurationError(
            f"out-of-fold results need folds holding out every one of the {len(index)} cases once; the folds "
            f"hold out {len(np.unique(order))} of them (predictions made on another X?)")
    out = pd.concat([part.reset_index(drop=True) for part in parts], ignore_index=True)
    if columns is not None:
        out = out.reindex(columns=columns)
    out = out.iloc[np.argsort(order, kind="stable")]
    out.index = index
    return out


def _permutation_shap(f, Z: np.ndarray, background: np.ndarray, *, n_permutations: int = 3, random_state=0,
                      max_rows: int = 200_000):
    """Interventional SHAP values of ``f`` by antithetic permutation sampling.

    For each ordering of the features, features are switched one by one from background values to
    the case's values; a feature's contribution is the change of the mean output over the
    background rows. Each ordering is also used reversed. Contributions of one ordering sum exactly
    to f(x) − mean f(background), so the values are additive for any number of orderings.
    """
    n, p = Z.shape
    B = background.shape[0]
    rng = np.random.default_rng(random_state)
    perms = []
    for _ in range(max(int(n_permutations), 1)):
        perm = rng.permutation(p)
        perms += [perm, perm[::-1]]
    steps = np.tril(np.ones((p + 1, p), dtype=bool), k=-1)  # row k: the first k features of the ordering are on
    masks = []
    for perm in perms:
        m = np.zeros((p + 1, p), dtype=bool)
        m[:, perm] = steps
        masks.append(m)
    masks = np.stack(masks)  # (P, p+1, p)
    rows_per_case = masks.shape[0] * (p + 1) * B
    chunk = max(1, max_rows // rows_per_case)
    values = np.zeros((n, p))
    for start in range(0, n, chunk):
        x = Z[start : start + chunk]  # (c, p)
        data = np.where(masks[None, :, :, None, :], x[:, None, None, None, :], background[None, None, None, :, :])
        out = np.asarray(f(data.reshape(-1, p)), dtype=float).reshape(len(x), masks.shape[0], p + 1, B).mean(axis=3)
        delta = np.diff(out, axis=2)  # (c, P, p): gain when the k-th feature of the ordering switches on
        for j, perm in enumerate(perms):
            values[start : start + len(x), perm] += delta[:, j, :]
    values /= len(perms)
    base = float(np.mean(f(background)))
    return values, base


def _has_proba(clf, Zb) -> bool:
    if not hasattr(clf, "predict_proba"):
        return False
    try:
        clf.predict_proba(Zb.iloc[:1])
        return True
    except AttributeError:
        return False


def _positive_class_values(raw, n: int, p: int, classes) -> np.ndarray:
    if isinstance(raw, list):  # older shap: one array per class
        raw = raw[_positive_column(classes)]
    arr = np.asarray(raw, dtype=float)
    if arr.ndim == 3:  # (n, p, classes)
        arr = arr[:, :, _positive_column(classes)]
    if arr.shape != (n, p):
        raise RuntimeError(f"unexpected SHAP value shape {arr.shape}; expected ({n}, {p})")
    return arr


def _positive_base(base, classes) -> float:
    arr = np.atleast_1d(np.asarray(base, dtype=float))
    if arr.size == 1:
        return float(arr[0])
    if arr.ndim == 1 and classes is not None and arr.size == len(classes):
        return float(arr[_positive_column(classes)])
    return float(arr.mean())  # per-case base values (permutation explainer): all equal


@dataclass
class OOFShap:
    """Out-of-fold SHAP values: each case explained by the model of the fold that held it out.

    Attributes
    ----------
    folds : list of ShapExplanation
        One per fold (its held-out cases, its own selected features).
    values, data : pandas.DataFrame
        All cases × the union of the features selected in any fold; NaN where the case's fold
        did not select the feature.
    raw_data : pandas.DataFrame or None
        The same cells as the user's data gave them (before cleaning, imputation, scaling).
    fold : pandas.Series
        Fold of each case.
    """

    folds: list
    values: pd.DataFrame
    data: pd.DataFrame
    fold: pd.Series
    meta: dict = field(default_factory=dict)
    raw_data: pd.DataFrame | None = None

    @property
    def output(self) -> str:
        return self.folds[0].output if self.folds else ""

    def _family_of(self) -> dict | None:
        merged: dict = {}
        for ex in self.folds:
            merged.update(ex.family_of or {})
        return merged or None

    def fold_importance(self) -> pd.DataFrame:
        """Mean |SHAP| of each feature (rows) in each fold (columns); 0 where not selected."""
        cols = {k: ex.values.abs().mean(axis=0) for k, ex in enumerate(self.folds)}
        return pd.DataFrame(cols).reindex(self.values.columns).fillna(0.0)

    def importance(self) -> pd.DataFrame:
        """Per feature: pooled mean |SHAP| over all cases (0 where not selected) with its 95 % bootstrap
        interval over cases (``ci_low``, ``ci_high``), the mean and SD of the per-fold mean |SHAP|, the
        number of folds selecting it and its family; largest first."""
        per_fold = self.fold_importance()
        low, high = mean_abs_interval(self.values)
        out = pd.DataFrame(
            {
                "mean_abs_shap": self.values.abs().fillna(0.0).mean(axis=0),
                "ci_low": low,
                "ci_high": high,
                "fold_mean": per_fold.mean(axis=1),
                "fold_sd": per_fold.std(axis=1, ddof=1) if per_fold.shape[1] > 1 else 0.0,
                "n_folds": (per_fold > 0).sum(axis=1).astype(int),
                "family": [_family(c, self._family_of()) for c in self.values.columns],
            },
            index=self.values.columns,
        )
        out.index.name = "feature"
        return out.sort_values("mean_abs_shap", ascending=False)

    def family_importance(self) -> pd.DataFrame:
        """Importance summed per family, with the SD across folds of the per-fold family totals."""
        per_fold = self.fold_importance()
        fam = pd.Series([_family(c, self._family_of()) for c in per_fold.index], index=per_fold.index)
        fold_totals = per_fold.groupby(fam).sum()
        sd = fold_totals.std(axis=1, ddof=1) if fold_totals.shape[1] > 1 else fold_totals.iloc[:, 0] * 0
        families = pd.Series([_family(c, self._family_of()) for c in self.values.columns], index=self.values.columns)
        return _family_table(self.importance(), {"fold_sd": sd, **_family_interval(self.values, families)})

    def explanation_for(self, case) -> tuple[ShapExplanation, object]:
        """(the fold's explanation, the row label) for a case given by index label or ``case_id``."""
        for ex in self.folds:
            if case in ex.values.index:
                return ex, case
        cid = self.meta.get("case_id")
        if cid is not None and case in set(cid.values):
            label = cid.index[cid.values == case][0]
            return self.explanation_for(label)
        raise KeyError(f"case {case!r} not found among the explained cases")


def oof_shap_values(predictions, X, *, max_background: int = 50, n_permutations: int = 3, random_state=0) -> OOFShap:
    """Explain each fold's held-out cases with that fold's fitted model and stack the results.

    Parameters
    ----------
    predictions : radhe.evaluation.CVPredictions
        From :func:`radhe.evaluation.cross_validate_predictions` with ``return_estimators=True``.
    X : pandas.DataFrame
        The same X the predictions were made on. Each fold's training cases serve as background.
    """
    if predictions.estimators is None:
        raise ConfigurationError("oof_shap_values needs the fold models: cross-validate with return_estimators=True")
    folds = []
    for k, (est, (train, test)) in enumerate(zip(predictions.estimators, predictions.splits, strict=True)):
        Xte = X.iloc[test] if hasattr(X, "iloc") else X[test]
        Xtr = X.iloc[train] if hasattr(X, "iloc") else X[train]
        bg = Xtr.iloc[np.random.default_rng(random_state + k).permutation(len(Xtr))[:max_background]] if hasattr(Xtr, "iloc") else Xtr
        folds.append(
            shap_values(est, Xte, background=bg, max_background=max_background, n_permutations=n_permutations,
                        random_state=random_state)
        )
    columns: list[str] = []
    for ex in folds:
        columns += [c for c in ex.values.columns if c not in columns]
    index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(X))
    splits = predictions.splits
    values = _held_out_rows([ex.values for ex in folds], splits, index, columns)
    data = _held_out_rows([ex.data for ex in folds], splits, index, columns)
    fold = pd.Series(predictions.fold, index=index, name="fold")
    meta = {}
    if isinstance(X, pd.DataFrame) and "case_id" in X.columns:
        meta["case_id"] = X["case_id"].astype(str)
    raw = None
    if all(ex.raw_data is not None for ex in folds):
        raw = _held_out_rows([ex.raw_data for ex in folds], splits, index, columns)
    return OOFShap(folds=folds, values=values, data=data, fold=fold, meta=meta, raw_data=raw)
