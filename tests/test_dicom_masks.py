"""radhe.io.read_dicom_mask on real DICOM files written here: a CT series (pydicom), RTSTRUCTs
(rt-utils) and DICOM-SEGs (highdicom), read back onto the CT's grid and checked voxel by voxel."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")
rt_utils = pytest.importorskip("rt_utils")
pytest.importorskip("cv2")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sr.codedict import codes  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from radhe.errors import InputError  # noqa: E402
from radhe.io import read_dicom_mask, read_image, validate_case  # noqa: E402

# rt-utils 1.2.7 sets attributes that pydicom 3 deprecates when it builds an RTSTRUCT
pytestmark = pytest.mark.filterwarnings("ignore:'FileDataset.is_:DeprecationWarning")

SHAPE = (6, 40, 56)  # z, rows, columns: not square, so rows and columns cannot be swapped unnoticed
SPACING = (0.45, 0.45, 5.0)  # x (column), y (row), z in mm
#: Non-square pixels: highdicom handles them; rt-utils 1.2.7 writes RTSTRUCT contours with the row and
#: column spacings swapped, so the RTSTRUCT tests use square pixels, as CT has.
ANISOTROPIC = (0.5, 0.45, 5.0)


def write_ct_series(folder, hu, *, spacing=SPACING, origin=(-14.0, -9.0, 20.0), row=(1, 0, 0), column=(0, 1, 0),
                    frame_uid=None, reverse_files=False, prefix="ct"):
    """Write ``hu`` (z, y, x) as a CT series, one file per slice, stored as HU + 1024 with intercept -1024."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), frame_uid or generate_uid()
    normal = np.cross(row, column)
    for k, plane in enumerate(hu):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "CT", "p001", "P001^", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = \
            "20240101", "120000", "1", "", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer, ds.PositionReferenceIndicator = 1, k + 1, "radhe", ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *column)]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[2] * normal]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (between rows, y), column spacing (x)
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = (plane.astype(np.int16) + 1024).astype(np.int16).tobytes()
        name = len(hu) - 1 - k if reverse_files else k
        ds.save_as(folder / f"{prefix}{name:03d}.dcm", enforce_file_format=True)
    return folder


def ct_volume():
    hu = np.full(SHAPE, 35, np.int16)
    hu[:, :, :2] = -1000  # air
    hu[:, :, -2:] = 1200  # bone
    return hu


def clot_mask():
    """An irregular clot with a hole, on three slices, reaching close to the right edge (column 53)."""
    clot = np.zeros(SHAPE, bool)
    clot[1:4, 10:22, 30:54] = True
    clot[2, 14:18, 36:42] = False  # a hole: an inner contour
    clot[3, 10:14, 30:40] = False  # an L shape
    return clot


def write_rtstruct(ct_folder, path, rois):
    rtstruct = rt_utils.RTStructBuilder.create_new(str(ct_folder))
    for name, mask in rois.items():  # rt-utils wants (rows, columns, slices) in its slice order (= ours here)
        rtstruct.add_roi(mask=np.transpose(mask, (1, 2, 0)), name=name)
    rtstruct.save(str(path))
    return path


def write_seg(ct_folder, path, segments, *, segmentation_type="BINARY"):
    # in SimpleITK's slice order, so that the arrays' first axis is the CT image's z
    sources = [pydicom.dcmread(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(ct_folder))]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Hematoma,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, label in enumerate(segments, start=1)]
    pixels = np.stack([segments[label] for label in segments], axis=-1)
    pixels = pixels.astype(np.float32 if segmentation_type == "FRACTIONAL" else np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=segmentation_type,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=2,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="radhe", manufacturer_model_name="tests",
        software_versions="0", device_serial_number="0")
    seg.save_as(path)
    return path


def _array(image):
    return sitk.GetArrayFromImage(image)


