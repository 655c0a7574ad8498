"""The synthetic ICH cohort: contract, determinism, prevalences, visible markers, anatomy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull

from radhe.datasets import MANIFEST_COLUMNS, MARKER_COLUMNS, OUTCOME_COLUMNS, make_ich_cohort
from radhe.datasets._outcome import INTERCEPT, WEIGHTS
from radhe.datasets.cohort import (
    IMAGE_TERMS,
    MASK_LABELS,
    OTHER_BLOOD_COLUMNS,
    RISK_TERM_COLUMNS,
    generate_case,
)
from radhe.errors import ConfigurationError
from radhe.io import load_manifest, validate_manifest
from radhe.labels import haematoma_expansion
from radhe.volumetry import mask_volume_ml

SMALL = (96, 96, 16)

CONTRACT_COLUMNS = [
    "case_id", "patient_id", "image", "mask", "site", "age_years", "sex", "sbp_mmhg", "dbp_mmhg", "gcs",
    "onset_to_ct_h", "anticoagulant", "antiplatelet", "platelet_count_1e9_l", "inr", "location",
    "hypodensity", "blend_sign", "irregular_margin", "fluid_level", "intraventricular_extension", "oedema_rim",
    "baseline_volume_ml", "followup_volume_ml", "he",
]


@pytest.fixture(scope="module")
def cohort100(tmp_path_factory):
    """100 small cases with their arrays (read back from disk) and the oracle."""
    out = tmp_path_factory.mktemp("cohort100")
    manifest = make_ich_cohort(100, out, shape=SMALL, random_state=11)
    oracle = pd.read_csv(out / "oracle.csv")
    cts = [sitk.GetArrayFromImage(sitk.ReadImage(p)) for p in manifest["image"]]
    masks = [sitk.GetArrayFromImage(sitk.ReadImage(p)).astype(bool) for p in manifest["mask"]]
    spacing = [sitk.ReadImage(p).GetSpacing() for p in manifest["image"][:1]][0]
    return manifest, oracle, cts, masks, spacing


def test_contract_columns_and_files(small_cohort):
    m = small_cohort
    assert list(m.columns) == CONTRACT_COLUMNS
    assert tuple(MANIFEST_COLUMNS) == tuple(CONTRACT_COLUMNS)
    assert OUTCOME_COLUMNS == ("followup_volume_ml", "he")
    assert len(m) == 40 and m["case_id"].iloc[0] == "ich0001"
    folder = m.attrs["manifest_dir"]
    reread = load_manifest(f"{folder}/manifest.csv")
    pd.testing.assert_frame_equal(reread, m)
    oracle = pd.read_csv(f"{folder}/oracle.csv")
    assert list(oracle.columns) == ["case_id", "he_risk", *OTHER_BLOOD_COLUMNS, *RISK_TERM_COLUMNS]
    assert (oracle[list(OTHER_BLOOD_COLUMNS)] >= 0).all().all()
    # the terms add up to the true log-odds; the CT-visible ones are a strict part of them
    logit = np.log(oracle["he_risk"] / (1 - oracle["he_risk"]))
    np.testing.assert_allclose(INTERCEPT + oracle[list(RISK_TERM_COLUMNS)].sum(axis=1), logit, atol=1e-9)
    assert set(IMAGE_TERMS) < set(WEIGHTS) and {"anticoagulant", "log_onset_to_ct"}.isdisjoint(IMAGE_TERMS)
    volume_term = WEIGHTS["log_volume"] * np.log(np.maximum(m["baseline_volume_ml"], 0.1) / 13.0)
    np.testing.assert_allclose(oracle["logit_log_volume"], volume_term, atol=1e-9)
    np.testing.assert_allclose(oracle["logit_hypodensity"], WEIGHTS["hypodensity"] * m["hypodensity"])
    assert oracle["case_id"].tolist() == m["case_id"].tolist()
    assert oracle["he_risk"].between(0, 1).all()
    assert "he_risk" not in m.columns
    for col in MARKER_COLUMNS + ("he",):
        assert set(m[col].unique()) <= {0, 1}, col
    assert set(m["sex"]) <= {"F", "M"}
    assert m["gcs"].dropna().between(3, 15).all()
    assert set(m["site"]) <= {"site_a", "site_b", "site_c"}
    assert set(m["location"]) <= {"basal_ganglia", "thalamus", "lobar", "infratentorial"}
    assert m["image"].str.endswith(".nii").all() and m["mask"].str.endswith(".nii").all()


def test_small_cohort_files_are_valid_ct(small_cohort):
    report = validate_manifest(small_cohort.iloc[:8])
    assert len(report.skipped) == 0
    cases = report.cases
    assert (cases["hu_min"] <= -900).all() and (cases["hu_max"] >= 700).all()
    assert all(tuple(s) == SMALL for s in cases["size"])
    img = sitk.ReadImage(small_cohort["image"].iloc[0])
    assert img.GetPixelID() == sitk.sitkInt16
    msk = sitk.ReadImage(small_cohort["mask"].iloc[0])
    assert msk.GetPixelID() == sitk.sitkUInt8
    # baseline volume is the planimetric volume of the mask
    for row in small_cohort.iloc[:8].itertuples():
        assert row.baseline_volume_ml == pytest.approx(mask_volume_ml(row.mask), abs=0.006)


def test_labels_follow_the_volumes(small_cohort):
    m = small_cohort
    expected = haematoma_expansion(m["baseline_volume_ml"], m["followup_volume_ml"])
    assert (expected.astype(int) == m["he"]).all()


def test_determinism_and_independence_of_n_jobs(tmp_path, small_cohort):
    a = make_ich_cohort(3, tmp_path / "a", shape=SMALL, random_state=0)
    b = make_ich_cohort(3, tmp_path / "b", shape=SMALL, random_state=0, n_jobs=2)
    cols = [c for c in a.columns if c not in ("image", "mask")]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    # the first cases of a larger cohort with the same seed are the same cases
    pd.testing.assert_frame_equal(a[cols], small_cohort[cols].iloc[:3], check_dtype=False)
    for p, q in zip(a["image"], b["image"], strict=True):
        assert open(p, "rb").read() == open(q, "rb").read()
    oa = pd.read_csv(tmp_path / "a" / "oracle.csv")
    ob = pd.read_csv(tmp_path / "b" / "oracle.csv")
    pd.testing.assert_frame_equal(oa, ob)
    c = make_ich_cohort(3, tmp_path / "c", shape=SMALL, random_state=1)
    assert not a[cols].equals(c[cols])


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigurationError):
        make_ich_cohort(0, tmp_path)
    with pytest.raises(ConfigurationError):
        make_ich_cohort(2, tmp_path, shape=(96, 96))
    with pytest.raises(ConfigurationError):
        make_ich_cohort(2, tmp_path, random_state=-3)


def test_compressed_output(tmp_path):
    m = make_ich_cohort(1, tmp_path, shape=(64, 64, 10), compress=True)
    assert m["image"].iloc[0].endswith(".nii.gz")
    assert sitk.ReadImage(m["image"].iloc[0]).GetSize() == (64, 64, 10)


def test_prevalences_on_100_cases(cohort100):
    m, oracle, *_ = cohort100
    assert 0.17 <= m["he"].mean() <= 0.35
    ranges = {"hypodensity": (0.2, 0.5), "blend_sign": (0.06, 0.28), "irregular_margin": (0.25, 0.6),
              "fluid_level": (0.0, 0.15), "intraventricular_extension": (0.2, 0.5), "oedema_rim": (0.3, 0.7)}
    for col, (lo, hi) in ranges.items():
        assert lo <= m[col].mean() <= hi, (col, m[col].mean())
    freq = m["location"].value_counts(normalize=True)
    assert 0.25 <= freq.get("basal_ganglia", 0) <= 0.6
    assert 0.15 <= freq.get("lobar", 0) <= 0.45
    vol = m["baseline_volume_ml"]
    assert 6.0 <= vol.median() <= 22.0
    assert vol.min() >= 0.3 and vol.max() <= 120.0
    # a few percent missing, as in registries; age and sex complete
    clinical = ["sbp_mmhg", "dbp_mmhg", "gcs", "onset_to_ct_h", "anticoagulant", "antiplatelet",
                "platelet_count_1e9_l", "inr"]
    assert 0.005 <= m[clinical].isna().to_numpy().mean() <= 0.08
    assert m[["age_years", "sex"]].notna().all().all()
    # the oracle risk is informative but not perfect
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(m["he"], oracle["he_risk"])
    assert 0.7 <= auc <= 0.97
    assert abs(oracle["he_risk"].mean() - m["he"].mean()) < 0.1


def _percentile_in_mask(ct, mask, q):
    return float(np.percentile(ct[mask], q))


def test_markers_are_visible(cohort100):
    m, _, cts, masks, spacing = cohort100
    p10 = np.array([_percentile_in_mask(c, k, 10) for c, k in zip(cts, masks, strict=True)])
    p90 = np.array([_percentile_in_mask(c, k, 90) for c, k in zip(cts, masks, strict=True)])
    hypo = m["hypodensity"].to_numpy() == 1
    assert np.median(p10[hypo]) < np.median(p10[~hypo]) - 3
    blend = m["blend_sign"].to_numpy() == 1
    assert np.median((p90 - p10)[blend]) > np.median((p90 - p10)[~blend & ~hypo]) + 5

    # oedema: the shell just outside the clot is darker
    shell_mean = []
    for c, k in zip(cts, masks, strict=True):
        shell = ndimage.binary_dilation(k, iterations=1) & ~k & (c > -50) & (c < 100)
        shell_mean.append(c[shell].mean())
    shell_mean = np.array(shell_mean)
    oed = m["oedema_rim"].to_numpy() == 1
    assert np.median(shell_mean[oed]) < np.median(shell_mean[~oed]) - 2

    # fluid level: the dependent (posterior, +y) half of the clot is denser than the other
    fl = np.flatnonzero(m["fluid_level"].to_numpy() == 1)
    for i in fl:
        k = masks[i]
        _, yy, _ = np.nonzero(k)
        ymid = np.median(yy)
        hu = cts[i][k]
        assert hu[yy > ymid].mean() > hu[yy < ymid].mean() + 10

    # irregular margin: lower solidity (mask volume / convex hull volume)
    def solidity(k):
        pts = np.argwhere(k) * np.array(spacing[::-1])
        corners = np.concatenate([pts + np.array(off) * np.array(spacing[::-1]) / 2
                                  for off in np.ndindex(2, 2, 2)]) if len(pts) else pts
        return k.sum() * np.prod(spacing) / ConvexHull(corners - 0.25 * np.array(spacing[::-1])).volume

    sol = np.array([solidity(k) for k in masks])
    irr = m["irregular_margin"].to_numpy() == 1
    assert np.median(sol[irr]) < np.median(sol[~irr])


def test_masks_lie_inside_the_brain(cohort100):
    _, _, cts, masks, _ = cohort100
    for c, k in zip(cts, masks, strict=True):
        assert k.any()
        bone = c > 300
        intracranial = np.zeros_like(bone)
        for z in range(c.shape[0]):
            intracranial[z] = ndimage.binary_fill_holes(bone[z]) & ~bone[z]
        assert intracranial[k].all()
        assert np.percentile(c[k], 99) < 110       # blood, not bone or calcification
        assert np.percentile(c[k], 1) > -20        # not air or fat


def test_generator_masks_inside_parenchyma():
    for i in range(6):
        res = generate_case(i, 5, SMALL, None, return_arrays=True)
        head = res["head"]
        crop = (slice(None),) + tuple(head.crop)
        assert res["mask"].any()
        assert head.parenchyma[res["mask"][crop]].all()
        assert not res["mask"][crop][head.ventricles].any()


def test_default_size_is_life_size(tmp_path):
    m = make_ich_cohort(1, tmp_path, random_state=3)
    img = sitk.ReadImage(m["image"].iloc[0])
    assert img.GetSize() == (256, 256, 28)
    dx, dy, dz = img.GetSpacing()
    assert 0.8 <= dx <= 0.95 and 4.5 <= dz <= 5.0
    ct = sitk.GetArrayFromImage(img)
    head = ct > -500
    zmid = ct.shape[0] // 2
    _, cols = np.nonzero(head[zmid])
    rows, _ = np.nonzero(head[zmid])
    width_mm = (cols.max() - cols.min() + 1) * dx
    length_mm = (rows.max() - rows.min() + 1) * dy
    assert 130 <= width_mm <= 175 and 160 <= length_mm <= 215
    skull = ct[zmid] > 600
    assert skull.any()
    brain = (ct[zmid] > 15) & (ct[zmid] < 50)
    assert 20 <= np.median(ct[zmid][brain]) <= 45


def test_other_blood_is_a_distractor_outside_the_parenchymal_mask():
    """Subdural, epidural and subarachnoid blood change the image only: the parenchymal mask, its
    volume, the label and every other draw stay those of the case without them."""
    seen = set()
    for i in range(12):
        plain = generate_case(i, 4, SMALL, None, return_arrays=True, other_blood_scale=0)
        busy = generate_case(i, 4, SMALL, None, return_arrays=True, other_blood_scale=4, label_other_blood=True)
        assert plain["row"] == busy["row"] and plain["risk"] == busy["risk"]
        assert np.array_equal(busy["mask"], plain["mask"]) and np.array_equal(busy["labels"] == 1, busy["mask"])
        assert set(np.unique(plain["labels"])) <= {0, 1}
        ml = busy["other_blood_ml"]
        voxel_ml = float(np.prod(busy["spacing"])) / 1000
        for kind in ("subdural", "epidural", "subarachnoid", "intraventricular"):
            label = next(k for k, v in MASK_LABELS.items() if v == kind)
            region = busy["labels"] == label
            assert ml[f"{kind}_ml"] == pytest.approx(region.sum() * voxel_ml, abs=0.01)
            if region.any():
                seen.add(kind)
                blood = busy["ct"][region].astype(float)
                # painted blood (or chronic subdural fluid), not bone, air or unchanged tissue
                assert -20 < np.median(blood) < 100
                if kind != "intraventricular":
                    assert not np.array_equal(busy["ct"][region], plain["ct"][region])
        if not any(ml[k] for k in ("subdural_ml", "epidural_ml", "subarachnoid_ml")):
            assert np.array_equal(busy["ct"], plain["ct"])
        # never inside the haematoma or its 3 mm margin
        assert np.array_equal(busy["ct"][busy["mask"]], plain["ct"][plain["mask"]])
    assert {"subdural", "subarachnoid"} <= seen


def test_other_blood_scale_and_scanner_are_checked(tmp_path):
    with pytest.raises(ConfigurationError, match="other_blood_scale"):
        make_ich_cohort(1, tmp_path, shape=SMALL, other_blood_scale=-1)
    with pytest.raises(ConfigurationError, match="scanner"):
        make_ich_cohort(1, tmp_path, shape=SMALL, scanner="random")


def test_randomised_scanners_vary_the_image_not_the_patient():
    """Domain randomisation: per case its own calibration, noise, field of view, slice thickness and
    rotation, the slices covering the head; the clinical variables, risk and label stay the site case's."""
    from radhe.datasets import _clinical
    from radhe.datasets.cohort import RANDOMISED_SCANNER

    spacings, offsets = [], []
    for i in range(5):
        site = generate_case(i, 3, SMALL, None, return_arrays=True)
        wild = generate_case(i, 3, SMALL, None, return_arrays=True, scanner="randomised")
        # the patient is the same; the mask's volume differs only by the grid it is drawn on
        patient = ("site", *(c for c in _clinical.CLINICAL_COLUMNS if c != "gcs"), "location", *MARKER_COLUMNS)
        assert all(wild["row"][k] == site["row"][k] or (pd.isna(wild["row"][k]) and pd.isna(site["row"][k]))
                   for k in patient)
        assert wild["row"]["baseline_volume_ml"] == pytest.approx(site["row"]["baseline_volume_ml"], rel=0.25)
        dx, dy, dz = wild["spacing"]
        low, high = RANDOMISED_SCANNER["slice_mm"]
        assert low <= dz <= high and dx == dy
        assert wild["ct"].shape[0] * dz >= 140.0 - dz  # the slices cover the head, whatever the thickness
        assert wild["mask"].any()
        spacings.append(dz)
        brain = wild["ct"][wild["head"].to_full(wild["head"].parenchyma, False) & ~wild["mask"]]
        offsets.append(float(np.median(brain)))
    assert np.ptp(spacings) > 0.5 and np.ptp(offsets) > 1.0


