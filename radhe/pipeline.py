"""The end-to-end model: :func:`make_pipeline` builds it, :func:`param_grid` tunes it.

The pipeline is an :class:`imblearn.pipeline.Pipeline` (so resampling runs only when fitting)
whose steps, in order, are

==============  =================================================================================
``"segment"``   optional :class:`~radhe.segmentation.HematomaSegmenter`: adds predicted masks
``"features"``  :class:`~radhe.features.FeatureFusion` of the branches ``radiomics``, ``cnn``,
                ``clinical``, ``tabular``: one DataFrame, columns ``<family>__<name>``
``"clean"``     :class:`~radhe.selection.FeatureCleaner`: non-finite → training median; constant,
                near-constant and highly correlated (|r| > 0.95) features dropped
``"scale"``     :class:`~sklearn.preprocessing.StandardScaler` (``"passthrough"`` for tree models)
``"select"``    :class:`~radhe.selection.KBestSelector`: the ``k`` best features (``select__k``)
``"sample"``    optional imbalanced-learn resampler
``"classify"``  the classifier
==============  =================================================================================

Every step is fitted on the training rows it is given, so in cross-validation cleaning,
selection, resampling and class weights are learnt inside the fold.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import pandas as pd
from imblearn.pipeline import Pipeline as ImbalancedPipeline
from sklearn.base import clone
from sklearn.utils.metaestimators import available_if

from radhe.classifiers import classifier_name, is_tree_model, make_classifier
from radhe.errors import ConfigurationError
from radhe.selection import SCORE_FUNCTIONS, FeatureCleaner, KBestSelector

__all__ = ["make_pipeline", "param_grid", "RadhePipeline", "SAMPLERS", "FUSIONS", "DEFAULT_K"]

#: Resamplers by name (imbalanced-learn).
SAMPLERS = ("smote", "random_over", "random_under")

#: Ways of combining the feature families (``make_pipeline(fusion=...)``).
FUSIONS = ("stack", "concat")

#: Default number of selected features.
DEFAULT_K = 20

_OFF = (None, False, "drop", "none")


class RadhePipeline(ImbalancedPipeline):
    """:class:`imblearn.pipeline.Pipeline` whose sub-pipelines ending in a resampler can transform.

    ``pipe[:-1]`` of a pipeline with a ``"sample"`` step ends with the resampler; resamplers act
    only in ``fit``, so ``pipe[:-1].transform(X)`` applies the steps before it (the selected
    features), as it does without a resampler.
    """

    def fit(self, X, y=None, **params):
        """Fit every step; the classifier gets the patients of the rows when it can use them.

        When ``X`` is a manifest with a ``patient_id`` column, the final step's ``fit`` accepts
        ``groups`` and no resampler changes the rows before it, ``classify__groups`` is set to the
        patients (unless given), so the classifier's own inner folds (a stacking meta-model, a
        penalty chosen by cross-validation) never split a patient's scans. Without ``patient_id``,
        every case is its own patient (its ``case_id``): the inner folds then do not depend on the
        order of the rows. Where the classifier gets them, a missing patient id is refused
        (:class:`~radhe.errors.InputError`). Each step's duration is
        logged (logger ``radhe.pipeline``; DEBUG when fitted inside a cross-validation fold).
        """
        from radhe._checks import check_training_data
        from radhe._progress import PipelineFitClock

        y = check_training_data(self, X, y)  # labels and rows, before any image is read
        with PipelineFitClock(self, len(X) if hasattr(X, "__len__") else None) as self._fit_clock:
            try:
                return super().fit(X, y, **self._with_patient_groups(X, params))
            finally:
                del self._fit_clock

    def _log_message(self, step_idx):
        # scikit-learn calls this just before fitting each step: the progress clock's cue
        clock = getattr(self, "_fit_clock", None)
        if clock is not None:
            clock.step_starts(step_idx)
        return super()._log_message(step_idx)

    def _fit(self, X, y=None, *args, **kwargs):
        # ``memory`` keys on content: joblib alone hashes a manifest's path strings, so an image
        # overwritten at the same path would hit the old entry (radhe.cache.ContentMemory)
        memory = self.memory
        if memory is None:
            return super()._fit(X, y, *args, **kwargs)
        from radhe.cache import ContentMemory

        self.memory = memory if isinstance(memory, ContentMemory) else ContentMemory(memory)
        try:
            return super()._fit(X, y, *args, **kwargs)
        finally:
            self.memory = memory  # the parameter stays as given

    def _with_patient_groups(self, X, params, groups=None):
        """``params`` with the final step's ``groups`` set to the rows' patients (``groups``, else X's
        ``patient_id`` column) where it can use them; unchanged otherwise."""
        from sklearn import get_config

        name, final = self.steps[-1]
        # with scikit-learn's metadata routing on, ``<step>__<param>`` is refused: ``groups`` is routed
        # to the steps that request it (radhe's classifiers request it in fit by default)
        routing = bool(get_config().get("enable_metadata_routing", False))
        key = "groups" if routing else f"{name}__groups"
        if key in params:
            return params
        # a manifest without patient_id has one scan per patient: its case ids (which, unlike the rows'
        # order, make the inner folds the same however the rows are sorted)
        column = next((c for c in ("patient_id", "case_id") if isinstance(X, pd.DataFrame) and c in X.columns), None)
        if groups is None and column is None:
            return params
        if any(hasattr(step, "fit_resample") for _, step in self.steps[:-1]):
            return params
        from radhe.stacking import _accepts

        if final is None or isinstance(final, str) or not _accepts(getattr(final, "fit", None), "groups"):
            return params
        if routing and final.get_metadata_routing().fit.requests.get("groups") is not True:
            return params
        if groups is None:
            from radhe.model_selection import patient_groups

            groups = patient_groups(X, group_column=column)  # refuses a missing id: no patient "nan"
        return {**params, key: np.asarray(groups)}

    def _can_transform(self):
        final = self.steps[-1][1]
        return final is None or (isinstance(final, str) and final == "passthrough") or hasattr(
            final, "transform") or hasattr(final, "fit_resample")

    @available_if(_can_transform)
    def transform(self, X, **params):
        """Apply every transforming step (resamplers are skipped, as at predict time)."""
        final = self.steps[-1][1]
        if hasattr(final, "fit_resample"):
            # a final resampler acts only in fit: transform through the steps before it
            if len(self.steps) == 1:
                return X
            return self[:-1].transform(X, **params)
        return super().transform(X, **params)


def _is_off(value) -> bool:
    return any(value is off or (isinstance(value, str) and isinstance(off, str) and value == off) for off in _OFF)


def _has_param(estimator, name: str) -> bool:
    try:
        return name in estimator.get_params(deep=False)
    except (AttributeError, TypeError):
        return False


def _with_params(estimator, **params):
    """A clone of ``estimator`` with those of ``params`` it accepts set (the user's object is untouched)."""
    estimator = clone(estimator)
    accepted = {k: v for k, v in params.items() if _has_param(estimator, k)}
    if accepted:
        estimator.set_params(**accepted)
    return estimator


def _check_transformer(obj, what: str):
    if not (hasattr(obj, "fit") and hasattr(obj, "transform")):
        raise ConfigurationError(f"{what} must be a transformer with fit and transform, got {obj!r}")
    return clone(obj)


def _radiomics_branch(radiomics):
    if _is_off(radiomics):
        return None
    if isinstance(radiomics, str | dict | os.PathLike):
        from radhe.features.radiomics import RadiomicsFeatures

        if isinstance(radiomics, str) and radiomics == "default":
            return RadiomicsFeatures()
        # a preset name, a parameter dict or a pyradiomics parameter file
        return RadiomicsFeatures(params=radiomics)
    return _check_transformer(radiomics, "radiomics")


def _cnn_branch(cnn, random_state):
    if _is_off(cnn):
        return None
    if isinstance(cnn, str):
        from radhe.nn.embedder import CNNEmbedder

        kind = "roi_cnn" if cnn == "default" else cnn
        return CNNEmbedder(kind=kind, random_state=random_state)
    return _check_transformer(cnn, "cnn")


def _segmenter_step(segmenter, random_state):
    if _is_off(segmenter):
        return None
    if isinstance(segmenter, str):
        if segmenter not in ("default", "pretrained"):
            raise ConfigurationError(
                f"segmenter must be None, 'default', 'pretrained' or a transformer, got {segmenter!r}")
        from radhe.segmentation import HematomaSegmenter

        if segmenter == "pretrained":
            # the shipped weights as they are: fitting the pipeline trains nothing and needs no masks
            return HematomaSegmenter.pretrained(epochs=0, random_state=random_state)
        return HematomaSegmenter(random_state=random_state)
    return _check_transformer(segmenter, "segmenter")


def _table_branch(value, kind: str):
    """The ``clinical`` or ``tabular`` branch for an explicit value ("auto" is resolved by the caller)."""
    from radhe.features.clinical import ClinicalFeatures
    from radhe.features.tabular import TabularFeatures

    if _is_off(value):
        return None
    if isinstance(value, str):
        if value != "default":
            allowed = "'auto', 'default'" if kind == "clinical" else "'default'"
            raise ConfigurationError(
                f"{kind} must be None, {allowed}, a list of columns or a transformer, got {value!r}")
        return ClinicalFeatures(handle_unknown="ignore") if kind == "clinical" else TabularFeatures(handle_unknown="ignore")
    if isinstance(value, list | tuple):
        branch = ClinicalFeatures if kind == "clinical" else TabularFeatures
        return branch(columns=list(value), handle_unknown="ignore")
    return _check_transformer(value, kind)


def _table_branches(clinical, tabular, image_branches: bool):
    """(clinical branch, tabular branch), resolving ``clinical="auto"``.

    "auto" is ``ClinicalFeatures()`` when the pipeline has an image branch or a tabular branch;
    with neither, the table is a table of precomputed features and its columns become the
    ``tabular`` branch (``TabularFeatures()``, names ``tabular__<column>``), with no clinical branch.
    """
    tabular_branch = _table_branch(tabular, "tabular")
    if isinstance(clinical, str) and clinical == "auto":
        if not image_branches and tabular_branch is None:
            return None, _table_branch("default", "tabular")
        clinical = "default"
    return _table_branch(clinical, "clinical"), tabular_branch


def _add_exclusions(branch, columns):
    """Clone ``branch`` with ``columns`` added to its ``exclude`` when it picks columns automatically."""
    if branch is None or not columns or not _has_param(branch, "exclude") or not _has_param(branch, "columns"):
        return branch
    params = branch.get_params(deep=False)
    if not (isinstance(params["columns"], str) and params["columns"] == "auto"):
        return branch
    current = params["exclude"]
    current = () if current is None else ((current,) if isinstance(current, str) else tuple(current))
    extra = tuple(c for c in columns if c not in current)
    return _with_params(branch, exclude=current + extra) if extra else branch


def _explicit_columns(branch):
    if branch is None or not _has_param(branch, "columns"):
        return None
    columns = branch.get_params(deep=False)["columns"]
    return None if isinstance(columns, str) else list(columns)


def _selector_step(selector, k, random_state):
    if _is_off(selector):
        return "passthrough"
    if isinstance(selector, str):
        if selector not in SCORE_FUNCTIONS:
            raise ConfigurationError(f"selector must be one of {SCORE_FUNCTIONS}, None or a transformer, got {selector!r}")
        if not (isinstance(k, str) and k == "all") and not (
            isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1
        ):
            raise ConfigurationError(f"k must be a positive integer or 'all', got {k!r}")
        return KBestSelector(k=k, score_func=selector, random_state=random_state)
    return _check_transformer(selector, "selector")


def _sampler_step(sampler, random_state):
    if _is_off(sampler):
        return None
    if isinstance(sampler, str):
        if sampler == "smote":
            from imblearn.over_sampling import SMOTE

            return SMOTE(random_state=random_state)
        if sampler == "random_over":
            from imblearn.over_sampling import RandomOverSampler

            return RandomOverSampler(random_state=random_state)
        if sampler == "random_under":
            from imblearn.under_sampling import RandomUnderSampler

            return RandomUnderSampler(random_state=random_state)
        raise ConfigurationError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}, None or an imblearn sampler")
    if not hasattr(sampler, "fit_resample"):
        raise ConfigurationError(f"sampler must have fit_resample (an imbalanced-learn sampler), got {sampler!r}")
    return clone(sampler)


