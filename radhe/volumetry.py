"""Haematoma volume: planimetry, the ABC/2 bedside estimate, and agreement between two methods.

- :func:`mask_volume_ml` — planimetric volume: labelled voxels × voxel volume.
- :func:`abc2_volume_ml` — Kothari et al.'s ABC/2 (Stroke 1996) as clinicians apply it on axial slices.
- :func:`compare_volumes` — agreement statistics of two volume measurements, as in Xu et al. 2021
  (Pearson r, ICC, Bland–Altman, Wilcoxon signed-rank).

Masks can be a SimpleITK image, a path to one, or a numpy array in SimpleITK's ``(z, y, x)`` order
together with ``spacing`` ``(x, y, z)`` in mm. Array axis 0 (image ``z``) is taken as the axial
(slice) direction. Every mask, an array included, gets the checks of
:func:`radhe.io.validation.read_mask` (a 3-D volume of non-negative integer labels on a background of 0).
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk
from scipy import stats
from scipy.spatial import ConvexHull, QhullError

from radhe.errors import MAX_LISTED_CASES, InputError
from radhe.io.orientation import canonical_order, canonical_spacing, to_canonical

__all__ = ["mask_volume_ml", "abc2_volume_ml", "compare_volumes", "ICC_FORM"]

#: The intraclass correlation reported by :func:`compare_volumes`.
ICC_FORM = "ICC(2,1): two-way random effects, absolute agreement, single measurement (Shrout & Fleiss 1979)"


def _checked_spacing(spacing) -> tuple[float, float, float]:
    try:
        spacing = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InputError(f"spacing must be three positive numbers (x, y, z) in mm, got {spacing!r}") from None
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise InputError(f"spacing must be three positive numbers (x, y, z) in mm, got {spacing}")
    return spacing


def _mask_array(mask, spacing=None, label=None) -> tuple[np.ndarray, tuple[float, float, float]]:
    from radhe.io.validation import read_mask

    if isinstance(mask, (str, os.PathLike, sitk.Image)):
        mask = read_mask(mask, label=label)  # the mask checks every reader runs
        # in the canonical orientation, axial slices on axis 0, whatever order the file stores its voxels
        # in: the diameters and the reference slice of ABC/2 are then those of the same physical mask
        order = canonical_order(mask)
        spacing = canonical_spacing(mask.GetSpacing() if spacing is None else _checked_spacing(spacing), order)
        array = to_canonical(sitk.GetArrayViewFromImage(mask), order)
    else:
        array = np.asarray(mask)
        if spacing is None:
            raise InputError("a numpy mask needs spacing=(x, y, z) in mm")
        if array.ndim != 3:
            raise InputError(f"mask must be a 3-D array in (z, y, x) order, got shape {array.shape}")
        spacing = _checked_spacing(spacing)
        if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer)
                or np.issubdtype(array.dtype, np.floating)):
            raise InputError(f"mask array has dtype {array.dtype}; a binary or label mask of numbers is required")
        # an array is checked as the image it stands for: the checks of a mask read from a file or image
        stored = array.view(np.uint8) if array.dtype == bool else array
        image = sitk.GetImageFromArray(stored.astype(np.float32) if stored.dtype == np.float16 else stored)
        image.SetSpacing(spacing)
        read_mask(image, label=label)
    spacing = _checked_spacing(spacing)
    binary = array != 0 if label is None else array == label
    return np.asarray(binary, dtype=bool), spacing


def mask_volume_ml(mask, *, spacing=None, label: int | None = None) -> float:
    """Planimetric volume (mL) of a mask: number of labelled voxels × voxel volume.

    Parameters
    ----------
    mask : SimpleITK.Image, path-like or numpy.ndarray
        A numpy array is in ``(z, y, x)`` order and needs ``spacing``; it is checked as a mask image
        of that array would be (:func:`radhe.io.validation.read_mask`).
    spacing : (float, float, float), optional
        Voxel size ``(x, y, z)`` in mm; overrides the image's.
    label : int, optional
        The label to measure; default every non-zero voxel.

    Returns
    -------
    float
        Volume in mL (1 mL = 1,000 mm³).

    Raises
    ------
    radhe.errors.InputError
        Naming the file where there is one: not a 3-D mask of at least 2 voxels along each axis;
        non-integer (a probability map), NaN, infinite or negative values (a CT); no background of
        0; too many distinct values; a single label other than ``label``; a numpy array without
        ``spacing``; spacing that is not three positive numbers.
    """
    binary, spacing = _mask_array(mask, spacing, label)
    return float(np.count_nonzero(binary)) * float(np.prod(spacing)) / 1000.0


def _feret(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest distance between two of ``points`` (2-D, mm) and its unit direction."""
    try:
        hull = points[ConvexHull(points).vertices] if len(points) > 3 else points
    except QhullError:          # degenerate (collinear) point sets
        hull = points
    diff = hull[:, None, :] - hull[None, :, :]
    d2 = (diff**2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    length = float(np.sqrt(d2[i, j]))
    direction = diff[i, j] / length if length > 0 else np.array([1.0, 0.0])
    return length, direction


def abc2_volume_ml(mask, *, spacing=None, label: int | None = None, slice_weighting: bool = True,
                   return_details: bool = False):
    """Kothari's ABC/2 volume estimate (mL) of a haematoma mask, as clinicians measure it.

    On the axial slice with the largest haematoma area (the reference slice):

    - **A** is the largest diameter of the haematoma (the maximal caliper / Feret diameter of its
      pixels, each pixel counted as a square of the in-plane spacing);
    - **B** is the largest diameter perpendicular to A on the same slice: the longest extent of the
      haematoma along a line perpendicular to A (lines one pixel apart);
    - **C** is the number of slices with haemorrhage times the slice thickness, each slice weighted
      by its area relative to the reference slice: ≥ 75 % counts 1, 25–75 % counts 0.5 and < 25 %
      counts 0 (Kothari et al., Stroke 1996;27:1304-5). With ``slice_weighting=False`` every slice
      with haemorrhage counts 1.

    The volume is ``A × B × C / 2``. For an ellipsoid (``V = π/6 · A·B·H``, ``H`` its height) the
    unweighted estimate is 4.5 % below the true volume (``1/2`` for ``π/6``); Kothari's weighting
    counts the tapering end slices at most half, which puts the weighted estimate of a smooth
    ellipsoid near 2/3 of its volume, while for irregular haematomas ``A × B`` overestimates the area
    and the two biases partly cancel.

    Parameters
    ----------
    mask : SimpleITK.Image, path-like or numpy.ndarray
        A numpy array is in ``(z, y, x)`` order (axis 0 is the slice axis) and needs ``spacing``; it
        gets the checks of a mask file (see :func:`mask_volume_ml`). An
        image (or file) is measured on its axial slices in the canonical orientation
        (:data:`radhe.io.orientation.CANONICAL_ORIENTATION`), whatever order it stores its voxels in
        (``reference_slice`` then counts axial slices in that orientation). Of slices with the same
        largest area, the first in that orientation is the reference.
    spacing : (float, float, float), optional
        Voxel size ``(x, y, z)`` in mm; the slice thickness is taken as the ``z`` spacing.
    label : int, optional
        The label to measure; default every non-zero voxel.
    slice_weighting : bool, default True
        Kothari's area weighting of C (see above).
    return_details : bool, default False
        Also return a dict with ``A_mm``, ``B_mm``, ``C_mm``, ``reference_slice`` and ``slice_weights``.

    Returns
    -------
    float, or (float, dict) with ``return_details``
        The estimate in mL; 0.0 for an empty mask.

    Raises
    ------
    radhe.errors.InputError
        As :func:`mask_volume_ml`: a mask (array, image or file) that is not a mask.
    """
    binary, (dx, dy, dz) = _mask_array(mask, spacing, label)
    areas = binary.sum(axis=(1, 2)).astype(float) * dx * dy
    if areas.max() == 0:
        details = {"A_mm": 0.0, "B_mm": 0.0, "C_mm": 0.0, "reference_slice": None,
                   "slice_weights": np.zeros(len(areas))}
        return (0.0, details) if return_details else 0.0
    ref = int(np.argmax(areas))
    rows, cols = np.nonzero(binary[ref])
    centres = np.column_stack([cols * dx, rows * dy])            # (x, y) mm
    corners = np.concatenate([centres + [sx * dx / 2, sy * dy / 2] for sx in (-1, 1) for sy in (-1, 1)])
    a_len, a_dir = _feret(corners)

    # B: for lines perpendicular to A, one pixel apart, the extent of the haematoma along each line
    perp = np.array([-a_dir[1], a_dir[0]])
    u = centres @ a_dir
    v = centres @ perp
    half_v = 0.5 * (abs(perp[0]) * dx + abs(perp[1]) * dy)
    step = min(dx, dy)
    bins = np.floor((u - u.min()) / step).astype(int)
    top = np.full(bins.max() + 1, -np.inf)
    bottom = np.full(bins.max() + 1, np.inf)
    np.maximum.at(top, bins, v + half_v)
    np.minimum.at(bottom, bins, v - half_v)
    b_len = float(np.max(top - bottom))

    ratio = areas / areas[ref]
    if slice_weighting:
        weights = np.where(ratio >= 0.75, 1.0, np.where(ratio >= 0.25, 0.5, 0.0))
    else:
        weights = (ratio > 0).astype(float)
    c_len = float(weights.sum() * dz)
    volume = a_len * b_len * c_len / 2.0 / 1000.0
    if return_details:
        return volume, {"A_mm": a_len, "B_mm": b_len, "C_mm": c_len, "reference_slice": ref,
                        "slice_weights": weights}
    return volume


def _icc_2_1(y: np.ndarray) -> float:
    n, k = y.shape
    grand = y.mean()
    ss_rows = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((y - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_err = ss_err / ((n - 1) * (k - 1))
    denom = ms_rows + (k - 1) * ms_err + k * (ms_cols - ms_err) / n
    return float((ms_rows - ms_err) / denom) if denom > 0 else float("nan")


def _check_volumes(ref: np.ndarray, est: np.ndarray, labels=None) -> None:
    """Refuse infinite and negative volumes (NaN marks a missing measurement, dropped by the caller)."""
    bad = np.isinf(ref) | np.isinf(est) | (ref < 0) | (est < 0)
    if not bad.any():
        return
    where = np.flatnonzero(bad)
    listed = []
    for i in where[:MAX_LISTED_CASES]:
        label = "" if labels is None or len(labels) != ref.size else f" ({labels[i]!r})"
        values = [f"{name} {v:g}" for name, v in (("reference_ml", ref[i]), ("estimate_ml", est[i]))
                  if np.isinf(v) or v < 0]
        listed.append(f"position {i}{label}: " + ", ".join(values))
    more = f"; and {where.size - len(listed)} more" if where.size > len(listed) else ""
    raise InputError(
        f"compare_volumes: {where.size} pair(s) hold an infinite or negative volume; a volume is a finite "
        "number of mL >= 0 (NaN marks a missing one): " + "; ".join(listed) + more
    )


def compare_volumes(reference_ml, estimate_ml) -> dict:
    """Agreement between two volume measurements of the same haematomas (Xu et al. 2021's analysis).

    Parameters
    ----------
    reference_ml, estimate_ml : array-like
        Paired volumes (mL), e.g. manual planimetry and a segmentation model or ABC/2. Pairs with a
        NaN are dropped; an infinite or negative volume is an error (also where the other volume of
        its pair is NaN). Two pandas Series are paired by index label.

    Returns
    -------
    dict
        ``n``; ``pearson_r`` and ``pearson_p``; ``icc`` (form in ``icc_form``: :data:`ICC_FORM`);
        ``mean_difference`` and ``sd_difference`` of ``estimate - reference`` (SD with ``n - 1``);
        ``mean_absolute_difference``; Bland–Altman 95 % limits of agreement ``loa_lower`` and
        ``loa_upper`` (mean difference ∓ 1.96 SD); ``wilcoxon_p``, the two-sided Wilcoxon
        signed-rank p-value of the differences (1.0 when all differences are zero).

    Raises
    ------
    radhe.errors.InputError
        Different lengths; an infinite or negative volume (naming its positions, and its index labels
        when a Series is given: a case id); or fewer than 3 complete pairs.
    """
    import pandas as pd

    if isinstance(reference_ml, pd.Series) and isinstance(estimate_ml, pd.Series) and not (
        reference_ml.index.equals(estimate_ml.index)
    ):
        # pair the two measurements of each haematoma by label, never by position
        if not (reference_ml.index.is_unique and len(reference_ml) == len(estimate_ml)
                and reference_ml.index.isin(estimate_ml.index).all() and estimate_ml.index.is_unique):
            raise InputError("compare_volumes: reference_ml and estimate_ml are Series with different indexes; "
                             "align them first")
        estimate_ml = estimate_ml.reindex(reference_ml.index)
    labels = next((v.index for v in (reference_ml, estimate_ml) if isinstance(v, pd.Series)), None)
    ref = np.asarray(reference_ml, dtype=float).ravel()
    est = np.asarray(estimate_ml, dtype=float).ravel()
    if ref.shape != est.shape:
        raise InputError(f"compare_volumes: {ref.size} reference volumes but {est.size} estimates")
    _check_volumes(ref, est, labels)
    keep = ~(np.isnan(ref) | np.isnan(est))
    ref, est = ref[keep], est[keep]
    if ref.size < 3:
        raise InputError(f"compare_volumes: needs at least 3 complete pairs, got {ref.size}")
    diff = est - ref
    sd = float(diff.std(ddof=1))
    mean = float(diff.mean())
    if np.ptp(ref) > 0 and np.ptp(est) > 0:
        r, p = stats.pearsonr(ref, est)
    else:
        r, p = float("nan"), float("nan")
    if np.any(diff != 0):
        wilcoxon_p = float(stats.wilcoxon(est, ref).pvalue)
    else:
        wilcoxon_p = 1.0
    return {
        "n": int(ref.size),
        "pearson_r": float(r),
        "pearson_p": float(p),
        "icc": _icc_2_1(np.column_stack([ref, est])),
        "icc_form": ICC_FORM,
        "mean_difference": mean,
        "sd_difference": sd,
        "mean_absolute_difference": float(np.abs(diff).mean()),
        "loa_lower": mean - 1.96 * sd,
        "loa_upper": mean + 1.96 * sd,
        "wilcoxon_p": wilcoxon_p,
    }