@pytest.mark.slow
def test_full_resolution(tmp_path):
    m = make_ich_cohort(1, tmp_path, shape=(512, 512, 28), random_state=2)
    img = sitk.ReadImage(m["image"].iloc[0])
    assert img.GetSize() == (512, 512, 28)
    assert 0.4 <= img.GetSpacing()[0] <= 0.5


def test_tilt_slices_reads_each_row_at_its_height():
    from radhe.datasets._head import tilt_slices

    nz, ny, nx, n_out = 12, 5, 3, 14
    ramp = np.broadcast_to(np.arange(nz, dtype=np.float32)[:, None, None], (nz, ny, nx)).copy()
    shifts = np.array([0.0, 0.25, 0.5, 1.75, 2.0])
    with pytest.raises(ValueError, match="n_out"):
        tilt_slices(ramp, shifts, n_out, np.float32(-1.0))
    ramp = np.concatenate([np.full((4, ny, nx), -5.0, np.float32), ramp])  # 16 slices, top slice 15
    height = (16 - n_out) + np.arange(n_out)[:, None] + shifts[None, :]     # untilted slice read
    linear = tilt_slices(ramp, shifts, n_out, np.float32(-1.0))
    expected = height - 4
    inside = (height >= 4) & (height <= 15)                                 # on the ramp
    assert np.allclose(linear[:, :, 0][inside], expected[inside])
    # above the top: interpolated towards the fill, then the fill
    assert np.all(linear[:, :, 0][height >= 16] == -1.0)
    between = (height > 15) & (height < 16)
    fraction = (height - 15)[between]
    assert np.allclose(linear[:, :, 0][between], (1 - fraction) * (15 - 4) + fraction * -1.0)
    # a region (boolean): the voxels it fills at least half of; on one-slice slabs a row moves by whole
    # slices, so every voxel of a region below the top is kept
    region = ramp > 8
    half = tilt_slices(region, shifts, n_out, False)
    assert half.dtype == bool
    assert np.array_equal(half[:, :, 0], tilt_slices(region.astype(np.float32), shifts, n_out, np.float32(0))[:, :, 0] >= 0.5)
    assert tilt_slices(region, np.array([0.0, 0.4, 0.6, 1.2, 1.49]), 16, False).sum() == region.sum()
    with pytest.raises(ValueError, match="shift"):
        tilt_slices(region, -shifts, 10, False)
    # slices rendered three times thinner: a tilted slab is the mean of its three thin slices; a shift
    # of one slab moves three thin slices
    thin = np.broadcast_to(np.arange(30, dtype=np.float32)[:, None, None], (30, 2, 1)).copy()
    slab = tilt_slices(thin, np.array([0.0, 1.0]), 9, np.float32(99.0), subslices=3)
    assert np.allclose(slab[:, 0, 0], 3 * np.arange(1, 10) + 1)              # mean of 3k+0..3k+2, top at 29
    assert np.allclose(slab[:, 1, 0], np.r_[3 * np.arange(2, 10) + 1, 99.0])
    # a region covering the lowest thin slice of a slab only is not in it; one covering two of three is
    low_one = np.zeros((30, 2, 1), bool)
    low_one[0::3] = True
    low_two = low_one | np.roll(low_one, 1, axis=0)
    assert not tilt_slices(low_one, np.zeros(2), 9, False, subslices=3).any()
    assert tilt_slices(low_two, np.zeros(2), 9, False, subslices=3)[:, 0, 0].sum() == 9


