"""The default radhe model: what :func:`radhe.make_pipeline` builds, tuned with the small grid.

Pyradiomics features of the reference haematoma mask (original image, bin width 25 HU: 107
features) + the manifest's clinical variables (imputed, one-hot encoded) → in-fold cleaning
(constant and |r| > 0.95 correlated features dropped) → standardisation → family-wise stacking:
one L2 logistic model per feature family (radiomics, NCCT marker reads, clinical; and one on all
features), each tuned by patient-grouped inner CV, and a small boosted-tree model on all features,
combined by a shrunken logistic meta-model fitted on their out-of-fold scores
(:class:`radhe.stacking.FamilyStackingClassifier`).

This is the recommended starting point: it uses the masks the manifest provides, trains no network,
and runs in about a second per case. ``param_grid()`` is :func:`radhe.param_grid`'s small grid
(``classify__fusion`` in stack, concat × linear or spline family models).

Run it: ``python -m radhe_pipelines.default [--manifest m.csv] [--out DIR]``.
"""

from __future__ import annotations

import sys

NAME = "default"
TITLE = "radhe default pipeline: radiomics + clinical → family-wise stacked logistic regression"
ABOUT = ("radhe.make_pipeline(): pyradiomics (107 features at the default settings, reference masks) + clinical variables, in-fold "
         "cleaning and scaling, one penalised logistic model per feature family combined by a logistic "
         "meta-model on out-of-fold scores (with a small boosted-tree model on all features).")
#: Overrides for a smoke test (the default is already fast).
TINY: dict = {}


def build_pipeline(**overrides):
    """:func:`radhe.make_pipeline` with ``overrides`` (any of its keyword arguments)."""
    from radhe.pipeline import make_pipeline

    return make_pipeline(**overrides)


def param_grid(size: str = "small") -> dict:
    """:func:`radhe.param_grid` of the default pipeline (``classify__fusion`` × spline knots)."""
    from radhe.pipeline import param_grid as grid

    return grid(build_pipeline(), size)


def main(argv=None) -> int:
    from . import _common

    return _common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
