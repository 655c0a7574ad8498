"""Reading and writing CT volumes and masks with SimpleITK.

Supported: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``),
a single DICOM file, and a folder holding a DICOM series. DICOM rescale slope/intercept are applied by
SimpleITK's GDCM reader, so CT values come back in Hounsfield units (HU).
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radhe.errors import InputError

__all__ = ["read_image", "write_image", "read_dicom_series", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def read_image(path: str | os.PathLike, *, case_id: object = None) -> sitk.Image:
    """Read a 3-D medical image from a file or a DICOM series folder.

    Parameters
    ----------
    path : str or path-like
        A NIfTI, NRRD, MetaImage or DICOM file, or a folder of DICOM files. When the folder holds
        several series, the one with most slices is read and an :class:`~radhe.errors.InputWarning`
        says which.
    case_id : object, optional
        Named in error messages.

    Returns
    -------
    SimpleITK.Image
        With spacing in mm; for CT, voxel values in HU.

    Raises
    ------
    radhe.errors.InputError
        The path does not exist, or the file cannot be read (truncated, not an image).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", case_id=case_id, path=path)
    if path.is_dir():
        return read_dicom_series(path, case_id=case_id)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read image '{path}': {_first_line(exc)}", case_id=case_id, path=path) from None
    if path.name.lower().endswith((".nii", ".nii.gz")):
        problem = _nifti_truncation(path)
        if problem:
            raise InputError(f"cannot read image '{path}': {problem}", case_id=case_id, path=path)
    return image


def read_dicom_series(folder: str | os.PathLike, *, case_id: object = None) -> sitk.Image:
    """Read the DICOM series with most slices from ``folder`` (see :func:`read_image`)."""
    folder = str(folder)
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if not series_ids:
        raise InputError(f"no DICOM series found in folder '{folder}'", case_id=case_id, path=folder)
    files_by_series = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, sid) for sid in series_ids}
    chosen = max(series_ids, key=lambda sid: (len(files_by_series[sid]), sid))
    if len(series_ids) > 1:
        from radhe.errors import InputWarning, format_case

        counts = ", ".join(f"{sid} ({len(files_by_series[sid])} slices)" for sid in series_ids)
        prefix = f"{format_case(case_id)}: " if case_id is not None else ""
        warnings.warn(
            f"{prefix}folder '{folder}' holds {len(series_ids)} DICOM series: {counts}; "
            f"reading {chosen}, the one with most slices",
            InputWarning,
            stacklevel=3,
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files_by_series[chosen])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"cannot read DICOM series {chosen} in '{folder}': {_first_line(exc)}", case_id=case_id, path=folder
        ) from None


def write_image(
    image: sitk.Image | np.ndarray,
    path: str | os.PathLike,
    *,
    reference: sitk.Image | None = None,
    spacing: tuple[float, float, float] | None = None,
    compress: bool | None = None,
) -> Path:
    """Write an image to ``path``; the format follows the suffix.

    Parameters
    ----------
    image : SimpleITK.Image or numpy.ndarray
        A numpy array is in SimpleITK's ``(z, y, x)`` order; its geometry is copied from
        ``reference`` or set from ``spacing`` (mm, in ``(x, y, z)`` order).
    path : str or path-like
        Destination; parent folders are created.
    reference : SimpleITK.Image, optional
        Image whose origin, spacing and direction the array takes.
    spacing : tuple of float, optional
        Voxel spacing in mm, ``(x, y, z)``; ignored when ``reference`` is given.
    compress : bool, optional
        Compress the pixel data. Default: compress ``.nii.gz`` only. Uncompressed ``.nii`` writes
        and reads many times faster.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    if isinstance(image, np.ndarray):
        array = image.astype(np.uint8) if image.dtype == bool else image
        image = sitk.GetImageFromArray(array)
        if reference is not None:
            image.CopyInformation(reference)
        elif spacing is not None:
            image.SetSpacing(tuple(float(s) for s in spacing))
    elif not isinstance(image, sitk.Image):
        raise TypeError(f"image must be a SimpleITK.Image or numpy array, got {type(image).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress is None:
        compress = path.name.endswith(".gz")
    sitk.WriteImage(image, str(path), bool(compress))
    return path


def _nifti_truncation(path: Path) -> str | None:
    """Describe how a NIfTI file is truncated, or return None when its voxel data is complete.

    SimpleITK's NIfTI reader fills the missing part of a truncated file with zeros instead of
    failing, which would silently corrupt a scan; this reads the header and checks the data length.
    """
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    with opener(path, "rb") as fh:
        header = fh.read(540)
    expected = _nifti_data_end(header)
    if expected is None:
        return None
    if not compressed:
        actual = path.stat().st_size
    else:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            trailer_size = struct.unpack("<I", fh.read(4))[0]
        if trailer_size == expected % 2**32:
            return None  # gzip trailer records the full uncompressed length
        actual = 0
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    actual += len(chunk)
        except (EOFError, OSError, zlib.error):
            return f"compressed stream ends early (after {actual} of {expected} bytes): file truncated"
    if actual < expected:
        return f"voxel data ends early ({actual} of {expected} bytes): file truncated"
    return None


def _nifti_data_end(header: bytes) -> int | None:
    """Return vox_offset + data bytes declared by a NIfTI-1/2 header, or None if not recognised."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None
    n_dims = dims[0]
    if not 1 <= n_dims <= 7:
        return None
    voxels = 1
    for d in dims[1 : n_dims + 1]:
        voxels *= max(int(d), 1)
    return max(offset, 348) + voxels * bitpix // 8


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # SimpleITK puts the useful sentence after the "sitk::ERROR:" tag.
    for ln in lines:
        if "ERROR" in ln:
            return ln.split("ERROR:", 1)[-1].strip()
    return lines[0] if lines else type(exc).__name__
