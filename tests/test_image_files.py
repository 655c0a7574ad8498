"""Images whose voxels lie in other files than the one the manifest names (``.mhd`` → ``.raw``, ``.nhdr``
→ its data file, ``.hdr`` → ``.img``): checked and stamped with those files, like single-file images.

Before: a changed ``.raw`` behind an unchanged ``.mhd`` returned cached features of the old voxels,
and a ``.hdr`` / ``.img`` pair skipped the NIfTI checks (NaN voxels read as 0, a truncated ``.img``
filled with zeros). The per-process memo of checked files now also keys on the status-change time.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import make_ct_volume

import radhe
from radhe.cache import content_stamp, file_fingerprint
from radhe.errors import InputError
from radhe.features.radiomics import RadiomicsFeatures
from radhe.io import validate_case
from radhe.io.image import data_files, read_image

PARAMS = {"setting": {"binWidth": 25, "label": 1}, "featureClass": {"firstorder": ["Mean"]}}
MEAN = "radiomics__original_firstorder_Mean"


def float_image(values: np.ndarray | None = None) -> tuple[sitk.Image, sitk.Image]:
    image, mask = make_ct_volume()
    array = sitk.GetArrayFromImage(image).astype(np.float32) if values is None else values
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out, mask


def shifted(image: sitk.Image, hu: float) -> sitk.Image:
    out = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) + np.float32(hu))
    out.CopyInformation(image)
    return out


def with_nan(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image)
    array[6, 10:20, 10:20] = np.nan
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def test_data_files_of_each_header_format(tmp_path):
    image, _ = float_image()
    sitk.WriteImage(image, str(tmp_path / "ct.mhd"))
    sitk.WriteImage(image, str(tmp_path / "ct.mha"))
    sitk.WriteImage(image, str(tmp_path / "pair.hdr"))
    sitk.WriteImage(image, str(tmp_path / "ct.nii"))
    assert data_files(tmp_path / "ct.mhd") == [tmp_path / "ct.raw"]
    assert data_files(tmp_path / "ct.mha") == []  # LOCAL: the voxels follow the header
    assert data_files(tmp_path / "pair.hdr") == [tmp_path / "pair.img"]
    assert data_files(tmp_path / "pair.img") == [tmp_path / "pair.hdr"]
    assert data_files(tmp_path / "ct.nii") == []
    header = (tmp_path / "ct.mhd").read_text()
    (tmp_path / "list.mhd").write_text(header.replace("ElementDataFile = ct.raw", "ElementDataFile = LIST 2D\na.raw\nb.raw"))
    assert data_files(tmp_path / "list.mhd") == [tmp_path / "a.raw", tmp_path / "b.raw"]
    (tmp_path / "pattern.mhd").write_text(header.replace("ElementDataFile = ct.raw",
                                                         "ElementDataFile = slice%03d.raw 1 5 2"))
    assert data_files(tmp_path / "pattern.mhd") == [tmp_path / f"slice00{i}.raw" for i in (1, 3, 5)]
    (tmp_path / "ct.nhdr").write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 40 40 12\n"
                                      "encoding: raw\ndata file: /elsewhere/voxels.raw\n")
    assert data_files(tmp_path / "ct.nhdr") == [Path("/elsewhere/voxels.raw")]


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_features_follow_a_changed_data_file_behind_an_unchanged_header(tmp_path, suffix):
    image, mask = float_image()
    header = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(header))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii"))
    (data,) = data_files(header)
    manifest = radhe.load_manifest(pd.DataFrame({"case_id": ["a"], "image": [str(header)],
                                                 "mask": [str(tmp_path / "mask.nii")]}))
    cached = RadiomicsFeatures(params=PARAMS, cache=tmp_path / "cache").fit_transform(manifest)[MEAN].item()
    stamp = content_stamp(manifest)
    header_text = header.read_bytes()
    sitk.WriteImage(shifted(image, 200.0), str(tmp_path / f"new{suffix}"))
    shutil.copyfile(data_files(tmp_path / f"new{suffix}")[0], data)
    assert header.read_bytes() == header_text
    again = RadiomicsFeatures(params=PARAMS, cache=tmp_path / "cache").fit_transform(manifest)[MEAN].item()
    assert again == pytest.approx(cached + 200.0)
    assert content_stamp(manifest) != stamp
    assert file_fingerprint(header)["data_files"][0]["path"] == str(data.resolve())


def test_a_header_whose_data_file_is_missing_is_named(tmp_path):
    image, _ = float_image()
    sitk.WriteImage(image, str(tmp_path / "ct.mhd"))
    os.remove(tmp_path / "ct.raw")
    with pytest.raises(InputError, match=r"case 'a'.*ct\.raw"):
        read_image(tmp_path / "ct.mhd", case_id="a")


def test_a_nifti_pair_gets_the_nifti_checks(tmp_path):
    image, mask = float_image()
    sitk.WriteImage(mask, str(tmp_path / "mask.nii"))
    sitk.WriteImage(with_nan(image), str(tmp_path / "nan.hdr"))
    for name in ("nan.hdr", "nan.img"):
        with pytest.raises(InputError, match=r"case 'a'.*100 NaN"):
            validate_case(tmp_path / name, tmp_path / "mask.nii", case_id="a")
    sitk.WriteImage(image, str(tmp_path / "cut.hdr"))
    voxels = (tmp_path / "cut.img").read_bytes()
    (tmp_path / "cut.img").write_bytes(voxels[: len(voxels) * 6 // 10])
    with pytest.raises(InputError, match=r"case 'a'.*cut\.img.*ends early.*truncated"):
        validate_case(tmp_path / "cut.hdr", tmp_path / "mask.nii", case_id="a")
    # integer voxels: the length alone is checked (from the file system, without reading the voxels)
    sitk.WriteImage(sitk.Cast(image, sitk.sitkInt16), str(tmp_path / "cut16.hdr"))
    voxels = (tmp_path / "cut16.img").read_bytes()
    (tmp_path / "cut16.img").write_bytes(voxels[:-2])
    with pytest.raises(InputError, match=rf"case 'a'.*cut16\.img.*ends early \({len(voxels) - 2} of {len(voxels)} bytes\)"):
        validate_case(tmp_path / "cut16.hdr", tmp_path / "mask.nii", case_id="a")
    (tmp_path / "cut16.img").write_bytes(voxels)
    validate_case(tmp_path / "cut16.hdr", tmp_path / "mask.nii", case_id="a")
    sitk.WriteImage(image, str(tmp_path / "good.hdr"))
    checked = validate_case(tmp_path / "good.hdr", tmp_path / "mask.nii", case_id="a")
    assert checked.hu_max == pytest.approx(float(sitk.GetArrayFromImage(image).max()))


def test_a_file_replaced_with_its_modification_time_set_back_is_checked_again(tmp_path):
    image, mask = float_image()
    sitk.WriteImage(mask, str(tmp_path / "mask.nii"))
    sitk.WriteImage(image, str(tmp_path / "ct.nii"))
    validate_case(tmp_path / "ct.nii", tmp_path / "mask.nii", case_id="a")  # remembered as checked
    before = os.stat(tmp_path / "ct.nii")
    sitk.WriteImage(with_nan(image), str(tmp_path / "new.nii"))
    assert os.path.getsize(tmp_path / "new.nii") == before.st_size
    shutil.copyfile(tmp_path / "new.nii", tmp_path / "ct.nii")
    os.utime(tmp_path / "ct.nii", ns=(before.st_atime_ns, before.st_mtime_ns))  # cp -p, rsync -t
    with pytest.raises(InputError, match="100 NaN"):
        validate_case(tmp_path / "ct.nii", tmp_path / "mask.nii", case_id="a")


def test_nifti_extension_bytes_are_not_read_as_voxels(tmp_path):
    """A NIfTI with a header extension (vox_offset past the 540 bytes read first): the extension's
    bytes (here 0xFF, NaN as float32) are skipped, the voxels checked."""
    image, mask = float_image()
    sitk.WriteImage(mask, str(tmp_path / "mask.nii"))
    sitk.WriteImage(image, str(tmp_path / "plain.nii"))
    raw = bytearray((tmp_path / "plain.nii").read_bytes())
    offset = int(struct.unpack("<f", raw[108:112])[0])
    extension = struct.pack("<ii", 1008, 0) + b"\xff" * 1000  # esize (a multiple of 16), ecode, data
    raw[348:352] = b"\x01\x00\x00\x00"
    crafted = raw[:352] + extension + raw[offset:]
    crafted[108:112] = struct.pack("<f", 352.0 + len(extension))
    (tmp_path / "extended.nii").write_bytes(bytes(crafted))
    read = sitk.GetArrayFromImage(read_image(tmp_path / "extended.nii"))
    np.testing.assert_array_equal(read, sitk.GetArrayFromImage(image))
    validate_case(tmp_path / "extended.nii", tmp_path / "mask.nii", case_id="a")


def test_data_files_of_a_header_that_cannot_be_read_is_empty_and_the_reader_names_it(tmp_path):
    assert data_files(tmp_path / "absent.mhd") == []
    with pytest.raises(InputError, match=r"case 'a'.*file not found"):
        read_image(tmp_path / "absent.mhd", case_id="a")
