"""A catalogue of hostile image and mask inputs, each through every path that reads images.

Every entry is a case built on disk from a clean CT and mask (real SimpleITK files). Each goes through
``validate_manifest`` (raise and skip), ``radhe validate`` (the CLI), :class:`RadiomicsFeatures`
(raise and skip, next to a clean case) and the loader of the deep-learning estimators
(:func:`radhe.nn.slices.load_case`); a few go through a fitted CNN embedder and segmenter too. An
entry expects a named :class:`~radhe.errors.InputError` (the case, the right file, the problem) or
acceptance with results identical to the clean case's. The catalogues of the tables and labels
(``test_hostile_tables.py``) and of caches, workers and saved models (``test_hostile_caches.py``)
complete it.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import make_ct_volume

from radhe.cli import main
from radhe.errors import InputError
from radhe.features.radiomics import RadiomicsFeatures
from radhe.io import load_checked_case, validate_manifest, write_image
from radhe.io.image import _process_locale_kept
from radhe.nn.slices import load_case

PARAMS = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": None, "shape": None, "glcm": None}}


@dataclass
class Hostile:
    """One hostile case: how to build it, and what every reader must do with it.

    ``error`` is a regex of the expected problem (None: the case is accepted); ``file`` says which
    file the error must name ("image" or "mask"); ``roi_ok`` marks mask problems that the ROI
    loader of the networks accepts (an empty mask is a case without a usable ROI there, not an
    error); ``same`` (accepted cases) asks for features identical to the clean case's.
    """

    name: str
    build: object
    error: str | None = None
    file: str = "image"
    roi_ok: bool = False
    same: bool = True


def _array(img):
    return sitk.GetArrayFromImage(img)


def _like(array, reference):
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(reference)
    return out


def _write(folder, name, image, mask, image_suffix=".nii.gz", mask_suffix=".nii.gz"):
    return (str(write_image(image, folder / f"{name}_ct{image_suffix}")),
            str(write_image(mask, folder / f"{name}_mask{mask_suffix}")))


def _clean(folder, image, mask):
    return _write(folder, "clean", image, mask)


# ------------------------------------------------------------------------------------ builders
def flipped_bytes_gz(folder, image, mask):
    img, msk = _write(folder, "flip", image, mask)
    data = bytearray(open(img, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])  # same length, corrupt
    open(img, "wb").write(bytes(data))
    return img, msk


def flipped_bytes_mask_gz(folder, image, mask):
    img, msk = _write(folder, "flipm", image, mask)
    data = bytearray(open(msk, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(msk, "wb").write(bytes(data))
    return img, msk


def crc_only_corrupt(folder, image, mask):
    img, msk = _write(folder, "crc", image, mask)
    data = bytearray(open(img, "rb").read())
    data[-8] ^= 0x01  # the stored CRC-32: the stream decompresses to the right bytes and length
    open(img, "wb").write(bytes(data))
    return img, msk


def uncompressed_named_gz(folder, image, mask):
    img, msk = _write(folder, "liar", image, mask, image_suffix=".nii")
    lying = img[: -len(".nii")] + ".nii.gz"
    shutil.move(img, lying)
    return lying, msk


def gzip_of_truncated_nifti(folder, image, mask):
    img, msk = _write(folder, "cutgz", image, mask, image_suffix=".nii")
    raw = open(img, "rb").read()
    target = img + ".gz"
    open(target, "wb").write(gzip.compress(raw[: len(raw) * 2 // 3]))
    return target, msk


def truncated_gz_stream(folder, image, mask):
    img, msk = _write(folder, "cutstream", image, mask)
    data = open(img, "rb").read()
    open(img, "wb").write(data[: len(data) * 3 // 4])
    return img, msk


def truncated_nii(folder, image, mask):
    img, msk = _write(folder, "cut", image, mask, image_suffix=".nii")
    data = open(img, "rb").read()
    open(img, "wb").write(data[: len(data) * 2 // 3])
    return img, msk


def empty_file(folder, image, mask):
    img, msk = _write(folder, "zero", image, mask)
    open(img, "wb").close()
    return img, msk


def text_file_as_image(folder, image, mask):
    img, msk = _write(folder, "text", image, mask)
    path = folder / "notes.nii"
    path.write_text("this is not an image\n")
    return str(path), msk


def missing_image(folder, image, mask):
    _, msk = _write(folder, "gone", image, mask)
    return str(folder / "no_such_ct.nii.gz"), msk


def missing_mask(folder, image, mask):
    img, _ = _write(folder, "gonem", image, mask)
    return img, str(folder / "no_such_mask.nii.gz")


def raw_counts(folder, image, mask):
    return _write(folder, "raw", _like((_array(image).astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16),
                                       image), mask)


def raw_counts_in_padding(folder, image, mask):
    """Stored values (HU + 1024, the rescale intercept lost) inside a field padded with -2000: the padding
    brought the minimum below -500 HU, and the scan passed as CT."""
    counts = _array(image).astype(np.int16) + 1024
    counts[:, :2, :] = -2000
    return _write(folder, "rawpad", _like(counts, image), mask)


def head_masked_without_air(folder, image, mask):
    """In HU, every voxel outside the head set to the padding value (a head-masked export): no air in the
    field, but its tissue is HU, not stored values: accepted."""
    hu = _array(image).astype(np.int16)
    hu[hu < -500] = -3024
    return _write(folder, "masked", _like(hu, image), mask)


def windowed_0_255(folder, image, mask):
    hu = _array(image).astype(float)
    return _write(folder, "win", _like(np.clip((hu + 20) / 120 * 255, 0, 255).astype(np.uint8), image), mask)


def normalised(folder, image, mask):
    hu = _array(image).astype(np.float32)
    return _write(folder, "norm", _like((hu - hu.mean()) / hu.std(), image), mask)


def _with_pixdim(path: str, axis: int, value: float) -> str:
    """``path`` (an uncompressed NIfTI-1) with ``pixdim[axis]`` (the voxel size along x, y, z) set to ``value``."""
    import struct

    data = bytearray(Path(path).read_bytes())
    struct.pack_into("<f", data, 76 + 4 * axis, value)
    Path(path).write_bytes(bytes(data))
    return path


def zero_voxel_size(folder, image, mask):
    img, msk = _write(folder, "pixdim0", image, mask, ".nii", ".nii")
    return _with_pixdim(img, 1, 0.0), msk


def nan_voxel_size_mask(folder, image, mask):
    img, msk = _write(folder, "pixdimnan", image, mask, ".nii", ".nii")
    return img, _with_pixdim(msk, 3, float("nan"))


def complex_image(folder, image, mask):
    hu = _array(image).astype(np.complex64)
    return _write(folder, "complex", _like(hu, image), mask, ".nrrd", ".nii.gz")


def nan_voxels(folder, image, mask):
    hu = _array(image).astype(np.float32)
    hu[0, :3, :3] = np.nan
    return _write(folder, "nan", _like(hu, image), mask)


def inf_voxels(folder, image, mask):
    hu = _array(image).astype(np.float32)
    hu[0, 0, 0] = np.inf
    return _write(folder, "inf", _like(hu, image), mask)


def nan_inside_roi(folder, image, mask):
    hu = _array(image).astype(np.float32)
    hu[_array(mask) > 0] = np.nan
    return _write(folder, "nanroi", _like(hu, image), mask)


def two_d_image(folder, image, mask):
    return _write(folder, "flat", image[:, :, 5], mask)


def single_slice(folder, image, mask):
    return _write(folder, "one", image[:, :, 5:6], mask[:, :, 5:6])


def four_d_image(folder, image, mask):
    volume = _array(image)
    four = sitk.JoinSeries([image, image])  # (x, y, z, t)
    assert four.GetDimension() == 4 and volume.ndim == 3
    return _write(folder, "four", four, mask)


def vector_image(folder, image, mask):
    vector = sitk.Compose(image, image, image)
    return _write(folder, "vec", vector, mask, image_suffix=".nrrd")


def probability_mask(folder, image, mask):
    return _write(folder, "prob", image, _like(_array(mask).astype(np.float32) * 0.7, mask))


def negative_labels(folder, image, mask):
    return _write(folder, "neg", image, _like(_array(mask).astype(np.int16) * -1, mask))


def ct_as_mask(folder, image, mask):
    img, _ = _write(folder, "ctmask", image, mask)
    return img, str(write_image(image, folder / "ctmask_mask.nii.gz"))


def same_file_as_mask(folder, image, mask):
    img, _ = _write(folder, "self", image, mask)
    return img, img


def positive_ct_as_mask(folder, image, mask):
    counts = (_array(image).astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16)
    img, _ = _write(folder, "posct", image, mask)
    return img, str(write_image(_like(counts, image), folder / "posct_mask.nii.gz"))


def many_valued_mask(folder, image, mask):
    values = np.arange(_array(mask).size, dtype=np.int32).reshape(_array(mask).shape) % 1000
    return _write(folder, "many", image, _like(values, mask))


def mask_without_background(folder, image, mask):
    return _write(folder, "full", image, _like(np.ones_like(_array(mask)), mask))


def folder_without_dicom(folder, image, mask):
    _, msk = _write(folder, "nodicom", image, mask)
    empty = folder / "not_a_series"
    empty.mkdir(exist_ok=True)
    (empty / "readme.txt").write_text("no DICOM here")
    return str(empty), msk


def dicom_series_folder(folder, image, mask):
    series = folder / "series"
    series.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # one series UID for every slice
    for z in range(image.GetDepth()):
        piece = image[:, :, z]
        piece.SetMetaData("0020|0013", str(z + 1))  # instance number
        piece.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")  # one series
        piece.SetMetaData("0020|0032", "\\".join(f"{v:g}" for v in image.TransformIndexToPhysicalPoint((0, 0, z))))
        piece.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        piece.SetMetaData("0008|0060", "CT")
        with _process_locale_kept():  # GDCM's writer sets the process locale to "C"
            writer.SetFileName(str(series / f"{z:03d}.dcm"))
            writer.Execute(piece)
    _, msk = _write(folder, "dicom", image, mask)
    return str(series), msk


def empty_mask(folder, image, mask):
    return _write(folder, "empty", image, _like(np.zeros_like(_array(mask)), mask))


def label_absent(folder, image, mask):
    return _write(folder, "lab2", image, _like(_array(mask) * 2, mask))


def label_map_without_label(folder, image, mask):
    labels = _array(mask) * 2
    labels[labels.shape[0] // 2, :2, :2] = 3  # another kind of blood: a label map with no haematoma label
    return _write(folder, "map23", image, _like(labels, mask))


def single_voxel(folder, image, mask):
    one = np.zeros_like(_array(mask))
    one[6, 20, 20] = 1
    return _write(folder, "voxel", image, _like(one, mask))


def line_of_voxels(folder, image, mask):
    line = np.zeros_like(_array(mask))
    line[6, 20, 15:25] = 1
    return _write(folder, "line", image, _like(line, mask))


def mask_size_mismatch(folder, image, mask):
    return _write(folder, "size", image, mask[:-2, :, :])


def mask_spacing_mismatch(folder, image, mask):
    moved = sitk.Image(mask)
    moved.SetSpacing((0.6, 0.5, 5.0))
    return _write(folder, "spacing", image, moved)


def mask_origin_far(folder, image, mask):
    moved = sitk.Image(mask)
    moved.SetOrigin((3.0, 0.0, 0.0))
    return _write(folder, "origin", image, moved)


def mask_direction_mismatch(folder, image, mask):
    moved = sitk.Image(mask)
    moved.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, -1))
    return _write(folder, "direction", image, moved)


def mask_2d(folder, image, mask):
    return _write(folder, "mask2d", image, mask[:, :, 6])


def vector_mask(folder, image, mask):
    return _write(folder, "maskvec", image, sitk.Compose(mask, mask), mask_suffix=".nrrd")


# accepted inputs: the results must equal the clean case's
def origin_within_tolerance(folder, image, mask):
    moved = sitk.Image(mask)
    moved.SetOrigin(tuple(o + 0.0005 for o in mask.GetOrigin()))
    return _write(folder, "tol", image, moved)


def spacing_within_tolerance(folder, image, mask):
    moved = sitk.Image(mask)
    moved.SetSpacing(tuple(s + 0.0004 for s in mask.GetSpacing()))
    return _write(folder, "tolsp", image, moved)


def float_binary_mask(folder, image, mask):
    return _write(folder, "fmask", image, _like(_array(mask).astype(np.float32), mask))


def int16_mask(folder, image, mask):
    return _write(folder, "i16", image, _like(_array(mask).astype(np.int16), mask))


def label_map_with_other_labels(folder, image, mask):
    labels = _array(mask).astype(np.uint8)
    labels[0, :4, :4] = 3  # another structure, ignored
    return _write(folder, "labels", image, _like(labels, mask))


def float_ct(folder, image, mask):
    return _write(folder, "float", _like(_array(image).astype(np.float32), image), mask)


def uncompressed_files(folder, image, mask):
    return _write(folder, "plain", image, mask, image_suffix=".nii", mask_suffix=".nii")


def nrrd_files(folder, image, mask):
    return _write(folder, "nrrd", image, mask, image_suffix=".nrrd", mask_suffix=".nrrd")


def mha_files(folder, image, mask):
    return _write(folder, "mha", image, mask, image_suffix=".mha", mask_suffix=".mha")


def unicode_path(folder, image, mask):
    sub = folder / "patiënt ü 患者"
    sub.mkdir(exist_ok=True)
    return _write(sub, "uni", image, mask)


def padded_ct(folder, image, mask):
    hu = _array(image).astype(np.int16)
    hu[:, :2, :] = -3024  # scanner padding outside the field of view: still HU
    return _write(folder, "pad", _like(hu, image), mask)


CATALOGUE = [
    Hostile("gzip with flipped bytes, right length", flipped_bytes_gz, r"corrupt"),
    Hostile("mask gzip with a flipped byte", flipped_bytes_mask_gz, r"corrupt", file="mask"),
    Hostile("gzip whose CRC does not match", crc_only_corrupt, r"CRC check failed"),
    Hostile("uncompressed NIfTI named .nii.gz", uncompressed_named_gz, r"not gzip-compressed"),
    Hostile("gzip of a truncated NIfTI", gzip_of_truncated_nifti, r"truncated"),
    Hostile("gzip stream cut short", truncated_gz_stream, r"truncated"),
    Hostile("truncated .nii", truncated_nii, r"truncated"),
    Hostile("empty file", empty_file, r"cannot read image"),
    Hostile("text file named .nii", text_file_as_image, r"cannot read image"),
    Hostile("image file missing", missing_image, r"file not found"),
    Hostile("mask file missing", missing_mask, r"file not found", file="mask"),
    Hostile("raw 0..4095 counts", raw_counts, r"do not look like CT in HU"),
    Hostile("raw counts in a padded field", raw_counts_in_padding,
            r"intensities \d+ to \d+ inside the field \(padding below -1500 aside\) do not look like CT in HU"),
    Hostile("0..255 windowed export", windowed_0_255, r"do not look like CT in HU"),
    Hostile("z-score normalised", normalised, r"do not look like CT in HU"),
    Hostile("NaN voxels", nan_voxels, r"9 NaN and 0 infinite voxel"),
    Hostile("inf voxel", inf_voxels, r"0 NaN and 1 infinite voxel"),
    Hostile("NaN inside the haematoma", nan_inside_roi, r"NaN"),
    Hostile("2-D image", two_d_image, r"image is 2-D"),
    Hostile("single-slice image", single_slice, r"single slice"),
    Hostile("4-D image", four_d_image, r"image is 4-D"),
    Hostile("vector image", vector_image, r"3 components per voxel"),
    Hostile("complex image", complex_image, r"complex voxels"),
    Hostile("NIfTI voxel size 0 (pixdim)", zero_voxel_size, r"voxel size of 0 along x"),
    Hostile("mask NIfTI voxel size NaN (pixdim)", nan_voxel_size_mask, r"voxel size of nan along z", file="mask"),
    Hostile("probability map as mask", probability_mask, r"non-integer values", file="mask"),
    Hostile("negative labels", negative_labels, r"negative values", file="mask"),
    Hostile("the CT given as mask", ct_as_mask, r"negative values|same voxel values", file="mask"),
    Hostile("mask path is the image path", same_file_as_mask, r"names the image file itself", file="mask"),
    Hostile("raw-count CT given as mask", positive_ct_as_mask, r"no background voxel", file="mask"),
    Hostile("CT-like mask with many values", many_valued_mask, r"distinct values", file="mask"),
    Hostile("mask labelling every voxel", mask_without_background, r"no background voxel", file="mask"),
    Hostile("image folder without DICOM", folder_without_dicom, r"no DICOM series"),
    Hostile("empty mask", empty_mask, r"empty mask", file="mask", roi_ok=True),
    Hostile("label absent", label_absent, r"label 1 not present", file="mask"),
    Hostile("label map without the label", label_map_without_label, r"label 1 not present", file="mask", roi_ok=True),
    Hostile("single-voxel mask", single_voxel, r"covers 1 voxel", file="mask", roi_ok=True),
    Hostile("one-dimensional line mask", line_of_voxels, r"extending along 1 axis", file="mask", roi_ok=True),
    Hostile("mask of another size", mask_size_mismatch, r"mask size .* != image size", file="mask"),
    Hostile("mask spacing differs", mask_spacing_mismatch, r"mask spacing .* != image spacing", file="mask"),
    Hostile("mask origin 3 mm away", mask_origin_far, r"mask origin .* != image origin", file="mask"),
    Hostile("mask direction flipped", mask_direction_mismatch, r"mask direction", file="mask"),
    Hostile("2-D mask", mask_2d, r"mask is 2-D", file="mask"),
    Hostile("vector mask", vector_mask, r"mask has 2 components", file="mask"),
    # accepted
    Hostile("mask origin +0.0005 mm (within tolerance)", origin_within_tolerance),
    Hostile("mask spacing +0.0004 mm (within tolerance)", spacing_within_tolerance),
    Hostile("float 0/1 mask", float_binary_mask),
    Hostile("int16 mask", int16_mask),
    Hostile("label map with another label", label_map_with_other_labels),
    Hostile("float32 CT", float_ct),
    Hostile("uncompressed NIfTI", uncompressed_files),
    Hostile("NRRD", nrrd_files),
    Hostile("MetaImage", mha_files),
    Hostile("unicode folder name", unicode_path),
    Hostile("DICOM series folder", dicom_series_folder),
    Hostile("scanner padding -3024 HU", padded_ct, same=False),
    Hostile("head-masked CT, no air in the field", head_masked_without_air, same=False),
]
IDS = [h.name for h in CATALOGUE]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    image, mask = make_ct_volume()
    built = {"clean": _clean(folder, image, mask)}
    for entry in CATALOGUE:
        built[entry.name] = entry.build(folder, image, mask)
    return built


@pytest.fixture(scope="module")
def clean_features(cases):
    img, msk = cases["clean"]
    return RadiomicsFeatures(PARAMS).fit_transform(pd.DataFrame({"case_id": ["clean"], "image": [img],
                                                                 "mask": [msk]}))


def _manifest(cases, entry):
    img, msk = cases[entry.name]
    clean_img, clean_msk = cases["clean"]
    return pd.DataFrame({"case_id": ["clean", "hostile"], "patient_id": ["p1", "p2"], "image": [clean_img, img],
                         "mask": [clean_msk, msk]}, index=[10, 20])


def _expected_file(cases, entry):
    img, msk = cases[entry.name]
    return msk if entry.file == "mask" else img


def _assert_named(exc: InputError, cases, entry):
    assert exc.case_id == "hostile"
    assert exc.path is not None and str(exc.path) == str(_expected_file(cases, entry)), (exc.path, str(exc))


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_validate_manifest(cases, entry):
    X = _manifest(cases, entry)
    if entry.error is None:
        report = validate_manifest(X)
        assert list(report.cases["status"]) == ["ok", "ok"]
        return
    with pytest.raises(InputError, match=entry.error) as raised:
        validate_manifest(X)
    _assert_named(raised.value, cases, entry)
    report = validate_manifest(X, on_error="skip")
    assert list(report.cases.index) == [10, 20] and list(report.cases["status"]) == ["ok", "skipped"]
    assert report.skipped["file"].iloc[0] == str(_expected_file(cases, entry))


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_radiomics_features(cases, entry, clean_features):
    X = _manifest(cases, entry)
    if entry.error is None:
        out = RadiomicsFeatures(PARAMS).fit_transform(X)
        assert out.notna().all().all()
        pd.testing.assert_frame_equal(out.iloc[[0]].reset_index(drop=True), clean_features.reset_index(drop=True))
        if entry.same:
            np.testing.assert_allclose(out.iloc[1].to_numpy(), clean_features.iloc[0].to_numpy(), rtol=1e-6)
        return
    with pytest.raises(InputError, match=entry.error) as raised:
        RadiomicsFeatures(PARAMS).fit_transform(X)
    _assert_named(raised.value, cases, entry)
    skipping = RadiomicsFeatures(PARAMS, on_error="skip")
    out = skipping.fit_transform(X)
    assert list(out.index) == [10, 20]
    assert out.loc[20].isna().all()
    np.testing.assert_allclose(out.loc[10].to_numpy(), clean_features.iloc[0].to_numpy(), rtol=1e-6)
    assert skipping.failures_["file"].tolist() == [str(_expected_file(cases, entry))]
    # transform reports the skip in a warning and leaves the fitted record alone
    state = skipping.failures_.copy()
    with pytest.warns(UserWarning, match="case 'hostile'"):
        again = skipping.transform(X)
    pd.testing.assert_frame_equal(again, out)
    pd.testing.assert_frame_equal(skipping.failures_, state)


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_network_loader(cases, entry):
    """What every deep-learning estimator reads a case through."""
    img, msk = cases[entry.name]
    clean = load_case(*cases["clean"], case_id="clean")
    if entry.error is None or entry.roi_ok:
        case = load_case(img, msk, case_id="hostile")
        assert case.hu.shape == clean.hu.shape
        if entry.error is None and entry.same:
            np.testing.assert_array_equal(case.hu, clean.hu)
            np.testing.assert_array_equal(case.mask, clean.mask)
        return
    with pytest.raises(InputError, match=entry.error) as raised:
        load_case(img, msk, case_id="hostile")
    _assert_named(raised.value, cases, entry)


CLI_ENTRIES = [h for h in CATALOGUE if h.name in {
    "gzip with flipped bytes, right length", "uncompressed NIfTI named .nii.gz", "0..255 windowed export",
    "NaN voxels", "4-D image", "the CT given as mask", "single-voxel mask", "mask origin +0.0005 mm (within tolerance)",
}]


@pytest.mark.parametrize("entry", CLI_ENTRIES, ids=[h.name for h in CLI_ENTRIES])
def test_cli_validate(cases, entry, tmp_path, capsys):
    path = tmp_path / "manifest.csv"
    _manifest(cases, entry).to_csv(path, index=False)
    status = main(["validate", "--manifest", str(path)])
    err = capsys.readouterr().err
    if entry.error is None:
        assert status == 0, err
        return
    assert status == 1 and "case 'hostile'" in err and str(_expected_file(cases, entry)) in err, err
    assert main(["validate", "--manifest", str(path), "--skip"]) == 3  # skipped: non-zero exit
    out = capsys.readouterr().out
    assert "1 valid, 1 skipped" in out


def test_hu_check_off_accepts_a_windowed_export_everywhere(cases, tmp_path, capsys):
    entry = next(h for h in CATALOGUE if h.name == "0..255 windowed export")
    X = _manifest(cases, entry)
    assert list(validate_manifest(X, hu_check=False).cases["status"]) == ["ok", "ok"]
    assert RadiomicsFeatures(PARAMS, hu_check=False).fit_transform(X).notna().all().all()
    assert load_case(*cases[entry.name], case_id="hostile", hu_check=False).hu.max() == 255
    path = tmp_path / "manifest.csv"
    X.to_csv(path, index=False)
    assert main(["validate", "--manifest", str(path), "--no-hu-check"]) == 0


def test_mask_within_tolerance_takes_the_image_grid(cases):
    entry = next(h for h in CATALOGUE if h.name.startswith("mask origin +0.0005"))
    loaded = load_checked_case(*cases[entry.name], case_id="hostile")
    clean = load_checked_case(*cases["clean"])
    assert loaded.mask.GetOrigin() == loaded.image.GetOrigin() == clean.image.GetOrigin()
    assert loaded.check.mask_voxels == clean.check.mask_voxels


def test_catalogue_size():
    assert len(CATALOGUE) >= 50
    assert sum(h.error is not None for h in CATALOGUE) >= 35


NETWORK_ENTRIES = ["NaN voxels", "0..255 windowed export", "gzip with flipped bytes, right length",
                   "the CT given as mask", "mask origin 3 mm away", "empty mask",
                   "label absent", "label map without the label"]


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    rows = []
    for seed in range(4):
        image, mask = make_ct_volume(seed=seed, blob_radius_vox=5 + seed)
        img, msk = _write(folder, f"t{seed}", image, mask)
        rows.append({"case_id": f"t{seed}", "patient_id": f"t{seed}", "image": img, "mask": msk, "he": seed % 2})
    return pd.DataFrame(rows)


def test_fitted_networks_refuse_hostile_cases_and_keep_their_state(cases, tiny_training):
    from radhe.nn import CNNEmbedder, HematomaSegmenter

    embedder = CNNEmbedder(epochs=1, crop_size=16, n_features=4, base_channels=4, depth=2, batch_size=8,
                           random_state=0, n_threads=1).fit(tiny_training, tiny_training["he"])
    segmenter = HematomaSegmenter(epochs=1, base_channels=4, levels=2, batch_size=8, random_state=0, n_threads=1,
                                  cache_dir=tiny_training["image"].iloc[0].rsplit("/", 1)[0] + "/pred")
    segmenter.fit(tiny_training)
    def fitted_state(estimator):  # the private network cache (``_net``) is not fitted state
        return {k for k in vars(estimator) if not k.startswith("_")}

    before = {"embedder": embedder.failures_.copy(), "keys": fitted_state(embedder), "seg": fitted_state(segmenter)}
    clean = embedder.transform(_manifest(cases, CATALOGUE[0]).iloc[:1])
    for name in NETWORK_ENTRIES:
        entry = next(h for h in CATALOGUE if h.name == name)
        X = _manifest(cases, entry)
        if entry.roi_ok:
            with pytest.warns(UserWarning, match="case 'hostile'"):
                out = embedder.transform(X)
            assert out.loc[20].isna().all() and np.allclose(out.loc[[10]].to_numpy(), clean.to_numpy())
        else:
            with pytest.raises(InputError, match=entry.error) as raised:
                embedder.transform(X)
            _assert_named(raised.value, cases, entry)
        if entry.file == "image":
            with pytest.raises(InputError, match=entry.error) as raised:
                segmenter.transform(X)
            _assert_named(raised.value, cases, entry)
    pd.testing.assert_frame_equal(embedder.failures_, before["embedder"])
    assert fitted_state(embedder) == before["keys"] and fitted_state(segmenter) == before["seg"]


MASK_VALUE_ENTRIES = [h for h in CATALOGUE if h.file == "mask" and h.error is not None and any(
    word in h.error for word in ("non-integer", "negative", "background", "distinct", "corrupt", "2-D", "components"))]


@pytest.mark.parametrize("entry", MASK_VALUE_ENTRIES, ids=[h.name for h in MASK_VALUE_ENTRIES])
def test_masks_read_alone_get_the_same_checks(cases, entry):
    """Volumetry and segmentation metrics read masks without an image: the mask checks still apply."""
    from radhe.segmentation.metrics import segmentation_metrics
    from radhe.volumetry import mask_volume_ml

    img, msk = cases[entry.name]
    with pytest.raises(InputError, match=entry.error.split("|")[0] if "same voxel" not in entry.error
                       else "negative values"):
        mask_volume_ml(msk)
    frame = pd.DataFrame({"case_id": ["hostile"], "mask": [cases["clean"][1]], "mask_pred": [msk]})
    with pytest.raises(InputError, match="case 'hostile'") as raised:
        segmentation_metrics(frame)
    assert raised.value.path == str(msk)
