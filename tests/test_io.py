"""radhe.io: every reader on real files written by SimpleITK, the manifest, and validation failures."""

from __future__ import annotations

import gzip
import locale
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import make_ct_volume

from radhe.errors import InputError, InputWarning
from radhe.io import load_manifest, read_image, validate_case, validate_manifest, write_image


def _same_image(a: sitk.Image, b: sitk.Image) -> None:
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_write_then_read_round_trip(tmp_path, suffix):
    image, _ = make_ct_volume()
    image.SetOrigin((-10.0, 4.5, 30.0))
    path = write_image(image, tmp_path / f"ct{suffix}")
    _same_image(read_image(path), image)
    assert read_image(path).GetPixelID() == sitk.sitkInt16


def test_write_numpy_array_takes_reference_geometry(tmp_path):
    image, mask = make_ct_volume()
    array = sitk.GetArrayFromImage(mask).astype(bool)
    path = write_image(array, tmp_path / "m.nii", reference=image)
    back = read_image(path)
    assert back.GetSpacing() == image.GetSpacing()
    assert int(sitk.GetArrayFromImage(back).sum()) == int(array.sum())


def test_nii_gz_is_compressed_and_nii_is_not(tmp_path):
    image, _ = make_ct_volume()
    gz = write_image(image, tmp_path / "a.nii.gz")
    raw = write_image(image, tmp_path / "a.nii")
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert raw.stat().st_size > gz.stat().st_size


