"""RadiomicsFeatures: equal to plain pyradiomics, scikit-learn contract, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import make_ct_volume
from sklearn.base import clone

from radhe.errors import ConfigurationError, InputError
from radhe.features.radiomics import PRESETS, RadiomicsFeatures, preset_params

pytest.importorskip("radiomics")


def _write_case(folder, name, image, mask):
    img_path, msk_path = folder / f"{name}_img.nii", folder / f"{name}_msk.nii"
    sitk.WriteImage(image, str(img_path))
    sitk.WriteImage(mask, str(msk_path))
    return str(img_path), str(msk_path)


def _lumpy_case(seed, shape=(12, 64, 64), spacing=(0.5, 0.5, 5.0)):
    """A CT-like volume with an irregular haematoma (not a sphere: diameters are less regular)."""
    from scipy import ndimage

    image, mask = make_ct_volume(shape=shape, spacing=spacing, seed=seed, blob_radius_vox=7 + seed % 3)
    rng = np.random.default_rng(seed)
    m = sitk.GetArrayFromImage(mask).astype(bool)
    noise = ndimage.gaussian_filter(rng.normal(size=m.shape), (0.5, 2, 2)) > 0.1
    m = ndimage.binary_dilation(m, iterations=2) & (noise | m)
    lab, n = ndimage.label(m)
    if n > 1:
        m = lab == 1 + int(np.argmax(ndimage.sum(m, lab, range(1, n + 1))))
    out = sitk.GetImageFromArray(m.astype(np.uint8))
    out.CopyInformation(image)
    return image, out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("radiomics_cohort")
    rows = []
    for i in range(4):
        img, msk = _write_case(folder, f"c{i}", *_lumpy_case(i))
        rows.append({"case_id": f"ich{i:04d}", "image": img, "mask": msk, "age_years": 60 + i})
    # A non-default index: output rows must follow it.
    return pd.DataFrame(rows, index=[10, 11, 12, 13])


def _plain(image, mask, params=None):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    extractor = RadiomicsFeatureExtractor(params) if params is not None else RadiomicsFeatureExtractor()
    out = extractor.execute(image, mask)
    return {k: float(v) for k, v in out.items() if not k.startswith("diagnostics_")}


def _assert_same(ours: pd.Series, ref: dict, rtol=1e-6):
    names = [n[len("radiomics__"):] for n in ours.index]
    assert names == list(ref), "feature names/order differ from pyradiomics"
    a = ours.to_numpy(dtype=float)
    b = np.array([ref[n] for n in names])
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
    rel = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b) / scale)
    worst = int(np.argmax(rel))
    assert rel.max() <= rtol, f"{names[worst]}: {a[worst]!r} vs pyradiomics {b[worst]!r}"


def test_equals_pyradiomics_default_params(cohort):
    out = RadiomicsFeatures().fit_transform(cohort)
    assert list(out.index) == list(cohort.index)
    assert out.shape == (4, 107)
    assert all(c.startswith("radiomics__") for c in out.columns)
    assert "radiomics__original_glcm_Contrast" in out.columns
    assert not any("diagnostics" in c for c in out.columns)
    for idx, case in cohort.iterrows():
        _assert_same(out.loc[idx], _plain(case["image"], case["mask"]))


def test_equals_pyradiomics_with_filters(tmp_path):
    """Filters computed on a crop around the ROI (LoG, wavelet, gradient) and on the whole image."""
    from radhe.features._radiomics_engine import _filter_region, _image_type_margin

    image, mask = _lumpy_case(5, shape=(10, 160, 160))
    img, msk = _write_case(tmp_path, "f", image, mask)
    sigmas = [0.5, 0.75]
    # the case is large enough that LoG and wavelet really run on a crop (in-plane)
    bbox = np.array([60, 100, 60, 100, 3, 7])
    for kind, kw in (("LoG", {"sigma": sigmas}), ("Wavelet", {})):
        region, _ = _filter_region(image, bbox, _image_type_margin(kind, kw, image.GetSpacing()))
        assert region.GetSize()[0] < 160 and region.GetSize()[1] < 160
    params = {
        "setting": {"binWidth": 10, "label": 1},
        "imageType": {"Original": {}, "LoG": {"sigma": sigmas}, "Wavelet": {}, "Gradient": {},
                      "Square": {}},
        "featureClass": {"firstorder": None, "glcm": ["Contrast", "Correlation", "JointEntropy"],
                         "glszm": None, "shape": None},
    }
    X = pd.DataFrame({"case_id": ["f"], "image": [img], "mask": [msk]})
    out = RadiomicsFeatures(params).fit_transform(X)
    assert any("log-sigma-0-5-mm-3D" in c for c in out.columns)
    assert any("wavelet-HLH" in c for c in out.columns)
    _assert_same(out.iloc[0], _plain(img, msk, params))


@pytest.mark.parametrize("pixel_type", [sitk.sitkInt16, sitk.sitkUInt8, sitk.sitkFloat32, sitk.sitkFloat64])
def test_log_in_box_is_bit_identical_to_simpleitk(pixel_type):
    """The box-restricted LoG equals SimpleITK's whole-image filter cut to the box, bit for bit."""
    from radhe.features._radiomics_engine import laplacian_of_gaussian_in_box

    rng = np.random.default_rng(int(pixel_type))
    values = rng.normal(40, 25, (9, 37, 45))
    image = sitk.Cast(sitk.GetImageFromArray(np.clip(values, 0, 255)), pixel_type)
    image.SetSpacing((0.7, 0.45, 4.5))
    image.SetOrigin((-12.0, 3.5, 40.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    # boxes inside, touching each border, a single voxel and the whole image
    boxes = [(10, 30, 5, 20, 2, 6), (0, 44, 0, 3, 0, 8), (44, 44, 36, 36, 8, 8), (0, 44, 0, 36, 0, 8)]
    for sigma in (0.5, 2.0, 5.0):
        lrgif = sitk.LaplacianRecursiveGaussianImageFilter()
        lrgif.SetNormalizeAcrossScale(True)
        lrgif.SetSigma(sigma)
        whole = lrgif.Execute(image)
        for box in boxes:
            x0, x1, y0, y1, z0, z1 = box
            ours = laplacian_of_gaussian_in_box(image, np.array(box), sigma)
            expected = sitk.Crop(whole, [x0, y0, z0], [44 - x1, 36 - y1, 8 - z1])
            assert ours.GetPixelID() == expected.GetPixelID() == sitk.sitkFloat32
            assert ours.GetSize() == expected.GetSize()
            np.testing.assert_array_equal(ours.GetOrigin(), expected.GetOrigin())
            assert ours.GetDirection() == expected.GetDirection() and ours.GetSpacing() == expected.GetSpacing()
            a, b = sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(expected)
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), (sigma, box, np.abs(a - b).max())


def test_log_on_the_margin_crop_matches_the_whole_volume():
    """LoG on the ROI box plus 24 sigma equals the whole volume's LoG but for rare last-bit changes."""
    from radhe.features._radiomics_engine import _log_images

    rng = np.random.default_rng(3)
    values = np.where(rng.random((12, 150, 140)) < 0.02, 1200.0, rng.normal(35, 8, (12, 150, 140)))
    image = sitk.GetImageFromArray(values.astype(np.int16))
    image.SetSpacing((0.5, 0.5, 5.0))
    bbox = np.array([60, 80, 70, 85, 4, 7])
    kwargs = {"sigma": [0.5, 1.0]}
    compared = equal = 0
    for filtered, name, _, inner in _log_images(image, bbox, kwargs):
        assert filtered.GetSize() == (21, 16, 4)              # only the box is computed
        assert list(inner) == [0, 20, 0, 15, 0, 3]
        sigma = 0.5 if name == "log-sigma-0-5-mm-3D" else 1.0
        whole = sitk.LaplacianRecursiveGaussianImageFilter()
        whole.SetNormalizeAcrossScale(True)
        whole.SetSigma(sigma)
        reference = sitk.GetArrayFromImage(whole.Execute(image))[4:8, 70:86, 60:81]
        ours = sitk.GetArrayFromImage(filtered)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=4 * np.spacing(np.abs(reference).max()))
        compared += ours.size
        equal += int((ours == reference).sum())
    assert equal >= 0.99 * compared


