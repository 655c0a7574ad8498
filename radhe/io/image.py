"""Reading and writing CT volumes and masks with SimpleITK.

Supported: NIfTI (``.nii``, ``.nii.gz``, and ``.hdr`` / ``.img`` pairs), NRRD (``.nrrd``, ``.nhdr``),
MetaImage (``.mha``, ``.mhd``), a single DICOM file, and a folder holding a DICOM series. A header whose
voxels lie in other files (``.mhd`` → ``.raw``, ``.nhdr`` → its data file, ``.hdr`` → ``.img``) is checked
and stamped with those files (:func:`data_files`). DICOM rescale slope/intercept are applied by
SimpleITK's GDCM reader, so CT values come back in Hounsfield units (HU).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import locale
import math
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radhe.errors import InputError

__all__ = ["read_image", "write_image", "read_dicom_series", "file_integrity_problem", "IMAGE_SUFFIXES",
           "is_missing_path", "checked_path", "data_files", "check_dicom_series"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".dcm")


def is_missing_path(value) -> bool:
    """True for a manifest cell without a path: None, NaN, NaT, ``pd.NA`` or a blank string."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, os.PathLike):
        return False
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cells
        return False


def checked_path(path, case_id, what: str = "image") -> Path:
    """``path`` as a Path, or an :class:`~radhe.errors.InputError` naming the case for a cell without one
    (:func:`is_missing_path`: ``Path("")`` would be the working directory, read as if it were the case's
    scan) or holding something else than a path."""
    if is_missing_path(path):
        raise InputError(f"no {what} path (the manifest's cell holds {path!r})", case_id=case_id)
    if not isinstance(path, str | os.PathLike):
        raise InputError(f"an {what} path must be text or a path; got {type(path).__name__} {path!r}",
                         case_id=case_id)
    return Path(path)


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
        No path (None, NaN, a blank string), the path does not exist, or the file cannot be read
        (truncated, not an image).
    """
    path = checked_path(path, case_id)
    if not path.exists():
        raise InputError("file not found", case_id=case_id, path=path)
    if path.is_dir():
        return read_dicom_series(path, case_id=case_id)
    problem = file_integrity_problem(path)
    if problem:
        raise InputError(f"cannot read image '{path}': {problem}", case_id=case_id, path=path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        hint = ""
        if _is_dicom_file(path):
            hint = (" (a DICOM RTSTRUCT or DICOM-SEG mask? Convert it onto its CT's grid first: "
                    "radhe.io.read_dicom_mask(path, ct_folder))")
        raise InputError(f"cannot read image '{path}': {_first_line(exc)}{hint}", case_id=case_id, path=path) from None
    sop_class = image.GetMetaData("0008|0016").strip().rstrip("\x00") if image.HasMetaDataKey("0008|0016") else ""
    if sop_class in _DICOM_MASK_CLASSES:
        raise InputError(
            f"'{path}' is a {_DICOM_MASK_CLASSES[sop_class]}, not an image on its CT's voxel grid: convert it first "
            "with radhe.io.read_dicom_mask(path, ct_folder) and give the manifest the mask it writes",
            case_id=case_id, path=path,
        )
    return image


#: SOP Class UIDs of DICOM masks, which are not read as images (:func:`radhe.io.read_dicom_mask` converts them).
_DICOM_MASK_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "DICOM-SEG (segmentation object)",
                       "1.2.840.10008.5.1.4.1.1.481.3": "DICOM RTSTRUCT (contours)"}


def _is_dicom_file(path: Path) -> bool:
    """Whether ``path`` has the DICOM preamble ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


#: stamps ((resolved path, size, mtime, ctime) of a file and of its data files) of images whose compressed
#: stream and length were verified in this process, and of DICOM folders whose series passed its checks
_VERIFIED: dict[tuple, None] = {}
_VERIFIED_MAX = 4096
_GZIP_MAGIC = b"\x1f\x8b"