@pytest.mark.parametrize("tilt", [20.0, -15.0])
def test_gantry_tilt_shears_the_head_along_the_table(tilt):
    """A tilted gantry's slices, stacked along the table: each row of the head sits lower in the stack by
    its row's height y tan(tilt); the whole head stays covered; the patient and the masks' volumes stay."""
    from radhe.datasets import _head

    flat = generate_case(2, 8, SMALL, None, return_arrays=True, scanner="randomised")
    tilted = generate_case(2, 8, SMALL, None, return_arrays=True, scanner="randomised",
                           gantry_tilt_deg=(tilt, tilt))
    dx, dy, dz = tilted["spacing"]
    assert tilted["spacing"] == flat["spacing"]
    shifts = _head.gantry_tilt_shifts(tilt, tilted["head"], dz)
    rows = tilted["head"].crop[0]
    assert np.allclose(np.diff(shifts[rows]), dy * np.tan(np.deg2rad(tilt)) / dz)
    assert shifts.min() == 0.0
    assert tilted["ct"].shape[0] == flat["ct"].shape[0] + int(np.ceil(shifts.max()))
    # the intracranial space's top slice, counted from the stack's top, moves down by each row's shift
    top = {}
    for name, case in (("flat", flat), ("tilted", tilted)):
        inside = case["head"].to_full(case["head"].intracranial, False)
        present = inside.any(axis=2)                                  # (z, y)
        top[name] = np.where(present.any(axis=0), inside.shape[0] - 1 - np.argmax(present[::-1], axis=0), -1)
    has = top["flat"] >= 0
    assert has.sum() > 40
    from_top = {name: np.where(has, (case["ct"].shape[0] - 1) - top[name], 0)
                for name, case in (("flat", flat), ("tilted", tilted))}
    # (the tilted head is rendered in thinner slices: its top moves by up to one slice more or less)
    moved = from_top["tilted"][has] - from_top["flat"][has] - shifts[has]
    assert np.abs(moved).max() <= 1.5 and abs(np.mean(moved)) < 0.5
    # nothing of the head is cut: a sheared grid keeps the head's volume; the mask is the volume's
    for key in ("intracranial", "parenchyma"):
        assert getattr(tilted["head"], key).sum() == pytest.approx(getattr(flat["head"], key).sum(), rel=0.03)
    voxel_ml = dx * dy * dz / 1000.0
    assert tilted["mask"].sum() * voxel_ml == pytest.approx(tilted["row"]["baseline_volume_ml"], abs=0.006)
    assert tilted["row"]["baseline_volume_ml"] == pytest.approx(flat["row"]["baseline_volume_ml"], rel=0.1)
    assert tilted["head"].parenchyma[tilted["mask"][(slice(None),) + tuple(tilted["head"].crop)]].all()
    patient = ("site", "age_years", "sex", "sbp_mmhg", "onset_to_ct_h", "anticoagulant", "location",
               *MARKER_COLUMNS)
    assert all(tilted["row"][k] == flat["row"][k] for k in patient)
    # the CT and its mask are moved alike: the mask is blood brighter than the brain around it, the same
    # mask two slices higher is not
    for case in (flat, tilted):
        mask = case["mask"]
        ring = ndimage.binary_dilation(mask, structure=np.ones((1, 5, 5), bool)) & ~mask
        brain = np.median(case["ct"][ring & case["head"].to_full(case["head"].parenchyma, False)])
        assert np.median(case["ct"][mask]) - brain > 20
        assert np.median(case["ct"][np.roll(mask, 2, axis=0) & ~mask]) - brain < 8


