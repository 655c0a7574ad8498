"""Segmentation metrics: Dice and IoU per slice, per case and per patient; volume agreement.

Conventions: masks are boolean-like arrays of equal shape; when both the reference and the
prediction are empty, Dice and IoU are 1 (perfect agreement on "no haematoma").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radhe.errors import InputError
from radhe.io.image import is_missing_path
from radhe.io.orientation import canonical_order
from radhe.io.validation import GEOMETRY_TOLERANCE_MM, _check_geometry, read_mask

__all__ = ["dice_score", "iou_score", "slice_metrics", "segmentation_metrics", "volume_agreement"]


def _pair(y_true, y_pred):
    a = np.asarray(y_true).astype(bool)
    b = np.asarray(y_pred).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return a, b


def dice_score(y_true, y_pred) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)``; 1.0 when both masks are empty."""
    a, b = _pair(y_true, y_pred)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def iou_score(y_true, y_pred) -> float:
    """Intersection over union (Jaccard) ``|A∩B| / |A∪B|``; 1.0 when both masks are empty."""
    a, b = _pair(y_true, y_pred)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def slice_metrics(y_true, y_pred, *, axis: int = 0, include_empty: bool = False) -> pd.DataFrame:
    """Dice and IoU of each slice along ``axis`` (``z`` for SimpleITK ``(z, y, x)`` arrays).

    Slices where both masks are empty are left out unless ``include_empty``.
    Returns a DataFrame with ``slice``, ``dice``, ``iou``, ``true_voxels``, ``pred_voxels``.
    """
    a, b = _pair(y_true, y_pred)
    a, b = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
    rows = []
    for z in range(a.shape[0]):
        ta, tb = int(a[z].sum()), int(b[z].sum())
        if ta == 0 and tb == 0 and not include_empty:
            continue
        rows.append({"slice": z, "dice": dice_score(a[z], b[z]), "iou": iou_score(a[z], b[z]),
                     "true_voxels": ta, "pred_voxels": tb})
    return pd.DataFrame(rows, columns=["slice", "dice", "iou", "true_voxels", "pred_voxels"])


def _describe(path) -> str:
    return "given as a SimpleITK.Image" if isinstance(path, sitk.Image) else f"'{path}'"


def _read_mask(path, case_id, label, role: str, column: str) -> sitk.Image:
    """One mask of a case through :func:`radhe.io.validation.read_mask`, its errors saying which mask."""
    if is_missing_path(path):
        raise InputError(f"no {role} mask: the manifest's '{column}' cell holds {path!r}", case_id=case_id)
    try:
        return read_mask(path, case_id=case_id, label=label)
    except InputError as exc:
        raise InputError(f"{role} mask: {exc.problem}", case_id=case_id, path=exc.path) from exc


def _on_reference_grid(truth: sitk.Image, pred: sitk.Image, case_id, true_path, pred_path) -> sitk.Image:
    """``pred`` in the voxel order of ``truth``, refused unless the two lie on one physical grid.

    A prediction stored in another voxel order (axes permuted or reversed, e.g. by a converter) is
    reordered to the reference's (:func:`SimpleITK.DICOMOrient`, the reordering of
    :mod:`radhe.io.orientation`: never resampled); then size, spacing, origin and direction must agree
    within :data:`~radhe.io.validation.GEOMETRY_TOLERANCE_MM`, the rule :func:`~radhe.io.load_checked_case`
    applies between an image and its mask.
    """
    reordered = canonical_order(pred) != canonical_order(truth)
    if reordered:
        code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(truth.GetDirection())
        pred = sitk.DICOMOrient(pred, code)
    try:
        _check_geometry(truth, pred, case_id, None, GEOMETRY_TOLERANCE_MM)
    except InputError as exc:
        order = ", the prediction reordered to the reference's voxel order" if reordered else ""
        raise InputError(
            f"predicted mask does not match the reference mask {_describe(true_path)}: not on one grid "
            f"({exc.problem}; 'mask' is the prediction, 'image' the reference{order})",
            case_id=case_id, path=None if isinstance(pred_path, sitk.Image) else pred_path,
        ) from exc
    return pred


