"""Hostile inputs to segmentation metrics and volumetry: masks on other grids, arrays that are not
masks, volumes that are not volumes. Each is refused with an InputError naming the case and the file
(or the position of the volume), never scored or measured as if it were valid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radhe.errors import InputError
from radhe.io.validation import GEOMETRY_TOLERANCE_MM
from radhe.segmentation import segmentation_metrics, volume_agreement
from radhe.volumetry import abc2_volume_ml, compare_volumes, mask_volume_ml

SPACING = (0.8, 0.8, 3.0)
ORIGIN = (-20.0, -15.0, -9.0)


def _reference_array():
    """An asymmetric haematoma (an L in x): mirroring it in x moves voxels, so a misread order shows."""
    arr = np.zeros((5, 12, 16), np.uint8)
    arr[1:4, 3:9, 2:6] = 1
    arr[1:4, 3:5, 6:11] = 1
    return arr


def _image(arr, spacing=SPACING, origin=ORIGIN, direction=None):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def _write(img, path):
    sitk.WriteImage(img, str(path))
    return str(path)


def _manifest(ref_path, pred_path, case_id="c1"):
    return pd.DataFrame({"case_id": [case_id], "mask": [ref_path], "mask_pred": [pred_path]})


# ------------------------------------------------------------------------------- segmentation_metrics
def test_prediction_stored_in_another_voxel_order_scores_as_the_same_mask(tmp_path):
    """The reference saved again with the x axis reversed (direction -1, origin at the other end):
    the same voxels in space, so Dice 1 and the same slices, not Dice 0."""
    ref = _image(_reference_array())
    ref_path = _write(ref, tmp_path / "ref.nii")
    flipped = _image(_reference_array()[:, :, ::-1].copy(), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    flipped.SetOrigin(ref.TransformIndexToPhysicalPoint((ref.GetSize()[0] - 1, 0, 0)))
    pred_path = _write(flipped, tmp_path / "pred_flipped.nii")

    cases = segmentation_metrics(_manifest(ref_path, pred_path))
    assert cases.loc[0, "dice"] == pytest.approx(1.0) and cases.loc[0, "iou"] == pytest.approx(1.0)
    assert cases.loc[0, "volume_pred_ml"] == pytest.approx(cases.loc[0, "volume_true_ml"])
    slices = segmentation_metrics(_manifest(ref_path, pred_path), level="slice")
    assert slices["slice"].tolist() == [1, 2, 3] and (slices["dice"] == 1.0).all()
    # the caller's files are left as they were
    assert sitk.ReadImage(pred_path).GetDirection()[0] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"origin": (ORIGIN[0] + 10 * SPACING[0], ORIGIN[1], ORIGIN[2])}, "origin"),   # 10 voxels away
        ({"spacing": (SPACING[1], SPACING[0] * 1.25, SPACING[2] / 1.25)}, "spacing"),  # same voxel volume
        ({"direction": tuple(sitk.VersorTransform((0, 0, 1), np.radians(10)).GetMatrix())}, "direction"),
    ],
)
def test_prediction_on_another_grid_is_refused_naming_case_and_file(tmp_path, change, what):
    """Same array shape, and (for spacing) the same voxel volume: the old check let all three through
    and scored voxels at other places in space as if they overlapped."""
    arr = _reference_array()
    ref_path = _write(_image(arr), tmp_path / "ref.nii")
    pred_path = _write(_image(arr, **{"spacing": SPACING, "origin": ORIGIN, **change}), tmp_path / "pred.nii")
    with pytest.raises(InputError, match=f"case 'c1'.*does not match the reference.*{what}") as info:
        segmentation_metrics(_manifest(ref_path, pred_path))
    assert info.value.case_id == "c1" and info.value.path == pred_path
    assert pred_path in str(info.value) and ref_path in str(info.value)


def test_grid_tolerance_is_the_one_of_load_checked_case(tmp_path):
    """Within GEOMETRY_TOLERANCE_MM the two masks are one grid; beyond it they are not."""
    arr = _reference_array()
    ref_path = _write(_image(arr), tmp_path / "ref.nii")
    near = _write(_image(arr, origin=(ORIGIN[0] + GEOMETRY_TOLERANCE_MM / 2, *ORIGIN[1:])), tmp_path / "near.nii")
    far = _write(_image(arr, origin=(ORIGIN[0] + GEOMETRY_TOLERANCE_MM * 5, *ORIGIN[1:])), tmp_path / "far.nii")
    assert segmentation_metrics(_manifest(ref_path, near)).loc[0, "dice"] == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"origin .* \(tolerance 0\.001\)"):
        segmentation_metrics(_manifest(ref_path, far))


def test_missing_reference_or_prediction_names_which_mask(tmp_path):
    arr = _reference_array()
    ref_path = _write(_image(arr), tmp_path / "ref.nii")
    with pytest.raises(InputError, match="case 'a': no reference mask: the manifest's 'mask' cell holds None"):
        segmentation_metrics(_manifest(None, ref_path, case_id="a"))
    with pytest.raises(InputError, match="case 'a': no predicted mask: the manifest's 'mask_pred' cell"):
        segmentation_metrics(_manifest(ref_path, float("nan"), case_id="a"))
    gone = str(tmp_path / "gone.nii")
    with pytest.raises(InputError, match="case 'a': reference mask: file not found") as info:
        segmentation_metrics(_manifest(gone, ref_path, case_id="a"))
    assert gone in str(info.value)
    broken = tmp_path / "broken.nii"
    broken.write_bytes(b"not an image")
    with pytest.raises(InputError, match="case 'a': predicted mask: ") as info:
        segmentation_metrics(_manifest(ref_path, str(broken), case_id="a"))
    assert str(broken) in str(info.value)


def test_volume_agreement_names_the_case_of_a_bad_volume():
    metrics = pd.DataFrame({"case_id": ["p1", "p2", "p3", "p4"], "volume_true_ml": [1.0, 2.0, 3.0, 4.0],
                            "volume_pred_ml": [1.1, -2.0, 3.2, 3.9]})
    with pytest.raises(InputError, match=r"position 1 \('p2'\): estimate_ml -2"):
        volume_agreement(metrics)
    with pytest.raises(InputError, match=r"position 1 \('p2'\)"):
        volume_agreement(metrics.set_index("case_id"))  # as radhe.evaluation passes it


# ------------------------------------------------------------------------------------ volumetry arrays
def _probability_map():
    prob = np.zeros((10, 20, 20), np.float32)
    prob[3:7, 5:15, 5:15] = 0.9
    return prob + np.float32(0.01)  # background 0.01: every voxel non-zero


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (_probability_map(), "non-integer values"),
        (np.where(np.arange(4000).reshape(10, 20, 20) == 7, np.nan, 0.0), "non-integer values"),  # NaN
        (np.full((10, 20, 20), -1000.0), "negative values"),                                    # a CT
        (np.full((10, 20, 20), 3, np.int16), "no background voxel"),
        (np.arange(4000, dtype=np.int32).reshape(10, 20, 20), "distinct values"),
    ],
    ids=["probability_map", "nan", "ct", "no_background", "many_values"],
)
def test_an_array_gets_the_checks_of_a_mask_file(tmp_path, array, problem):
    """The same data as a file is refused; as an array it was measured (the whole volume, NaN as blood)."""
    path = tmp_path / "m.nrrd"
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(img, str(path))
    with pytest.raises(InputError, match=problem) as from_file:
        mask_volume_ml(path)
    for measure in (mask_volume_ml, abc2_volume_ml):
        with pytest.raises(InputError, match=problem) as from_array:
            measure(array, spacing=(1.0, 1.0, 1.0))
        assert from_array.value.problem == from_file.value.problem


def test_an_array_with_one_other_label_is_refused_as_the_file_is(tmp_path):
    arr = np.zeros((4, 10, 10), np.uint8)
    arr[1:3, 2:6, 2:6] = 255  # a binary mask saved as 0/255
    path = tmp_path / "m255.nii"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.raises(InputError, match="label 1 not present"):
        mask_volume_ml(path, label=1)
    with pytest.raises(InputError, match="label 1 not present"):
        mask_volume_ml(arr, spacing=(1, 1, 1), label=1)
    assert mask_volume_ml(arr, spacing=(1, 1, 1)) == mask_volume_ml(path) == pytest.approx(32 / 1000)


# ------------------------------------------------------------------------------------- compare_volumes
def test_infinite_and_negative_volumes_are_refused_naming_their_positions():
    with pytest.raises(InputError, match="position 2: reference_ml inf"):
        compare_volumes([10.0, 20.0, np.inf, 40.0, 50.0], [11.0, 19.0, 30.0, 42.0, 55.0])
    with pytest.raises(InputError, match="position 2: estimate_ml -30"):
        compare_volumes([10, 20, 30, 40, 50], [11, 19, -30, 42, 55])
    with pytest.raises(InputError, match=r"2 pair\(s\).*position 1 \('b'\): reference_ml -inf.*"
                                         r"position 3 \('d'\): estimate_ml inf"):
        compare_volumes(pd.Series([10.0, -np.inf, 30.0, 40.0], index=list("abcd")),
                        pd.Series([11.0, 19.0, 33.0, np.inf], index=list("abcd")))
    # NaN still marks a missing measurement: that pair is dropped, as documented
    out = compare_volumes([10.0, 20.0, np.nan, 40.0, 50.0], [11.0, 19.0, 30.0, 42.0, 55.0])
    assert out["n"] == 4 and np.isfinite(out["icc"]) and np.isfinite(out["loa_lower"])
