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
from radhe.io.image import read_image

__all__ = ["CaseCheck", "ValidationReport", "validate_case", "validate_manifest", "check_on_error"]

#: Below this maximum (HU) a "CT" holds no bone or blood: a windowed or normalised image.
CT_MAX_AT_LEAST_HU = 100.0
#: Above this minimum (HU) a "CT" holds no air: a windowed or normalised image.
CT_MIN_AT_MOST_HU = -500.0


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


def validate_case(
    image: str | os.PathLike | sitk.Image,
    mask: str | os.PathLike | sitk.Image | None = None,
    *,
    case_id: object = None,
    label: int = 1,
    tolerance: float = 1e-3,
    check_intensity: bool = True,
) -> CaseCheck:
    """Check one case's CT volume and (optional) haematoma mask.

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
    check_intensity : bool, default True
        Warn (:class:`~radhe.errors.InputWarning`) when the range does not look like CT in HU
        (maximum < 100 HU or minimum > -500 HU, e.g. a 0-255 windowed export).

    Returns
    -------
    CaseCheck

    Raises
    ------
    radhe.errors.InputError
        Missing or unreadable file; image not a 3-D scalar volume; mask geometry (size, spacing,
        origin, direction) differing from the image's; mask values not integer labels; ``label``
        absent from the mask; empty mask.
    """
    image_path = None if isinstance(image, sitk.Image) else image
    img = image if isinstance(image, sitk.Image) else read_image(image, case_id=case_id)
    _check_volume(img, case_id, image_path, "image")
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(img)
    check = CaseCheck(
        case_id=None if case_id is None else str(case_id),
        size=tuple(int(s) for s in img.GetSize()),
        spacing_mm=tuple(round(float(s), 6) for s in img.GetSpacing()),
        hu_min=float(stats.GetMinimum()),
        hu_max=float(stats.GetMaximum()),
    )
    if check_intensity and (check.hu_max < CT_MAX_AT_LEAST_HU or check.hu_min > CT_MIN_AT_MOST_HU):
        message = (
            f"{format_case(case_id)}: intensities {check.hu_min:g} to {check.hu_max:g} do not look like CT "
            f"in HU (expected air near -1000 HU and bone above {CT_MAX_AT_LEAST_HU:g} HU); "
            f"a windowed or normalised export? (file '{image_path}')"
        )
        check.warnings.append(message)
        warnings.warn(message, InputWarning, stacklevel=2)

    if mask is None:
        return check
    mask_path = None if isinstance(mask, sitk.Image) else mask
    msk = mask if isinstance(mask, sitk.Image) else read_image(mask, case_id=case_id)
    _check_volume(msk, case_id, mask_path, "mask")
    _check_geometry(img, msk, case_id, mask_path, tolerance)
    voxels = _count_label(msk, label, case_id, mask_path)
    check.mask_voxels = voxels
    check.mask_volume_ml = voxels * float(np.prod(msk.GetSpacing())) / 1000.0
    return check


def validate_manifest(
    manifest: pd.DataFrame,
    *,
    on_error: str = "raise",
    image_column: str = "image",
    mask_column: str = "mask",
    label: int = 1,
    tolerance: float = 1e-3,
    check_intensity: bool = True,
) -> ValidationReport:
    """Run :func:`validate_case` on every row of a manifest (see :func:`radhe.io.load_manifest`).

    Parameters
    ----------
    manifest : pandas.DataFrame
        With ``case_id``, the image column and optionally the mask column.
    on_error : {"raise", "skip"}, default "raise"
        "raise" stops at the first invalid case; "skip" records it in ``report.skipped``.

    Returns
    -------
    ValidationReport
    """
    check_on_error(on_error)
    has_mask = mask_column in manifest.columns
    rows, skipped = [], []
    for index, case in manifest.iterrows():
        mask = case[mask_column] if has_mask else None
        blank = isinstance(mask, str) and not mask.strip()  # as load_manifest reads an empty cell
        mask = None if mask is None or blank or (isinstance(mask, float) and np.isnan(mask)) else mask
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", InputWarning)
                check = validate_case(
                    case[image_column], mask, case_id=case["case_id"], label=label,
                    tolerance=tolerance, check_intensity=check_intensity,
                )
        except InputError as exc:
            if on_error == "raise":
                raise
            skipped.append({"case_id": str(case["case_id"]), "file": exc.path, "problem": exc.problem})
            rows.append({"index": index, "case_id": str(case["case_id"]), "status": "skipped",
                         "problem": exc.problem})
            continue
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


def _check_volume(img: sitk.Image, case_id, path, what: str) -> None:
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{what} has {img.GetNumberOfComponentsPerPixel()} components per voxel; a scalar volume is required",
            case_id=case_id, path=path,
        )
    if img.GetDimension() != 3:
        raise InputError(
            f"{what} is {img.GetDimension()}-D (size {img.GetSize()}); a 3-D volume is required",
            case_id=case_id, path=path,
        )
    if min(img.GetSize()) < 2:
        raise InputError(
            f"{what} has size {img.GetSize()}: a single slice, a 3-D volume is required",
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


def _count_label(msk: sitk.Image, label: int, case_id, path) -> int:
    values = sitk.GetArrayViewFromImage(msk)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise InputError(
                "mask holds non-integer values; a binary or label mask is required (a probability map?)",
                case_id=case_id, path=path,
            )
    count = int(np.count_nonzero(values == label))
    if count:
        return count
    present = np.unique(values)
    if present.size == 1 and present[0] == 0:
        raise InputError("empty mask: no voxel is labelled", case_id=case_id, path=path)
    found = [v.item() for v in present[:10]]
    raise InputError(
        f"label {label} not present in mask (values found: {found}); pass the haematoma's label",
        case_id=case_id, path=path,
    )
