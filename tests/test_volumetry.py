"""Volumetry on synthetic spheres and ellipsoids of known analytic volume."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from radhe.errors import InputError
from radhe.volumetry import ICC_FORM, _icc_2_1, abc2_volume_ml, compare_volumes, mask_volume_ml


def ellipsoid_mask(semi_mm, spacing, shape, centre_offset=(0.0, 0.0, 0.0)):
    """Binary ellipsoid in (z, y, x) order; ``semi_mm`` and ``spacing`` are (x, y, z)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cz, cy, cx = ((s - 1) / 2 for s in shape)
    qx = ((x - cx) * spacing[0] - centre_offset[0]) / semi_mm[0]
    qy = ((y - cy) * spacing[1] - centre_offset[1]) / semi_mm[1]
    qz = ((z - cz) * spacing[2] - centre_offset[2]) / semi_mm[2]
    return (qx**2 + qy**2 + qz**2) <= 1.0


def analytic_ml(semi_mm):
    return 4.0 / 3.0 * np.pi * np.prod(semi_mm) / 1000.0


@pytest.mark.parametrize(
    ("semi", "spacing", "shape", "tol"),
    [
        ((15.0, 15.0, 15.0), (0.5, 0.5, 0.5), (70, 70, 70), 0.01),      # 14.1 mL sphere, isotropic
        ((30.0, 20.0, 45.0), (0.45, 0.45, 5.0), (22, 100, 140), 0.02),   # CT-like anisotropic voxels
        ((12.0, 8.0, 10.0), (0.9, 0.9, 4.8), (8, 24, 32), 0.08),         # 4 mL on a coarse grid
    ],
)
def test_planimetric_volume_matches_analytic(semi, spacing, shape, tol):
    mask = ellipsoid_mask(semi, spacing, shape, centre_offset=(0.13, -0.21, 0.37))
    got = mask_volume_ml(mask, spacing=spacing)
    assert got == pytest.approx(analytic_ml(semi), rel=tol)


def test_planimetric_accepts_images_paths_and_labels(tmp_path):
    spacing = (0.5, 0.5, 2.0)
    mask = ellipsoid_mask((10.0, 10.0, 10.0), spacing, (14, 50, 50)).astype(np.uint8)
    expected = mask.sum() * 0.5 * 0.5 * 2.0 / 1000.0
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing(spacing)
    path = tmp_path / "m.nii"
    sitk.WriteImage(image, str(path))
    assert mask_volume_ml(image) == pytest.approx(expected)
    assert mask_volume_ml(path) == pytest.approx(expected)
    assert mask_volume_ml(str(path)) == pytest.approx(expected)
    labelled = mask * 2
    labelled[0, 0, 0] = 1
    assert mask_volume_ml(labelled, spacing=spacing, label=2) == pytest.approx(expected)
    assert mask_volume_ml(labelled, spacing=spacing, label=1) == pytest.approx(0.5 * 0.5 * 2.0 / 1000.0)
    with pytest.raises(InputError, match="spacing"):
        mask_volume_ml(mask)
    with pytest.raises(InputError):
        mask_volume_ml(mask[0], spacing=spacing)


def test_abc2_on_an_ellipsoid():
    semi, spacing, shape = (30.0, 20.0, 45.0), (0.45, 0.45, 5.0), (20, 100, 140)
    mask = ellipsoid_mask(semi, spacing, shape)
    truth = analytic_ml(semi)
    unweighted, d = abc2_volume_ml(mask, spacing=spacing, slice_weighting=False, return_details=True)
    # A and B are the in-plane diameters; ABC/2 = (pi/6 -> 1/2) is 4.5 % low for an ellipsoid
    assert d["A_mm"] == pytest.approx(60.0, abs=1.5)
    assert d["B_mm"] == pytest.approx(40.0, abs=1.5)
    assert d["C_mm"] == pytest.approx(90.0, abs=5.0)
    assert unweighted == pytest.approx(truth * 3.0 / np.pi, rel=0.06)
    assert unweighted == pytest.approx(truth, rel=0.10)
    # Kothari's weighting counts tapering slices at most half: ~2/3 of a smooth ellipsoid
    weighted, dw = abc2_volume_ml(mask, spacing=spacing, return_details=True)
    assert set(np.unique(dw["slice_weights"])) <= {0.0, 0.5, 1.0}
    assert 0.6 * truth < weighted < 0.75 * truth
    assert dw["reference_slice"] == int(np.argmax(mask.sum(axis=(1, 2))))