def _assert_on_ct_grid(mask, ct_folder):
    ct = read_image(ct_folder)
    assert mask.GetSize() == ct.GetSize()
    np.testing.assert_allclose(mask.GetSpacing(), ct.GetSpacing())
    np.testing.assert_allclose(mask.GetOrigin(), ct.GetOrigin())
    np.testing.assert_allclose(mask.GetDirection(), ct.GetDirection(), atol=1e-9)
    assert mask.GetPixelID() == sitk.sitkUInt8


# ------------------------------------------------------------------------------------------ RTSTRUCT
@pytest.mark.parametrize("orientation", [
    {},                                                      # axial, files in slice order
    {"reverse_files": True},                                 # file names against slice order
    {"row": (0, 1, 0), "column": (-1, 0, 0)},                # rotated in plane by 90 degrees
    {"row": (1, 0, 0), "column": (0, 0, -1)},                # coronal slices
], ids=["axial", "reversed-files", "rotated", "coronal"])
def test_rtstruct_round_trip_is_voxel_exact(tmp_path, orientation):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume(), **orientation)
    clot = clot_mask()
    path = write_rtstruct(ct_folder, tmp_path / "rtstruct.dcm", {"haematoma": clot})

    mask = read_dicom_mask(path, ct_folder)

    _assert_on_ct_grid(mask, ct_folder)
    np.testing.assert_array_equal(_array(mask), clot.astype(np.uint8))
    check = validate_case(read_image(ct_folder), mask, case_id="p001")
    assert check.mask_voxels == int(clot.sum())


def test_rtstruct_chooses_the_named_roi(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    clot = clot_mask()
    oedema = np.zeros(SHAPE, bool)
    oedema[1:5, 5:30, 25:50] = True
    path = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"oedema": oedema, "haematoma": clot})

    np.testing.assert_array_equal(_array(read_dicom_mask(path, ct_folder, roi_name="haematoma")), clot)
    np.testing.assert_array_equal(_array(read_dicom_mask(path, ct_folder, roi_name="oedema")), oedema)
    with pytest.raises(InputError, match=r"holds 2 ROIs \('oedema', 'haematoma'\): pass roi_name=") as info:
        read_dicom_mask(path, ct_folder, case_id="p001")
    assert info.value.case_id == "p001" and info.value.path == str(path)
    with pytest.raises(InputError, match=r"ROI 'ICH' not found; ROIs in the file: 'oedema', 'haematoma'"):
        read_dicom_mask(path, ct_folder, roi_name="ICH")


def test_reference_folder_may_hold_other_series(tmp_path):
    """The series the mask references is used, not the folder's largest one."""
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    path = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})
    write_ct_series(tmp_path / "ct", np.zeros((9, 40, 56), np.int16), prefix="long")  # more slices, same folder
    mask = read_dicom_mask(path, tmp_path / "ct")
    assert mask.GetSize() == (56, 40, 6)
    np.testing.assert_array_equal(_array(mask), clot_mask())


def test_series_mismatch_names_both_series(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    path = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})
    other = write_ct_series(tmp_path / "other", ct_volume())
    drawn_on = pydicom.dcmread(next(ct_folder.iterdir())).SeriesInstanceUID
    present = pydicom.dcmread(next(other.iterdir())).SeriesInstanceUID
    with pytest.raises(InputError, match="series mismatch") as info:
        read_dicom_mask(path, other, case_id="p001")
    message = str(info.value)
    assert drawn_on in message and present in message and str(path) in message
    assert message.startswith("case 'p001':")


def test_frame_of_reference_mismatch(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    path = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})
    ds = pydicom.dcmread(path)
    ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = generate_uid()
    ds.save_as(path)
    with pytest.raises(InputError, match="frame of reference mismatch"):
        read_dicom_mask(path, ct_folder)


def _edit_first_contour(path, edit):
    ds = pydicom.dcmread(path)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    points = np.asarray(contour.ContourData, float).reshape(-1, 3)
    contour.ContourData = [float(v) for v in edit(points).ravel()]
    ds.save_as(path)