def file_integrity_problem(path: str | os.PathLike) -> str | None:
    """Describe why an image file's bytes cannot be trusted, or return None.

    SimpleITK neither verifies a gzip stream's CRC (a ``.nii.gz`` with flipped bytes but the
    right length reads as a scan of garbage) nor notices a truncated NIfTI (it fills the missing
    voxels with zeros), so radhe checks, before SimpleITK reads the file:

    - a name ending in ``.gz`` holds a gzip stream (not, say, an uncompressed NIfTI renamed);
    - the whole gzip stream decompresses and its CRC-32 and length match its trailer;
    - a NIfTI file (or the ``.img`` of a ``.hdr`` / ``.img`` pair) holds as many voxel bytes as its
      header declares, none of them NaN or infinite;
    - the data files a header names (:func:`data_files`) exist.

    A file that passed is remembered by the size, modification and status-change times of it and
    of its data files for the life of the process, so repeated reads across folds cost one check
    (a file replaced in place with its modification time set back, as ``cp -p`` does, is checked
    again: its status-change time moved).
    """
    path = Path(path)
    try:
        companions = data_files(path)
        key = tuple((str(p.resolve()), *_stat_stamp(p)) for p in (path, *companions))
    except OSError as exc:
        missing = getattr(exc, "filename", None)
        where = "" if missing in (None, str(path)) else f" '{missing}' (the data file its header names)"
        return f"cannot open file{where}: {exc.strerror or exc}"
    if key in _VERIFIED:
        return None
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if compressed:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic != _GZIP_MAGIC:
            return ("the file name ends in '.gz' but the file is not gzip-compressed (an uncompressed file "
                    "renamed? name it by its real format, e.g. '.nii')")
    problem = None
    if name.endswith((".nii", ".nii.gz")):
        problem = _nifti_truncation(path)
    elif name.endswith((".hdr", ".hdr.gz")):
        problem = _nifti_truncation(path, data=companions[0])
    elif name.endswith((".img", ".img.gz")):
        problem = _nifti_truncation(companions[0], data=path)
    elif compressed:
        problem = _gzip_problem(path)[0]
    if problem is None:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = None
    return problem


