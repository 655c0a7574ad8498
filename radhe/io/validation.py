"""Checks that a case's CT volume and haematoma mask can be used, before any expensive step.

Errors (:class:`~radhe.errors.InputError`) name the case, the file and the problem; with
``on_error="skip"`` a failing case is recorded in a table instead, never silently dropped.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radhe.errors import InputError, InputWarning, format_case
from radhe.io.image import checked_path, is_missing_path, read_image

__all__ = ["CaseCheck", "LoadedCase", "ValidationReport", "load_checked_case", "validate_case", "validate_manifest",
           "check_on_error", "read_mask", "GEOMETRY_TOLERANCE_MM", "PADDING_HU"]

#: Below this maximum (HU) a "CT" holds no bone or blood: a windowed or normalised image.
CT_MAX_AT_LEAST_HU = 100.0
#: Above this minimum (HU) a "CT" holds no air: a windowed or normalised image. The minimum is taken
#: over the scanned field, without padding (:data:`PADDING_HU`): raw stored values (HU + 1024, the
#: rescale intercept lost) around a padded field would otherwise pass.
CT_MIN_AT_MOST_HU = -500.0
#: HU below which a voxel is padding outside the scanner's reconstructed field of view (scanners
#: write -2000, -3024 or lower there; air is about -1000).
PADDING_HU = -1500.0
#: A padded scan without air inside its field holds stored values, not HU, when more than
#: :data:`RAW_TISSUE_SHARE` of its field lies in this band: brain and soft tissue (0-80 HU) plus the lost
#: 1024 intercept (6-86 HU: grey and white matter, blood, muscle); in HU only a thin part of the skull lies there.
RAW_TISSUE_BAND = (1030.0, 1110.0)
RAW_TISSUE_SHARE = 0.2


@dataclass
class CaseCheck:
    """What :func:`validate_case` measured on one case (sizes in voxels, spacing in mm)."""

    case_id: str | None
    size: tuple[int, ...]
    spacing_mm: tuple[float, ...]
    hu_min: float
    hu_max: float
    mask_voxels: int | None = None
    mask_volume_ml: float | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_manifest`.

    Attributes
    ----------
    cases : pandas.DataFrame
        One row per manifest row (same index): ``status`` ("ok" or "skipped"), ``problem`` and
        the measurements of :class:`CaseCheck`.
    valid : pandas.DataFrame
        The manifest rows whose status is "ok".
    skipped : pandas.DataFrame
        ``case_id``, ``file`` and ``problem`` of every skipped case.
    """

    cases: pd.DataFrame
    valid: pd.DataFrame
    skipped: pd.DataFrame

    def summary(self) -> str:
        """A few lines describing the cohort and what was skipped, for the console."""
        ok = self.cases[self.cases["status"] == "ok"]
        lines = [f"{len(self.cases)} cases: {len(ok)} valid, {len(self.skipped)} skipped"]
        if len(ok):
            lines.append(
                "HU range {:.0f} to {:.0f}; spacing (mm) {}".format(
                    ok["hu_min"].min(), ok["hu_max"].max(), sorted(set(map(tuple, ok["spacing_mm"])))[:3]
                )
            )
            vol = ok["mask_volume_ml"].dropna()
            if len(vol):
                lines.append(
                    f"mask volume (mL): median {vol.median():.1f}, IQR {vol.quantile(.25):.1f}-"
                    f"{vol.quantile(.75):.1f}, range {vol.min():.1f}-{vol.max():.1f}"
                )
        for row in self.skipped.itertuples():
            lines.append(f"skipped {format_case(row.case_id)}: {row.problem}")
        return "\n".join(lines)


