"""HematomaSegmenter and segmentation metrics (tiny U-Nets on small synthetic head CTs)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from _segdata import make_case, make_cohort

from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.io import read_image, write_image
from radhe.nn.segmenter import _patient_split, fallback_region
from radhe.segmentation import (
    HematomaSegmenter,
    dice_score,
    iou_score,
    postprocess,
    segmentation_metrics,
    skull_strip,
    slice_metrics,
)

TINY = dict(base_channels=4, levels=3, epochs=2, batch_size=16, learning_rate=5e-3, n_threads=1,
            random_state=0)


def _array(path):
    return sitk.GetArrayFromImage(read_image(path))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("segcohort"), 24, seed=1)


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    """A small U-Net trained on 18 cases (about 5 s on one thread), and its predictions on 6 others."""
    train, test = cohort.iloc[:18], cohort.iloc[18:]
    seg = HematomaSegmenter(base_channels=8, epochs=8, batch_size=16, learning_rate=5e-3, n_threads=1,
                            random_state=0, cache_dir=tmp_path_factory.mktemp("masks"))
    seg.fit(train)
    return seg, test, seg.transform(test)


# ------------------------------------------------------------------------------------------ metrics
def test_dice_and_iou_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 voxels
    b[:2, :] = True  # 8 voxels, 4 shared
    assert dice_score(a, b) == pytest.approx(2 * 4 / 12)
    assert iou_score(a, b) == pytest.approx(4 / 8)
    assert dice_score(a, a) == 1.0 and iou_score(a, a) == 1.0
    empty = np.zeros((4, 4), bool)
    assert dice_score(empty, empty) == 1.0 and iou_score(empty, empty) == 1.0
    assert dice_score(a, empty) == 0.0 and iou_score(a, empty) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        dice_score(a, np.zeros((3, 4)))


def test_slice_metrics_skip_empty_slices():
    truth = np.zeros((3, 5, 5), bool)
    pred = np.zeros((3, 5, 5), bool)
    truth[1, 1:3, 1:3] = True
    pred[1, 1:3, 1:4] = True
    pred[2, 0, 0] = True
    table = slice_metrics(truth, pred)
    assert list(table["slice"]) == [1, 2]
    assert table.loc[0, "dice"] == pytest.approx(2 * 4 / 10)
    assert table.loc[1, "dice"] == 0.0
    assert len(slice_metrics(truth, pred, include_empty=True)) == 3


def test_segmentation_metrics_case_patient_slice(tmp_path):
    truth = np.zeros((4, 8, 8), np.uint8)
    truth[1:3, 2:6, 2:6] = 1
    pred = truth.copy()
    pred[1, 2:6, 2:4] = 0  # lose 8 of 32 voxels
    rows = []
    for i, p in enumerate([truth, pred]):
        t_path = write_image(truth, tmp_path / f"t{i}.nii", spacing=(1, 1, 2))
        p_path = write_image(p, tmp_path / f"p{i}.nii", spacing=(1, 1, 2))
        rows.append({"case_id": f"c{i}", "patient_id": "same", "mask": str(t_path), "mask_pred": str(p_path)})
    manifest = pd.DataFrame(rows)
    cases = segmentation_metrics(manifest)
    assert cases["dice"].tolist() == pytest.approx([1.0, 2 * 24 / 56])
    assert cases["volume_true_ml"].tolist() == pytest.approx([32 * 2 / 1000] * 2)
    assert cases["volume_pred_ml"].iloc[1] == pytest.approx(24 * 2 / 1000)
    patients = segmentation_metrics(manifest, level="patient")
    assert len(patients) == 1 and patients.loc[0, "n_cases"] == 2
    assert patients.loc[0, "dice"] == pytest.approx(2 * 56 / 120)  # voxels pooled over the patient's cases
    slices = segmentation_metrics(manifest, level="slice")
    assert len(slices) == 4 and set(slices["case_id"]) == {"c0", "c1"}
    # a prediction on another grid is an input error naming the case, not a bare ValueError
    write_image(truth[:3], tmp_path / "short.nii", spacing=(1, 1, 2))
    write_image(truth, tmp_path / "coarse.nii", spacing=(1, 1, 4))
    for name in ("short.nii", "coarse.nii"):
        bad = manifest.assign(mask_pred=[manifest["mask_pred"][0], str(tmp_path / name)])
        with pytest.raises(InputError, match="case 'c1'.*does not match the reference"):
            segmentation_metrics(bad)


# ------------------------------------------------------------------------------ pre/post-processing
def test_postprocess_removes_small_components_and_fills_holes():
    mask = np.zeros((5, 20, 20), bool)
    mask[1:4, 3:12, 3:12] = True
    mask[2, 6:8, 6:8] = False  # a hole
    mask[2, 17, 17] = True  # a 1-voxel speck
    out = postprocess(mask, voxel_ml=0.01, min_component_ml=0.05, fill_holes=True)
    assert not out[2, 17, 17]
    assert out[2, 6:8, 6:8].all()
    assert out.sum() == 3 * 81
    two = np.zeros((5, 20, 20), bool)
    two[1:4, 1:6, 1:6] = True  # 75 voxels
    two[1:3, 10:13, 10:13] = True  # 18 voxels
    assert postprocess(two, 0.01, 0.0, False).sum() == 93
    assert postprocess(two, 0.01, 0.0, False, max_components=1).sum() == 75
    # only holes to fill: the caller's array stays as it was, and the result is a new array
    before = mask.copy()
    filled = postprocess(mask, voxel_ml=0.01, min_component_ml=0.0, fill_holes=True)
    assert filled[2, 6:8, 6:8].all() and filled is not mask
    np.testing.assert_array_equal(mask, before)
    empty = np.zeros_like(mask)
    assert postprocess(empty, 0.01, 0.0, True) is not empty


@pytest.mark.parametrize("seed", range(4))
def test_postprocess_on_the_masks_box_equals_scipy_on_the_whole_volume(seed):
    """Components and holes computed on the mask's bounding box are those of the whole volume,
    also for a mask touching the volume's border, holes open to it, and many specks."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((9, 40, 44)) < 0.55, iterations=1)
    mask[:, :, :3] = mask[:, :, :3] | (seed % 2 == 0)            # against the border in x
    mask[4, 10:20, 10:20] = True
    mask[4, 13:16, 13:16] = False                                 # a hole
    mask |= rng.random(mask.shape) < 0.003                        # specks
    mask[:, :2] = False
    voxel_ml = 0.002
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    keep = sizes * voxel_ml >= 0.01
    keep[0] = False
    keep[np.argsort(np.where(keep, sizes, -1))[::-1][3:]] = False
    expected = keep[labels]
    for z in range(expected.shape[0]):
        expected[z] = ndimage.binary_fill_holes(expected[z])
    expected = ndimage.binary_fill_holes(expected)
    out = postprocess(mask, voxel_ml, 0.01, True, max_components=3)
    assert out.shape == mask.shape and out.any()
    np.testing.assert_array_equal(out, expected)