def test_abc2_axis_b_is_perpendicular_to_a():
    # an ellipse rotated by 30 degrees in-plane, 8 slices high (a cylinder)
    spacing = (0.5, 0.5, 5.0)
    y, x = np.mgrid[:160, :160]
    u = (x - 79.5) * 0.5
    v = (y - 79.5) * 0.5
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    ellipse = ((c * u + s * v) / 30.0) ** 2 + ((-s * u + c * v) / 12.0) ** 2 <= 1
    mask = np.repeat(ellipse[None], 8, axis=0)
    vol, d = abc2_volume_ml(mask, spacing=spacing, return_details=True)
    assert d["A_mm"] == pytest.approx(60.0, abs=1.2)
    assert d["B_mm"] == pytest.approx(24.0, abs=1.2)
    assert d["C_mm"] == pytest.approx(40.0)
    assert vol == pytest.approx(60.0 * 24.0 * 40.0 / 2000.0, rel=0.05)


def test_abc2_empty_and_single_voxel():
    spacing = (1.0, 1.0, 5.0)
    empty = np.zeros((4, 10, 10), dtype=bool)
    assert abc2_volume_ml(empty, spacing=spacing) == 0.0
    one = empty.copy()
    one[2, 5, 5] = True
    vol, d = abc2_volume_ml(one, spacing=spacing, return_details=True)
    assert d["A_mm"] == pytest.approx(np.sqrt(2.0))
    assert d["C_mm"] == 5.0
    assert vol > 0


def test_compare_volumes_identities():
    ref = np.array([3.0, 8.0, 12.5, 20.0, 33.0, 60.0])
    same = compare_volumes(ref, ref)
    assert same["pearson_r"] == pytest.approx(1.0)
    assert same["icc"] == pytest.approx(1.0)
    assert same["mean_difference"] == 0.0 and same["sd_difference"] == 0.0
    assert same["wilcoxon_p"] == 1.0
    assert same["icc_form"] == ICC_FORM

    shifted = compare_volumes(ref, ref + 2.0)
    assert shifted["mean_difference"] == pytest.approx(2.0)
    assert shifted["mean_absolute_difference"] == pytest.approx(2.0)
    assert shifted["loa_lower"] == pytest.approx(2.0) and shifted["loa_upper"] == pytest.approx(2.0)
    assert shifted["pearson_r"] == pytest.approx(1.0)
    assert shifted["icc"] < 1.0                   # absolute agreement penalises a bias

    rng = np.random.default_rng(0)
    est = ref * 1.3 + rng.normal(0, 1.0, ref.size)
    out = compare_volumes(np.append(ref, np.nan), np.append(est, 5.0))
    assert out["n"] == ref.size
    d = est - ref
    assert out["sd_difference"] == pytest.approx(d.std(ddof=1))
    assert out["loa_upper"] - out["loa_lower"] == pytest.approx(2 * 1.96 * d.std(ddof=1))
    assert 0 < out["wilcoxon_p"] <= 1


def test_icc_matches_shrout_fleiss_example():
    # Shrout & Fleiss (1979), Table 2: six targets, four judges; ICC(2,1) = 0.29
    y = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    assert _icc_2_1(y) == pytest.approx(0.29, abs=0.005)