def test_contour_off_the_slices_or_outside_the_image_is_refused(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    path = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})
    _edit_first_contour(path, lambda p: p + [0.0, 0.0, 2.5])  # half a slice away from its slice
    with pytest.raises(InputError, match="contour 1 .* lies on no slice of series"):
        read_dicom_mask(path, ct_folder)

    path = write_rtstruct(ct_folder, tmp_path / "rs2.dcm", {"haematoma": clot_mask()})
    _edit_first_contour(path, lambda p: p + [20.0, 0.0, 0.0])  # 40 columns to the right: off the image
    with pytest.raises(InputError, match=r"contour 1 reaches outside the 56 x 40 CT slice"):
        read_dicom_mask(path, ct_folder)


def test_open_contour_is_refused(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    path = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})
    ds = pydicom.dcmread(path)
    ds.ROIContourSequence[0].ContourSequence[0].ContourGeometricType = "OPEN_PLANAR"
    ds.save_as(path)
    with pytest.raises(InputError, match="is OPEN_PLANAR; only CLOSED_PLANAR"):
        read_dicom_mask(path, ct_folder)


# ------------------------------------------------------------------------------------------ DICOM-SEG
def test_seg_round_trip_and_segment_choice(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume(), spacing=ANISOTROPIC, reverse_files=True)
    clot = clot_mask()
    ivh = np.zeros(SHAPE, bool)
    ivh[4:6, 25:35, 5:15] = True
    path = write_seg(ct_folder, tmp_path / "seg.dcm", {"haematoma": clot, "IVH": ivh})

    mask = read_dicom_mask(path, ct_folder, roi_name="haematoma")
    _assert_on_ct_grid(mask, ct_folder)
    np.testing.assert_array_equal(_array(mask), clot)
    np.testing.assert_array_equal(_array(read_dicom_mask(path, ct_folder, roi_name="IVH")), ivh)
    with pytest.raises(InputError, match=r"segment 'ICH' not found; segments in the file: 'haematoma', 'IVH'"):
        read_dicom_mask(path, ct_folder, roi_name="ICH")
    with pytest.raises(InputError, match=r"holds 2 segments"):
        read_dicom_mask(path, ct_folder)


def test_fractional_seg_is_binarised_at_one_half(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    probability = np.zeros(SHAPE, np.float32)
    probability[2, 10:20, 30:40] = 0.8
    probability[2, 20:25, 30:40] = 0.3  # below one half: outside
    path = write_seg(ct_folder, tmp_path / "seg.dcm", {"haematoma": probability}, segmentation_type="FRACTIONAL")
    expected = probability >= 0.5
    np.testing.assert_array_equal(_array(read_dicom_mask(path, ct_folder)), expected)


def test_seg_of_another_series_is_refused(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    path = write_seg(ct_folder, tmp_path / "seg.dcm", {"haematoma": clot_mask()})
    other = write_ct_series(tmp_path / "other", ct_volume())
    with pytest.raises(InputError, match="series mismatch"):
        read_dicom_mask(path, other)


# ------------------------------------------------------------------------------------------ bad files
def test_bad_paths_and_files_name_the_file(tmp_path):
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    ct_slice = next(ct_folder.iterdir())
    with pytest.raises(InputError, match="file not found"):
        read_dicom_mask(tmp_path / "missing.dcm", ct_folder)
    with pytest.raises(InputError, match=r"not an RTSTRUCT or DICOM-SEG file \(Modality CT, SOP Class UID "):
        read_dicom_mask(ct_slice, ct_folder)
    text = tmp_path / "notes.dcm"
    text.write_text("not DICOM")
    with pytest.raises(InputError, match="cannot read DICOM file") as info:
        read_dicom_mask(text, ct_folder)
    assert str(text) in str(info.value)
    path = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})
    with pytest.raises(InputError, match="reference CT series folder not found"):
        read_dicom_mask(path, tmp_path / "nowhere")
    with pytest.raises(InputError, match="no DICOM series in the reference folder"):
        read_dicom_mask(path, (tmp_path / "empty").mkdir() or tmp_path / "empty")