def test_fallback_region_is_the_peak_component():
    prob = np.full((3, 10, 10), 0.01, np.float32)
    prob[1, 2:4, 2:4] = 0.3
    prob[1, 7, 7] = 0.2  # a separate, lower bump
    region = fallback_region(prob)
    assert region.sum() == 4 and region[1, 2:4, 2:4].all()


def test_skull_strip_keeps_brain_and_haematoma():
    ct, mask, _ = make_case(seed=3)
    brain = skull_strip(ct.astype(np.float32))
    assert not brain[ct > 300].any()  # no bone
    assert brain[mask.astype(bool)].all()  # the haematoma is inside
    assert not brain[ct < -500].any()  # no air


def test_patient_split_keeps_patients_together():
    patients = np.array(["a", "a", "b", "c", "c", "d", "e"])
    train, val = _patient_split(patients, 0.4, np.random.default_rng(0))
    assert set(patients[train]).isdisjoint(patients[val])
    assert len(train) + len(val) == len(patients) and len(val) > 0
    train, val = _patient_split(np.array(["a", "a"]), 0.5, np.random.default_rng(0))
    assert len(val) == 0 and len(train) == 2  # one patient: nothing to validate on


# ------------------------------------------------------------------------------------------- learning
def test_segmenter_learns_held_out_haematomas(trained):
    seg, test, out = trained
    assert list(out.index) == list(test.index)
    assert "mask_pred" in out.columns and "mask_pred" not in test.columns
    metrics = segmentation_metrics(out, level="patient")
    # an all-empty prediction scores 0; a trained tiny U-Net finds the bleed on held-out patients
    assert metrics["dice"].mean() > 0.75, metrics
    assert metrics["dice"].min() > 0.4, metrics
    state = dict(vars(seg))
    records = seg.prediction_records(test)
    assert vars(seg).keys() == state.keys()  # transform and its records leave fitted state alone
    assert (records["status"] == "ok").all() and list(records.index) == list(test.index)
    assert records["path"].tolist() == out["mask_pred"].tolist()
    assert seg.history_["val_dice"].notna().all() and 1 <= seg.best_epoch_ <= len(seg.history_)
    assert set(seg.train_cases_).isdisjoint(seg.validation_cases_)
    assert seg.score(test) == pytest.approx(metrics["dice"].mean(), abs=1e-6)