def _stat_stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def data_files(path: str | os.PathLike) -> list[Path]:
    """The files besides ``path`` that hold an image's voxels, in the order the header names them.

    A MetaImage header (``.mhd``, ``.mha``) names them in ``ElementDataFile``, a NRRD header
    (``.nhdr``, ``.nrrd``) in ``data file``: one file, a ``LIST`` of files or a ``printf``-style
    pattern with first, last and step; ``LOCAL`` (MetaImage) or no such field means the voxels
    follow the header. The ``.img`` of a NIfTI / Analyze ``.hdr`` (and the ``.hdr`` of an ``.img``)
    is its pair. Empty for single-file formats and for a header that cannot be read (the reader names
    the problem). The files are returned whether or not they exist.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".hdr", ".hdr.gz", ".img", ".img.gz")):
        stem = path.name[: -len(".hdr.gz")] if name.endswith((".hdr.gz", ".img.gz")) else path.name[:-4]
        other = ".img" if ".hdr" in name[-7:] else ".hdr"
        candidates = [path.with_name(stem + other), path.with_name(stem + other + ".gz")]
        return [next((c for c in candidates if c.exists()), candidates[0])]
    if name.endswith((".mhd", ".mha")):
        return _named_data_files(path, "elementdatafile", "=", local="local")
    if name.endswith((".nhdr", ".nrrd")):
        return _named_data_files(path, ("data file", "datafile"), ":", local=None)
    return []


def _integers(words) -> bool:
    try:
        [int(w) for w in words]
    except ValueError:
        return False
    return True


def _named_data_files(path: Path, keys, separator: str, *, local: str | None) -> list[Path]:
    """The data files a text header names under ``keys`` (see :func:`data_files`)."""
    keys = (keys,) if isinstance(keys, str) else keys
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:  # no header to read: the reader names the problem
        return []
    lines = head.decode("latin-1").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            if separator == ":":  # a NRRD header ends at its first blank line
                break
            continue
        field, sep, value = line.partition(separator)
        if not sep or field.strip().lower() not in keys:
            continue
        value = value.strip()
        words = value.split()
        if local is not None and value.lower() == local:
            return []
        if words and words[0].upper() == "LIST":
            names = [ln.strip() for ln in lines[i + 1:] if ln.strip()]
        elif len(words) >= 4 and "%" in words[0] and _integers(words[1:4]) and int(words[3]):
            first, last, step = (int(w) for w in words[1:4])
            stop = last + (1 if step > 0 else -1)
            try:
                names = [words[0] % index for index in range(first, stop, step)]
            except (TypeError, ValueError):  # not a printf pattern after all: the reader names the problem
                names = [value]
        else:
            names = [value]
        return [p if p.is_absolute() else path.parent / p for p in map(Path, names)]
    return []


def _gzip_problem(path: Path) -> tuple[str | None, int]:
    """Decompress the whole gzip stream (which verifies its CRC-32 and length): (problem or None, bytes)."""
    size = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                size += len(chunk)
    except EOFError:
        return f"compressed stream ends early (after {size} bytes): file truncated", size
    except (OSError, zlib.error) as exc:
        detail = str(exc) or type(exc).__name__
        if "crc" in detail.lower():
            return ("compressed data is corrupt (gzip CRC check failed): the file was damaged after it was "
                    "written", size)
        return f"compressed data is corrupt ({detail})", size
    return None, size


def read_dicom_series(folder: str | os.PathLike, *, case_id: object = None) -> sitk.Image:
    """Read the DICOM series with most slices from ``folder`` (see :func:`read_image`)."""
    folder = str(folder)
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if not series_ids:
        raise InputError(f"no DICOM series found in folder '{folder}'", case_id=case_id, path=folder)
    files_by_series = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, sid) for sid in series_ids}
    slices = {sid: _series_slices(files) for sid, files in files_by_series.items()}
    most = max(slices.values())
    tied = [sid for sid in series_ids if slices[sid] == most]
    if len(tied) > 1:
        # two reconstructions of one scan (a soft-tissue and a bone kernel) look alike to a count of slices:
        # which one is read changes every intensity, so radhe does not pick
        listing = "; ".join(f"{sid} ({_series_description(files_by_series[sid][0])})" for sid in tied)
        raise InputError(
            f"folder '{folder}' holds {len(tied)} DICOM series of {most} slices each ({listing}): which one is the "
            "scan is not clear; put the series to read in a folder of its own",
            case_id=case_id, path=folder,
        )
    chosen = tied[0]
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
    check_dicom_series(folder, files_by_series, chosen, case_id=case_id)
    if len(files_by_series[chosen]) == 1:
        # one file: an enhanced (multi-frame) CT holds the volume, read as the file it is (the series
        # reader would stack it as a 4-D image of one slice)
        return read_image(files_by_series[chosen][0], case_id=case_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files_by_series[chosen])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"cannot read DICOM series {chosen} in '{folder}': {_first_line(exc)}", case_id=case_id, path=folder
        ) from None


def _series_slices(files) -> int:
    """A series' number of slices: its files, or the frames of a one-file (enhanced, multi-frame) series."""
    if len(files) != 1:
        return len(files)
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return 1
    size = reader.GetSize()
    return int(size[2]) if len(size) > 2 else 1


def _series_description(path: str) -> str:
    """A DICOM file's SeriesDescription and ConvolutionKernel, for naming its series."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return "unreadable header"
    found = [f"{label} {reader.GetMetaData(key).strip()}" for label, key in (("description", "0008|103e"),
                                                                              ("kernel", "0018|1210"))
             if reader.HasMetaDataKey(key) and reader.GetMetaData(key).strip()]
    return ", ".join(found) or "no description"


#: Largest difference (mm) between a slice step of a DICOM series and the median step, beyond 5 % of it.
SLICE_STEP_TOLERANCE_MM = 0.05


def check_dicom_series(folder, files_by_series: dict, chosen: str, *, case_id: object = None) -> None:
    """Refuse a DICOM series that would not be read as the scan it is: files of the folder that belong to
    no readable series (truncated or damaged), or slices of ``chosen`` that do not form one regular
    grid (a missing, duplicated or unevenly spaced slice, a localizer among them, a gantry tilt).

    Every reader of a DICOM series (:func:`read_dicom_series`, the reference series of
    :func:`radhe.io.read_dicom_mask`) runs it. ``files_by_series``: the files of each series GDCM found.

    Raises
    ------
    radhe.errors.InputError
        Naming the case, the folder, the files and the problem.
    """
    folder = str(folder)
    try:  # a series that passed is remembered by its files' stamps (each fold reads it again)
        key = (folder, chosen, tuple(sorted((e.name, *_stat_stamp(Path(e.path))) for e in os.scandir(folder))))
    except OSError:
        key = None
    if key is not None and key in _VERIFIED:
        return
    unread = _unread_dicom_files(folder, {f for files in files_by_series.values() for f in files})
    if unread:
        listing = ", ".join(f"'{Path(f).name}'" for f in unread[:5]) + (" ..." if len(unread) > 5 else "")
        raise InputError(
            f"folder '{folder}': {len(unread)} DICOM file(s) belong to no readable series ({listing}): truncated or "
            "damaged (a failed copy?); the series would be read without them, with a slice missing",
            case_id=case_id, path=folder,
        )
    problem = _series_geometry_problem(files_by_series[chosen])
    if problem:
        raise InputError(f"DICOM series {chosen} in '{folder}': {problem}", case_id=case_id, path=folder)
    if key is not None:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = None


def _unread_dicom_files(folder: str, in_series: set) -> list[str]:
    """Files of ``folder`` with the DICOM preamble ("DICM" at byte 128) that GDCM put in no series."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or entry.path in in_series or entry.name.upper() == "DICOMDIR":
            continue
        if _is_dicom_file(Path(entry.path)):
            out.append(entry.path)
    return out


