"""Slice-level data handling shared by the segmenter and the CNN embedder.

Loading a case into a ``(z, y, x)`` array, HU windowing, simple skull stripping, resizing slices to
a network's input size, batch augmentation, and the torch run-time settings (device, threads,
seeded RNG) used while fitting. Everything here is internal (``_slices``); the public entry points
are :class:`radhe.segmentation.HematomaSegmenter` and :class:`radhe.features.CNNEmbedder`.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from radhe.errors import ConfigurationError, InputError
from radhe.io.image import read_image

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
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


def load_case(image_path, mask_path=None, *, case_id=None, label: int = 1, require_mask: bool = False) -> Case:
    """Read a case's CT (HU) and optional mask as arrays; the mask must match the image's size."""
    image = read_image(image_path, case_id=case_id)
    if image.GetDimension() != 3:
        raise InputError(f"image is {image.GetDimension()}-D; a 3-D volume is required", case_id=case_id,
                         path=image_path)
    hu = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    mask = None
    if mask_path is not None and not is_missing(mask_path):
        msk = read_image(mask_path, case_id=case_id)
        if msk.GetSize() != image.GetSize():
            raise InputError(f"mask size {msk.GetSize()} != image size {image.GetSize()}", case_id=case_id,
                             path=mask_path)
        mask = (sitk.GetArrayViewFromImage(msk) == label).astype(np.uint8)
    elif require_mask:
        raise InputError("no mask path: a ground-truth mask is required here", case_id=case_id)
    return Case(str(case_id), hu, mask, image)


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


def augment_batch(images, masks, generator, *, flip: bool = True, max_rotation_deg: float = 10.0,
                  max_scale: float = 0.1, intensity: float = 0.1):
    """Random flips, small rotations/scalings and intensity jitter of an ``(n, c, y, x)`` batch.

    ``masks`` (``(n, 1, y, x)`` or None) get the same geometric transform (bilinear, rethresholded by
    the loss as a soft target). ``generator`` is a seeded :class:`torch.Generator`.
    """
    import torch
    from torch.nn import functional as F

    n = images.shape[0]
    if max_rotation_deg > 0 or max_scale > 0 or flip:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_rotation_deg)
        scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * max_scale
        flips = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos * flips
        theta[:, 0, 1] = -sin
        theta[:, 1, 0] = sin * flips
        theta[:, 1, 1] = cos
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if masks is not None:
            masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if intensity > 0:
        gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * intensity
        shift = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * intensity / 2
        images = images * gain + shift
    return images, masks


# ----------------------------------------------------------------------------------- torch runtime
def resolve_device(device: str | None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def torch_runtime(n_threads: int | None, seed: int | None = None, deterministic: bool = True):
    """Run a block with ``n_threads`` torch threads, a forked and seeded global RNG, deterministic algorithms.

    The caller's thread count, RNG state and determinism flag are restored afterwards.
    """
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if n_threads is not None:
            torch.set_num_threads(max(1, int(n_threads)))
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.random.fork_rng(devices=[] if not torch.cuda.is_available() else None):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def default_threads() -> int:
    """Torch threads used when ``n_threads=None``: the CPUs available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def seed_from(random_state) -> int:
    """An int seed from an sklearn-style ``random_state`` (None → 0, so results repeat by default)."""
    if random_state is None:
        return 0
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    return int(random_state)


def bbox_2d(mask2d: np.ndarray) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` half-open bounding box of a non-empty 2-D mask."""
    ys = np.flatnonzero(mask2d.any(axis=1))
    xs = np.flatnonzero(mask2d.any(axis=0))
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