def test_predicted_masks_match_image_geometry_and_live_in_cache(trained, tmp_path):
    seg, test, out = trained
    for image_path, mask_path in zip(test["image"], out["mask_pred"], strict=True):
        image, mask = read_image(image_path), read_image(mask_path)
        assert mask.GetSize() == image.GetSize()
        assert np.allclose(mask.GetSpacing(), image.GetSpacing())
        assert str(seg.cache_dir) in mask_path and seg.fingerprint_ in mask_path
        assert set(np.unique(sitk.GetArrayViewFromImage(mask))) <= {0, 1}


def test_case_ids_never_share_a_mask_file(trained):
    seg, test, _ = trained
    X = test.iloc[:2].copy()
    X["case_id"] = ["site a/01", "site_a_01"]  # the same file name once made path-safe
    out = seg.transform(X)
    assert out["mask_pred"].nunique() == 2
    for image, path in zip(X["image"], out["mask_pred"], strict=True):
        assert np.array_equal(_array(path), seg.predict_mask(image)[0])
    X["case_id"] = ["same", "same"]  # two images under one id: refused, not silently overwritten
    with pytest.raises(InputError, match="case 'same'.*not unique"):
        seg.transform(X)


def test_transform_reuses_the_mask_of_an_unchanged_image_only(trained, tmp_path):
    """A fixed model predicts each file once (a CV over a pretrained segmenter); a changed file is predicted anew."""
    seg, test, _ = trained
    seg = joblib.load(_dump(seg, tmp_path))
    seg.set_params(cache_dir=tmp_path / "m")
    case = test.iloc[:1].copy()
    case["image"] = str(shutil.copy(case["image"].iloc[0], tmp_path / "ct.nii"))
    path = Path(seg.transform(case)["mask_pred"].iloc[0])
    first = path.stat().st_mtime_ns
    assert seg.transform(case)["mask_pred"].iloc[0] == str(path)
    assert path.stat().st_mtime_ns == first  # reused, not rewritten
    assert seg.prediction_records(case)["status"].tolist() == ["ok"]

    # the same path, other content (another case's CT): predicted again, never the stale mask
    other = test.iloc[1]
    shutil.copy(other["image"], case["image"].iloc[0])
    again = seg.transform(case)["mask_pred"].iloc[0]
    assert Path(again).stat().st_mtime_ns != first
    assert np.array_equal(_array(again), seg.predict_mask(other["image"])[0])

    # a deleted mask, or a record of another image: predicted again
    Path(again).unlink()
    assert Path(seg.transform(case)["mask_pred"].iloc[0]).is_file()
    moved = case.assign(image=str(shutil.copy(other["image"], tmp_path / "ct2.nii")))
    out = seg.transform(moved)["mask_pred"].iloc[0]
    assert json.loads(Path(out + ".json").read_text())["image"] == moved["image"].iloc[0]