def test_gantry_tilt_range_is_drawn_per_case_and_checked(tmp_path):
    heights = {generate_case(i, 8, SMALL, None, return_arrays=True, scanner="randomised",
                             gantry_tilt_deg=(-25.0, 25.0))["ct"].shape[0]
               - generate_case(i, 8, SMALL, None, return_arrays=True, scanner="randomised")["ct"].shape[0]
               for i in range(4)}
    assert len(heights) > 1 and min(heights) >= 0
    manifest = make_ich_cohort(1, tmp_path / "c", shape=SMALL, scanner="randomised", gantry_tilt_deg=12.0,
                               random_state=8)
    image = sitk.ReadImage(manifest["image"].iloc[0])
    case = generate_case(0, 8, SMALL, None, return_arrays=True, scanner="randomised", gantry_tilt_deg=(12.0, 12.0))
    assert np.array_equal(sitk.GetArrayFromImage(image), case["ct"])
    assert image.GetOrigin() == pytest.approx(case["head"].origin)
    oracle = pd.read_csv(tmp_path / "c" / "oracle.csv")
    assert oracle["gantry_tilt_deg"].tolist() == [12.0] and case["gantry_tilt_deg"] == 12.0
    make_ich_cohort(1, tmp_path / "flat", shape=SMALL, scanner="randomised", random_state=8)
    assert "gantry_tilt_deg" not in pd.read_csv(tmp_path / "flat" / "oracle.csv").columns  # untilted: as before
    drawn = [generate_case(i, 8, SMALL, None, scanner="randomised", gantry_tilt_deg=(-25.0, 25.0))["gantry_tilt_deg"]
             for i in range(4)]
    assert all(-25 <= t <= 25 for t in drawn) and len(set(drawn)) == 4
    for bad in (31.0, (-31.0, 0.0), (10.0, 5.0), float("nan"), "steep", "10", True, (1.0, 2.0, 3.0)):
        with pytest.raises(ConfigurationError, match="gantry_tilt_deg"):
            make_ich_cohort(1, tmp_path, shape=SMALL, scanner="randomised", gantry_tilt_deg=bad)
    with pytest.raises(ConfigurationError, match="scanner='randomised'"):
        make_ich_cohort(1, tmp_path, shape=SMALL, gantry_tilt_deg=10.0)
