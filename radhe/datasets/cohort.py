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
from radhe.datasets import _clinical, _haematoma, _head, _other_blood, _outcome
from radhe.errors import ConfigurationError
from radhe.io.manifest import load_manifest

log = get_logger(__name__)

__all__ = ["make_ich_cohort", "generate_case", "MANIFEST_COLUMNS", "MARKER_COLUMNS", "OUTCOME_COLUMNS",
           "MASK_LABELS", "OTHER_BLOOD_COLUMNS", "RISK_TERM_COLUMNS", "IMAGE_TERMS"]

#: The NCCT marker columns the cohort's manifest holds (:data:`radhe.constants.NCCT_MARKERS`).
MARKER_COLUMNS = NCCT_MARKERS
MANIFEST_COLUMNS = (("case_id", "patient_id", "image", "mask", "site") + _clinical.CLINICAL_COLUMNS
                    + ("location",) + MARKER_COLUMNS + ("baseline_volume_ml",) + OUTCOME_COLUMNS)

#: Number of slices at which the sites' nominal slice thicknesses apply (the head stays life-size).
_REFERENCE_SLICES = 28

#: Labels of the cohort's masks: 1 is the parenchymal haematoma (the only label unless
#: ``label_other_blood``); the others mark blood that is not it.
MASK_LABELS = {1: "parenchymal haematoma", **{v: k for k, v in _other_blood.OTHER_BLOOD_LABELS.items()}}
#: Ranges of the per-case scanner of ``scanner="randomised"`` (uniform): HU calibration offset, noise SD
#: (HU), in-plane noise correlation (mm; the reconstruction kernel), field of view (mm), slice thickness
#: (mm), beam-hardening streak strength, SD of the head's in-plane rotation (degrees).
RANDOMISED_SCANNER = {"hu_offset": (-8.0, 8.0), "noise_sd": (2.5, 10.0), "noise_corr_mm": (0.3, 1.2),
                      "fov_mm": (220.0, 260.0), "slice_mm": (2.5, 6.5), "streaks": (0.5, 2.0),
                      "yaw_sd_deg": (2.0, 12.0)}
#: Cranio-caudal extent (mm) covered by a randomised scanner's slices (vertex to below the skull base).
_COVERED_MM = 140.0
#: Largest gantry tilt (degrees) ``gantry_tilt_deg`` accepts (scanners tilt up to about 30°).
MAX_GANTRY_TILT_DEG = 30.0
#: Thickest slice (mm) a tilted stack is rendered in before its slabs are averaged.
_TILT_THIN_SLICE_MM = 2.0
#: Antero-posterior extent (mm) that bounds any phantom head's rows (skull, scalp, position), used to
#: render enough slices below a tilted stack before the head is drawn.
_HEAD_ROWS_MM = 240.0
#: Columns of ``oracle.csv`` beside ``he_risk``: the volume (mL) of each kind of other blood.
OTHER_BLOOD_COLUMNS = tuple(f"{kind}_ml" for kind in _other_blood.OTHER_BLOOD_LABELS)
#: Columns of ``oracle.csv`` after :data:`OTHER_BLOOD_COLUMNS`: each term's share of the true log-odds
#: (``logit_<term>`` = weight × term of :data:`radhe.datasets._outcome.WEIGHTS`), so that
#: ``logit(he_risk) = INTERCEPT + Σ logit_<term>``.
RISK_TERM_COLUMNS = tuple(f"logit_{term}" for term in _outcome.WEIGHTS)
#: The terms of the risk that the admission CT shows (NCCT markers, baseline volume, clot texture
#: and density); the others are clinical (onset-to-CT time, anticoagulant, antiplatelet, blood
#: pressure). The AUC of their sum is a reference for a model that sees the CT only — not a strict
#: ceiling: the markers and the volume are drawn with some dependence on onset-to-CT time and
#: anticoagulation, so the image also carries a little of the clinical terms.
IMAGE_TERMS = ("hypodensity", "blend_sign", "irregular_margin", "fluid_level", "intraventricular_extension",
               "log_volume", "heterogeneity", "density_per_5hu")
_REFERENCE_MATRIX = 256