def _edit_slices(folder, edit):
    for k, path in enumerate(sorted(folder.glob("ct*.dcm"))):
        ds = pydicom.dcmread(path)
        edit(k, ds)
        ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("damage", ["missing slice", "duplicated slice", "uneven spacing", "gantry tilt",
                                    "localizer in the series", "truncated slice file", "no slice positions",
                                    "one slice without position", "another pixel size", "MONOCHROME1"])
def test_a_series_whose_slices_form_no_regular_grid_is_refused(tmp_path, damage):
    """SimpleITK stacks a series at one spacing from its first positions: each of these read as a volume
    with wrong geometry (a gap 12.5 % too long, a slice twice, a coronal localizer's direction for the whole
    head, a sheared head), validated "ok". Refused by read_image and by read_dicom_mask's reference series."""
    import shutil

    folder = write_ct_series(tmp_path / "ct", ct_volume())
    rtstruct = write_rtstruct(folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})  # drawn before the damage
    files = sorted(folder.glob("ct*.dcm"))
    if damage == "missing slice":
        files[3].unlink()
        expected = r"uneven slice spacing: 5 mm between most slices, 10 mm between 'ct002.dcm' and 'ct004.dcm'"
    elif damage == "duplicated slice":
        shutil.copy(files[2], folder / "ct002_copy.dcm")
        expected = r"'ct002.dcm' and 'ct002_copy.dcm' lie at the same position.*a duplicated slice"
    elif damage == "uneven spacing":
        _edit_slices(folder, lambda k, ds: setattr(ds, "ImagePositionPatient",
                                                   [-14.0, -9.0, 20.0 + (5.0 * k if k < 3 else 10 + 2.0 * k)]))
        expected = r"uneven slice spacing"
    elif damage == "gantry tilt":
        shift = 5.0 * np.tan(np.radians(15))
        _edit_slices(folder, lambda k, ds: setattr(ds, "ImagePositionPatient", [-14.0, -9.0 + k * shift, 20.0 + 5.0 * k]))
        expected = r"shifted in-plane.*gantry tilt of about 15\.0°"
    elif damage == "localizer in the series":
        scout = pydicom.dcmread(files[0])
        scout.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
        scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        scout.save_as(folder / "scout.dcm", enforce_file_format=True)
        expected = r"1 of 7 slices have another orientation.*'scout.dcm'.*localizer"
    elif damage == "no slice positions":  # SimpleITK would stack them 1 mm apart
        _edit_slices(folder, lambda k, ds: delattr(ds, "ImagePositionPatient"))
        expected = r"6 of 6 slices have no readable ImagePositionPatient"
    elif damage == "one slice without position":  # SimpleITK would put it out of order
        _edit_slices(folder, lambda k, ds: delattr(ds, "ImagePositionPatient") if k == 4 else None)
        expected = r"1 of 6 slices have no readable ImagePositionPatient .*'ct004.dcm'"
    elif damage == "another pixel size":  # SimpleITK would read every slice at the first one's
        _edit_slices(folder, lambda k, ds: setattr(ds, "PixelSpacing", [0.5, 0.5]) if k == 0 else None)
        expected = r"the slices do not share one pixel grid .*'ct000.dcm'"
    elif damage == "MONOCHROME1":  # GDCM inverts the values for display: not HU
        _edit_slices(folder, lambda k, ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"))
        expected = r"6 slice\(s\) are stored as MONOCHROME1"
    else:
        data = files[3].read_bytes()
        files[3].write_bytes(data[:-1500])
        expected = r"1 DICOM file\(s\) belong to no readable series \('ct003.dcm'\): truncated"
    with pytest.raises(InputError, match=rf"case 'c1'.*{expected}"):
        read_image(folder, case_id="c1")
    with pytest.raises(InputError, match=expected):
        validate_case(folder, case_id="c1")
    with pytest.raises(InputError, match=expected):  # the mask's reference series: the same checks
        read_dicom_mask(rtstruct, folder, case_id="c1")


def test_validation_report_records_which_of_two_series_was_read(tmp_path):
    import pandas as pd

    from radhe.errors import InputWarning
    from radhe.io import validate_manifest

    folder = write_ct_series(tmp_path / "ct", ct_volume())
    write_ct_series(folder, ct_volume()[:4], prefix="other")
    with pytest.warns(InputWarning, match="holds 2 DICOM series"):
        report = validate_manifest(pd.DataFrame({"case_id": ["c1"], "image": [str(folder)]}))
    assert "holds 2 DICOM series" in report.cases.loc[0, "warnings"] and "6 slices" in report.cases.loc[0, "warnings"]


def test_a_series_checked_once_is_checked_again_when_a_file_changes(tmp_path):
    folder = write_ct_series(tmp_path / "ct", ct_volume())
    read_image(folder, case_id="c1")  # passes; remembered
    read_image(folder, case_id="c1")
    sorted(folder.glob("ct*.dcm"))[3].unlink()
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_image(folder, case_id="c1")


def test_two_series_of_as_many_slices_are_not_chosen_between(tmp_path):
    """A soft-tissue and a bone-kernel reconstruction of one scan have the same slices: reading either
    changes every intensity, so the folder is refused, naming both."""
    folder = write_ct_series(tmp_path / "ct", ct_volume())
    write_ct_series(folder, ct_volume() + 5, prefix="bone")
    with pytest.raises(InputError, match=r"case 'c1'.*holds 2 DICOM series of 6 slices each .*a folder of its own"):
        read_image(folder, case_id="c1")


def test_a_dicom_mask_given_where_an_image_is_read_says_how_to_convert_it(tmp_path):
    """A DICOM-SEG in the manifest's mask column read as an image gave a size mismatch, an RTSTRUCT
    "Unable to determine ImageIO reader": both now name read_dicom_mask."""
    ct_folder = write_ct_series(tmp_path / "ct", ct_volume())
    seg = write_seg(ct_folder, tmp_path / "seg.dcm", {"haematoma": clot_mask()})
    rtstruct = write_rtstruct(ct_folder, tmp_path / "rs.dcm", {"haematoma": clot_mask()})
    with pytest.raises(InputError, match=r"case 'c1'.*is a DICOM-SEG .*radhe\.io\.read_dicom_mask"):
        read_image(seg, case_id="c1")
    with pytest.raises(InputError, match=r"case 'c1'.*RTSTRUCT or DICOM-SEG mask\? .*read_dicom_mask"):
        validate_case(ct_folder, rtstruct, case_id="c1")
    assert read_dicom_mask(seg, ct_folder).GetSize() == read_image(ct_folder).GetSize()  # the way that works


def test_pixel_spacing_written_to_other_digits_is_one_grid(tmp_path):
    """PACS and anonymisers rewrite PixelSpacing ("0.488281" beside "0.48828125"): the same pixel size."""
    folder = write_ct_series(tmp_path / "ct", ct_volume())
    spacing = [float(v) for v in pydicom.dcmread(sorted(folder.glob("ct*.dcm"))[0]).PixelSpacing]
    _edit_slices(folder, lambda k, ds: setattr(ds, "PixelSpacing", [f"{v:.6f}" if k % 2 else f"{v:.8e}"
                                                                    for v in spacing]))
    np.testing.assert_allclose(read_image(folder).GetSpacing()[:2], spacing[::-1], rtol=1e-6)
