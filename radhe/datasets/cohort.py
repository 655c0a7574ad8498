"""Orchestration of the synthetic cohort: one case = clinical draw → head → clot → noise → outcome.

Every case depends only on ``(random_state, case index)`` (a :class:`numpy.random.SeedSequence`
with ``spawn_key=(index,)``), so a cohort is the same whatever ``n_jobs``, and the first 40 cases of a
cohort of 200 are the 40 cases of a cohort of 40.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from radhe._log import console_if_unconfigured, get_logger
from radhe.constants import NCCT_MARKERS, OUTCOME_COLUMNS
from radhe.datasets import _clinical, _haematoma, _head, _outcome
from radhe.errors import ConfigurationError
from radhe.io.manifest import load_manifest

log = get_logger(__name__)

__all__ = ["make_ich_cohort", "generate_case", "MANIFEST_COLUMNS", "MARKER_COLUMNS", "OUTCOME_COLUMNS"]

#: The NCCT marker columns the cohort's manifest holds (:data:`radhe.constants.NCCT_MARKERS`).
MARKER_COLUMNS = NCCT_MARKERS
MANIFEST_COLUMNS = (("case_id", "patient_id", "image", "mask", "site") + _clinical.CLINICAL_COLUMNS
                    + ("location",) + MARKER_COLUMNS + ("baseline_volume_ml",) + OUTCOME_COLUMNS)

#: Number of slices at which the sites' nominal slice thicknesses apply (the head stays life-size).
_REFERENCE_SLICES = 28
_REFERENCE_MATRIX = 256


def make_ich_cohort(n_cases: int, out_dir: str | os.PathLike, *, shape=(256, 256, 28), random_state=0,
                    compress: bool = False, n_jobs: int = 1, missing_scale: float = 1.0,
                    verbose: bool = False) -> pd.DataFrame:
    """Generate a synthetic non-contrast CT cohort of intracerebral haemorrhage with known ground truth.

    Writes ``out_dir/images/<case_id>.nii`` (int16 HU), ``out_dir/masks/<case_id>.nii`` (uint8, 1 =
    haematoma), ``out_dir/manifest.csv`` and ``out_dir/oracle.csv`` (``case_id``, ``he_risk``: the true
    probability of haematoma expansion, kept out of the manifest so that nobody uses it as a feature).
    The generative model (anatomy, haematoma, markers, clinical variables, risk) is documented in
    ``docs/cohort.md``.

    Parameters
    ----------
    n_cases : int
        Number of cases (one scan per patient).
    out_dir : str or path-like
        Output folder (created; existing files of the same names are overwritten).
    shape : (int, int, int), default (256, 256, 28)
        Grid size in voxels, ``(x, y, z)``. The head stays life-size: in-plane spacing is the site's
        field of view (220-240 mm) divided by ``min(x, y)``, slice spacing the site's slice thickness (4.5-5 mm)
        times ``28 / z``. ``(512, 512, 28)`` gives clinical resolution (0.43-0.47 mm in-plane).
    random_state : int or None, default 0
        Seed. Case ``i`` depends only on ``(random_state, i)``.
    compress : bool, default False
        Write ``.nii.gz`` instead of ``.nii`` (several times smaller, ~50 times slower to write).
    n_jobs : int, default 1
        Parallel processes (joblib); ``-1`` uses all cores. Results do not depend on it.
    missing_scale : float, default 1.0
        Multiplies the missing-value rates of the clinical variables (0 = complete data).
    verbose : bool, default False
        Print progress.

    Returns
    -------
    pandas.DataFrame
        The manifest as :func:`radhe.io.load_manifest` returns it (absolute paths), with columns
        :data:`MANIFEST_COLUMNS`.
    """
    n_cases = int(n_cases)
    if n_cases < 1:
        raise ConfigurationError(f"n_cases must be >= 1, got {n_cases}")
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or min(shape[:2]) < 32 or shape[2] < 8:
        raise ConfigurationError(f"shape must be (x, y, z) with x, y >= 32 and z >= 8 voxels, got {shape}")
    if random_state is None:
        entropy = np.random.SeedSequence().entropy
    elif isinstance(random_state, (int, np.integer)) and random_state >= 0:
        entropy = int(random_state)
    else:
        raise ConfigurationError(f"random_state must be a non-negative int or None, got {random_state!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(n_cases)))
    args = [(i, entropy, shape, str(out), bool(compress), float(missing_scale), width) for i in range(n_cases)]

    if n_jobs == 1:
        results = []
        with console_if_unconfigured(verbose):
            for k, a in enumerate(args):
                results.append(generate_case(*a))
                if (k + 1) % 10 == 0 or k + 1 == n_cases:
                    log.log(20 if verbose else 10, "make_ich_cohort: %d/%d cases", k + 1, n_cases)
    else:
        from joblib import delayed

        from radhe.parallel import make_parallel  # workers end when this process dies

        results = make_parallel(n_jobs=n_jobs, verbose=10 if verbose else 0)(delayed(generate_case)(*a) for a in args)

    rows = [r["row"] for r in results]
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(out / "manifest.csv", index=False)
    oracle = pd.DataFrame({"case_id": [r["row"]["case_id"] for r in results],
                           "he_risk": [r["risk"] for r in results]})
    oracle.to_csv(out / "oracle.csv", index=False)
    return load_manifest(out / "manifest.csv")


def _rngs(entropy: int, index: int, n: int):
    seq = np.random.SeedSequence(entropy, spawn_key=(index,))
    return [np.random.default_rng(s) for s in seq.spawn(n)]


def generate_case(index: int, entropy: int, shape, out_dir: str | None, compress: bool = False,
                  missing_scale: float = 1.0, width: int = 4, return_arrays: bool = False) -> dict:
    """Generate case ``index`` of the cohort seeded by ``entropy``; write its files when ``out_dir``.

    Returns a dict with ``row`` (the manifest row), ``risk`` (true HE probability), ``terms`` (the
    risk model's inputs) and, with ``return_arrays``, ``ct`` (int16, numpy ``(z, y, x)``), ``mask``,
    ``head`` (the :class:`~radhe.datasets._head.HeadPhantom`) and ``spacing`` ``(x, y, z)``.
    """
    r_clin, r_head, r_clot, r_noise, r_out, r_miss = _rngs(entropy, index, 6)
    nx, ny, nz = shape
    case_id = f"ich{index + 1:0{width}d}"

    # clinical variables and site
    site = _clinical.draw_site(r_clin)
    clinical = _clinical.draw_clinical(r_clin, site)
    location = _haematoma.draw_location(r_clin, clinical["age_years"])
    target_ml = _haematoma.draw_volume_ml(r_clin, location, bool(clinical["anticoagulant"]))
    markers = _haematoma.draw_markers(r_clin, location=location, volume_ml=target_ml,
                                      onset_to_ct_h=clinical["onset_to_ct_h"],
                                      anticoagulant=bool(clinical["anticoagulant"]))

    # image: head, clot, noise, site calibration offset
    sp = _clinical.SITES[site]
    head = _head.make_head(r_head, shape, fov_mm=sp["fov_mm"],
                           slice_mm=sp["slice_mm"] * _REFERENCE_SLICES / nz, age_years=clinical["age_years"],
                           streak_strength=sp["streaks"])
    spec = _haematoma.draw_clot_spec(r_clot, head, location, markers["irregularity"])
    clot = _haematoma.render_clot(r_clot, head, spec, target_ml, markers)
    ct = head.to_full(head.ct, np.float32(-1000.0))
    mask = head.to_full(clot.mask, False)
    noise = r_noise.standard_normal(ct.shape, dtype=np.float32)
    # in-plane noise correlation of the site's reconstruction kernel, rescaled to the site's noise SD
    sigma_px = sp["noise_corr_mm"] / head.spacing[0]
    if sigma_px > 0.3:
        noise = ndimage.gaussian_filter1d(noise, sigma_px, axis=2, mode="wrap")
        noise = ndimage.gaussian_filter1d(noise, sigma_px, axis=1, mode="wrap")
        noise /= np.float32(noise.std())
    ct += np.float32(sp["noise_sd"]) * noise + np.float32(sp["hu_offset"])
    ct_int = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)

    # outcome
    baseline = round(clot.volume_ml, 2)
    terms = _outcome.risk_terms(markers=markers, onset_to_ct_h=clinical["onset_to_ct_h"], baseline_ml=baseline,
                                anticoagulant=clinical["anticoagulant"], antiplatelet=clinical["antiplatelet"],
                                sbp_mmhg=clinical["sbp_mmhg"])
    risk = _outcome.expansion_risk(terms)
    followup, he = _outcome.draw_followup_ml(r_out, baseline, risk)
    clinical["gcs"] = _clinical.draw_gcs(r_out, volume_ml=baseline,
                                         intraventricular=bool(markers["intraventricular_extension"]),
                                         location=location)
    recorded = _clinical.apply_missingness(r_miss, clinical, missing_scale)

    suffix = ".nii.gz" if compress else ".nii"
    image_rel, mask_rel = f"images/{case_id}{suffix}", f"masks/{case_id}{suffix}"
    if out_dir is not None:
        image = sitk.GetImageFromArray(ct_int)
        image.SetSpacing(tuple(float(v) for v in head.spacing))
        image.SetOrigin(head.origin)
        mask_img = sitk.GetImageFromArray(mask.astype(np.uint8))
        mask_img.CopyInformation(image)
        sitk.WriteImage(image, str(Path(out_dir) / image_rel), compress)
        sitk.WriteImage(mask_img, str(Path(out_dir) / mask_rel), compress)

    row = {"case_id": case_id, "patient_id": f"p{index + 1:0{width}d}", "image": image_rel, "mask": mask_rel,
           "site": site, **{c: recorded[c] for c in _clinical.CLINICAL_COLUMNS}, "location": location,
           **{m: int(markers[m]) for m in MARKER_COLUMNS}, "baseline_volume_ml": baseline,
           "followup_volume_ml": followup, "he": he}
    result = {"row": row, "risk": risk, "terms": terms, "latent": {k: markers[k] for k in
              ("irregularity", "heterogeneity", "clot_density_hu")}}
    if return_arrays:
        result.update(ct=ct_int, mask=mask, head=head, spacing=head.spacing)
    return result
