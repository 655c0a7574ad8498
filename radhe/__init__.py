"""radhe: predict early haematoma expansion after intracerebral haemorrhage from admission NCCT.

The public surface is listed in ``__all__``. Heavy dependencies (torch, shap, pyradiomics, dask)
are imported only where used, so ``import radhe`` stays fast; public names resolve lazily.
"""

from __future__ import annotations

from radhe._lazy import lazy_exports

__version__ = "0.1.0"

# module -> the public names it defines
_EXPORTS = {
    "radhe.errors": ("InputError", "ConfigurationError", "InputWarning"),
    "radhe.io": ("read_image", "write_image", "load_manifest", "validate_case", "validate_manifest"),
    "radhe.datasets": ("make_ich_cohort",),
    "radhe.labels": ("haematoma_expansion",),
    "radhe.volumetry": ("mask_volume_ml", "abc2_volume_ml", "compare_volumes"),
    "radhe.features": ("RadiomicsFeatures", "ClinicalFeatures", "TabularFeatures", "CNNEmbedder"),
    "radhe.segmentation": ("HematomaSegmenter",),
    "radhe.pipeline": ("make_pipeline", "param_grid"),
    "radhe.model_selection": ("PatientStratifiedKFold",),
    "radhe.evaluation": ("evaluate", "cross_validate_predictions"),
    "radhe.explain": ("shap_values",),
    "radhe.report": ("write_html",),
    "radhe.persistence": ("save_model", "load_model"),
}

# subpackages reachable as attributes (``radhe.datasets.make_ich_cohort``) without an explicit import
_SUBMODULES = (
    "baselines", "cli", "datasets", "errors", "evaluation", "explain", "features", "io", "labels",
    "markers", "model_selection", "nn", "persistence", "plots", "report", "segmentation", "two_output", "volumetry",
)

__all__ = sorted(name for names in _EXPORTS.values() for name in names) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