def test_numpy_bin_edges_equal_pyradiomics_and_are_scoped():
    from radiomics import imageoperations

    from radhe.features._radiomics_engine import numpy_bin_edges

    original = imageoperations.getBinEdges
    rng = np.random.default_rng(0)
    cases = [
        (rng.normal(-3, 40, 5000).astype(np.float32), {"binWidth": 25}),
        (rng.normal(0.5, 0.3, 777), {"binWidth": 0.2}),
        (rng.integers(-1024, 3000, 999).astype(np.int16), {"binWidth": 25}),
        (np.full(10, 75.0), {"binWidth": 25}),                      # flat: one bin
        (np.array([-0.0, 0.0, 12.5]), {}),                          # default width, signed zero
        (np.array([12.5, 0.0, -0.0]), {"binWidth": 25}),            # the other zero first
        (np.array([3.0, -0.0, 0.0], dtype=np.float32), {"binWidth": 2}),
        (rng.normal(0, 1, 50), {"binCount": 16}),                    # bin count: pyradiomics' own path
        (np.array([3.0, np.nan, 1.0]), {"binWidth": 1}),             # NaN: pyradiomics' own path
    ]
    with numpy_bin_edges():
        patched = imageoperations.getBinEdges
        assert patched is not original
        with numpy_bin_edges():                                      # re-entrant
            assert imageoperations.getBinEdges is patched
        for values, kwargs in cases:
            ours, theirs = patched(values, **kwargs), original(values, **kwargs)
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
            np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))
            assert np.asarray(ours).dtype == np.asarray(theirs).dtype
        with pytest.raises(ValueError):
            patched(np.array([], dtype=float), binWidth=25)          # as pyradiomics: empty sequence
    assert imageoperations.getBinEdges is original