def _stacking_sub_model(classifier, random_state):
    """The per-family model of a stacked pipeline."""
    if isinstance(classifier, str) and classifier == "logistic":
        from radhe.classifiers import PenalizedLogisticCV

        return PenalizedLogisticCV(random_state=random_state)
    return make_classifier(classifier, random_state=random_state, balanced=False)


def _scale_step(scale, classifier):
    if isinstance(scale, str) and scale == "auto":
        return "passthrough" if is_tree_model(classifier) else _standard_scaler()
    if scale is True or (isinstance(scale, str) and scale == "standard"):
        return _standard_scaler()
    if isinstance(scale, str) and scale == "robust":
        from sklearn.preprocessing import RobustScaler

        return RobustScaler()
    if _is_off(scale) or (isinstance(scale, str) and scale == "passthrough"):
        return "passthrough"
    return _check_transformer(scale, "scale")


def _standard_scaler():
    from sklearn.preprocessing import StandardScaler

    return StandardScaler()


def _check_memory(memory):
    """``memory`` as the pipeline stores it (a path-like as str); refuses what is not a cache."""
    if memory is None or isinstance(memory, str):
        return memory
    if isinstance(memory, os.PathLike):
        return os.fspath(memory)
    if callable(getattr(memory, "cache", None)):
        return memory
    raise ConfigurationError(f"memory must be None, a folder or a joblib.Memory, got {memory!r}")


