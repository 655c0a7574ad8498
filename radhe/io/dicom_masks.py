"""Haematoma masks drawn in clinical tools: DICOM RTSTRUCT and DICOM-SEG onto the CT's voxel grid.

Reading these needs the ``dicom`` extra (``pip install "radhe[dicom]"``: pydicom, highdicom and
OpenCV). A DICOM-SEG is read by highdicom, frame by frame against the CT slices it references. An
RTSTRUCT holds polygons in patient coordinates (mm); they are mapped onto the CT slices through
SimpleITK's geometry of the series and filled with OpenCV's ``fillPoly`` (even-odd rule, so inner
contours are holes; boundary pixels included) — the rasterisation rt-utils uses, without its reader,
which swaps rows and columns on non-square images.

The result is a binary SimpleITK image with exactly the CT's size, spacing, origin and direction: write
it with :func:`radhe.io.write_image` and put its path in the manifest's ``mask`` column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radhe.errors import InputError
from radhe.io.image import check_dicom_series

__all__ = ["read_dicom_mask", "RTSTRUCT_SOP_CLASS", "SEG_SOP_CLASS", "SLICE_TOLERANCE"]

#: SOP Class UID of RT Structure Set Storage.
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
#: SOP Class UID of Segmentation Storage (DICOM-SEG).
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"

#: Largest distance of a contour point from its CT slice's plane, in slice spacings.
SLICE_TOLERANCE = 0.25

_EXTRA = 'reading DICOM masks needs the "dicom" extra: pip install "radhe[dicom]"'


@dataclass
class _Series:
    """The referenced CT series: its image (geometry) and, per slice in SimpleITK's order, the UID."""

    image: sitk.Image
    sop_uids: list[str]
    series_uid: str
    frame_uid: str | None


def read_dicom_mask(
    path: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    roi_name: str | None = None,
    case_id: object = None,
) -> sitk.Image:
    """Read one region of an RTSTRUCT or DICOM-SEG file as a mask on its CT series' voxel grid.

    Parameters
    ----------
    path : str or path-like
        The RTSTRUCT or DICOM-SEG file (told apart by its SOP Class UID).
    reference : str or path-like
        Folder holding the CT series the mask was drawn on (the series the file references; other
        series in the folder are ignored).
    roi_name : str, optional
        The region: an RTSTRUCT ROI Name or a DICOM-SEG Segment Label (exact match). Default: the
        file's only region; a file with several needs the name.
    case_id : object, optional
        Named in error messages.

    Returns
    -------
    SimpleITK.Image
        ``UInt8``, 1 inside the region and 0 elsewhere, with the CT series' size, spacing (mm), origin
        (mm) and direction, as :func:`radhe.io.read_dicom_series` reads that series. A fractional
        DICOM-SEG is binarised at 0.5.

    Raises
    ------
    radhe.errors.InputError
        ``path`` is missing or not an RTSTRUCT / DICOM-SEG file; ``roi_name`` is not in the file (the
        message lists the names present), or is needed and missing; the referenced CT series is not in
        ``reference`` (series mismatch: the message names both series) or its frame of reference
        differs; a contour is not a closed polygon, lies off the slices (farther than
        :data:`SLICE_TOLERANCE` from a slice's plane) or reaches outside the image; the region is empty.
    ImportError
        pydicom, highdicom or OpenCV is not installed.

    Examples
    --------
    >>> mask = read_dicom_mask("p001/rtstruct.dcm", "p001/ct", roi_name="haematoma")  # doctest: +SKIP
    >>> radhe.write_image(mask, "p001/mask.nii.gz")                                     # doctest: +SKIP
    """
    pydicom = _import("pydicom")
    path = Path(path)
    if not path.is_file():
        problem = "is a folder, not an RTSTRUCT or DICOM-SEG file" if path.is_dir() else "file not found"
        raise InputError(problem, case_id=case_id, path=path)
    try:
        ds = pydicom.dcmread(path)
    except (_import("pydicom.errors").InvalidDicomError, OSError, ValueError) as exc:
        raise InputError(f"cannot read DICOM file: {exc}", case_id=case_id, path=path) from None
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == RTSTRUCT_SOP_CLASS:
        series_uid, frame_uid = _rtstruct_references(ds)
    elif sop_class == SEG_SOP_CLASS:
        series_uid = _first(ds, "ReferencedSeriesSequence", "SeriesInstanceUID")
        frame_uid = ds.get("FrameOfReferenceUID")
    else:
        raise InputError(
            f"not an RTSTRUCT or DICOM-SEG file (Modality {ds.get('Modality', 'missing')!s}, "
            f"SOP Class UID {sop_class or 'missing'})", case_id=case_id, path=path)
    series = _reference_series(reference, series_uid, frame_uid, path, case_id)
    if sop_class == RTSTRUCT_SOP_CLASS:
        array, name = _rasterise_rtstruct(ds, roi_name, series, path, case_id)
    else:
        array, name = _read_seg(path, roi_name, series, case_id)
    if not array.any():
        raise InputError(f"region '{name}' is empty on the CT grid", case_id=case_id, path=path)
    mask = sitk.GetImageFromArray(array.astype(np.uint8))
    mask.CopyInformation(series.image)
    return mask


