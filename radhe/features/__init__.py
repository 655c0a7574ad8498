"""Feature extraction: one transformer per feature family.

Every transformer takes the whole case manifest (a pandas DataFrame, one row per scan) and
returns a DataFrame with the same index whose columns are named ``<family>__<name>``:

=====================  ==============  ==========================================================
class                  family          what
=====================  ==============  ==========================================================
RadiomicsFeatures      ``radiomics``   pyradiomics features of the CT inside the haematoma mask
CNNEmbedder            ``cnn``         deep embeddings of the haematoma region
ClinicalFeatures       ``clinical``    clinical variables: imputed, one-hot encoded
TabularFeatures        ``tabular``     a user's precomputed numeric features, passed through
FeatureFusion          (all)           concatenation of the above, for :func:`radhe.make_pipeline`
=====================  ==============  ==========================================================

Submodules are imported lazily, on first use of a name, so heavy dependencies (pyradiomics,
torch) load only when their transformer is used, and one missing optional part never breaks
the others.
"""

from __future__ import annotations

import importlib

# public name -> submodule (relative to this package) that defines it
_EXPORTS = {
    "RadiomicsFeatures": "radiomics",
    "ClinicalFeatures": "clinical",
    "TabularFeatures": "tabular",
    "CNNEmbedder": "cnn",
    "FeatureFusion": "fusion",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'radhe.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