def _memory_location(memory):
    if memory is None:
        return None
    if isinstance(memory, str | os.PathLike):
        return Path(memory)
    location = getattr(memory, "location", None)
    return Path(location) if location else None


def _with_radiomics_cache(branch, radiomics_cache, memory):
    """The radiomics branch with its per-case cache set as ``radiomics_cache`` says."""
    if radiomics_cache is None:
        return branch
    if isinstance(radiomics_cache, str) and radiomics_cache == "auto":
        location = _memory_location(memory)
        if location is None or branch is None or not _has_param(branch, "cache"):
            return branch
        if branch.get_params(deep=False)["cache"] is not None:
            return branch  # the branch's own cache wins
        return _with_params(branch, cache=str(location / "radiomics"))
    if not isinstance(radiomics_cache, str | os.PathLike):
        raise ConfigurationError(f"radiomics_cache must be 'auto', None or a folder, got {radiomics_cache!r}")
    if branch is None or not _has_param(branch, "cache"):
        raise ConfigurationError("radiomics_cache is given but the pipeline has no radiomics branch with a cache")
    own = branch.get_params(deep=False)["cache"]
    folder = os.fspath(radiomics_cache)
    if own is not None and os.fspath(own) != folder:
        raise ConfigurationError(
            f"radiomics_cache={folder!r} but the radiomics branch already has cache={own!r}; give one of them")
    return _with_params(branch, cache=folder)