def test_resampling_and_normalisation_settings(cohort):
    params = {
        "setting": {"binWidth": 0.2, "normalize": True, "resampledPixelSpacing": [1, 1, 2],
                    "interpolator": "sitkBSpline", "label": 1},
        "imageType": {"Original": {}},
        "featureClass": {"firstorder": None, "shape": None, "glrlm": None},
    }
    case = cohort.iloc[1]
    out = RadiomicsFeatures(params).fit_transform(cohort.iloc[[1]])
    _assert_same(out.iloc[0], _plain(case["image"], case["mask"], params))


def test_ibsi_phantom_equals_pyradiomics(shared_data):
    folder = shared_data / "ibsi"
    img, msk = str(folder / "digital_phantom_image.nii.gz"), str(folder / "digital_phantom_mask.nii.gz")
    params = str(folder / "pyradiomics_params_phantom.yml")
    X = pd.DataFrame({"case_id": ["phantom"], "image": [img], "mask": [msk]})
    out = RadiomicsFeatures(params, hu_check=False).fit_transform(X)  # the phantom's values are 1..9, not HU
    _assert_same(out.iloc[0], _plain(img, msk, params))


def test_mesh_coefficients_equal_pyradiomics_c_code():
    """Surface, volume and the four maximum diameters, on irregular and degenerate masks."""
    from radiomics import cShape
    from scipy import ndimage

    from radhe.features._radiomics_engine import mesh_coefficients

    rng = np.random.default_rng(0)
    masks = []
    for i in range(6):
        m = ndimage.gaussian_filter(rng.normal(size=(8 + i, 30, 26)), 2) > 0.05
        masks.append(m)
    masks.append(np.zeros((1, 9, 9), bool))
    masks[-1][0, 2:7, 3:5] = True  # one slice
    masks.append(np.zeros((5, 1, 1), bool))
    masks[-1][:, 0, 0] = True  # a line
    for m in masks:
        padded = np.pad(m, 1)
        for spacing in (np.array([5.0, 0.45, 0.49]), np.array([1.0, 1.0, 1.0])):
            ref_s, ref_v, ref_d = cShape.calculate_coefficients(padded.astype(bool), spacing)
            s, v, d = mesh_coefficients(padded, spacing)
            np.testing.assert_allclose(s, ref_s, rtol=1e-12)
            np.testing.assert_allclose(v, ref_v, rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(d, ref_d)  # the same pair, the same expression


def test_fit_then_transform_equals_fit_transform(cohort):
    a = RadiomicsFeatures().fit_transform(cohort)
    rf = RadiomicsFeatures().fit(cohort)
    assert rf.n_features_in_ == cohort.shape[1]
    b = rf.transform(cohort)
    pd.testing.assert_frame_equal(a, b)
    c = rf.transform(cohort.iloc[[2, 0]])
    assert list(c.index) == [12, 10]
    pd.testing.assert_frame_equal(c, a.loc[[12, 10]])


def test_sklearn_contract(cohort):
    rf = RadiomicsFeatures("ibsi_default", n_jobs=1, cache=None, on_error="skip")
    params = rf.get_params()
    assert params["params"] == "ibsi_default" and params["on_error"] == "skip"
    cloned = clone(rf)
    assert cloned.get_params() == params and cloned is not rf
    rf.set_params(label=1)
    X = cohort.iloc[:2]
    out = rf.set_output(transform="pandas").fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    names = rf.get_feature_names_out()
    assert list(names) == list(out.columns) and len(names) == 107
    with pytest.raises(Exception, match="not fitted"):
        RadiomicsFeatures().transform(X)
    default = RadiomicsFeatures().set_output(transform="default").fit(X).transform(X)
    assert default.shape == (2, 107)


def test_params_from_yaml_file_equal_dict(cohort, tmp_path):
    import yaml

    params = preset_params("ibsi_default")
    params["featureClass"] = {"firstorder": ["Mean", "Energy"], "glcm": ["Contrast"]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    X = cohort.iloc[:1]
    a = RadiomicsFeatures(params).fit_transform(X)
    b = RadiomicsFeatures(str(path)).fit_transform(X)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["radiomics__original_firstorder_Mean", "radiomics__original_firstorder_Energy",
                               "radiomics__original_glcm_Contrast"]


def test_presets_and_bad_params(cohort):
    assert {"ibsi_default", "teng2021"} <= set(PRESETS)
    from radhe.features.radiomics import _resolve

    cfg = _resolve("teng2021")
    assert set(cfg.image_types) == {"Original", "LoG", "Wavelet"}
    with pytest.raises(ConfigurationError, match="preset"):
        RadiomicsFeatures("no_such_preset").fit(cohort)
    with pytest.raises(ConfigurationError, match="invalid pyradiomics parameters"):
        RadiomicsFeatures({"setting": {"binWidth": "wide"}}).fit(cohort)
    with pytest.raises(ConfigurationError, match="on_error"):
        RadiomicsFeatures(on_error="ignore").fit(cohort)


@pytest.fixture(scope="module")
def bad_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    image, mask = _lumpy_case(1)
    good = _write_case(folder, "good", image, mask)
    arr = sitk.GetArrayFromImage(mask)
    out = {}
    for name, values in (("empty", np.zeros_like(arr)), ("one_voxel", _one_voxel(arr)), ("label2", arr * 2)):
        m = sitk.GetImageFromArray(values)
        m.CopyInformation(mask)
        out[name] = _write_case(folder, name, image, m)
    shifted = sitk.Image(mask)
    shifted.SetOrigin((5.0, 0.0, 0.0))
    out["geometry"] = _write_case(folder, "geometry", image, shifted)
    return good, out


def _one_voxel(arr):
    v = np.zeros_like(arr)
    v[5, 20, 20] = 1
    return v


@pytest.mark.parametrize("kind, message", [
    ("empty", "empty mask"), ("one_voxel", "covers 1 voxel"), ("label2", "label 1 not present"),
    ("geometry", r"mask origin \(5, 0, 0\) != image origin"),
])
def test_bad_case_raises_input_error_naming_case(bad_cases, kind, message):
    good, bad = bad_cases
    X = pd.DataFrame({"case_id": ["ok1", f"bad_{kind}"], "image": [good[0], bad[kind][0]],
                      "mask": [good[1], bad[kind][1]]})
    with pytest.raises(InputError, match=f"case 'bad_{kind}'.*{message}") as raised:
        RadiomicsFeatures().fit_transform(X)
    assert raised.value.path == str(bad[kind][1])  # a mask problem names the mask file


def test_on_error_skip_gives_nan_rows_and_failures(bad_cases):
    good, bad = bad_cases
    kinds = ["empty", "one_voxel", "label2", "geometry"]
    images = [bad[k][0] for k in kinds] + [good[0], "/no/such/file.nii"]
    masks = [bad[k][1] for k in kinds] + [good[1], good[1]]
    ids = [f"bad_{k}" for k in kinds] + ["ok", "missing"]
    X = pd.DataFrame({"case_id": ids, "image": images, "mask": masks}, index=list("abcdef"))
    rf = RadiomicsFeatures(on_error="skip")
    out = rf.fit_transform(X)
    assert list(out.index) == list("abcdef")
    assert out.loc[["a", "b", "c", "d", "f"]].isna().all().all()
    assert out.loc["e"].notna().all()
    assert list(rf.failures_["case_id"]) == ids[:4] + ["missing"]
    assert rf.failures_["problem"].str.len().gt(0).all()
    # transform with the fitted names: the good row equals a clean extraction
    ref = RadiomicsFeatures().fit_transform(X.loc[["e"]])
    pd.testing.assert_frame_equal(out.loc[["e"]], ref)
    assert list(rf.failures_.index) == list("abcdf")  # failures are labelled with X's index
    # fit alone stops at the first case that extracts; the ones it skipped on the way are recorded
    fitted = RadiomicsFeatures(on_error="skip").fit(X)
    assert list(fitted.failures_.index) == list("abcd")


def test_geometry_tolerance_of_one_extractor_does_not_leak_into_the_next(bad_cases):
    _, bad = bad_cases
    X = pd.DataFrame({"case_id": ["shifted"], "image": [bad["geometry"][0]], "mask": [bad["geometry"][1]]})
    tolerant = RadiomicsFeatures({"setting": {"geometryTolerance": 10.0}}).fit_transform(X)
    assert tolerant.notna().all().all()
    with pytest.raises(InputError, match="mask origin"):
        RadiomicsFeatures().fit_transform(X)


def test_truncated_image_is_refused_not_zero_filled(bad_cases, tmp_path):
    good, _ = bad_cases
    data = open(good[0], "rb").read()
    truncated = tmp_path / "truncated.nii"
    truncated.write_bytes(data[: len(data) * 2 // 3])  # SimpleITK alone would read it, zero-filled
    X = pd.DataFrame({"case_id": ["ok", "cut"], "image": [good[0], str(truncated)], "mask": [good[1], good[1]]})
    with pytest.raises(InputError, match="case 'cut'.*truncated"):
        RadiomicsFeatures().fit_transform(X)
    rf = RadiomicsFeatures(on_error="skip")
    out = rf.fit_transform(X)
    assert out.iloc[1].isna().all() and "truncated" in rf.failures_["problem"].iloc[0]


def test_missing_mask_column_or_value(cohort):
    with pytest.raises(InputError, match="lacks column"):
        RadiomicsFeatures(mask_column="mask_pred").fit(cohort)
    X = cohort.iloc[:2].copy()
    X["mask"] = [X["mask"].iloc[0], None]
    with pytest.raises(InputError, match="case 'ich0001'.*no 'mask' path"):
        RadiomicsFeatures().fit_transform(X)


def test_custom_columns_and_label(cohort, tmp_path):
    X = cohort.iloc[:1].rename(columns={"image": "ct", "mask": "seg"})
    arr = sitk.ReadImage(X["seg"].iloc[0])
    relabelled = sitk.Cast(arr, sitk.sitkUInt8) * 3
    path = tmp_path / "seg3.nii"
    sitk.WriteImage(relabelled, str(path))
    X["seg"] = [str(path)]
    out = RadiomicsFeatures(image_column="ct", mask_column="seg", label=3).fit_transform(X)
    ref = RadiomicsFeatures().fit_transform(cohort.iloc[:1])
    np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), rtol=1e-12)


def test_progress_bar_only_when_verbose(cohort, capsys):
    X = pd.concat([cohort, cohort.assign(case_id=cohort["case_id"] + "b")], ignore_index=True)  # 8 cases
    RadiomicsFeatures(verbose=False).fit_transform(X)
    assert capsys.readouterr().err == ""
    RadiomicsFeatures(verbose=True).fit_transform(X)
    err = capsys.readouterr().err
    assert "radiomics" in err and "8/8" in err


@pytest.mark.slow
def test_parallel_equals_sequential(cohort):
    a = RadiomicsFeatures(n_jobs=1).fit_transform(cohort)
    b = RadiomicsFeatures(n_jobs=2).fit_transform(cohort)
    pd.testing.assert_frame_equal(a, b)


def test_radhe_never_changes_the_level_of_the_radiomics_logger(cohort, capfd):
    """pyradiomics' own console handler is kept to errors while radhe extracts; the user's logging is theirs."""
    import logging

    import radiomics

    logger = logging.getLogger("radiomics")
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    mine = Collect(level=logging.DEBUG)
    old_level = logger.level
    logger.addHandler(mine)
    logger.setLevel(logging.DEBUG)
    try:
        RadiomicsFeatures().fit_transform(cohort.iloc[:2])
        assert logger.level == logging.DEBUG  # untouched
        assert records, "the user's handler receives pyradiomics' messages"
        assert not radiomics.handler.filters  # radhe's filter is gone after the extraction
        assert "GLCM is symmetrical" not in capfd.readouterr().err  # pyradiomics' own console stayed quiet
    finally:
        logger.removeHandler(mine)
        logger.setLevel(old_level)