def test_compare_volumes_errors():
    with pytest.raises(InputError):
        compare_volumes([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InputError):
        compare_volumes([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])


def test_compare_volumes_pairs_series_by_index():
    import pandas as pd

    ref = pd.Series([10.0, 20.0, 30.0, 40.0], index=["a", "b", "c", "d"])
    shuffled = ref.iloc[::-1] + 1.0  # every estimate 1 mL above its own reference, listed in reverse
    out = compare_volumes(ref, shuffled)
    assert out["mean_difference"] == pytest.approx(1.0) and out["sd_difference"] == pytest.approx(0.0)
    with pytest.raises(InputError, match="different indexes"):
        compare_volumes(ref, pd.Series([1.0, 2.0, 3.0, 4.0], index=list("wxyz")))


def test_abc2_measures_axial_slices_whatever_order_the_file_stores_them_in(tmp_path):
    """The same haematoma stored with permuted and reversed axes (as reformats and converters write
    them): ABC/2 is measured on the axial slices, so every storage order gives the same estimate."""
    spacing = (0.45, 0.6, 5.0)
    mask = ellipsoid_mask((25.0, 12.0, 14.0), spacing, (120, 110, 14), centre_offset=(3.0, -2.0, 1.0))
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(spacing)
    expected, details = abc2_volume_ml(image, return_details=True)
    assert details["C_mm"] % 2.5 == 0  # slices of 5 mm, weighted 0, 0.5 or 1
    for code in ("RAI", "PLS", "SLP", "IRA"):
        path = tmp_path / f"{code}.nii"
        sitk.WriteImage(sitk.DICOMOrient(image, code), str(path))
        stored = sitk.ReadImage(str(path))
        assert (stored.GetSize() == image.GetSize()) == (code == "RAI")  # axes permuted, except RAI
        # (NIfTI keeps the spacing in float32)
        assert abc2_volume_ml(path) == pytest.approx(expected, rel=1e-6), code
        assert abc2_volume_ml(stored, slice_weighting=False) == pytest.approx(
            abc2_volume_ml(image, slice_weighting=False), rel=1e-6), code
        assert mask_volume_ml(path) == pytest.approx(mask_volume_ml(image), rel=1e-6)


def test_abc2_is_that_of_the_physical_mask_whatever_the_voxel_order(tmp_path):
    """A mask mirrored in storage (``sitk.Flip`` updates origin and direction: the same physical
    mask) has the same A, B, C and reference slice. The reference slice is taken among two slices of
    the same largest area but different shapes, and the shape is irregular (A's direction oblique),
    where the first slice in storage order and B's strips anchored at one end of A changed the
    estimate by up to 10 % before."""
    rng = np.random.default_rng(3)
    mask = np.zeros((6, 40, 40), dtype=np.uint8)
    mask[2, 8:20, 10:22] = 1                                  # 144 px, a square
    mask[3, 5:25, 12:18] = 1                                  # an L of 120 + 24 px: same area, other shape
    mask[3, 22:25, 18:26] = 1
    mask[4][rng.random((40, 40)) < 0.04] = 1                  # scattered: a smaller slice
    blob = ellipsoid_mask((4.0, 3.0, 6.0), (0.5, 0.7, 5.0), (6, 40, 40), centre_offset=(1.2, -0.8, 0.0))
    mask[1] = blob[3]                                         # an oblique ellipse, smaller
    areas = mask.sum(axis=(1, 2))
    assert areas[2] == areas[3] == areas.max() and (areas == areas.max()).sum() == 2
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((0.5, 0.7, 5.0))
    expected, details = abc2_volume_ml(image, return_details=True)
    for flips in ([True, False, False], [False, True, False], [False, False, True], [True, True, True]):
        mirrored = sitk.Flip(image, flips)
        assert not np.array_equal(sitk.GetArrayFromImage(mirrored), mask)
        volume, other = abc2_volume_ml(mirrored, return_details=True)
        assert volume == pytest.approx(expected, rel=1e-12), flips
        assert (other["A_mm"], other["B_mm"], other["C_mm"]) == pytest.approx(
            (details["A_mm"], details["B_mm"], details["C_mm"]), rel=1e-12)
        assert other["reference_slice"] == details["reference_slice"]
        assert mask_volume_ml(mirrored) == mask_volume_ml(image)


def test_a_sheared_voxel_grid_is_refused_not_measured(tmp_path):
    """An uncorrected gantry tilt kept as a sheared direction (NRRD keeps it): count × spacing is
    not the voxel volume (here 10 % high), so the one validation path refuses it, for masks and
    images alike, naming the file and the angle."""
    from radhe.io import validate_case

    tilt = np.deg2rad(25.0)
    mask = np.zeros((20, 40, 40), dtype=np.uint8)
    mask[5:15, 10:30, 10:30] = 1
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((0.5, 0.5, 5.0))
    image.SetDirection([1, 0, 0, 0, np.cos(tilt), 0, 0, np.sin(tilt), 1])
    sitk.WriteImage(image, str(tmp_path / "sheared.nrrd"))
    for call in (mask_volume_ml, abc2_volume_ml):
        with pytest.raises(InputError, match=r"not orthogonal.*25° off the right angle.*sheared.nrrd"):
            call(tmp_path / "sheared.nrrd")
    ct = sitk.Cast(image, sitk.sitkInt16) * 1100 - 1000
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    with pytest.raises(InputError, match=r"case 'c1'.*image's voxel axes are not orthogonal.*ct.nrrd"):
        validate_case(tmp_path / "ct.nrrd", None, case_id="c1")
    rotated = sitk.Image(image)  # an orthonormal rotation (a tilt corrected by rotating the grid) is fine
    rotated.SetDirection([1, 0, 0, 0, np.cos(tilt), -np.sin(tilt), 0, np.sin(tilt), np.cos(tilt)])
    assert mask_volume_ml(rotated) == pytest.approx(4000 * 0.5 * 0.5 * 5.0 / 1000)


def test_label_none_measures_every_non_zero_voxel_of_a_0_255_file(tmp_path):
    """``label=None`` asks for every non-zero voxel: a 0/255 file is measured, not refused; label 1 refuses it."""
    mask = np.zeros((6, 20, 20), dtype=np.uint8)
    mask[2:4, 5:15, 5:15] = 255
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((0.5, 0.5, 5.0))
    sitk.WriteImage(image, str(tmp_path / "m255.nii"))
    assert mask_volume_ml(tmp_path / "m255.nii") == pytest.approx(200 * 1.25 / 1000)
    assert abc2_volume_ml(tmp_path / "m255.nii") > 0
    with pytest.raises(InputError, match="its only label is 255"):
        mask_volume_ml(tmp_path / "m255.nii", label=1)
