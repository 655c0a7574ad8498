"""Column names shared across radhe: defined here once, imported everywhere else.

These are names of manifest columns (see the manifest contract in ``docs/manifest.md``); the
synthetic cohort (:mod:`radhe.datasets`) writes them, the feature branches, families, baselines
and marker classifier read them.
"""

from __future__ import annotations

__all__ = ["OUTCOME_COLUMNS", "NCCT_MARKERS", "MARKER_DISPLAY_NAMES", "MARKER_LABELS"]

#: Columns of a manifest that hold the outcome (follow-up volume and the expansion label); never
#: used as predictors.
OUTCOME_COLUMNS = ("followup_volume_ml", "he")

#: NCCT marker columns of the manifest (radiologist reads, 0/1) → how reports name them, in display order.
MARKER_DISPLAY_NAMES = {
    "hypodensity": "Hypodensity",
    "blend_sign": "Blend sign",
    "irregular_margin": "Irregular margin",
    "fluid_level": "Fluid level",
    "intraventricular_extension": "Intraventricular extension",
    "oedema_rim": "Oedema rim",
}

#: NCCT marker columns of the manifest (radiologist reads, 0/1), in display order.
NCCT_MARKERS = tuple(MARKER_DISPLAY_NAMES)

#: The four NCCT markers Ohkita & Hirano classify from the CT (a subset of :data:`NCCT_MARKERS`,
#: in the order of the marker classifier's outputs).
MARKER_LABELS = ("hypodensity", "irregular_margin", "blend_sign", "fluid_level")