def make_pipeline(
    *,
    radiomics="default",
    clinical="auto",
    cnn=None,
    segmenter=None,
    tabular=None,
    fusion="stack",
    families="auto",
    selector="auto",
    k=DEFAULT_K,
    classifier="logistic",
    sampler=None,
    scale="auto",
    random_state=None,
    memory=None,
    radiomics_cache="auto",
):
    """Build the haematoma-expansion model: features → cleaning → scaling → selection → classifier.

    The result is a scikit-learn compatible estimator: ``fit(manifest, y)``, ``predict_proba``,
    usable in :func:`~sklearn.model_selection.cross_val_score` and
    :class:`~sklearn.model_selection.GridSearchCV` (see :func:`param_grid` and
    :class:`radhe.model_selection.PatientStratifiedKFold`). ``X`` is the case manifest
    (:func:`radhe.load_manifest`), ``y`` the 0/1 outcome, e.g. ``manifest["he"]``.

    Parameters
    ----------
    radiomics : "default", preset name, dict, path, transformer or None, default "default"
        "default": :class:`~radhe.features.RadiomicsFeatures` with pyradiomics' default settings
        (original image, 107 features). A preset name (``"teng2021"``), a parameter dict or a
        pyradiomics parameter file: ``RadiomicsFeatures(params=...)``. A transformer is used as
        given (cloned). None: no radiomics.
    clinical : "auto", "default", list of str, transformer or None, default "auto"
        "default": :class:`~radhe.features.ClinicalFeatures` on every usable manifest column
        (never the reserved, outcome or path columns, nor ``site``). "auto": "default" when the
        pipeline has an image branch (``radiomics`` or ``cnn``) or a ``tabular`` branch; when it has
        neither, the table is taken as a table of precomputed features: no clinical branch, and
        its columns become the ``tabular`` branch (:class:`~radhe.features.TabularFeatures`, names
        ``tabular__<column>``) — ``clinical="default"`` keeps them clinical (``clinical__<column>``).
        A list of columns: ``ClinicalFeatures(columns=...)``. The branches built here take
        ``handle_unknown="ignore"``: in a cross-validation a rare category can be absent from a
        training fold, and is then encoded as no category with an
        :class:`~radhe.errors.InputWarning` naming it and its cases (pass a transformer for the
        standalone default, which refuses it).
    cnn : None, "roi_cnn", "unet_bottleneck" or transformer, default None
        Deep-feature branch (:class:`~radhe.features.CNNEmbedder`).
    segmenter : None, "default", "pretrained" or transformer, default None
        A step ``"segment"`` predicting haematoma masks before feature extraction; the radiomics
        and CNN branches then read the predicted masks (their ``mask_column`` is set to the
        segmenter's ``output_column`` on clones; the objects you pass are not modified).
        "default" trains a :class:`~radhe.segmentation.HematomaSegmenter` on the training fold's
        masks; "pretrained" uses the one shipped with radhe as it is
        (:meth:`HematomaSegmenter.pretrained` with ``epochs=0``: no masks needed).
    tabular : None, "default", list of str or transformer, default None
        Pass-through branch for precomputed features (see also ``clinical="auto"``, which makes
        one when the pipeline has no other branch). With both ``clinical`` and ``tabular``
        choosing columns automatically they would use the same columns, which is refused; give one
        of them a list of columns (the other then leaves those out).
    fusion : {"stack", "concat"}, default "stack"
        How the feature families (radiomics, CNN, NCCT markers, clinical, other; see
        :mod:`radhe.families`) are combined. "stack": the ``classify`` step is a
        :class:`~radhe.stacking.FamilyStackingClassifier` — one sub-model per family, combined by
        a logistic meta-model fitted on out-of-fold family scores inside the training fold
        (patient-grouped), with a small boosted-tree model on all features among its inputs
        (``classify__trees``; None leaves it out); probabilities are recalibrated by it, without
        class weights. "concat":
        every feature pooled into one classifier (the classic radiomics pipeline; with
        ``classifier="logistic"`` an L2 logistic regression, ``C=0.1``, balanced class weights).
        In a grid over the default pipeline, ``classify__fusion`` in ("stack", "concat") compares
        stacking with one penalised logistic sub-model on all features (with the boosted trees,
        recalibrated by the same meta-model).
    families : "auto" or mapping, default "auto"
        With ``fusion="stack"``: "auto" groups columns by name (radhe's branch prefixes and
        pyradiomics feature names, also in a user's table); ``{family: [columns]}`` gives them
        explicitly (manifest column names or feature names).
    selector : "auto", "f_classif", "mutual_info", transformer or None, default "auto"
        Univariate selection (:class:`~radhe.selection.KBestSelector`) before the classifier.
        "auto": none with ``fusion="stack"`` (each family's penalised sub-model handles its own
        features; pre-selection lost signal on small cohorts), "f_classif" with ``"concat"``.
        None keeps every feature.
    k : int or "all", default 20
        Number of selected features when a selector is used; clipped to the number available.
    classifier : str or estimator, default "logistic"
        One of :data:`radhe.classifiers.CLASSIFIERS` or your own classifier object (cloned,
        parameters untouched). With ``fusion="stack"`` it is the family sub-model: "logistic" is
        :class:`~radhe.classifiers.PenalizedLogisticCV` (L2 logistic regression with additive
        spline terms for continuous features, strength chosen by patient-grouped inner CV), the
        other names are used without class weights (the meta-model calibrates). With
        ``fusion="concat"``: "logistic" (L2, ``C=0.1``), "svm", "random_forest", "xgboost",
        "lightgbm", all with balanced class weights.
    sampler : None, "smote", "random_over", "random_under" or imblearn sampler, default None
        Resampling of training rows only. With ``fusion="concat"`` a pipeline step before the
        classifier, and the named classifiers drop their class weights (both would over-correct
        the imbalance); with ``fusion="stack"`` it resamples inside each family sub-model's fit, so
        the meta-model is fitted on real cases only (the boosted-tree sub-model is not
        resampled). A model with inner folds of its own takes it as its ``sampler`` instead
        (:class:`~radhe.classifiers.PenalizedLogisticCV`, the stacked "logistic";
        :class:`~radhe.classifiers.CalibratedSVC`, "svm"): only the training part of each inner
        fold is resampled, so the penalty or the calibration is chosen on real, patient-grouped
        rows. SMOTE needs at least 6 cases of the rarer class in every training fold.
    scale : "auto", "standard", "robust", None or transformer, default "auto"
        "auto": standardise, except for tree ensembles.
    random_state : int or None
        Seed of the classifier, sampler, mutual-information selector and of branches built here.
    memory : None, str, path or joblib.Memory
        Cache of fitted steps (:class:`~imblearn.pipeline.Pipeline` ``memory``), so a grid search
        over ``k`` or ``C`` fits the feature step once per fold. Keyed on content: the key holds a
        stamp (size, modification and change time) of every file the manifest names, so images
        or masks overwritten at the same paths are refitted, never read from a stale entry (see
        :class:`radhe.cache.ContentMemory`). A run-time setting: not saved with the model
        (:func:`radhe.save_model`).
    radiomics_cache : "auto", None, str or path, default "auto"
        Per-case feature cache of the radiomics branch (its ``cache``), so features are extracted
        once per case over all folds and candidates. "auto": ``<memory folder>/radiomics`` when
        ``memory`` is a folder (or a :class:`joblib.Memory` with a location) and the branch has no
        cache of its own; otherwise the branch is left as it is. None: never set. A folder: that
        folder (refused when the branch has a different cache, or there is no radiomics branch).

    Returns
    -------
    RadhePipeline
        An :class:`imblearn.pipeline.Pipeline` with steps ``segment`` (optional), ``features``, ``clean``, ``scale``, ``select``, ``sample``
        (optional), ``classify``. ``pipe[:-1].transform(X)`` is the selected-feature DataFrame,
        ``pipe[:-1].get_feature_names_out()`` its names.

    Examples
    --------
    >>> import radhe                                                  # doctest: +SKIP
    >>> from sklearn.model_selection import GridSearchCV              # doctest: +SKIP
    >>> from radhe.model_selection import PatientStratifiedKFold      # doctest: +SKIP
    >>> pipe = radhe.make_pipeline(memory="cache/")                   # doctest: +SKIP
    >>> search = GridSearchCV(pipe, radhe.param_grid(pipe), scoring="roc_auc",
    ...                       cv=PatientStratifiedKFold(5, random_state=0))  # doctest: +SKIP
    >>> search.fit(manifest, manifest["he"])                          # doctest: +SKIP
    """
    from radhe.features.fusion import FeatureFusion

    segment = _segmenter_step(segmenter, random_state)
    radiomics_branch = _radiomics_branch(radiomics)
    cnn_branch = _cnn_branch(cnn, random_state)
    image_branches = radiomics_branch is not None or cnn_branch is not None
    clinical_branch, tabular_branch = _table_branches(clinical, tabular, image_branches)

    # the two table branches must not pick the same columns
    if clinical_branch is not None and tabular_branch is not None:
        clinical_cols, tabular_cols = _explicit_columns(clinical_branch), _explicit_columns(tabular_branch)
        if clinical_cols is None and tabular_cols is None:
            raise ConfigurationError(
                "clinical and tabular would both use every column; pass a list of columns to one of them "
                "(e.g. tabular=['my_score', ...]) and the other leaves those out"
            )
        clinical_branch = _add_exclusions(clinical_branch, tabular_cols)
        tabular_branch = _add_exclusions(tabular_branch, clinical_cols)

    if segment is not None:
        output_column = segment.get_params(deep=False).get("output_column", "mask_pred")
        if radiomics_branch is not None:
            radiomics_branch = _with_params(radiomics_branch, mask_column=output_column)
        if cnn_branch is not None:
            cnn_branch = _with_params(cnn_branch, mask_column=output_column)
        clinical_branch = _add_exclusions(clinical_branch, [output_column])
        tabular_branch = _add_exclusions(tabular_branch, [output_column])

    memory = _check_memory(memory)
    radiomics_branch = _with_radiomics_cache(radiomics_branch, radiomics_cache, memory)

    branches = [
        (name, branch)
        for name, branch in (
            ("radiomics", radiomics_branch),
            ("cnn", cnn_branch),
            ("clinical", clinical_branch),
            ("tabular", tabular_branch),
        )
        if branch is not None
    ]
    if not branches:
        raise ConfigurationError("make_pipeline needs at least one feature branch (radiomics, cnn, clinical, tabular)")

    if not (isinstance(fusion, str) and fusion in FUSIONS):
        raise ConfigurationError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if isinstance(selector, str) and selector == "auto":
        selector = None if fusion == "stack" else "f_classif"
    resampler = _sampler_step(sampler, random_state)
    if fusion == "stack":
        from radhe.stacking import FamilyStackingClassifier

        family_model = _stacking_sub_model(classifier, random_state)
        if resampler is None:
            sub_model = family_model
        elif "sampler" in family_model.get_params(deep=False):
            # a model with its own inner folds resamples only their training parts
            sub_model = family_model.set_params(sampler=resampler)
        else:
            sub_model = ImbalancedPipeline([("sample", resampler), ("classify", family_model)])
        estimator = FamilyStackingClassifier(sub_model, families=families, random_state=random_state)
        resampler = None  # inside the sub-models
    else:
        if not (isinstance(families, str) and families == "auto"):
            raise ConfigurationError("families is used with fusion='stack' only")
        estimator = make_classifier(classifier, random_state=random_state, balanced=resampler is None)
        if resampler is not None and "sampler" in estimator.get_params(deep=False):
            # its calibration folds resample only their training parts, and keep the patients
            estimator.set_params(sampler=resampler)
            resampler = None
        family_model = estimator

    steps = []
    if segment is not None:
        steps.append(("segment", segment))
    steps.append(("features", FeatureFusion(branches)))
    steps.append(("clean", FeatureCleaner()))
    steps.append(("scale", _scale_step(scale, family_model)))
    steps.append(("select", _selector_step(selector, k, random_state)))
    if resampler is not None:
        steps.append(("sample", resampler))
    steps.append(("classify", estimator))

    for name in ("clean", "scale", "select"):
        step = dict(steps)[name]
        if not isinstance(step, str) and hasattr(step, "set_output"):
            step.set_output(transform="pandas")
    return RadhePipeline(steps, memory=memory)