def _write_dicom_series(folder, hu, spacing, series_uid, study_uid="1.2.826.0.1.3680043.2.1125.9"):
    """Write a CT series whose stored values are HU + 1024 (intercept -1024): tests rescaling."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(hu.astype(np.float32))
    image.SetSpacing(spacing)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for i in range(hu.shape[0]):
        slice_ = image[:, :, i]
        tags = {
            "0008|0060": "CT", "0020|000d": study_uid, "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{i + 1}", "0020|0013": str(i + 1),
            "0020|0032": f"0\\0\\{i * spacing[2]:.3f}", "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": str(spacing[2]), "0028|1052": "-1024", "0028|1053": "1",
            "0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "0",
        }
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{series_uid[-1]}_{i:03d}.dcm"))
        saved = locale.setlocale(locale.LC_ALL)
        try:
            writer.Execute(slice_)
        finally:
            # GDCM's writer switches the process locale to "C" (ASCII text I/O for every later test)
            locale.setlocale(locale.LC_ALL, saved)


def test_dicom_series_is_read_in_hounsfield_units(tmp_path):
    hu = (np.arange(5 * 16 * 16).reshape(5, 16, 16) % 60 * 40 - 1000).astype(np.int16)
    _write_dicom_series(tmp_path / "dcm", hu, (0.45, 0.45, 5.0), "1.2.826.0.1.3680043.2.1125.1")
    stored = sitk.ImageFileReader()
    stored.SetFileName(str(sorted((tmp_path / "dcm").iterdir())[0]))
    stored.ReadImageInformation()
    assert stored.GetMetaData("0028|1052").strip() == "-1024"  # the file really stores shifted values
    image = read_image(tmp_path / "dcm")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)
    np.testing.assert_allclose(image.GetSpacing(), (0.45, 0.45, 5.0), rtol=1e-5)


def test_dicom_folder_with_two_series_reads_the_longest_and_says_so(tmp_path):
    long_hu = np.full((6, 8, 8), 40, np.int16)
    short_hu = np.full((3, 8, 8), -500, np.int16)
    _write_dicom_series(tmp_path / "dcm", long_hu, (0.5, 0.5, 5.0), "1.2.826.0.1.3680043.2.1125.2")
    _write_dicom_series(tmp_path / "dcm", short_hu, (0.5, 0.5, 5.0), "1.2.826.0.1.3680043.2.1125.3")
    with pytest.warns(InputWarning, match=r"2 DICOM series.*1125\.2.*most slices"):
        image = read_image(tmp_path / "dcm", case_id="p1")
    assert image.GetSize() == (8, 8, 6)


def test_missing_and_unreadable_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match=r"case 'p3': file not found.*nope\.nii"):
        read_image(tmp_path / "nope.nii", case_id="p3")
    image, _ = make_ct_volume()
    path = write_image(image, tmp_path / "ct.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(InputError, match=r"case 'p4': cannot read image .*truncated\.nii\.gz") as info:
        read_image(truncated, case_id="p4")
    assert isinstance(info.value, ValueError)
    assert info.value.case_id == "p4"
    (tmp_path / "empty_dir").mkdir()
    raw = write_image(image, tmp_path / "ct.nii").read_bytes()
    (tmp_path / "truncated.nii").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputError, match=r"case .p4.: .*voxel data ends early"):
        read_image(tmp_path / "truncated.nii", case_id="p4")
    with pytest.raises(InputError, match="no DICOM series"):
        read_image(tmp_path / "empty_dir", case_id="p5")


# ---------------------------------------------------------------- manifest

def test_load_manifest_resolves_paths_and_defaults_patient_id(tmp_path):
    (tmp_path / "sub").mkdir()
    table = pd.DataFrame({
        "case_id": [17, 18, 19],
        "image": ["sub/a.nii", "sub/b.nii", str(tmp_path / "c.nii")],
        "mask": ["sub/a_m.nii", None, "sub/c_m.nii"],
        "patient_id": ["x", np.nan, "x"],
        "age": [70, 81, 55],
    })
    table.to_csv(tmp_path / "sub" / "manifest.csv", index=False)
    table.to_parquet(tmp_path / "sub" / "manifest.parquet")
    for name in ("manifest.csv", "manifest.parquet"):
        manifest = load_manifest(tmp_path / "sub" / name)
        assert list(manifest["case_id"]) == ["17", "18", "19"]
        assert manifest.loc[0, "image"] == str(tmp_path / "sub" / "sub" / "a.nii")
        assert manifest.loc[2, "image"] == str(tmp_path / "c.nii")
        assert manifest.loc[1, "mask"] is None
        assert list(manifest["patient_id"]) == ["x", "18", "x"]
        assert list(manifest["age"]) == [70, 81, 55]


def test_load_manifest_keeps_identifiers_as_written(tmp_path):
    # "007" and "7" are different cases; "0012" and "12" different patients
    text = "case_id,patient_id,image\n007,0012,a.nii\n7,12,b.nii\n8,,c.nii\n"
    (tmp_path / "m.csv").write_text(text)
    (tmp_path / "m.tsv").write_text(text.replace(",", "\t"))
    for name in ("m.csv", "m.tsv"):
        manifest = load_manifest(tmp_path / name)
        assert list(manifest["case_id"]) == ["007", "7", "8"]
        assert list(manifest["patient_id"]) == ["0012", "12", "8"]


def test_load_manifest_from_dataframe_keeps_index_and_uses_base_dir(tmp_path):
    frame = pd.DataFrame({"case_id": ["a", "b"], "image": ["a.nii", "b.nii"]}, index=[10, 20])
    manifest = load_manifest(frame, base_dir=tmp_path)
    assert list(manifest.index) == [10, 20]
    assert manifest.loc[20, "image"] == str(tmp_path / "b.nii")
    assert "mask" not in frame.columns and "patient_id" not in frame.columns  # input untouched


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"image": ["a.nii"]}), r"lacks required column\(s\) \['case_id'\]"),
        (pd.DataFrame({"case_id": ["a"]}), r"lacks required column\(s\) \['image'\]"),
        (pd.DataFrame({"case_id": ["a", "a"], "image": ["x", "y"]}), r"case_id must be unique.*'a'"),
        (pd.DataFrame({"case_id": ["a", None], "image": ["x", "y"]}), r"case_id is empty in row\(s\) 1"),
        (pd.DataFrame({"case_id": ["a", "b"], "image": ["x", ""]}), r"no 'image' path for case 'b'"),
    ],
)
def test_load_manifest_rejects_bad_tables(frame, message):
    with pytest.raises(InputError, match=message):
        load_manifest(frame)


def test_load_manifest_missing_or_bad_file(tmp_path):
    with pytest.raises(InputError, match="manifest file not found"):
        load_manifest(tmp_path / "none.csv")
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(InputError, match=r"must be \.csv, \.tsv or \.parquet"):
        load_manifest(tmp_path / "m.xlsx")


# ---------------------------------------------------------------- validation

@pytest.fixture
def case_files(tmp_path):
    image, mask = make_ct_volume()
    return write_image(image, tmp_path / "ct.nii.gz"), write_image(mask, tmp_path / "mask.nii.gz"), image, mask


def test_valid_case_reports_geometry_and_volume(case_files):
    image_path, mask_path, image, mask = case_files
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        check = validate_case(image_path, mask_path, case_id="p1")
    voxels = int(sitk.GetArrayFromImage(mask).sum())
    assert check.mask_voxels == voxels
    assert check.mask_volume_ml == pytest.approx(voxels * 0.5 * 0.5 * 5.0 / 1000.0)
    assert check.size == (40, 40, 12)
    assert check.hu_min < -950 and check.hu_max >= 1000


def test_mask_with_other_spacing_is_named(tmp_path, case_files):
    image_path, _, image, mask = case_files
    mask.SetSpacing((0.45, 0.45, 5.0))
    bad = write_image(mask, tmp_path / "bad_spacing.nii.gz")
    with pytest.raises(InputError) as info:
        validate_case(image_path, bad, case_id="p017")
    assert str(info.value).startswith("case 'p017': mask spacing (0.45, 0.45, 5) != image spacing (0.5, 0.5, 5)")
    assert "bad_spacing.nii.gz" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.SetOrigin((1.0, 0.0, 0.0)), r"mask origin \(1, 0, 0\) != image origin \(0, 0, 0\)"),
        (lambda m: m.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1)), r"mask direction .* != image direction"),
    ],
)
def test_mask_origin_or_direction_mismatch(tmp_path, case_files, change, message):
    image_path, _, _, mask = case_files
    change(mask)
    bad = write_image(mask, tmp_path / "bad.nii")
    with pytest.raises(InputError, match=r"case 'p2': " + message):
        validate_case(image_path, bad, case_id="p2")


def test_mask_of_other_size(tmp_path, case_files):
    image_path, _, _, mask = case_files
    bad = write_image(mask[:, :, :6], tmp_path / "short.nii")
    with pytest.raises(InputError, match=r"case 'p2': mask size \(40, 40, 6\) != image size \(40, 40, 12\)"):
        validate_case(image_path, bad, case_id="p2")


def test_empty_mask(tmp_path, case_files):
    image_path, _, image, _ = case_files
    empty = write_image(np.zeros((12, 40, 40), np.uint8), tmp_path / "empty.nii.gz", reference=image)
    with pytest.raises(InputError, match=r"case 'p9': empty mask: no voxel is labelled .*empty\.nii\.gz"):
        validate_case(image_path, empty, case_id="p9")


def test_label_missing_and_non_label_masks(tmp_path, case_files):
    image_path, _, image, mask = case_files
    other_label = write_image(sitk.GetArrayFromImage(mask) * 255, tmp_path / "m255.nii", reference=image)
    with pytest.raises(InputError, match=r"case 'p5': label 1 not present in mask \(values found: \[0, 255\]\)"):
        validate_case(image_path, other_label, case_id="p5")
    assert validate_case(image_path, other_label, case_id="p5", label=255).mask_voxels > 0
    probabilities = write_image(sitk.GetArrayFromImage(mask) * 0.7, tmp_path / "prob.nii", reference=image)
    with pytest.raises(InputError, match=r"case 'p6': mask holds non-integer values"):
        validate_case(image_path, probabilities, case_id="p6")


def test_two_dimensional_image(tmp_path):
    image, _ = make_ct_volume()
    flat = write_image(image[:, :, 3], tmp_path / "slice.nii.gz")
    with pytest.raises(InputError, match=r"case 'p7': image is 2-D \(size \(40, 40\)\); a 3-D volume is required"):
        validate_case(flat, case_id="p7")


def test_windowed_image_is_refused_unless_hu_check_is_off(tmp_path):
    image, _ = make_ct_volume()
    array = np.clip((sitk.GetArrayFromImage(image) + 20) / 120 * 255, 0, 255).astype(np.uint8)
    windowed = write_image(array, tmp_path / "windowed.nii.gz", reference=image)
    with pytest.raises(InputError, match=r"case 'p8': intensities 0 to 255 do not look like CT in HU.*hu_check=False"):
        validate_case(windowed, case_id="p8")
    check = validate_case(windowed, case_id="p8", hu_check=False)
    assert (check.hu_min, check.hu_max) == (0.0, 255.0)


def test_validate_manifest_skip_records_every_failure_and_keeps_alignment(tmp_path, case_files):
    image_path, mask_path, image, _ = case_files
    empty = write_image(np.zeros((12, 40, 40), np.uint8), tmp_path / "empty.nii", reference=image)
    manifest = load_manifest(pd.DataFrame({
        "case_id": ["good", "missing", "empty", "good2"],
        "image": [image_path, tmp_path / "missing.nii", image_path, image_path],
        "mask": [mask_path, mask_path, empty, None],
        "he": [0, 1, 0, 1],
    }, index=[5, 6, 7, 8]))
    with pytest.raises(InputError, match="case 'missing': file not found"):
        validate_manifest(manifest)
    report = validate_manifest(manifest, on_error="skip")
    assert list(report.cases.index) == [5, 6, 7, 8]
    assert list(report.cases["status"]) == ["ok", "skipped", "skipped", "ok"]
    assert list(report.valid["case_id"]) == ["good", "good2"]
    assert list(report.skipped["case_id"]) == ["missing", "empty"]
    assert report.skipped.loc[1, "problem"].startswith("empty mask")
    assert "2 skipped" in report.summary() and "skipped case 'missing'" in report.summary()
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        validate_manifest(manifest, on_error="ignore")


def test_validate_manifest_blank_mask_means_no_mask(case_files):
    image_path, mask_path, _, _ = case_files
    raw = pd.DataFrame({"case_id": ["a", "b", "c", "d", "e"], "image": [image_path] * 5,
                        "mask": [mask_path, "  ", pd.NA, None, np.nan]}, dtype=object)
    report = validate_manifest(raw)  # a raw table, not through load_manifest
    # every spelling of an empty cell is "no mask" (pd.NA was refused as a path: the one definition now)
    assert list(report.cases["status"]) == ["ok"] * 5
    assert report.cases["mask_voxels"].iloc[0] > 0 and report.cases["mask_voxels"].iloc[1:].isna().all()


def test_gzip_corruption_inside_valid_header_is_reported(tmp_path):
    image, _ = make_ct_volume()
    raw = write_image(image, tmp_path / "ct.nii").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(raw[:400]))
    with pytest.raises(InputError, match="case 'c1': cannot read image"):
        validate_case(tmp_path / "cut.nii.gz", case_id="c1")


def test_import_radhe_is_light():
    code = (
        "import sys, radhe, radhe.io, radhe.errors; "
        "heavy = [m for m in ('torch', 'shap', 'radiomics', 'xgboost', 'lightgbm', 'dask', 'sklearn') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_writing_dicom_keeps_the_process_locale(tmp_path):
    before = locale.setlocale(locale.LC_ALL)
    image, _ = make_ct_volume()
    piece = image[:, :, 3]
    piece.SetMetaData("0020|0032", "0\\0\\15")  # with a position tag GDCM's writer sets the locale to "C"
    write_image(piece, tmp_path / "slice.dcm")
    assert locale.setlocale(locale.LC_ALL) == before
    assert locale.getpreferredencoding(False).lower().replace("-", "") != "ansi_x3.41968"
    assert read_image(tmp_path / "slice.dcm").GetSize()[:2] == image.GetSize()[:2]


@pytest.mark.parametrize("cell, message", [(None, "no image path"), ("  ", "no image path"), (pd.NA, "no image path"),
                                           (pd.NaT, "no image path"), (5, "an image path must be text or a path; got int 5"),
                                           (["a.nii"], "an image path must be text or a path; got list")])
def test_checked_path_names_the_case_for_a_cell_that_is_no_path(cell, message):
    from radhe.io.image import checked_path, is_missing_path

    with pytest.raises(InputError, match=rf"^case 'c7': {message}"):
        checked_path(cell, "c7")
    assert is_missing_path(cell) == (message == "no image path")
    assert checked_path("scans/c7.nii", "c7").name == "c7.nii" and not is_missing_path("NA")