def segmentation_metrics(manifest: pd.DataFrame, *, pred_column: str = "mask_pred", true_column: str = "mask",
                         level: str = "case", label: int = 1) -> pd.DataFrame:
    """Compare predicted with reference masks for every case of a manifest.

    Parameters
    ----------
    manifest : pandas.DataFrame
        With ``case_id``, ``true_column`` and ``pred_column`` (e.g. the output of
        :meth:`HematomaSegmenter.transform`); ``patient_id`` is used for ``level="patient"``.
    level : {"case", "patient", "slice"}
        "case": one row per case; "patient": voxels pooled over each patient's cases; "slice":
        one row per slice holding haematoma in either mask (slices along axis 0 of the reference
        mask's ``(z, y, x)`` array).

    Both masks are read through :func:`radhe.io.validation.read_mask` and must lie on one physical
    grid: the rule :func:`radhe.io.load_checked_case` applies between an image and its mask (size,
    spacing, origin and direction within :data:`~radhe.io.validation.GEOMETRY_TOLERANCE_MM`). A
    prediction stored in another voxel order than its reference (axes permuted or reversed, the same
    grid in space) is compared voxel by voxel after reordering it to the reference's order (never
    resampled).

    Returns
    -------
    pandas.DataFrame
        ``dice``, ``iou``, ``volume_true_ml``, ``volume_pred_ml`` (and ``case_id``,
        ``patient_id``, ``slice`` as applicable).

    Raises
    ------
    radhe.errors.InputError
        Naming the case and the file: a missing column; a reference or predicted mask that is
        missing, unreadable or not a mask; a prediction on another grid than its reference (another
        size, spacing, origin or direction).
    """
    if level not in ("case", "patient", "slice"):
        raise ValueError(f"level must be 'case', 'patient' or 'slice', got {level!r}")
    for column in ("case_id", true_column, pred_column):
        if column not in manifest.columns:
            raise InputError(f"segmentation_metrics: manifest lacks column '{column}'")
    patients = manifest["patient_id"] if "patient_id" in manifest.columns else manifest["case_id"]
    rows, slices = [], []
    for case_id, patient, true_path, pred_path in zip(manifest["case_id"], patients, manifest[true_column],
                                                      manifest[pred_column], strict=True):
        truth = _read_mask(true_path, case_id, label, "reference", true_column)
        pred = _read_mask(pred_path, case_id, 1, "predicted", pred_column)
        pred = _on_reference_grid(truth, pred, case_id, true_path, pred_path)
        voxel_ml = float(np.prod(truth.GetSpacing())) / 1000.0
        a, b = _pair(sitk.GetArrayViewFromImage(truth) == label, sitk.GetArrayViewFromImage(pred) == 1)
        inter = int(np.logical_and(a, b).sum())
        rows.append({"case_id": str(case_id), "patient_id": str(patient), "true_voxels": int(a.sum()),
                     "pred_voxels": int(b.sum()), "intersection": inter, "voxel_ml": voxel_ml})
        if level == "slice":
            per_slice = slice_metrics(a, b)
            per_slice.insert(0, "case_id", str(case_id))
            per_slice.insert(1, "patient_id", str(patient))
            slices.append(per_slice)
    if level == "slice":
        return pd.concat(slices, ignore_index=True) if slices else slice_metrics(np.zeros(1), np.zeros(1))
    table = pd.DataFrame(rows)
    table["true_ml"] = table["true_voxels"] * table["voxel_ml"]
    table["pred_ml"] = table["pred_voxels"] * table["voxel_ml"]
    if level == "patient":
        table = table.groupby("patient_id", sort=False).agg(
            n_cases=("case_id", "size"), true_voxels=("true_voxels", "sum"), pred_voxels=("pred_voxels", "sum"),
            intersection=("intersection", "sum"), true_ml=("true_ml", "sum"), pred_ml=("pred_ml", "sum"),
        ).reset_index()
    total = table["true_voxels"] + table["pred_voxels"]
    union = total - table["intersection"]
    table["dice"] = np.where(total > 0, 2 * table["intersection"] / total.where(total > 0, 1), 1.0)
    table["iou"] = np.where(union > 0, table["intersection"] / union.where(union > 0, 1), 1.0)
    table = table.rename(columns={"true_ml": "volume_true_ml", "pred_ml": "volume_pred_ml"})
    keep = ["case_id"] if level == "case" else ["n_cases"]
    return table[["patient_id", *keep, "dice", "iou", "volume_true_ml", "volume_pred_ml",
                  "true_voxels", "pred_voxels"]].reset_index(drop=True) if level == "patient" else table[
        ["case_id", "patient_id", "dice", "iou", "volume_true_ml", "volume_pred_ml", "true_voxels", "pred_voxels"]]


def volume_agreement(metrics: pd.DataFrame, **kwargs):
    """Agreement of predicted with reference volumes via :func:`radhe.volumetry.compare_volumes`.

    ``metrics`` is :func:`segmentation_metrics`' case (or patient) table; ``kwargs`` go to
    ``compare_volumes``. Returns whatever ``compare_volumes`` returns (Bland–Altman bias and limits,
    correlation, ...), or raises ImportError when :mod:`radhe.volumetry` is not available. The volumes
    are passed labelled by ``case_id`` (or ``patient_id``), so that an error names the case.
    """
    from radhe.volumetry import compare_volumes

    if "case_id" not in metrics.columns and metrics.index.name == "case_id":
        metrics = metrics.reset_index()
    key = next((c for c in ("case_id", "patient_id") if c in metrics.columns), None)
    index = pd.Index(metrics[key].astype(str), name=key) if key else None
    return compare_volumes(pd.Series(metrics["volume_true_ml"].to_numpy(), index=index),
                           pd.Series(metrics["volume_pred_ml"].to_numpy(), index=index), **kwargs)
