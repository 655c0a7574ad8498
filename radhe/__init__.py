"""radhe: predict early haematoma expansion after intracerebral haemorrhage from admission NCCT.

The public surface is listed in ``__all__``. Heavy dependencies (torch, shap, pyradiomics, dask)
are imported only where used, so ``import radhe`` stays fast; public names resolve lazily.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "InputError": "radhe.errors",
    "ConfigurationError": "radhe.errors",
    "InputWarning": "radhe.errors",
    "read_image": "radhe.io",
    "write_image": "radhe.io",
    "load_manifest": "radhe.io",
    "validate_case": "radhe.io",
    "validate_manifest": "radhe.io",
    "make_ich_cohort": "radhe.datasets",
    "haematoma_expansion": "radhe.labels",
    "mask_volume_ml": "radhe.volumetry",
    "abc2_volume_ml": "radhe.volumetry",
    "compare_volumes": "radhe.volumetry",
    "RadiomicsFeatures": "radhe.features",
    "ClinicalFeatures": "radhe.features",
    "TabularFeatures": "radhe.features",
    "CNNEmbedder": "radhe.features",
    "HematomaSegmenter": "radhe.segmentation",
    "make_pipeline": "radhe.pipeline",
    "param_grid": "radhe.pipeline",
    "PatientStratifiedKFold": "radhe.model_selection",
    "evaluate": "radhe.evaluation",
    "cross_validate_predictions": "radhe.evaluation",
    "shap_values": "radhe.explain",
    "write_html": "radhe.report",
}

# subpackages reachable as attributes (``radhe.datasets.make_ich_cohort``) without an explicit import
_SUBMODULES = (
    "baselines", "cli", "datasets", "errors", "evaluation", "explain", "features", "io", "labels",
    "markers", "model_selection", "plots", "report", "segmentation", "two_output", "volumetry",
)

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"radhe.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'radhe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
