"""Slice data of the deep-learning estimators: a case as arrays, HU windowing, skull stripping, grids, ROI crops.

Loading a case into ``(z, y, x)`` arrays, HU windowing, simple skull stripping, bringing slices to a
network's grid, stacking neighbouring slices as channels, and the square haematoma ROI crops read
by the CNN embedder and the marker classifier. torch is imported only inside the functions that
resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from radhe.errors import ConfigurationError, InputError

#: HU above which a voxel is taken as bone by :func:`skull_strip`.
BONE_HU = 300.0


@dataclass
class Case:
    """One case loaded for a network: arrays in SimpleITK's ``(z, y, x)`` order."""

    case_id: str
    hu: np.ndarray  # float32, HU
    mask: np.ndarray | None  # uint8 0/1, or None
    reference: sitk.Image  # geometry of the image (for writing predictions)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.reference.GetSpacing())) / 1000.0


def is_missing(value) -> bool:
    """True for a manifest cell without a path: None, NaN or a blank string."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


def load_case(image_path, mask_path=None, *, case_id=None, label: int = 1, require_mask: bool = False,
              hu_check: bool = True) -> Case:
    """Read a case's CT (HU) and optional mask as arrays, through radhe's one validation path.

    The checks are those of :func:`radhe.io.load_checked_case` (the ones ``radhe validate`` runs),
    except that a mask without any ``label`` voxel is allowed (the caller decides what an empty
    mask means) and the ROI may be a single voxel.
    """
    from radhe.io.validation import load_checked_case

    has_mask = mask_path is not None and not is_missing(mask_path)
    if not has_mask and require_mask:
        raise InputError("no mask path: a ground-truth mask is required here", case_id=case_id)
    loaded = load_checked_case(image_path, mask_path if has_mask else None, case_id=case_id, label=label,
                               hu_check=hu_check, require_label=False, min_roi_dimensions=0)
    hu = sitk.GetArrayFromImage(loaded.image).astype(np.float32, copy=False)
    mask = None
    if loaded.mask is not None:
        mask = (sitk.GetArrayViewFromImage(loaded.mask) == label).astype(np.uint8)
    return Case(str(case_id), hu, mask, loaded.image)


def window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip HU to ``[low, high]`` and scale to ``[0, 1]`` (float32)."""
    if not high > low:
        raise ConfigurationError(f"window must be (low, high) with high > low, got ({low}, {high})")
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def skull_strip(hu: np.ndarray, *, bone_hu: float = BONE_HU) -> np.ndarray:
    """A boolean mask of the intracranial space of a head CT ``(z, y, x)``.

    Bone (HU above ``bone_hu``) is thresholded, each slice's skull ring is filled, the bone removed,
    and the largest 3-D connected component kept. Slices without a closed skull ring keep nothing;
    a volume where this finds nothing returns all-True (no stripping) rather than an empty brain.
    """
    bone = hu > bone_hu
    inside = np.zeros_like(bone)
    for z in range(bone.shape[0]):
        if bone[z].any():
            closed = ndimage.binary_closing(bone[z], iterations=2)
            inside[z] = ndimage.binary_fill_holes(closed) & ~closed
    labels, count = ndimage.label(inside)
    if count == 0:
        return np.ones_like(bone)
    sizes = np.bincount(labels.ravel())[1:]
    brain = labels == (int(np.argmax(sizes)) + 1)
    # give back a rim of the haematoma lying against the inner table (in-plane only: the head's
    # outline changes from slice to slice)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(brain, structure=in_plane) & ~bone & (hu > -500)


def preprocess(case: Case, window_hu: tuple[float, float], strip: bool) -> np.ndarray:
    """Windowed ``[0, 1]`` volume; voxels outside the intracranial space set to 0 when ``strip``."""
    image = window(case.hu, *window_hu)
    if strip:
        image[~skull_strip(case.hu)] = 0.0
    return image