# --------------------------------------------------------------------------------------------
# hyper-parameter grids

_K = {"small": [10, 20, 40], "medium": [5, 10, 20, 40, 80, "all"]}

_CLASSIFIER_GRIDS = {
    "logistic": {
        "small": {"C": [0.01, 0.1, 1.0]},
        "medium": {"C": [0.001, 0.01, 0.1, 1.0, 10.0]},
    },
    "svm": {
        "small": {"C": [0.1, 1.0, 10.0]},
        "medium": {"C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale", 0.001, 0.01, 0.1]},
    },
    "random_forest": {
        "small": {"min_samples_leaf": [1, 3, 5]},
        "medium": {"min_samples_leaf": [1, 3, 5, 10], "max_features": ["sqrt", 0.3], "max_depth": [None, 5]},
    },
    "xgboost": {
        "small": {"max_depth": [2, 3], "learning_rate": [0.03, 0.1]},
        "medium": {"max_depth": [2, 3, 4], "learning_rate": [0.03, 0.1], "n_estimators": [100, 300],
                   "min_child_weight": [1, 5]},
    },
    "lightgbm": {
        "small": {"num_leaves": [4, 7], "learning_rate": [0.03, 0.1]},
        "medium": {"num_leaves": [4, 7, 15], "learning_rate": [0.03, 0.1], "min_child_samples": [5, 10, 20]},
    },
}