def test_reused_prediction_raises_the_image_warnings_again_and_respects_its_settings(trained, tmp_path):
    from test_io import _write_dicom_series

    seg, _, _ = trained
    seg = joblib.load(_dump(seg, tmp_path))
    seg.set_params(cache_dir=tmp_path / "m")
    ct, _, spacing = make_case(seed=5)
    folder = tmp_path / "dcm"
    _write_dicom_series(folder, ct, spacing, "1.2.826.0.1.3680043.2.1125.2")  # a DICOM folder of two series
    _write_dicom_series(folder, ct[:3], spacing, "1.2.826.0.1.3680043.2.1125.3")
    case = pd.DataFrame({"case_id": ["d1"], "patient_id": ["d1"], "image": [str(folder)]})
    with pytest.warns(InputWarning, match="2 DICOM series"):
        path = Path(seg.transform(case)["mask_pred"].iloc[0])
    first = path.stat().st_mtime_ns
    with pytest.warns(InputWarning, match="2 DICOM series"):  # reused, and the reader's warning raised again
        seg.transform(case)
    assert path.stat().st_mtime_ns == first
    record = json.loads(Path(f"{path}.json").read_text())
    assert record["load_warnings"][0][0] == "radhe.errors.InputWarning"
    assert record["reuse_key"]["image_stamp"]["files"]  # a folder is stamped by every file in it

    # a setting outside the weights' fingerprint that changes the prediction, or another radhe version
    for change in ({"hu_check": False}, {"inference_precision": "bfloat16"}):
        other = joblib.load(_dump(seg, tmp_path))
        other.set_params(**change)
        assert other._fingerprint() == seg._fingerprint()
        with pytest.warns(InputWarning):
            other.transform(case)
        assert path.stat().st_mtime_ns != first, change
        first = path.stat().st_mtime_ns
    record = json.loads(Path(f"{path}.json").read_text())
    record["reuse_key"]["version"] = -1
    Path(f"{path}.json").write_text(json.dumps(record))
    with pytest.warns(InputWarning):
        seg.transform(case)
    assert path.stat().st_mtime_ns != first


def test_fit_is_deterministic_and_pickles(cohort, tmp_path):
    train, test = cohort.iloc[:8], cohort.iloc[20:22]
    a = HematomaSegmenter(**TINY, cache_dir=tmp_path / "a").fit(train)
    b = HematomaSegmenter(**TINY, cache_dir=tmp_path / "b").fit(train)
    assert a.fingerprint_ == b.fingerprint_
    for key in a.model_state_:
        assert np.array_equal(a.model_state_[key].numpy(), b.model_state_[key].numpy()), key
    out_a, out_b = a.transform(test), b.transform(test)
    for pa, pb in zip(out_a["mask_pred"], out_b["mask_pred"], strict=True):
        assert np.array_equal(_array(pa), _array(pb))
    c = HematomaSegmenter(**{**TINY, "random_state": 1}).fit(train)
    assert c.fingerprint_ != a.fingerprint_  # another seed: other weights, other mask folder

    # joblib round trip: the loaded estimator predicts the same masks without the training data
    joblib.dump(a, tmp_path / "seg.joblib")
    loaded = joblib.load(tmp_path / "seg.joblib")
    loaded.set_params(cache_dir=tmp_path / "loaded")
    out_l = loaded.transform(test)
    for pa, pl in zip(out_a["mask_pred"], out_l["mask_pred"], strict=True):
        assert np.array_equal(_array(pa), _array(pl))
    assert loaded.fingerprint_ == a.fingerprint_