def padded_size(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return int(math.ceil(size / multiple) * multiple)


def to_network_grid(volume: np.ndarray, input_size: int | None, multiple: int, *, is_mask: bool = False):
    """Bring ``(z, y, x)`` slices to the network grid: resized to ``input_size`` or padded to ``multiple``.

    Returns ``(array, undo)``; ``undo(prob)`` maps a ``(z, Y, X)`` float map back to the original grid.
    """
    import torch
    from torch.nn import functional as F

    z, h, w = volume.shape
    if input_size is None:
        ph, pw = padded_size(h, multiple), padded_size(w, multiple)
        out = np.zeros((z, ph, pw), dtype=volume.dtype)
        out[:, :h, :w] = volume

        def undo(prob: np.ndarray) -> np.ndarray:
            return prob[:, :h, :w]

        return out, undo
    size = padded_size(int(input_size), multiple)
    if (h, w) == (size, size):
        return volume, lambda prob: prob
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    if is_mask:
        resized = (resized >= 0.5).astype(np.uint8)

    def undo(prob: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float32))[:, None]
        return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[:, 0].numpy()

    return resized, undo


def stack_context(volume: np.ndarray, indices: np.ndarray, context: int) -> np.ndarray:
    """``(n, 2*context+1, y, x)`` slices ``indices`` with their neighbours (edge slices repeated)."""
    offsets = np.arange(-context, context + 1)
    idx = np.clip(indices[:, None] + offsets[None, :], 0, volume.shape[0] - 1)
    return volume[idx]


def bbox_2d(mask2d: np.ndarray) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` half-open bounding box of a non-empty 2-D mask."""
    ys = np.flatnonzero(mask2d.any(axis=1))
    xs = np.flatnonzero(mask2d.any(axis=0))
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def roi_crops(case: Case, *, window_hu, n_slices: int, roi_mm: float, size: int, mask_channel: bool) -> np.ndarray:
    """ROI crops of the largest-area slice and ``n_slices`` on each side, ``(n, c, size, size)`` float32.

    The square ROI (side ``roi_mm``, or the haematoma's extent on these slices if larger, plus 10 %)
    is centred on the haematoma's bounding box on the largest-area slice and resampled to ``size``
    pixels; channel 0 is the windowed CT, channel 1 (``mask_channel``) the mask.
    """
    import torch
    from torch.nn import functional as F

    mask = case.mask.astype(bool)
    areas = mask.reshape(len(mask), -1).sum(axis=1)
    z0 = int(np.argmax(areas))
    zs = np.arange(max(0, z0 - n_slices), min(len(mask), z0 + n_slices + 1))
    spacing_x, spacing_y = case.reference.GetSpacing()[:2]
    y0, y1, x0, x1 = bbox_2d(mask[z0])
    cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
    ys, xs = np.nonzero(mask[zs].any(axis=0))
    extent_mm = max((ys.max() - ys.min() + 1) * spacing_y, (xs.max() - xs.min() + 1) * spacing_x) * 1.1
    side_mm = max(float(roi_mm), extent_mm)
    h, w = mask.shape[1:]
    side_y, side_x = side_mm / spacing_y, side_mm / spacing_x
    theta = torch.tensor([[side_x / w, 0.0, (2 * cx + 1) / w - 1], [0.0, side_y / h, (2 * cy + 1) / h - 1]],
                         dtype=torch.float32)
    channels = [window(case.hu[zs], *window_hu)]
    if mask_channel:
        channels.append(mask[zs].astype(np.float32))
    x = torch.from_numpy(np.stack(channels, axis=1))
    grid = F.affine_grid(theta.expand(len(zs), 2, 3), [len(zs), x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).numpy()


def slice_samples(crops: list, *per_case: np.ndarray):
    """Stack per-case crops into slice samples, repeating each case's rows of ``per_case`` arrays.

    ``crops`` holds per case an ``(n_i, c, s, s)`` array or None (a case without a usable ROI).
    Returns ``(data, slice_case, *per_slice)``: the ``(sum n_i, c, s, s)`` samples, the index of each
    sample's case, and each ``per_case`` array (one row per case) repeated per slice; all None when
    no case has crops.
    """
    kept = [i for i, crop in enumerate(crops) if crop is not None]
    if not kept:
        return (None, None, *(None for _ in per_case))
    slice_case = np.concatenate([np.full(len(crops[i]), i) for i in kept])
    data = np.concatenate([crops[i] for i in kept])
    return (data, slice_case, *(np.asarray(values)[slice_case] for values in per_case))