def param_grid(pipeline, size="small"):
    """A hyper-parameter grid for :class:`~sklearn.model_selection.GridSearchCV`, adapted to ``pipeline``.

    Parameters
    ----------
    pipeline : Pipeline
        A pipeline from :func:`make_pipeline` (or any pipeline whose steps are named ``select`` and
        ``classify``).
    size : {"small", "medium"}, default "small"
        For a stacked pipeline (``fusion="stack"``, the default), "small" (6 candidates):
        ``classify__fusion`` in ("stack", "concat") × ``classify__estimator__spline_knots`` in
        ("auto", None, 4) — the default's own choice, linear or additive-spline family models (their
        penalty is already chosen by inner CV); "medium" adds 3 and 6 knots, the meta-model's ``classify__final_C`` and
        ``classify__trees`` in ("auto", None). For a
        pooled pipeline (``fusion="concat"``), "small" (9-12 candidates): the number of features
        ``select__k`` in (10, 20, 40) and the classifier's main regularisation parameter (e.g.
        ``classify__C`` in (0.01, 0.1, 1) for logistic regression); "medium" (tens to a few
        hundred candidates): wider ranges, more parameters, and the selection score (F-test or
        mutual information). ``select__k`` only where the pipeline has a selector.

    Returns
    -------
    dict
        ``{"<step>__<param>": [values]}``; values of ``select__k`` above the number of available
        features are harmless (the selector keeps them all). Only the ``select__k`` entry for a
        classifier radhe does not know.

    Raises
    ------
    radhe.errors.ConfigurationError
        Unknown ``size``; a pipeline without a ``classify`` step.
    """
    if size not in _K:
        raise ConfigurationError(f"size must be one of {sorted(_K)}, got {size!r}")
    steps = getattr(pipeline, "named_steps", None)
    if steps is None or "classify" not in steps:
        raise ConfigurationError("param_grid needs a pipeline with a 'classify' step (see radhe.make_pipeline)")
    grid: dict[str, list] = {}
    from radhe.stacking import FamilyStackingClassifier

    classify = steps["classify"]
    if isinstance(classify, FamilyStackingClassifier):
        grid["classify__fusion"] = ["stack", "concat"]
        from radhe.classifiers import PenalizedLogisticCV

        if isinstance(classify.estimator, PenalizedLogisticCV):
            # "auto" (the default's own choice between linear and spline terms) among the candidates,
            # so that a search can keep the default
            grid["classify__estimator__spline_knots"] = ["auto", None, 4] if size == "small" else ["auto", None, 3, 4, 6]
        if size == "medium":
            grid["classify__final_C"] = [0.1, 1.0, 10.0]
            grid["classify__trees"] = ["auto", None]
    select = steps.get("select")
    if select is not None and not isinstance(select, str) and _has_param(select, "k"):
        grid["select__k"] = list(_K[size])
        if size == "medium" and isinstance(select, KBestSelector):
            grid["select__score_func"] = ["f_classif", "mutual_info"]
    name = classifier_name(steps["classify"])
    if name in _CLASSIFIER_GRIDS:
        for param, values in _CLASSIFIER_GRIDS[name][size].items():
            if _has_param(steps["classify"], param):
                grid[f"classify__{param}"] = list(values)
    return grid