# ------------------------------------------------------------------------------------------ helpers
def _import(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"{_EXTRA} ({exc})") from exc


def _first(ds, sequence: str, keyword: str) -> str | None:
    items = ds.get(sequence) or []
    return str(items[0].get(keyword)) if items and items[0].get(keyword) else None


def _rtstruct_references(ds) -> tuple[str | None, str | None]:
    """The series and frame of reference an RTSTRUCT's contours are drawn on."""
    series_uid = frame_uid = None
    for frame in ds.get("ReferencedFrameOfReferenceSequence") or []:
        frame_uid = frame_uid or frame.get("FrameOfReferenceUID")
        for study in frame.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                series_uid = series_uid or series.get("SeriesInstanceUID")
    if frame_uid is None:
        frame_uid = _first(ds, "StructureSetROISequence", "ReferencedFrameOfReferenceUID")
    return (str(series_uid) if series_uid else None), (str(frame_uid) if frame_uid else None)


def _reference_series(folder, series_uid, frame_uid, mask_path, case_id) -> _Series:
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        problem = "reference CT series folder not found" if not folder.exists() else \
            "reference must be the folder of the CT series, not a file"
        raise InputError(problem, case_id=case_id, path=folder)
    found = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not found:
        raise InputError("no DICOM series in the reference folder", case_id=case_id, path=folder)
    if series_uid is None:
        if len(found) > 1:
            raise InputError(f"'{mask_path}' names no referenced series and folder '{folder}' holds "
                             f"{len(found)} series ({', '.join(found)}): keep only the CT in the folder",
                             case_id=case_id, path=mask_path)
        series_uid = found[0]
    if series_uid not in found:
        raise InputError(
            f"series mismatch: '{mask_path}' was drawn on series {series_uid}, but folder '{folder}' holds "
            f"series {', '.join(found)}", case_id=case_id, path=mask_path)
    files_by_series = {sid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)) for sid in found}
    check_dicom_series(folder, files_by_series, series_uid, case_id=case_id)  # as read_dicom_series reads it
    files = files_by_series[series_uid]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    series_frame = headers[0].get("FrameOfReferenceUID")
    if frame_uid is not None and series_frame is not None and str(series_frame) != str(frame_uid):
        raise InputError(
            f"frame of reference mismatch: '{mask_path}' uses {frame_uid}, series {series_uid} in '{folder}' "
            f"uses {series_frame}", case_id=case_id, path=mask_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read DICOM series {series_uid}: {exc}", case_id=case_id, path=folder) from None
    return _Series(image, [str(h.SOPInstanceUID) for h in headers], series_uid,
                   None if series_frame is None else str(series_frame))


def _choose(names: dict, wanted: str | None, what: str, path, case_id):
    """The key of ``names`` (key -> name) that ``wanted`` names, or the only one."""
    listed = ", ".join(repr(n) for n in names.values()) or "none"
    if wanted is None:
        if len(names) == 1:
            return next(iter(names))
        raise InputError(f"the file holds {len(names)} {what}s ({listed}): pass roi_name=",
                         case_id=case_id, path=path)
    matches = [key for key, name in names.items() if name == wanted]
    if not matches:
        raise InputError(f"{what} '{wanted}' not found; {what}s in the file: {listed}", case_id=case_id, path=path)
    if len(matches) > 1:
        raise InputError(f"{len(matches)} {what}s are named '{wanted}'", case_id=case_id, path=path)
    return matches[0]


def _rasterise_rtstruct(ds, roi_name, series: _Series, path, case_id) -> tuple[np.ndarray, str]:
    cv2 = _import("cv2")
    rois = {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence") or []}
    number = _choose(rois, roi_name, "ROI", path, case_id)
    name = rois[number]
    contours = next((c.get("ContourSequence") or [] for c in ds.get("ROIContourSequence") or []
                     if int(c.ReferencedROINumber) == number), [])
    if not contours:
        raise InputError(f"ROI '{name}' has no contours", case_id=case_id, path=path)
    image = series.image
    size_x, size_y, size_z = image.GetSize()
    slice_of_uid = {uid: k for k, uid in enumerate(series.sop_uids)}
    polygons: dict[int, list[np.ndarray]] = {}
    for number_in_roi, contour in enumerate(contours, start=1):
        kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        if kind == "POINT" or len(points) < 3:
            raise InputError(f"ROI '{name}' contour {number_in_roi} is a {kind} with {len(points)} point(s), "
                             "not a closed polygon", case_id=case_id, path=path)
        if kind != "CLOSED_PLANAR":
            raise InputError(f"ROI '{name}' contour {number_in_roi} is {kind}; only CLOSED_PLANAR contours "
                             "enclose a region", case_id=case_id, path=path)
        index = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in points])
        k = int(round(float(np.median(index[:, 2]))))
        referenced = [str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence") or []]
        if referenced and referenced[0] in slice_of_uid:
            k = slice_of_uid[referenced[0]]
        if not 0 <= k < size_z or np.abs(index[:, 2] - k).max() > SLICE_TOLERANCE:
            raise InputError(f"ROI '{name}' contour {number_in_roi} (z = {points[0, 2]:g} mm) lies on no slice of "
                             f"series {series.series_uid}", case_id=case_id, path=path)
        x, y = index[:, 0], index[:, 1]
        outside = (x < -0.5) | (x > size_x - 0.5) | (y < -0.5) | (y > size_y - 0.5)
        if outside.any():
            raise InputError(f"ROI '{name}' contour {number_in_roi} reaches outside the {size_x} x {size_y} CT slice "
                             f"({int(outside.sum())} of {len(points)} points)", case_id=case_id, path=path)
        polygons.setdefault(k, []).append(np.round(index[:, :2]).astype(np.int32))
    array = np.zeros((size_z, size_y, size_x), np.uint8)
    for k, slice_polygons in polygons.items():
        plane = np.zeros((size_y, size_x), np.uint8)
        cv2.fillPoly(plane, slice_polygons, 1)  # (x, y) vertices; several polygons: even-odd rule
        array[k] = plane
    return array, name


def _read_seg(path, roi_name, series: _Series, case_id) -> tuple[np.ndarray, str]:
    hd = _import("highdicom")
    try:
        seg = hd.seg.segread(path)
    except (ValueError, AttributeError, KeyError) as exc:
        raise InputError(f"cannot read DICOM-SEG: {exc}", case_id=case_id, path=path) from None
    segments = {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) for s in seg.SegmentSequence}
    number = _choose(segments, roi_name, "segment", path, case_id)
    referenced = {str(uids[2]) for uids in seg.get_source_image_uids()}
    if not referenced & set(series.sop_uids):
        raise InputError(f"the segmentation's frames reference none of the {len(series.sop_uids)} slices of "
                         f"series {series.series_uid}", case_id=case_id, path=path)
    try:
        pixels = seg.get_pixels_by_source_instance(
            series.sop_uids, segment_numbers=[number], combine_segments=False,
            assert_missing_frames_are_empty=True)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"cannot map segment '{segments[number]}' onto series {series.series_uid}: {exc}",
                         case_id=case_id, path=path) from None
    values = pixels[..., 0]
    rows, columns = series.image.GetSize()[1], series.image.GetSize()[0]
    if values.shape[1:] != (rows, columns):
        raise InputError(f"segment frames are {values.shape[2]} x {values.shape[1]} pixels, the CT slices "
                         f"{columns} x {rows}", case_id=case_id, path=path)
    return ((values >= 0.5) if np.issubdtype(values.dtype, np.floating) else (values > 0)), segments[number]