def check_on_error(on_error: str) -> str:
    """Validate an ``on_error`` policy argument."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


#: Largest difference (mm, and direction cosines) between a mask's geometry and its image's that is
#: accepted as the same grid; within it the mask takes the image's geometry exactly, so that every
#: later step (pyradiomics included) sees one grid. One tolerance for validation and every estimator.
GEOMETRY_TOLERANCE_MM = 1e-3
#: A label mask with more distinct values than this is not a mask (a CT or a probability map saved
#: as integers).
MAX_MASK_VALUES = 256


@dataclass
class LoadedCase:
    """A case's CT and mask as read and checked by :func:`load_checked_case`.

    Attributes
    ----------
    image : SimpleITK.Image
        The CT volume (HU).
    mask : SimpleITK.Image or None
        The mask, on exactly the image's grid (its geometry snapped to the image's when it differed
        by less than the tolerance).
    check : CaseCheck
        What was measured.
    """

    image: sitk.Image
    mask: sitk.Image | None
    check: CaseCheck


def load_checked_case(
    image: str | os.PathLike | sitk.Image,
    mask: str | os.PathLike | sitk.Image | None = None,
    *,
    case_id: object = None,
    label: int = 1,
    tolerance: float = GEOMETRY_TOLERANCE_MM,
    hu_check: bool = True,
    require_label: bool = True,
    min_roi_dimensions: int = 2,
) -> LoadedCase:
    """Read a case's CT and optional mask and check that they can be used: radhe's one validation path.

    Every estimator that reads images (radiomics, the segmenter, the CNN embedder, the marker
    classifier, the two-output network), :func:`validate_case`, :func:`validate_manifest` and
    ``radhe validate`` read cases through this function, so a file refused by one is refused by all.

    Parameters
    ----------
    image, mask : path-like or SimpleITK.Image
        The CT volume (HU) and its haematoma mask; ``mask=None`` checks the image alone.
    case_id : object, optional
        Named in every message.
    label : int, default 1
        Mask value of the haematoma. Other positive values (a label map) are allowed but ignored.
    tolerance : float, default 1e-3
        Largest allowed difference between image and mask spacing and origin (mm) and direction
        cosines.
    hu_check : bool, default True
        Refuse an image whose range does not look like CT in Hounsfield units (maximum below
        100 HU, or minimum above -500 HU: a raw 0..4095 export, a 0..255 windowed one, a normalised
        volume). Pass False for images that are deliberately not HU (e.g. MR).
    require_label : bool, default True
        Refuse a mask without any ``label`` voxel. False lets an empty mask through (the ROI
        estimators record such a case as without a usable ROI), and a label map holding two or more
        other labels but not ``label``; a mask whose one label is another value (a binary mask saved
        as 0/255, or a label map holding a single other label: the two cannot be told apart) is
        refused either way.
    min_roi_dimensions : int, default 2
        The haematoma must extend over more than one voxel along at least this many axes
        (pyradiomics' ``minimumROIDimensions``; a single voxel has none). 0 disables the check.

    Returns
    -------
    LoadedCase

    Raises
    ------
    radhe.errors.InputError
        Naming the case, the file (the mask file for a mask problem) and the problem: missing,
        unreadable, corrupt or truncated file; a file name lying about its format; an image that is
        not a 3-D scalar volume (2-D, single slice, 4-D, vector); NaN or infinite voxels; intensities
        that are not HU; a mask on another grid, with non-integer, negative or too many distinct
        values (a CT or probability map given as mask), identical to the image, without the
        label, or with an ROI too small for features.
    """
    image_path = None if isinstance(image, sitk.Image) else image
    img = image if isinstance(image, sitk.Image) else read_image(image, case_id=case_id)
    _check_volume(img, case_id, image_path, "image")
    values = sitk.GetArrayViewFromImage(img)
    _check_finite(values, case_id, image_path, "image")
    check = CaseCheck(
        case_id=None if case_id is None else str(case_id),
        size=tuple(int(s) for s in img.GetSize()),
        spacing_mm=tuple(round(float(s), 6) for s in img.GetSpacing()),
        hu_min=float(values.min()),
        hu_max=float(values.max()),
    )
    if hu_check:
        field_min = check.hu_min
        raw_in_padding = False
        if field_min < PADDING_HU:
            # integer voxels: initial at the array's own maximum (inf is no integer); all padding: its maximum
            field_min = float(np.min(values, where=values >= PADDING_HU, initial=check.hu_max))
            if field_min > CT_MIN_AT_MOST_HU:
                # no air inside a padded field: a head CT cropped or masked to the head has none either, so
                # only the stored-values signature counts: brain and soft tissue (0-80 HU) stored near 1024-1100,
                # where in HU only a thin skull lies
                sample = values[::2, ::4, ::4]
                field = sample[sample >= PADDING_HU]
                band = np.count_nonzero((field >= RAW_TISSUE_BAND[0]) & (field <= RAW_TISSUE_BAND[1]))
                raw_in_padding = bool(field.size) and band > RAW_TISSUE_SHARE * field.size
            else:
                field_min = check.hu_min
        if check.hu_max < CT_MAX_AT_LEAST_HU or raw_in_padding or (
                check.hu_min >= PADDING_HU and field_min > CT_MIN_AT_MOST_HU):
            shown = (f"{check.hu_min:g} to {check.hu_max:g}" if field_min == check.hu_min else
                     f"{field_min:g} to {check.hu_max:g} inside the field (padding below {PADDING_HU:g} aside)")
            raise InputError(
                f"intensities {shown} do not look like CT in HU (expected air near -1000 HU and bone above "
                f"{CT_MAX_AT_LEAST_HU:g} HU): a raw, windowed or normalised export (stored values with the rescale "
                "intercept lost read about 1024 too high)? Convert it to HU, or pass hu_check=False (CLI: "
                "--no-hu-check) if the image is deliberately not in HU",
                case_id=case_id, path=image_path,
            )
    if mask is None:
        return LoadedCase(img, None, check)

    mask_path = None if isinstance(mask, sitk.Image) else checked_path(mask, case_id, "mask")
    if image_path is not None and mask_path is not None and _same_file(image_path, mask_path):
        raise InputError("the mask column names the image file itself", case_id=case_id, path=mask_path)
    msk = mask if isinstance(mask, sitk.Image) else read_image(mask, case_id=case_id)
    _check_volume(msk, case_id, mask_path, "mask")
    _check_geometry(img, msk, case_id, mask_path, tolerance)
    if not _identical_geometry(img, msk):
        msk = sitk.Image(msk)  # a copy: the caller's image keeps its own geometry
        msk.CopyInformation(img)
    voxels = _count_label(msk, label, case_id, mask_path, require_label, image_values=values)
    if voxels and min_roi_dimensions:
        _check_roi_extent(msk, label, voxels, min_roi_dimensions, case_id, mask_path)
    check.mask_voxels = voxels
    check.mask_volume_ml = voxels * float(np.prod(msk.GetSpacing())) / 1000.0
    return LoadedCase(img, msk, check)


def read_mask(mask: str | os.PathLike | sitk.Image, *, case_id: object = None, label: int | None = 1) -> sitk.Image:
    """Read a mask on its own (no image to compare with) and check that it is a mask.

    The mask checks of :func:`load_checked_case` that need no image: a 3-D scalar volume of
    non-negative integer labels on a background of 0, with few distinct values. An empty mask, or
    a label map holding two or more other labels but not ``label``, is allowed (a volume of 0 mL is
    a measurement); a mask whose one label is another value than ``label`` (a binary mask saved as
    0/255, or a label map holding one other label only) is refused. ``label=None`` reads every
    non-zero voxel as the ROI. Used wherever radhe reads
    a mask alone (volumetry, segmentation metrics).

    Raises
    ------
    radhe.errors.InputError
        Naming the case and the mask file.
    """
    path = None if isinstance(mask, sitk.Image) else mask
    msk = mask if isinstance(mask, sitk.Image) else read_image(mask, case_id=case_id)
    _check_volume(msk, case_id, path, "mask")
    _count_label(msk, label, case_id, path, require_label=False)
    return msk


def validate_case(
    image: str | os.PathLike | sitk.Image,
    mask: str | os.PathLike | sitk.Image | None = None,
    *,
    case_id: object = None,
    label: int = 1,
    tolerance: float = GEOMETRY_TOLERANCE_MM,
    hu_check: bool = True,
    min_roi_dimensions: int = 2,
) -> CaseCheck:
    """Check one case's CT volume and (optional) haematoma mask.

    The checks of :func:`load_checked_case`, the path every estimator reads images through.

    Parameters
    ----------
    image, mask : path-like or SimpleITK.Image
        The CT volume (HU) and its mask; ``mask=None`` checks the image alone.
    case_id : object, optional
        Named in every message.
    label : int, default 1
        Mask value of the haematoma. Other values (a label map) are allowed but ignored.
    tolerance : float, default 1e-3
        Largest allowed difference between image and mask spacing and origin (mm) and
        direction cosines.
    hu_check : bool, default True
        Refuse intensities that do not look like CT in HU (see :func:`load_checked_case`).
    min_roi_dimensions : int, default 2
        Axes along which the haematoma must extend over more than one voxel.

    Returns
    -------
    CaseCheck

    Raises
    ------
    radhe.errors.InputError
        See :func:`load_checked_case`.
    """
    return load_checked_case(image, mask, case_id=case_id, label=label, tolerance=tolerance, hu_check=hu_check,
                             min_roi_dimensions=min_roi_dimensions).check


def validate_manifest(
    manifest: pd.DataFrame,
    *,
    on_error: str = "raise",
    image_column: str = "image",
    mask_column: str = "mask",
    label: int = 1,
    tolerance: float = GEOMETRY_TOLERANCE_MM,
    hu_check: bool = True,
    min_roi_dimensions: int = 2,
) -> ValidationReport:
    """Run :func:`validate_case` on every row of a manifest (see :func:`radhe.io.load_manifest`).

    Parameters
    ----------
    manifest : pandas.DataFrame
        With ``case_id``, the image column and optionally the mask column.
    on_error : {"raise", "skip"}, default "raise"
        "raise" stops at the first invalid case; "skip" records it in ``report.skipped``.
    image_column, mask_column : str
        Manifest columns of the CT and mask paths.
    label, tolerance, hu_check, min_roi_dimensions
        As in :func:`load_checked_case`.

    Returns
    -------
    ValidationReport
    """
    check_on_error(on_error)
    has_mask = mask_column in manifest.columns
    rows, skipped = [], []
    for index, case in manifest.iterrows():
        mask = case[mask_column] if has_mask else None
        mask = None if is_missing_path(mask) else mask  # as load_manifest reads an empty cell
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", InputWarning)
                check = validate_case(
                    case[image_column], mask, case_id=case["case_id"], label=label,
                    tolerance=tolerance, hu_check=hu_check, min_roi_dimensions=min_roi_dimensions,
                )
        except InputError as exc:
            if on_error == "raise":
                raise
            skipped.append({"case_id": str(case["case_id"]), "file": exc.path, "problem": exc.problem})
            rows.append({"index": index, "case_id": str(case["case_id"]), "status": "skipped",
                         "problem": exc.problem})
            continue
        for caught_warning in caught:  # still shown, and recorded in the report's table
            warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename,
                                   caught_warning.lineno)
            if issubclass(caught_warning.category, InputWarning):
                check.warnings.append(str(caught_warning.message))
        record = asdict(check)
        record["warnings"] = "; ".join(record["warnings"])
        rows.append({"index": index, "status": "ok", "problem": None, **record})
    cases = pd.DataFrame(rows, columns=_CASE_COLUMNS).set_index("index")
    cases.index.name = manifest.index.name
    ok = (cases["status"] == "ok").to_numpy()
    return ValidationReport(
        cases=cases,
        valid=manifest[ok],
        skipped=pd.DataFrame(skipped, columns=["case_id", "file", "problem"]),
    )


_CASE_COLUMNS = ["index", "case_id", "status", "problem", "size", "spacing_mm", "hu_min", "hu_max",
                 "mask_voxels", "mask_volume_ml", "warnings"]


#: Largest entry of ``DᵀD - I`` for a direction matrix ``D`` read as orthonormal (NIfTI and DICOM
#: headers store cosines to about 6 digits; a 1° shear gives 0.017).
ORTHOGONALITY_TOLERANCE = 1e-3


def _check_volume(img: sitk.Image, case_id, path, what: str) -> None:
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{what} has {img.GetNumberOfComponentsPerPixel()} components per voxel; a scalar volume is required",
            case_id=case_id, path=path,
        )
    if "complex" in img.GetPixelIDTypeAsString():
        # one component per voxel to SimpleITK, but numpy would drop the imaginary part (a ComplexWarning)
        raise InputError(
            f"{what} has complex voxels ({img.GetPixelIDTypeAsString()}); a real scalar volume is required",
            case_id=case_id, path=path,
        )
    if img.GetDimension() != 3:
        raise InputError(
            f"{what} is {img.GetDimension()}-D (size {img.GetSize()}); a 3-D volume is required",
            case_id=case_id, path=path,
        )
    spacing = np.asarray(img.GetSpacing(), dtype=float)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise InputError(
            f"{what}'s voxel spacing {_fmt(spacing)} mm is not positive and finite: the voxel size is unknown",
            case_id=case_id, path=path,
        )
    if min(img.GetSize()) < 2:
        raise InputError(
            f"{what} has size {img.GetSize()}: a single slice, a 3-D volume is required",
            case_id=case_id, path=path,
        )
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    if np.max(np.abs(direction.T @ direction - np.eye(3))) > ORTHOGONALITY_TOLERANCE:
        cosines = np.clip(direction.T @ direction, -1.0, 1.0)
        unit = np.sqrt(np.diag(cosines).clip(min=1e-12))
        angles = np.degrees(np.arccos(np.clip(cosines / np.outer(unit, unit), -1.0, 1.0)))
        worst = float(np.max(np.abs(angles[np.triu_indices(3, 1)] - 90.0)))
        raise InputError(
            f"{what}'s voxel axes are not orthogonal unit vectors (direction {_fmt(direction.ravel())}; "
            f"axes {worst:.3g}° off the right angle, |det| {abs(np.linalg.det(direction)):.4g}): a sheared grid, "
            "as an uncorrected gantry tilt gives; voxel volumes, diameters and radiomics need orthogonal axes. "
            "Resample it onto an orthogonal grid first (gantry-tilt correction, e.g. SimpleITK.Resample "
            "onto an image with an orthonormal direction)",
            case_id=case_id, path=path,
        )


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _check_geometry(img: sitk.Image, msk: sitk.Image, case_id, path, tolerance: float) -> None:
    if img.GetSize() != msk.GetSize():
        raise InputError(f"mask size {msk.GetSize()} != image size {img.GetSize()}", case_id=case_id, path=path)
    for name, get in (("spacing", "GetSpacing"), ("origin", "GetOrigin"), ("direction", "GetDirection")):
        a, b = np.asarray(getattr(msk, get)()), np.asarray(getattr(img, get)())
        if np.max(np.abs(a - b)) > tolerance:
            raise InputError(
                f"mask {name} {_fmt(a)} != image {name} {_fmt(b)} (tolerance {tolerance:g})",
                case_id=case_id, path=path,
            )


def _check_finite(values: np.ndarray, case_id, path, what: str) -> None:
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            n_nan = int(np.isnan(values).sum())
            n_inf = int(values.size - finite.sum()) - n_nan
            raise InputError(
                f"{what} holds {n_nan} NaN and {n_inf} infinite voxel(s); radhe does not guess their values "
                "(fill them, e.g. with -1000 HU outside the head, before use)",
                case_id=case_id, path=path,
            )


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, TypeError, ValueError):
        return False


def _identical_geometry(img: sitk.Image, msk: sitk.Image) -> bool:
    return (img.GetSpacing() == msk.GetSpacing() and img.GetOrigin() == msk.GetOrigin()
            and img.GetDirection() == msk.GetDirection())


def _count_label(msk: sitk.Image, label: int | None, case_id, path, require_label: bool = True,
                 image_values: np.ndarray | None = None) -> int:
    """The voxels of ``label`` (None: every non-zero voxel), after the checks that the file is a mask."""
    values = sitk.GetArrayViewFromImage(msk)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise InputError(
                "mask holds non-integer values; a binary or label mask is required (a probability map?)",
                case_id=case_id, path=path,
            )
    low = values.min()
    if low < 0:
        raise InputError(
            f"mask holds negative values (minimum {low.item():g}); a mask labels voxels with 0 (background) and "
            "positive integers (is this file a CT?)",
            case_id=case_id, path=path,
        )
    if image_values is not None and _same_values(image_values, values):
        raise InputError("mask holds the same voxel values as the image: the CT given as its own mask?",
                         case_id=case_id, path=path)
    if low > 0:
        raise InputError(
            f"mask holds no background voxel (no 0; values from {low.item():g} to {values.max().item():g}); a mask "
            "labels the haematoma inside a background of 0 (is this file a CT?)",
            case_id=case_id, path=path,
        )
    count = int(np.count_nonzero(values if label is None else values == label))
    high = values.max()
    if high >= MAX_MASK_VALUES:
        distinct = np.unique(values).size
        if distinct > MAX_MASK_VALUES:
            raise InputError(
                f"mask holds {distinct} distinct values from {low.item():g} to {high.item():g}; a binary or label "
                "mask is required (is this file a CT?)",
                case_id=case_id, path=path,
            )
    if count or (not require_label and (high == 0 or label is None)):
        return count
    present = np.unique(values)
    if present.size == 1 and present[0] == 0:
        raise InputError("empty mask: no voxel is labelled", case_id=case_id, path=path)
    found = [v.item() for v in present[:10]]
    if not require_label and present.size > 2:
        return count  # a label map without this label: no haematoma here (0 mL)
    if not require_label:
        raise InputError(
            f"label {label} not present in mask: its only label is {found[-1]} (a binary mask saved with "
            f"{found[-1]} as the foreground? save the haematoma as {label})",
            case_id=case_id, path=path,
        )
    raise InputError(
        f"label {label} not present in mask (values found: {found}); pass the haematoma's label",
        case_id=case_id, path=path,
    )


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same values; a sparse sample first, so that the usual case costs nothing."""
    if a.shape != b.shape:
        return False
    step = max(1, a.size // 4096)
    if not np.array_equal(a.reshape(-1)[::step], b.reshape(-1)[::step]):
        return False
    return bool(np.array_equal(a, b))


def _check_roi_extent(msk: sitk.Image, label: int, voxels: int, min_dimensions: int, case_id, path) -> None:
    selected = sitk.GetArrayViewFromImage(msk) == label
    # an axis along which the ROI covers more than one index: its projection onto that axis has > 1 True
    extended = sum(int(np.count_nonzero(selected.any(axis=tuple(a for a in range(selected.ndim) if a != axis))) > 1)
                   for axis in range(selected.ndim))
    if extended < min_dimensions:
        raise InputError(
            f"the haematoma (label {label}) covers {voxels} voxel(s) extending along {extended} axis/axes; "
            f"at least {min_dimensions} are needed (pyradiomics' minimumROIDimensions): a stray or single-voxel mask?",
            case_id=case_id, path=path,
        )