def _dicom_tag(reader: sitk.ImageFileReader, key: str) -> str:
    """A DICOM tag's value as text (stripped; empty when absent), after ``ReadImageInformation``."""
    return reader.GetMetaData(key).replace(" ", "").strip() if reader.HasMetaDataKey(key) else ""


def _spacing_text(value: str) -> str:
    """PixelSpacing as compared between slices: its numbers to 1e-4 mm ("0.488281" and "0.48828125" are one
    spacing, written by different tools), the text itself when it holds no numbers."""
    try:
        return "\\".join(f"{float(v):.4f}" for v in value.split("\\"))
    except ValueError:
        return value


def _series_geometry_problem(files) -> str | None:
    """Why the slices of a DICOM series would not be read as the scan they are, or None.

    SimpleITK stacks the files it is given at one spacing, from the first two positions, and at the
    first slice's pixel size: a slice without a position, a missing or duplicated slice, uneven steps,
    slices of another pixel grid, a localizer in the series or a gantry tilt (positions shifted
    in-plane from slice to slice) would give a volume with wrong geometry and no error; MONOCHROME1
    slices (values inverted for display) would not be HU.
    """
    reader = sitk.ImageFileReader()
    orientations, positions, grids, without, inverted = [], [], [], [], []
    for name in files:
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            without.append(name)
            continue
        if _dicom_tag(reader, "0028|0004").upper() == "MONOCHROME1":
            inverted.append(name)
        if len(files) < 2:
            break
        try:
            iop = [float(v) for v in _dicom_tag(reader, "0020|0037").split("\\")]
            ipp = [float(v) for v in _dicom_tag(reader, "0020|0032").split("\\")]
        except ValueError:  # a tag missing or unreadable
            iop, ipp = [], []
        if len(iop) != 6 or len(ipp) != 3:
            without.append(name)
            continue
        orientations.append(iop)
        positions.append(ipp)
        grids.append((_spacing_text(_dicom_tag(reader, "0028|0030")), _dicom_tag(reader, "0028|0010"),
                      _dicom_tag(reader, "0028|0011")))
    if inverted:
        listing = ", ".join(f"'{Path(f).name}'" for f in inverted[:5])
        return (f"{len(inverted)} slice(s) are stored as MONOCHROME1 ({listing}): their pixel values are inverted "
                "for display, and read as they are they would not be HU; convert the series to MONOCHROME2 "
                "first (e.g. dcm2niix, or pydicom)")
    if len(files) < 2:
        return None
    if without:
        listing = ", ".join(f"'{Path(f).name}'" for f in without[:5]) + (" ..." if len(without) > 5 else "")
        return (f"{len(without)} of {len(files)} slices have no readable ImagePositionPatient / "
                f"ImageOrientationPatient (0020,0032) / (0020,0037) ({listing}): where a slice lies cannot be "
                "checked, and SimpleITK would stack the slices at a made-up spacing (1 mm) or out of order")
    kinds = sorted(set(grids))
    if len(kinds) > 1:
        counts = {k: grids.count(k) for k in kinds}
        odd = [files[i] for i, g in enumerate(grids) if g != max(counts, key=counts.get)]
        listing = ", ".join(f"'{Path(f).name}'" for f in odd[:5]) + (" ..." if len(odd) > 5 else "")
        shown = "; ".join(f"PixelSpacing {k[0] or '?'}, {k[1] or '?'} × {k[2] or '?'} pixels ({n} slices)"
                          for k, n in counts.items())
        return (f"the slices do not share one pixel grid ({shown}; e.g. {listing}): SimpleITK would stack them "
                "at the first slice's pixel size; put each series in its own folder")
    orientations, positions = np.asarray(orientations), np.asarray(positions)
    differs = np.flatnonzero(np.abs(orientations - np.median(orientations, axis=0)).max(axis=1) > 1e-3)
    if differs.size:
        listing = ", ".join(f"'{Path(files[i]).name}'" for i in differs[:5])
        return (f"{differs.size} of {len(files)} slices have another orientation than the others ({listing}; a "
                "localizer or scout image in the series?): remove them from the folder")
    row, column = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, column)
    height = positions @ normal
    order = np.argsort(height)
    steps = np.diff(height[order])
    if (steps < 1e-3).any():
        k = int(np.argmax(steps < 1e-3))
        return (f"slices '{Path(files[order[k]]).name}' and '{Path(files[order[k + 1]]).name}' lie at the same "
                f"position ({height[order[k]]:.2f} mm along the slice normal): a duplicated slice")
    median = float(np.median(steps))
    uneven = np.abs(steps - median) > max(SLICE_STEP_TOLERANCE_MM, 0.05 * median)
    if uneven.any():
        k = int(np.argmax(np.abs(steps - median)))
        return (f"uneven slice spacing: {median:.3g} mm between most slices, {steps[k]:.3g} mm between "
                f"'{Path(files[order[k]]).name}' and '{Path(files[order[k + 1]]).name}' (a missing slice, or "
                "series of different spacing stacked): the volume would be stacked at one spacing")
    in_plane = positions[order] - np.outer(height[order], normal)
    drift = np.linalg.norm(in_plane - in_plane[0], axis=1)
    extent = float(height[order][-1] - height[order][0])
    if drift[-1] > SLICE_STEP_TOLERANCE_MM + 0.01 * extent:
        angle = float(np.degrees(np.arctan2(drift[-1], extent)))
        return (f"the slices are shifted in-plane from one to the next ({drift[-1]:.1f} mm over {extent:.0f} mm: a "
                f"gantry tilt of about {angle:.1f}°); stacked as acquired the head would be sheared. Correct the "
                "tilt first (resample the series onto an orthogonal grid, e.g. dcm2niix's tilt correction)")
    return None


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
    with _process_locale_kept():
        sitk.WriteImage(image, str(path), bool(compress))
    return path


