"""The generative model of haematoma expansion (HE) and of the follow-up volume.

The true probability of expansion of a case is

    logit P(HE) = INTERCEPT + sum_j WEIGHTS[j] * x_j

with the terms ``x_j`` of :func:`risk_terms` (NCCT markers, onset-to-CT time, baseline volume,
anticoagulation, antiplatelets, systolic blood pressure and two image-texture properties of the
clot). The weights are BAT-like (Morotti et al. 2018: hypodensity 2 points, blend sign 1 point,
onset-to-CT < 2.5 h 2 points) and in line with published odds ratios; the intercept calibrates the
prevalence to ~25 % on the cohort's own case mix. The label is then drawn, and a follow-up volume
consistent with it (growth > 6 mL or > 33 % for HE, less otherwise); ``he`` in the manifest is
recomputed from the two volumes with :func:`radhe.labels.haematoma_expansion`.
"""

from __future__ import annotations

import numpy as np

from radhe.labels import haematoma_expansion

__all__ = ["WEIGHTS", "INTERCEPT", "risk_terms", "expansion_risk", "draw_followup_ml"]

#: Log-odds weights of the expansion model (per unit of the terms of :func:`risk_terms`).
WEIGHTS = {
    "hypodensity": 1.25,                 # any intrahaematoma hypodensity (BAT: 2 points)
    "blend_sign": 0.95,                  # BAT: 1 point
    "irregular_margin": 0.65,
    "fluid_level": 0.70,
    "intraventricular_extension": 0.30,
    "log_onset_to_ct": -0.75,            # log(onset-to-CT h / 2.5): early scans expand more (BAT)
    "log_volume": 0.55,                  # log(baseline mL / 13)
    "anticoagulant": 1.00,
    "antiplatelet": 0.25,
    "sbp_per_10": 0.08,                  # (SBP - 160) / 10 mmHg
    "heterogeneity": 0.45,               # clot texture heterogeneity (z-score, visible as HU spread)
    "density_per_5hu": -0.30,            # (mean clot density - 63) / 5 HU: less dense, fresher blood
}
#: Calibrated so that the cohort's HE prevalence is ~25 % (see docs/cohort.md).
INTERCEPT = -2.85


def risk_terms(*, markers: dict, onset_to_ct_h: float, baseline_ml: float, anticoagulant: int,
               antiplatelet: int, sbp_mmhg: float) -> dict:
    """The model's terms for one case (true, complete values)."""
    return {
        "hypodensity": float(markers["hypodensity"]),
        "blend_sign": float(markers["blend_sign"]),
        "irregular_margin": float(markers["irregular_margin"]),
        "fluid_level": float(markers["fluid_level"]),
        "intraventricular_extension": float(markers["intraventricular_extension"]),
        "log_onset_to_ct": float(np.log(onset_to_ct_h / 2.5)),
        "log_volume": float(np.log(max(baseline_ml, 0.1) / 13.0)),
        "anticoagulant": float(anticoagulant),
        "antiplatelet": float(antiplatelet),
        "sbp_per_10": (float(sbp_mmhg) - 160.0) / 10.0,
        "heterogeneity": float(markers["heterogeneity"]),
        "density_per_5hu": (float(markers["clot_density_hu"]) - 63.0) / 5.0,
    }


def expansion_risk(terms: dict, intercept: float = INTERCEPT) -> float:
    """True probability of haematoma expansion for the terms of :func:`risk_terms`."""
    logit = intercept + sum(WEIGHTS[k] * v for k, v in terms.items())
    return float(1.0 / (1.0 + np.exp(-logit)))


def draw_followup_ml(rng: np.random.Generator, baseline_ml: float, risk: float) -> tuple[float, int]:
    """Draw the label with probability ``risk`` and a follow-up volume (mL) consistent with it.

    HE: growth of ``max(6 mL, 33 %)`` times 1.1 to ~4 (log-normal excess). No HE: relative change
    between -15 % and 90 % of the smaller threshold (most clots are stable or grow a little).
    Volumes are rounded to 0.01 mL; the returned label is recomputed from the rounded volumes.
    """
    expand = rng.random() < risk
    threshold = max(6.0, 0.33 * baseline_ml)
    if expand:
        growth = threshold * (1.1 + rng.lognormal(np.log(0.6), 0.8))
    else:
        cap = min(6.0, 0.33 * baseline_ml) * 0.9
        growth = float(np.clip(rng.normal(0.04 * baseline_ml, 0.35 * cap), -0.15 * baseline_ml, cap))
    followup = round(max(baseline_ml + growth, 0.0), 2)
    label = int(haematoma_expansion(round(baseline_ml, 2), followup))
    return followup, label