def test_no_haematoma_predicted_is_reported(trained, tmp_path):
    seg, test, _ = trained
    case = test.iloc[:1]
    strict = joblib.load(_dump(seg, tmp_path))
    strict.set_params(threshold=1.0, cache_dir=tmp_path / "m")  # no probability reaches it: empty prediction
    with pytest.warns(InputWarning, match=r"case 'c01018'.*no haematoma predicted.*most probable region"):
        out = strict.transform(case)
    assert strict.prediction_records(case)["status"].tolist() == ["fallback"]
    assert _array(out["mask_pred"].iloc[0]).sum() > 0  # never an empty mask -> zero features

    strict.set_params(on_empty="warn")
    with pytest.warns(InputWarning, match="wrote an empty mask"):
        out = strict.transform(case)
    assert strict.prediction_records(case)["status"].tolist() == ["empty"]
    assert _array(out["mask_pred"].iloc[0]).sum() == 0

    strict.set_params(on_empty="raise")
    with pytest.raises(InputError, match="case 'c01018'.*no haematoma predicted"):
        strict.transform(case)

    # many cases: one warning for the call, one line per case (not one warning per case)
    strict.set_params(on_empty="fallback")
    with pytest.warns(InputWarning) as caught:
        strict.transform(test)
    named = [w for w in caught if issubclass(w.category, InputWarning)]
    assert len(named) == 1
    text = str(named[0].message)
    assert text.startswith(f"HematomaSegmenter: no haematoma predicted in {len(test)} of {len(test)} case(s):")
    assert all(f"case '{c}': no haematoma predicted" in text for c in test["case_id"])


def test_tiny_and_absent_haematomas(trained, tmp_path):
    seg, _, _ = trained
    tiny = make_cohort(tmp_path / "tiny", 2, seed=7, radii=[1.0, 0.0])
    assert tiny["vol"].tolist()[1] == 0 and 0 < tiny["vol"].tolist()[0] <= 8
    seg = joblib.load(_dump(seg, tmp_path))
    seg.set_params(cache_dir=tmp_path / "m")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = seg.transform(tiny.drop(columns=["mask"]))
    status = seg.prediction_records(tiny).set_index("case_id")["status"]
    # a case without haematoma is either predicted empty (then reported, never silent) or not
    for case_id, st in status.items():
        if st != "ok":
            assert any(case_id in str(w.message) for w in caught)
    assert all(_array(p).sum() > 0 for p in out["mask_pred"])
    # fit accepts a case whose mask is a single voxel
    HematomaSegmenter(**TINY, validation_fraction=0).fit(tiny.iloc[:1])


def _dump(seg, tmp_path):
    path = tmp_path / "copy.joblib"
    joblib.dump(seg, path)
    return path


# --------------------------------------------------------------------------------------- inputs
def test_fit_input_errors(cohort):
    with pytest.raises(InputError, match="lacks column"):
        HematomaSegmenter(**TINY).fit(cohort.drop(columns=["mask"]))
    no_masks = cohort.iloc[:2].assign(mask=None)
    with pytest.raises(InputError, match="no case has a 'mask'"):
        HematomaSegmenter(**TINY).fit(no_masks)
    with pytest.raises(InputError, match="DataFrame"):
        HematomaSegmenter(**TINY).fit(np.zeros((3, 3)))
    for bad in ({"on_empty": "ignore"}, {"window": (80, 0)}, {"output_format": "npz"}):
        with pytest.raises(ConfigurationError):
            HematomaSegmenter(**{**TINY, **bad}).fit(cohort.iloc[:2])


def test_cases_without_mask_are_skipped_with_warning(cohort):
    part = cohort.iloc[:4].copy()
    part.loc[part.index[0], "mask"] = None
    with pytest.warns(InputWarning, match="1 case"):
        seg = HematomaSegmenter(**TINY, validation_fraction=0).fit(part)
    assert part["case_id"].iloc[0] not in seg.train_cases_