@contextlib.contextmanager
def _process_locale_kept():
    """Restore the process locale after SimpleITK writes: GDCM's DICOM writer switches it to "C", which
    makes every later text read or write in the process ASCII-only (``Path.read_text`` of a UTF-8 file fails)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _nifti_truncation(path: Path, data: Path | None = None) -> str | None:
    """Describe how a NIfTI file is corrupt, truncated or holds non-finite voxels, or return None.

    Reads the header, then streams the voxel data once (through gzip for ``.nii.gz``, which verifies
    the CRC; an uncompressed file of integer voxels only has its length compared): SimpleITK's NIfTI
    reader fills the missing part of a truncated file with zeros and turns NaN and infinite voxels
    into 0, both of which would silently corrupt a scan. ``data``: the
    ``.img`` of a ``.hdr`` / ``.img`` pair, which holds the voxels (from the header's offset).
    """
    counts = [0, 0, 0]  # bytes read (of the file holding the voxels), NaN, infinite voxels
    layout = None
    try:
        with _open(path) as fh:
            header = fh.read(540)
            layout = _nifti_layout(header, pair=data is not None)
            spacing_problem = _nifti_voxel_size_problem(header)
            if spacing_problem:
                return spacing_problem
            if data is None:
                counts[0] = len(header)
                _stream_voxels(fh, header, layout, counts)
        if data is not None:
            with _open(data) as fh:
                _stream_voxels(fh, b"", layout, counts)
    except EOFError:
        return f"compressed stream ends early (after {counts[0]} bytes): file truncated"
    except (OSError, zlib.error) as exc:
        detail = str(exc) or type(exc).__name__
        if "crc" in detail.lower():
            return "compressed data is corrupt (gzip CRC check failed): the file was damaged after it was written"
        return f"compressed data is corrupt ({detail})"
    if layout is None:
        return None
    expected = layout[0]
    size = counts[0]
    if size < expected:
        where = "" if data is None else f" in '{data.name}'"
        return f"voxel data{where} ends early ({size} of {expected} bytes): file truncated"
    if counts[1] or counts[2]:
        return (f"image holds {counts[1]} NaN and {counts[2]} infinite voxel(s); radhe does not guess "
                "their values (fill them, e.g. with -1000 HU outside the head, before use)")
    return None


def _open(path: Path):
    return (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rb")


def _stream_voxels(fh, start: bytes, layout, counts: list[int]) -> None:
    """Read the rest of ``fh`` (whose first bytes, already read, are ``start``), adding the bytes read to
    ``counts[0]`` and, for floating-point voxels from the layout's offset on, the NaN and infinite
    ones to ``counts[1]`` and ``counts[2]``."""
    dtype = layout[2] if layout is not None else None
    if dtype is None and isinstance(fh, io.BufferedReader):
        # an uncompressed file of integer voxels: only its length is checked, which the file system knows
        counts[0] += os.fstat(fh.fileno()).st_size - fh.tell()
        return
    skip = max(layout[1] - len(start), 0) if dtype is not None else 0  # header bytes still to come
    pending = start[layout[1]:] if dtype is not None else b""
    while chunk := fh.read(1 << 22):
        counts[0] += len(chunk)
        if dtype is None:
            continue
        if skip:
            dropped = min(skip, len(chunk))
            chunk, skip = chunk[dropped:], skip - dropped
        pending += chunk
        usable = len(pending) - len(pending) % dtype.itemsize
        _count_non_finite(np.frombuffer(pending[:usable], dtype), counts)
        pending = pending[usable:]


def _count_non_finite(values: np.ndarray, counts: list[int]) -> None:
    """Add the NaN and the infinite ``values`` to ``counts[1]`` and ``counts[2]``."""
    if values.size:
        bad = ~np.isfinite(values)
        if bad.any():
            nan = int(np.isnan(values).sum())
            counts[1] += nan
            counts[2] += int(bad.sum()) - nan


#: NIfTI datatype codes of floating-point voxels (float32, float64), whose NaN/inf SimpleITK zeroes
_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}


def _nifti_voxel_size_problem(header: bytes) -> str | None:
    """Describe a NIfTI-1/2 (or Analyze) header whose voxel size (``pixdim``) along a spatial axis is not a
    positive finite number, or return None: ITK reads such an axis as 1 mm (a console warning at most),
    which would silently change every volume in mL and every shape feature."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            n_dims = struct.unpack(order + "h", header[40:42])[0]
            pixdim = struct.unpack(order + "8f", header[76:108])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            n_dims = struct.unpack(order + "q", header[16:24])[0]
            pixdim = struct.unpack(order + "8d", header[104:168])
            break
    else:
        return None
    if not 1 <= n_dims <= 7:
        return None
    for axis, name in zip(range(1, min(int(n_dims), 3) + 1), "xyz", strict=False):
        size = pixdim[axis]
        if not (math.isfinite(size) and size > 0):
            return (f"the NIfTI header gives a voxel size of {size:g} along {name} (pixdim[{axis}]): the voxel "
                    "size is unknown (ITK would read 0 as 1 mm and a negative size as an axis flipped against the "
                    "header's transform); fix the header with the scan's real spacing")
    return None


def _nifti_layout(header: bytes, *, pair: bool = False) -> tuple[int, int, np.dtype | None] | None:
    """(vox_offset + data bytes, vox_offset, float dtype or None) of a NIfTI-1/2 (or Analyze 7.5) header,
    or None if not one; ``pair``: the header of a ``.hdr`` / ``.img`` pair, whose offset is into the ``.img``."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            datatype = struct.unpack(order + "h", header[70:72])[0]
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            datatype = struct.unpack(order + "h", header[12:14])[0]
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
    offset = max(int(offset), 0 if pair else 348)
    code = _NIFTI_FLOAT_TYPES.get(int(datatype))
    dtype = np.dtype(order + code) if code else None
    return offset + voxels * bitpix // 8, offset, dtype


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # SimpleITK puts the useful sentence after the "sitk::ERROR:" tag.
    for ln in lines:
        if "ERROR" in ln:
            return ln.split("ERROR:", 1)[-1].strip()
    return lines[0] if lines else type(exc).__name__
