"""Radiomics features of the haematoma: :class:`RadiomicsFeatures`, a scikit-learn transformer.

Values are pyradiomics' (``RadiomicsFeatureExtractor.execute`` with the same parameters), computed
faster (see :mod:`radhe.features._radiomics_engine`), per case in parallel (``n_jobs``, or a Dask
cluster via :func:`radhe.parallel.dask_backend`), and optionally cached on disk per case
(``cache=``; see :mod:`radhe.cache`). See ``docs/extraction.md``.
"""

from __future__ import annotations

import copy
import os
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from radhe._compat import Interval, StrOptions, validate_params
from radhe.errors import ConfigurationError, InputError
from radhe.io.image import is_missing_path

__all__ = ["RadiomicsFeatures", "PRESETS", "preset_params", "ENGINE_VERSION"]

#: Bumped when the engine's output or the checks a case passes before it could change; part of every
#: cache key (2: every case goes through radhe.io.load_checked_case).
ENGINE_VERSION = "2"

_ALL_CLASSES = {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}

#: Named parameter sets, in pyradiomics' parameter-file schema (see :func:`preset_params`).
PRESETS: dict[str, dict] = {
    # pyradiomics' defaults, spelled out: original image, fixed bin width 25 HU, no resampling,
    # every non-deprecated feature of the 7 classes = 107 features (the configuration of most
    # published NCCT haematoma-expansion models, e.g. Bo et al. 2023).
    "ibsi_default": {
        "setting": {"binWidth": 25, "label": 1, "interpolator": "sitkBSpline", "resampledPixelSpacing": None,
                    "normalize": False, "minimumROIDimensions": 2},
        "imageType": {"Original": {}},
        "featureClass": dict(_ALL_CLASSES),
    },
    # Original + Laplacian of Gaussian (sigma 1-5 mm) + first-level coif1 wavelet decompositions,
    # all classes (Teng et al. 2021-style filtered radiomics): 1316 features.
    "teng2021": {
        "setting": {"binWidth": 25, "label": 1, "interpolator": "sitkBSpline", "resampledPixelSpacing": None,
                    "normalize": False, "minimumROIDimensions": 2},
        "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0, 3.0, 4.0, 5.0]}, "Wavelet": {}},
        "featureClass": dict(_ALL_CLASSES),
    },
}
PRESETS["pyradiomics_default"] = PRESETS["ibsi_default"]