def make_ich_cohort(n_cases: int, out_dir: str | os.PathLike, *, shape=(256, 256, 28), random_state=0,
                    compress: bool = False, n_jobs: int = 1, missing_scale: float = 1.0,
                    other_blood_scale: float = 1.0, label_other_blood: bool = False, scanner: str = "sites",
                    gantry_tilt_deg=0.0, verbose: bool = False) -> pd.DataFrame:
    """Generate a synthetic non-contrast CT cohort of intracerebral haemorrhage with known ground truth.

    Writes ``out_dir/images/<case_id>.nii`` (int16 HU), ``out_dir/masks/<case_id>.nii`` (uint8, 1 =
    haematoma), ``out_dir/manifest.csv`` and ``out_dir/oracle.csv`` (``case_id``, ``he_risk``: the true
    probability of haematoma expansion, kept out of the manifest so that nobody uses it as a feature;
    :data:`OTHER_BLOOD_COLUMNS`, the volumes of blood that is not the parenchymal haematoma; and
    :data:`RISK_TERM_COLUMNS`, each term's share of the true log-odds, the CT-visible ones listed in
    :data:`IMAGE_TERMS`).
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
    other_blood_scale : float, default 1.0
        Multiplies the rates of subdural (7 %), epidural (2 %) and subarachnoid (10 %) blood beside
        the parenchymal haematoma (0: none). They are distractors for segmentation and never part of
        the parenchymal mask, its volume or the expansion label.
    label_other_blood : bool, default False
        Give that blood, and intraventricular extension, their own mask labels
        (:data:`MASK_LABELS`: 2 subdural, 3 epidural, 4 subarachnoid, 5 intraventricular); by default
        masks hold label 1 only.
    scanner : {"sites", "randomised"}, default "sites"
        "sites": each case's image properties are its site's (three sites, see ``docs/cohort.md``).
        "randomised" (domain randomisation, for training segmenters): each case draws its own
        scanner, with :data:`RANDOMISED_SCANNER` ranges of HU calibration, noise level and texture
        (reconstruction kernel), field of view, slice thickness (2.5-6.5 mm; the number of slices is
        then chosen to cover the head, and ``shape``'s z is ignored), streak strength and head
        rotation. The clinical variables, location, markers and haematoma shape are those of the
        "sites" case; what depends on the mask's measured volume (GCS, the risk, the follow-up volume
        and the label) can differ, since the mask is drawn on another grid.
    gantry_tilt_deg : float or (float, float), default 0.0
        Gantry tilt (degrees, at most :data:`MAX_GANTRY_TILT_DEG` either way) of ``scanner="randomised"``
        scans: one angle for every case, or a ``(low, high)`` range each case draws its own from
        (uniformly). The slices are tilted about the left-right axis and stored stacked along the
        table, as a series whose tilt a converter did not correct (a sheared grid: the skull base
        crosses the slices obliquely); the stack has as many more slices as keep the whole head in
        every row. A tilted slab is the mean of untilted slices of at most 2 mm; masks and volumes are
        taken on the tilted stack. Only the image changes with the tilt (and what depends on the mask's
        measured volume); each case's angle is ``oracle.csv``'s ``gantry_tilt_deg`` column. 0, the
        default, draws nothing and changes nothing. The shear leaves out the 1/cos(tilt) antero-posterior
        stretch of a real uncorrected series (10 % at 25°). A tilted case is rendered in thin slices: at
        512² it takes about three times the time and memory of an untilted one (10 s and 3.3 GB at 30°).
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
    if scanner not in ("sites", "randomised"):
        raise ConfigurationError(f"scanner must be 'sites' or 'randomised', got {scanner!r}")
    if not (isinstance(other_blood_scale, (int, float, np.number)) and other_blood_scale >= 0):
        raise ConfigurationError(f"other_blood_scale must be a number >= 0, got {other_blood_scale!r}")
    tilt_range = _tilt_range(gantry_tilt_deg)
    if tilt_range != (0.0, 0.0) and scanner != "randomised":
        raise ConfigurationError(f"gantry_tilt_deg={gantry_tilt_deg!r} needs scanner='randomised' (its number of "
                                 "slices follows the head; a 'sites' scan keeps shape's slices)")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    # the tables of a cohort generated here before go first: written last, they would otherwise describe
    # the earlier cohort's scans beside this one's images until this run ends (or for good if interrupted)
    for table in ("manifest.csv", "oracle.csv"):
        (out / table).unlink(missing_ok=True)
    width = max(4, len(str(n_cases)))
    args = [(i, entropy, shape, str(out), bool(compress), float(missing_scale), width, False,
             float(other_blood_scale), bool(label_other_blood), scanner, tilt_range) for i in range(n_cases)]

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
                           "he_risk": [r["risk"] for r in results],
                           **{c: [r["other_blood_ml"][c] for r in results] for c in OTHER_BLOOD_COLUMNS},
                           **{f"logit_{t}": [_outcome.WEIGHTS[t] * r["terms"][t] for r in results]
                              for t in _outcome.WEIGHTS}})
    if tilt_range != (0.0, 0.0):
        oracle["gantry_tilt_deg"] = [r["gantry_tilt_deg"] for r in results]
    oracle.to_csv(out / "oracle.csv", index=False)
    return load_manifest(out / "manifest.csv")


def _tilt_range(gantry_tilt_deg) -> tuple[float, float]:
    values = gantry_tilt_deg if isinstance(gantry_tilt_deg, (tuple, list, np.ndarray)) else (gantry_tilt_deg,) * 2
    numbers = len(values) == 2 and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                                       for v in values)
    low, high = (float(v) for v in values) if numbers else (np.nan, np.nan)
    if not (np.isfinite(low) and np.isfinite(high) and -MAX_GANTRY_TILT_DEG <= low <= high <= MAX_GANTRY_TILT_DEG):
        raise ConfigurationError(f"gantry_tilt_deg must be an angle or a (low, high) range of angles within "
                                 f"±{MAX_GANTRY_TILT_DEG:g} degrees, low <= high; got {gantry_tilt_deg!r}")
    return low, high


def _rngs(entropy: int, index: int, n: int):
    seq = np.random.SeedSequence(entropy, spawn_key=(index,))
    return [np.random.default_rng(s) for s in seq.spawn(n)]


def generate_case(index: int, entropy: int, shape, out_dir: str | None, compress: bool = False,
                  missing_scale: float = 1.0, width: int = 4, return_arrays: bool = False,
                  other_blood_scale: float = 1.0, label_other_blood: bool = False, scanner: str = "sites",
                  gantry_tilt_deg: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Generate case ``index`` of the cohort seeded by ``entropy``; write its files when ``out_dir``.

    Returns a dict with ``row`` (the manifest row), ``risk`` (true HE probability), ``terms`` (the
    risk model's inputs), ``other_blood_ml`` and, with ``return_arrays``, ``ct`` (int16, numpy
    ``(z, y, x)``), ``mask`` (bool: the parenchymal haematoma), ``labels`` (uint8: the mask as written,
    :data:`MASK_LABELS`), ``head`` (the :class:`~radhe.datasets._head.HeadPhantom`) and
    ``spacing`` ``(x, y, z)``. ``gantry_tilt_deg``: the ``(low, high)`` range of the tilt (degrees)
    this case draws from (see :func:`make_ich_cohort`).
    """
    # the seventh (other blood), eighth (randomised scanner) and ninth (gantry tilt) streams came last:
    # the ones before them draw what they always drew
    r_clin, r_head, r_clot, r_noise, r_out, r_miss, r_other, r_scan, r_tilt = _rngs(entropy, index, 9)
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
    sp = dict(_clinical.SITES[site])
    slice_mm, yaw_sd = sp["slice_mm"] * _REFERENCE_SLICES / nz, 4.0
    if scanner == "randomised":
        sp.update({key: float(r_scan.uniform(*bounds)) for key, bounds in RANDOMISED_SCANNER.items()})
        slice_mm, yaw_sd = sp["slice_mm"], sp["yaw_sd_deg"]
        nz = int(np.ceil(_COVERED_MM / slice_mm))
    low, high = gantry_tilt_deg
    tilt = float(r_tilt.uniform(low, high)) if low < high else float(low)
    render_slices, thin = nz, 1
    if tilt:
        # a tilted stack is read from a taller untilted render (extra slices below the skull base), in
        # slices of at most 2 mm so that a tilted slab averages thin slices instead of interpolating
        # between thick ones
        extra = int(np.ceil(_HEAD_ROWS_MM * abs(np.tan(np.deg2rad(tilt))) / slice_mm))
        thin = int(np.ceil(slice_mm / _TILT_THIN_SLICE_MM))
        render_slices = (nz + extra) * thin
    head = _head.make_head(r_head, (nx, ny, render_slices), fov_mm=sp["fov_mm"], slice_mm=slice_mm / thin,
                           age_years=clinical["age_years"], streak_strength=sp["streaks"], yaw_sd_deg=yaw_sd)
    spec = _haematoma.draw_clot_spec(r_clot, head, location, markers["irregularity"])
    clot = _haematoma.render_clot(r_clot, head, spec, target_ml, markers)
    other = _other_blood.render_other_blood(r_other, head, _other_blood.draw_other_blood(r_other, other_blood_scale),
                                            clot.mask)
    if "intraventricular" in clot.info:
        other["intraventricular"] = clot.info.pop("intraventricular") & ~clot.mask
    clot_mask, clot_ml = clot.mask, clot.volume_ml
    if tilt:
        shifts = _head.gantry_tilt_shifts(tilt, head, slice_mm)
        n_tilted = nz + int(np.ceil(shifts.max()))
        rows = shifts[head.crop[0]]

        def tilted(region):
            return _head.tilt_slices(region, rows, n_tilted, False, subslices=thin)

        clot_mask = tilted(clot.mask)
        other = {kind: tilted(region) for kind, region in other.items()}
        head = _head.tilt_head(head, shifts, n_tilted, thin)
    voxel_ml = float(np.prod(head.spacing)) / 1000.0
    if tilt:
        clot_ml = float(clot_mask.sum()) * voxel_ml
    other_blood_ml = {f"{kind}_ml": round(float(other[kind].sum()) * voxel_ml, 2) if kind in other else 0.0
                      for kind in _other_blood.OTHER_BLOOD_LABELS}
    labels = clot_mask.astype(np.uint8)
    if label_other_blood:
        for kind, region in other.items():
            labels[region & (labels == 0)] = _other_blood.OTHER_BLOOD_LABELS[kind]
    ct = head.to_full(head.ct, np.float32(-1000.0))
    mask = head.to_full(labels, np.uint8(0))
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
    baseline = round(clot_ml, 2)
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
    result = {"row": row, "risk": risk, "terms": terms, "other_blood_ml": other_blood_ml, "gantry_tilt_deg": tilt,
              "latent": {k: markers[k] for k in
              ("irregularity", "heterogeneity", "clot_density_hu")}}
    if return_arrays:
        result.update(ct=ct_int, mask=mask == 1, labels=mask, head=head, spacing=head.spacing)
    return result
