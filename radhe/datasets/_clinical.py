"""Sites (scanner / centre properties) and admission clinical variables of the synthetic cohort.

Distributions follow acute ICH cohorts (e.g. INTERACT2, ATACH-2, PREDICT; see docs/cohort.md): mean
age ~66 years, ~58 % men, very high admission blood pressure, most patients scanned within a few
hours, ~13 % on oral anticoagulants and ~20 % on antiplatelets. Variables are correlated (age with
anticoagulation, antiplatelets, blood pressure and platelets; anticoagulation with INR; volume,
intraventricular extension and infratentorial location with a lower GCS).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SITES", "CLINICAL_COLUMNS", "MISSING_RATES", "draw_site", "draw_clinical", "draw_gcs",
           "apply_missingness"]

#: Multi-centre covariate shift: each site has its own scanner calibration offset (HU), noise level and
#: in-plane noise correlation (reconstruction kernel, Gaussian SD in mm), in-plane field of view, slice thickness (at 28 slices), artefact strength and patient pathway
#: (onset-to-CT time factor).
SITES = {
    "site_a": {"weight": 0.45, "hu_offset": 0.0, "noise_sd": 4.5, "noise_corr_mm": 0.55, "fov_mm": 230.0,
               "slice_mm": 5.0, "streaks": 1.0, "time_factor": 1.0},
    "site_b": {"weight": 0.35, "hu_offset": 3.0, "noise_sd": 7.0, "noise_corr_mm": 0.4, "fov_mm": 220.0,
               "slice_mm": 4.5, "streaks": 1.5, "time_factor": 0.75},
    "site_c": {"weight": 0.20, "hu_offset": -2.5, "noise_sd": 3.5, "noise_corr_mm": 0.8, "fov_mm": 240.0,
               "slice_mm": 5.0, "streaks": 0.7, "time_factor": 1.35},
}

CLINICAL_COLUMNS = ("age_years", "sex", "sbp_mmhg", "dbp_mmhg", "gcs", "onset_to_ct_h", "anticoagulant",
                    "antiplatelet", "platelet_count_1e9_l", "inr")

#: Probability that each recorded variable is missing (completely at random), as in registries.
MISSING_RATES = {"sbp_mmhg": 0.02, "dbp_mmhg": 0.02, "gcs": 0.02, "onset_to_ct_h": 0.05,
                 "anticoagulant": 0.02, "antiplatelet": 0.03, "platelet_count_1e9_l": 0.03, "inr": 0.04}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def draw_site(rng: np.random.Generator) -> str:
    names = list(SITES)
    w = np.array([SITES[n]["weight"] for n in names])
    return str(rng.choice(names, p=w / w.sum()))


def draw_clinical(rng: np.random.Generator, site: str) -> dict:
    """True (complete) admission variables of one patient, except GCS (see :func:`draw_gcs`)."""
    age = float(np.clip(rng.normal(66.0, 13.0), 25.0, 97.0))
    sex = "M" if rng.random() < 0.58 else "F"
    da = age - 66.0
    anticoagulant = int(rng.random() < _sigmoid(-2.0 + 0.05 * da))
    antiplatelet = int(rng.random() < _sigmoid(-1.35 + 0.04 * da - 0.9 * anticoagulant))
    sbp = float(np.clip(rng.normal(172.0 + 0.15 * da, 26.0), 95.0, 260.0))
    dbp = float(np.clip(0.42 * sbp + 24.0 - 0.15 * da + rng.normal(0.0, 11.0), 45.0, 150.0))
    onset = float(np.clip(2.6 * SITES[site]["time_factor"] * np.exp(rng.normal(0.0, 0.7)), 0.25, 24.0))
    platelets = float(np.clip(rng.normal(235.0 - 0.6 * da, 62.0), 30.0, 520.0))
    if anticoagulant:
        vka = rng.random() < 0.6                      # vitamin K antagonist, else a direct oral anticoagulant
        inr = float(np.exp(rng.normal(np.log(2.3), 0.3)) if vka else np.exp(rng.normal(np.log(1.3), 0.12)))
    else:
        inr = float(np.exp(rng.normal(np.log(1.02), 0.06)))
    return {"age_years": round(age, 1), "sex": sex, "sbp_mmhg": round(sbp), "dbp_mmhg": round(dbp),
            "onset_to_ct_h": round(onset, 2), "anticoagulant": anticoagulant, "antiplatelet": antiplatelet,
            "platelet_count_1e9_l": round(platelets), "inr": round(inr, 2)}


def draw_gcs(rng: np.random.Generator, *, volume_ml: float, intraventricular: bool, location: str) -> int:
    """Glasgow Coma Scale: lower with larger volume, ventricular blood and infratentorial location."""
    deficit = 2.2 * max(np.log(volume_ml / 6.0), 0.0) + 2.0 * intraventricular
    deficit += 1.5 * (location == "infratentorial") + rng.normal(0.0, 1.5)
    return int(np.clip(np.round(15.0 - max(deficit, 0.0)), 3, 15))


def apply_missingness(rng: np.random.Generator, values: dict, scale: float = 1.0) -> dict:
    """Return a copy of ``values`` with variables set to NaN at :data:`MISSING_RATES` × ``scale``."""
    out = dict(values)
    draws = rng.random(len(MISSING_RATES))
    for u, (name, rate) in zip(draws, MISSING_RATES.items(), strict=True):
        if u < rate * scale:
            out[name] = float("nan")
    return out