def preset_params(name: str) -> dict:
    """A copy of the named preset's pyradiomics parameters (write it with ``yaml.safe_dump`` to edit)."""
    if name not in PRESETS:
        raise ConfigurationError(f"unknown radiomics preset {name!r}; presets: {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def _resolve(params):
    """params (None | preset name | dict | file path) -> ExtractionConfig."""
    from radhe.features._radiomics_engine import resolve_params

    if isinstance(params, str) and params in PRESETS:
        params = preset_params(params)
    elif isinstance(params, (str, os.PathLike)):
        if not Path(params).is_file():
            raise ConfigurationError(
                f"params {str(params)!r} is neither a preset ({sorted(PRESETS)}) nor an existing "
                "pyradiomics parameter file"
            )
    elif params is not None and not isinstance(params, dict):
        raise ConfigurationError(f"params must be None, a preset name, a dict or a file path; got {type(params)}")
    try:
        return resolve_params(params)
    except Exception as exc:  # pykwalify SchemaError, yaml errors
        raise ConfigurationError(f"invalid pyradiomics parameters: {exc}") from None


class RadiomicsFeatures(TransformerMixin, BaseEstimator):
    """pyradiomics features of each case's CT inside its haematoma mask.

    Parameters
    ----------
    params : None, str, path-like or dict, default None
        pyradiomics parameters in pyradiomics' own schema (``setting`` / ``imageType`` /
        ``featureClass``): a dict, a YAML/JSON parameter file, or a preset name
        (``"ibsi_default"``: original image, bin width 25, 107 features; ``"teng2021"``: plus LoG
        and wavelet filters; see :data:`PRESETS`). None: pyradiomics' defaults (= "ibsi_default").
    image_column, mask_column : str
        Manifest columns holding the CT and mask paths.
    label : int, default 1
        Mask value of the haematoma (overrides ``setting: label``).
    n_jobs : int or None, default 1
        Cases extracted in parallel (joblib). -1: all cores, or all workers of a Dask cluster
        under :func:`radhe.parallel.dask_backend`.
    cache : None, str or path-like, default None
        Folder of per-case feature files. A case whose image, mask and parameters are unchanged
        is read from it instead of recomputed (grid searches, repeated folds, resumed runs).
    on_error : {"raise", "skip"}, default "raise"
        A case pyradiomics cannot process (empty or one-voxel mask, label absent, image/mask
        geometry mismatch, unreadable file): "raise" an :class:`~radhe.errors.InputError` naming
        it; "skip" gives it a row of NaN and a record in ``failures_``. Every case goes through
        :func:`radhe.io.load_checked_case` first, the checks ``radhe validate`` runs (corrupt or
        truncated files, NaN voxels, non-HU intensities, masks that are not masks, geometry).
    hu_check : bool, default True
        Refuse a CT whose intensities do not look like Hounsfield units (a raw 0..4095, a 0..255
        windowed or a normalised export). False for images deliberately not in HU (e.g. MR).
    verbose : bool, default False
        Show a progress bar when extracting more than a handful of cases.

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        ``radiomics__<pyradiomics name>``, e.g. ``radiomics__original_glcm_Contrast``.
    failures_ : pandas.DataFrame
        ``case_id``, ``file``, ``problem`` of the cases skipped by ``fit``/``fit_transform``. Cases
        skipped by ``transform`` are named in an :class:`~radhe.errors.InputWarning` (transform
        never changes fitted state).
    n_features_in_ : int
        Columns of the manifest seen in fit.

    Notes
    -----
    Extraction has no learned state: ``fit`` only validates the parameters and records the feature
    names (from the first case that extracts). Caching across cross-validation folds therefore
    leaks nothing.
    """

    _parameter_constraints: dict = {
        "params": [None, str, os.PathLike, dict],
        "image_column": [str],
        "mask_column": [str],
        "label": [Interval(Integral, 1, None, closed="left")],
        # 0 means nothing (joblib refuses it, after the work has begun): 1 is one process, -1 every core
        "n_jobs": [Interval(Integral, 1, None, closed="left"), Interval(Integral, None, -1, closed="right"), None],
        "cache": [None, str, os.PathLike],
        "on_error": [StrOptions({"raise", "skip"})],
        "hu_check": ["boolean"],
        "verbose": ["boolean"],
    }

    def __init__(
        self,
        params=None,
        *,
        image_column: str = "image",
        mask_column: str = "mask",
        label: int = 1,
        n_jobs: int | None = 1,
        cache=None,
        on_error: str = "raise",
        hu_check: bool = True,
        verbose: bool = False,
    ):
        self.params = params
        self.image_column = image_column
        self.mask_column = mask_column
        self.label = label
        self.n_jobs = n_jobs
        self.cache = cache
        self.on_error = on_error
        self.hu_check = hu_check
        self.verbose = verbose

    # -- scikit-learn API ------------------------------------------------------------------

    def fit(self, X, y=None):
        """Validate the parameters and record the feature names (extracts the first valid case)."""
        config = self._setup(X)
        features, failures = self._extract(X, config, first_only=True)
        self._set_names(features, X)
        self.failures_ = failures
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Extract every case once; equal to ``fit(X).transform(X)``."""
        config = self._setup(X)
        features, failures = self._extract(X, config)
        self._set_names(features, X)
        self.failures_ = failures
        return self._frame(X, features)

    def transform(self, X):
        """The features of every row of ``X`` (same index); NaN rows for skipped cases."""
        check_is_fitted(self, "feature_names_out_")
        self._check_manifest(X)
        features, failures = self._extract(X, self._config_)
        if len(failures):  # transform never changes fitted state: the skipped cases go in a warning
            from radhe.errors import warn_cases

            warn_cases(f"RadiomicsFeatures: {len(failures)} of {len(X)} case(s) skipped; their features are NaN",
                       [f"case '{row.case_id}': {row.problem}" for row in failures.itertuples()], stacklevel=2)
        return self._frame(X, features)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is a manifest: a DataFrame of paths (strings), not a numeric matrix
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.input_tags.allow_nan = True
        tags.no_validation = True
        tags.requires_fit = True
        return tags

    # -- internals -------------------------------------------------------------------------

    def _setup(self, X):
        validate_params(self)
        self._check_manifest(X)
        self._config_ = _resolve(self.params)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self._config_

    def _check_manifest(self, X):
        if not isinstance(X, pd.DataFrame):
            raise InputError(
                f"RadiomicsFeatures needs the case manifest as a pandas DataFrame, got {type(X).__name__}"
            )
        missing = [c for c in (self.image_column, self.mask_column) if c not in X.columns]
        if missing:
            raise InputError(f"manifest lacks column(s) {missing}; columns present: {list(X.columns)}")

    def _set_names(self, features, X):
        names, seen = [], set()
        for values in features:
            if values is None:
                continue
            for name in values:
                if name not in seen:
                    seen.add(name)
                    names.append(name)
        if not names:
            raise InputError(f"no case of the {len(X)} given could be extracted; see failures_ / the errors above")
        self.feature_names_out_ = np.asarray(["radiomics__" + n for n in names], dtype=object)

    def _frame(self, X, features):
        raw = [n[len("radiomics__"):] for n in self.feature_names_out_]
        data = np.full((len(X), len(raw)), np.nan)
        for row, values in enumerate(features):
            if values is not None:
                data[row] = [values.get(n, np.nan) for n in raw]
        return pd.DataFrame(data, index=X.index, columns=list(self.feature_names_out_))

    def _case_ids(self, X):
        if "case_id" in X.columns:
            return [str(c) for c in X["case_id"]]
        return [str(i) for i in X.index]

    def _cache_key(self, cache, config_digest, image, mask):
        import radiomics

        import radhe
        from radhe.cache import file_fingerprint

        return cache.key(
            image=file_fingerprint(image), mask=file_fingerprint(mask), label=int(self.label),
            params=config_digest, radhe=radhe.__version__, pyradiomics=radiomics.__version__,
            engine=ENGINE_VERSION, hu_check=bool(self.hu_check),
        )

    def _extract(self, X, config, first_only=False):
        """Per row: a {pyradiomics name: value} dict, or None for a skipped case; and the failures table."""
        from radhe.cache import FeatureCache, digest
        from radhe.features._radiomics_engine import extract_task
        from radhe.parallel import run_tasks

        case_ids = self._case_ids(X)
        images = list(X[self.image_column])
        masks = list(X[self.mask_column])
        results: list = [None] * len(X)
        problems: dict[int, tuple[str, str]] = {}

        cache = FeatureCache(self.cache) if self.cache is not None else None
        config_digest = digest(config.as_params())
        keys: list = [None] * len(X)

        def problem(i, file, message, from_pyradiomics=False):
            problems[i] = (file, message)
            if self.on_error == "raise":
                prefix = "pyradiomics could not extract features: " if from_pyradiomics else ""
                raise InputError(prefix + message, case_id=case_ids[i], path=file)

        def lookup(i) -> bool:
            """Check the paths and the cache; True when row i needs extracting."""
            bad = _input_problem(images[i], masks[i], self.image_column, self.mask_column)
            if bad is not None:
                problem(i, *bad)
                return False
            if cache is not None:
                keys[i] = self._cache_key(cache, config_digest, images[i], masks[i])
                results[i] = cache.load(keys[i])
            return results[i] is None

        def handle(i, outcome):
            status, value = outcome
            if status == "ok":
                results[i] = value
                if cache is not None:
                    cache.store(keys[i], value)
            elif status == "input":
                problem(i, *value)
            else:
                problem(i, str(images[i]), value, from_pyradiomics=True)

        if first_only:
            # fit: the first case that extracts gives the names; try cases in order until one does.
            for i in range(len(X)):
                if lookup(i):
                    handle(i, extract_task(images[i], masks[i], config, self.label, hu_check=self.hu_check,
                                           case_id=case_ids[i]))
                if results[i] is not None:
                    break
        else:
            todo = [i for i in range(len(X)) if lookup(i)]
            tasks = [(images[i], masks[i], config, self.label, bool(self.hu_check), case_ids[i]) for i in todo]
            for pos, outcome in run_tasks(extract_task, tasks, n_jobs=self.n_jobs, verbose=self.verbose,
                                          desc="radiomics"):
                handle(todo[pos], outcome)

        failures = pd.DataFrame(
            [{"case_id": case_ids[i], "file": problems[i][0], "problem": problems[i][1]} for i in sorted(problems)],
            columns=["case_id", "file", "problem"],
        )
        failures.index = X.index[sorted(problems)] if problems else X.index[:0]
        return results, failures


def _input_problem(image, mask, image_column, mask_column):
    """(file, problem) when a case's paths are missing; None when both files exist."""
    if is_missing_path(image):
        return None, f"no '{image_column}' path"
    if is_missing_path(mask):
        return str(image), f"no '{mask_column}' path (a haematoma mask is required for radiomics)"
    for path in (image, mask):
        if not Path(str(path)).exists():
            return str(path), "file not found"
    return None
