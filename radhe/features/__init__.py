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

from radhe._lazy import lazy_exports

# module (relative to this package when it has no dot) -> the public names it defines
_EXPORTS = {
    "radiomics": ("RadiomicsFeatures",),
    "clinical": ("ClinicalFeatures",),
    "tabular": ("TabularFeatures",),
    "radhe.nn.embedder": ("CNNEmbedder",),
    "fusion": ("FeatureFusion",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