def test_options_skull_strip_context_resize(cohort, tmp_path):
    seg = HematomaSegmenter(**TINY, skull_strip=True, context=1, input_size=32, window=(0, 100),
                            cache_dir=tmp_path).fit(cohort.iloc[:6])
    out = seg.transform(cohort.iloc[20:21])
    mask = read_image(out["mask_pred"].iloc[0])
    assert mask.GetSize() == read_image(cohort["image"].iloc[20]).GetSize()
    assert seg.model_state_["encoders.0.0.weight"].shape[1] == 3  # 2 * context + 1 input channels


def test_bf16_inference_agrees_with_float32(trained, tmp_path):
    seg, test, _ = trained
    seg = joblib.load(_dump(seg, tmp_path))
    fp32 = seg.set_params(inference_precision="float32")
    m32 = [fp32.predict_mask(p)[0] for p in test["image"]]
    bf16 = joblib.load(_dump(seg, tmp_path)).set_params(inference_precision="bfloat16")
    m16 = [bf16.predict_mask(p)[0] for p in test["image"]]
    assert min(dice_score(a, b) for a, b in zip(m32, m16, strict=True)) > 0.95


@pytest.mark.slow
def test_segmenter_reaches_dice_090_on_held_out_cases(tmp_path):
    cohort = make_cohort(tmp_path, 40, shape=(16, 96, 96), seed=2)
    train, test = cohort.iloc[:32], cohort.iloc[32:]
    seg = HematomaSegmenter(base_channels=8, epochs=25, learning_rate=5e-3, n_threads=2, random_state=0,
                            cache_dir=tmp_path / "m",
                            max_fit_time=600)
    out = seg.fit(train).transform(test)
    metrics = segmentation_metrics(out, level="patient")
    assert metrics["dice"].mean() >= 0.90, metrics


def test_volume_agreement_uses_volumetry(trained):
    pytest.importorskip("radhe.volumetry")
    from radhe.segmentation import volume_agreement

    _, _, out = trained
    agreement = volume_agreement(segmentation_metrics(out))
    assert agreement["n"] == len(out)
    assert agreement["pearson_r"] > 0.8  # predicted volumes track the true ones


def test_fallback_region_is_empty_where_no_region_stands_out():
    flat = np.full((4, 10, 10), 0.2, np.float32)
    assert not fallback_region(flat).any()  # every voxel at the peak: the whole volume is no region
    mostly = flat.copy()
    mostly[0, :3] = 0.1  # 30 of 400 voxels lower: the peak's region still holds most of the volume
    assert not fallback_region(mostly).any()
    peaked = np.full((4, 10, 10), 0.01, np.float32)
    peaked[1, 2:6, 2:6] = 0.3
    assert fallback_region(peaked).sum() == 16
    assert not fallback_region(peaked, max_voxels=15).any() and fallback_region(peaked, max_voxels=16).sum() == 16


def test_a_network_with_flat_probabilities_writes_named_empty_masks_not_the_head(trained, tmp_path):
    """An untrained or failed network (here: its output layer zeroed, every voxel the same probability) has
    no most probable region: the fallback writes an empty mask and says so, not a mask of the whole scan."""
    import torch

    seg, test, _ = trained
    flat = joblib.load(_dump(seg, tmp_path))
    state = dict(flat.model_state_)
    state["head.weight"] = torch.zeros_like(state["head.weight"])
    state["head.bias"] = torch.full_like(state["head.bias"], -0.5)  # probability 0.38 everywhere
    flat.model_state_ = state
    flat.set_params(cache_dir=tmp_path / "flat", brain_only=False)
    case = test.iloc[:1]
    with pytest.warns(InputWarning, match=r"no region stands out to fall back to .* wrote an empty mask"):
        out = flat.transform(case)
    assert flat.prediction_records(case)["status"].tolist() == ["empty"]
    assert _array(out["mask_pred"].iloc[0]).sum() == 0


def test_segmenter_feature_names_are_the_manifest_columns_and_the_mask(trained):
    seg, test, out = trained
    assert list(seg.get_feature_names_out()) == list(out.columns)
    assert list(seg.get_feature_names_out(["case_id", "image"])) == ["case_id", "image", "mask_pred"]
    assert seg.n_features_in_ == len(out.columns) - 1
