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
from radhe.io.image import is_missing_path as is_missing
from radhe.io.orientation import canonical_order, canonical_spacing, to_canonical, to_native
from radhe.io.validation import PADDING_HU

#: HU above which a voxel is taken as bone by :func:`skull_strip`.
BONE_HU = 300.0


@dataclass
class Case:
    """One case loaded for a network: arrays in numpy ``(z, y, x)`` order, in the canonical orientation.

    ``hu`` and ``mask`` are the image's voxels reordered (axes permuted and reversed, never resampled)
    to :data:`radhe.io.orientation.CANONICAL_ORIENTATION`, so that a network sees every scan as the
    ones it was trained on, whatever order the file stores them in (a NIfTI from dcm2niix often
    stores rows from posterior to anterior). ``axes`` and ``flipped`` record the reordering;
    :meth:`to_native` undoes it for an array that goes back to the file's grid (``reference``).
    """

    case_id: str
    hu: np.ndarray  # float32, HU
    mask: np.ndarray | None  # uint8 0/1, or None
    reference: sitk.Image  # geometry of the image (for writing predictions)
    axes: tuple[int, int, int] = (0, 1, 2)  # the native numpy axis of each canonical axis
    flipped: tuple[bool, bool, bool] = (False, False, False)  # canonical axes reversed from the native ones
    image_path: str | None = None  # the file (or DICOM folder) the CT was read from, for messages

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.reference.GetSpacing())) / 1000.0

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing ``(x, y, z)`` in mm of the canonical arrays."""
        return canonical_spacing(self.reference.GetSpacing(), (self.axes, self.flipped))

    def to_native(self, array: np.ndarray) -> np.ndarray:
        """A canonical ``(z, y, x)`` array in the file's own voxel order (the inverse of loading)."""
        return to_native(array, (self.axes, self.flipped))


def load_case(image_path, mask_path=None, *, case_id=None, label: int = 1, require_mask: bool = False,
              hu_check: bool = True) -> Case:
    """Read a case's CT (HU) and optional mask as canonical arrays (:class:`Case`), through radhe's one
    validation path.

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
    order = canonical_order(loaded.image)
    hu = to_canonical(np.array(sitk.GetArrayViewFromImage(loaded.image), dtype=np.float32), order)
    mask = None
    if loaded.mask is not None:
        mask = to_canonical((sitk.GetArrayViewFromImage(loaded.mask) == label).astype(np.uint8), order)
    return Case(str(case_id), hu, mask, loaded.image, *order, image_path=str(image_path))


def window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip HU to ``[low, high]`` and scale to ``[0, 1]`` (float32)."""
    if not high > low:
        raise ConfigurationError(f"window must be (low, high) with high > low, got ({low}, {high})")
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def fill_holes(mask: np.ndarray, *, in_plane: bool = False) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` (same result: background not connected to the array's
    border, face-connected), by one labelling pass instead of an iterated dilation (tens of times
    faster on a 512² slice). ``in_plane``: each slice of a ``(z, y, x)`` stack on its own (connected
    in y and x, bordered by its own edges), all in the one labelling."""
    mask = np.asarray(mask, dtype=bool)
    structure, axes = None, range(mask.ndim)
    if in_plane and mask.ndim != 3:
        raise ValueError(f"fill_holes: in_plane needs a (z, y, x) stack of slices; got shape {mask.shape}")
    if in_plane:
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = ndimage.generate_binary_structure(2, 1)
        axes = (1, 2)
    background, count = ndimage.label(~mask, structure=structure)
    if count == 0:
        return mask.copy()
    on_border = np.zeros(count + 1, dtype=bool)
    for axis in axes:
        on_border[np.take(background, 0, axis=axis)] = True
        on_border[np.take(background, -1, axis=axis)] = True
    hole = ~on_border
    hole[0] = False
    return mask | hole[background]


def padded_box(mask: np.ndarray, pad=1) -> tuple[slice, ...]:
    """Slices of the bounding box of a non-empty ``mask``, widened by ``pad`` voxels (one number or
    one per axis), clipped to the array."""
    pads = np.broadcast_to(np.asarray(pad, dtype=int), (mask.ndim,))
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - int(pads[axis]), 0),
                         min(int(present[-1]) + 1 + int(pads[axis]), mask.shape[axis])))
    return tuple(box)


def skull_strip(hu: np.ndarray, *, bone_hu: float = BONE_HU, spacing=None) -> np.ndarray:
    """A boolean mask of the intracranial space of a head CT ``(z, y, x)``.

    Bone (HU above ``bone_hu``) is thresholded, each slice's skull ring is closed and filled, the
    bone removed, and the largest 3-D connected component kept. With ``spacing`` (``(x, y, z)`` mm)
    the ring is closed over 3 mm, on a grid of about 0.9 mm for finer scans; a slice with bone that
    keeps nothing of that component (a ring left open at the skull base or the vertex by foramina
    or thin bone in partial volume, or only small air pockets enclosed) is closed again over 8 mm
    and the component found again. Without ``spacing``, the ring is closed over 2 pixels. Where the
    field of view cuts the head (tissue on the array's border or next to padding below
    :data:`PADDING_HU` where that padding meets air) and a slice has no brain after both closings,
    the field's edge closes the ring, keeping a space closed mostly by bone that continues the brain
    of a neighbouring slice. A slice with bone and still no brain lying between slices with closed
    rings (a gap wider than the 8 mm closing: a burr hole, a fracture, thin bone in partial volume) is
    closed by the convex hull of its bone within :data:`HULL_BONE_REACH_MM` of the neighbouring
    slice's brain, where that space lies at least half on that brain and is at most
    :data:`HULL_MAX_GROWTH` times its area. Other slices without a closed ring keep nothing (beyond
    the last closed ring: a removed bone flap up to the vertex is not recovered); a volume where this
    finds nothing returns all-True (no stripping) rather than an empty brain.
    """
    native_bone = hu > bone_hu
    bone, factor = native_bone, 1
    pixel_mm = float(min(spacing[0], spacing[1])) if spacing is not None else None
    if pixel_mm is not None and pixel_mm < 0.6:
        # fine grids (0.4-0.6 mm): find the space on a grid of about 0.9 mm, where a voxel is bone if
        # any of the fine voxels it covers is (thin bone stays closed), then bring it back
        factor = max(1, int(round(0.9 / pixel_mm)))
        bone = _any_in_blocks(native_bone, factor)
        pixel_mm *= factor
    closings = (2,) if pixel_mm is None else tuple(max(2, int(round(mm / pixel_mm))) for mm in (3.0, 8.0))

    wall = np.zeros_like(bone)  # tissue on the field's edge, found only on the slices that need it

    def enclosed_by_field_edge(z, iterations):
        # a head cut by the field of view: the field's edge closes the ring where tissue meets it (and
        # the closing, which erodes at the array's edge, keeps the bone it had). A skull ring the field
        # cuts is closed mostly by bone; space closed mostly by the field's edge (the shoulders, a neck)
        # is not intracranial. On the slice's box widened by the closing and one voxel, the closing and
        # its holes are those of the whole slice (outside it all stays background)
        box = padded_box(bone[z] | wall[z], pad=iterations + 1)
        closed = ndimage.binary_closing(bone[z][box], iterations=iterations, border_value=0)
        out = np.zeros(bone.shape[1:], dtype=bool)
        closed |= bone[z][box]
        edge = wall[z][box]
        space = fill_holes(closed | edge) & ~closed & ~edge
        touching = ndimage.binary_dilation(space, structure=ndimage.generate_binary_structure(2, 1))
        if (touching & edge).sum() <= (touching & closed).sum():
            out[box] = space
        return out

    inside = np.zeros_like(bone)
    with_bone = np.flatnonzero(bone.any(axis=(1, 2)))
    inside[with_bone] = _enclosed_in_plane(bone[with_bone], closings[0])
    brain = _largest_component(inside)
    if brain is not None and len(closings) > 1:
        redo = [z for z in with_bone if not brain[z].any()]
        if redo:
            again = _enclosed_in_plane(bone[redo], closings[1])
            inside[redo] = again
            if again.any():
                # else only pieces outside the brain were removed: its component is still the largest
                brain = _largest_component(inside)
    # last, slices still without brain whose tissue meets the field's edge: a ring the field cuts
    # (only then, so that a background masked to padding around a closed skull changes nothing)
    missing = [z for z in with_bone if brain is None or not brain[z].any()]
    edge_tissue = _field_edge_tissue(hu[missing]) if missing else None
    if edge_tissue is not None:
        wall[missing] = _any_in_blocks(edge_tissue, factor) if factor > 1 else edge_tissue
        for iterations in closings:
            cut = [z for z in with_bone if wall[z].any() and (brain is None or not brain[z].any())]
            spaces = {z: enclosed_by_field_edge(z, iterations) for z in cut}
            accepted = spaces if brain is None else _continuing_brain(list(spaces), brain, lambda z, _, found=spaces: found[z])
            for z, space in accepted.items():
                inside[z] = space
            if accepted:
                brain = _largest_component(inside)
    # last, slices with bone and no brain *between* slices whose rings are closed: a ring open there by
    # more than the 8 mm closing bridges (a burr hole or a fracture, thin bone in partial volume) cut
    # the brain beyond it off the largest component. The convex hull of the slice's skull ring (its bone
    # near the neighbouring slice's brain, HULL_BONE_REACH_MM) closes it,
    # taken where it continues the brain of a neighbouring slice at about its size (HULL_MAX_GROWTH).
    # Not beyond the last closed ring: at the vertex that would take in the partial-volume bone of the
    # skull's cap, below the skull base the face
    closed = np.flatnonzero(inside.any(axis=(1, 2)))
    if brain is not None and closed.size:
        gaps = [z for z in with_bone if closed[0] < z < closed[-1] and not brain[z].any()]
        if gaps:
            accepted = _hull_closed(gaps, bone, brain, 1.0 if pixel_mm is None else pixel_mm)
            for z, space in accepted.items():
                inside[z] = space | inside[z]
            if accepted:
                brain = _largest_component(inside)
    if brain is None:
        return np.ones_like(native_bone)
    # give back a rim of the haematoma lying against the inner table (in-plane only: the head's
    # outline changes from slice to slice); everything below happens in the brain's box
    box = padded_box(brain, pad=(0, 1, 1))
    rim = _dilate_in_plane(brain[box], 1)
    fine = (box[0],) + tuple(slice(b.start * factor, min(b.stop * factor, n))
                             for b, n in zip(box[1:], hu.shape[1:], strict=True))
    if factor > 1:
        rim = rim.repeat(factor, axis=1).repeat(factor, axis=2)[:, :fine[1].stop - fine[1].start,
                                                                 :fine[2].stop - fine[2].start]
    out = np.zeros(native_bone.shape, dtype=bool)
    out[fine] = rim & ~native_bone[fine] & (hu[fine] > -500)
    return out


def _enclosed_in_plane(bone: np.ndarray, iterations: int) -> np.ndarray:
    """Per slice of ``bone`` ``(n, y, x)``, the space its ring encloses once closed in-plane over
    ``iterations`` (``scipy.ndimage.binary_closing`` with the 2-D cross and a background border, holes
    filled, the closed bone removed), every slice in one pass on the slices' common bone box widened by
    the closing and one voxel: outside it everything stays background, connected to the border, so
    the result is that of closing and filling each whole slice."""
    out = np.zeros(bone.shape, dtype=bool)
    if not bone.any():
        return out
    rows, columns = padded_box(bone.any(axis=0), pad=iterations + 1)
    closed = _closing_in_plane(bone[:, rows, columns], iterations)
    out[:, rows, columns] = fill_holes(closed, in_plane=True) & ~closed
    return out


def _closing_in_plane(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_closing(slice, iterations=iterations, border_value=0)`` of every slice of
    ``mask`` ``(n, y, x)`` with the 2-D cross (face neighbours in y and x)."""
    return _erode_in_plane(_dilate_in_plane(mask, iterations), iterations)


def _dilate_in_plane(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_dilation`` of every slice of ``mask`` ``(n, y, x)`` with the 2-D cross,
    ``iterations`` times, by shifted ORs."""
    grown = mask.copy()
    for _ in range(iterations):
        step = grown.copy()
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        step[:, :, 1:] |= grown[:, :, :-1]
        step[:, :, :-1] |= grown[:, :, 1:]
        grown = step
    return grown


def _erode_in_plane(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(..., border_value=0)`` of every slice of ``mask`` ``(n, y, x)``
    with the 2-D cross, ``iterations`` times, by shifted ANDs."""
    shrunk = mask.copy()
    for _ in range(iterations):
        # outside the array is background: a voxel on its border has a background neighbour
        step = shrunk.copy()
        step[:, 1:] &= shrunk[:, :-1]
        step[:, :-1] &= shrunk[:, 1:]
        step[:, :, 1:] &= shrunk[:, :, :-1]
        step[:, :, :-1] &= shrunk[:, :, 1:]
        step[:, (0, -1)] = False
        step[:, :, (0, -1)] = False
        shrunk = step
    return shrunk


def _continuing_brain(slices, brain: np.ndarray, space_of, max_growth: float | None = None) -> dict:
    """``{z: space}`` for the ``slices`` whose space continues the brain: ``space_of(z, neighbour)`` (the
    neighbouring slice's brain, or its accepted space) lies at least half on that neighbour, and with
    ``max_growth`` is at most that many times its area; taken outwards from the brain slice by slice.
    The intracranial space changes little from one slice to the next; the shoulders below a neck do not."""
    accepted: dict = {}
    grown = True
    while grown:
        grown = False
        for z in slices:
            if z in accepted:
                continue
            for neighbour in (z - 1, z + 1):
                below = accepted.get(neighbour)
                if below is None and 0 <= neighbour < len(brain):
                    below = brain[neighbour]
                if below is None or not below.any():
                    continue
                space = space_of(z, below)
                area = int(space.sum())
                if area and 2 * int((space & below).sum()) >= area and (
                        max_growth is None or area <= max_growth * int(below.sum())):
                    accepted[z] = space
                    grown = True
                    break
    return accepted


#: A slice's space closed by the convex hull of its bone is taken as intracranial only where it is at
#: most this many times the brain's area on the neighbouring slice (and lies half on it): the
#: intracranial cross-section changes by far less from one slice to the next (5 mm apart), the convex
#: hull of the facial bones below the skull base is larger.
HULL_MAX_GROWTH = 1.3
#: The hull is that of the bone within this distance (mm) of the neighbouring slice's brain: the skull
#: ring (inner table against the brain, 5-8 mm thick), not bone further out (the zygomatic arch 20-30 mm
#: from the brain, with the temporal muscle between), which would bring extracranial tissue in.
HULL_BONE_REACH_MM = 12.0


def _hull_closed(gaps, bone: np.ndarray, brain: np.ndarray, pixel_mm: float) -> dict:
    """For the slices ``gaps`` (bone, no brain), the space the convex hull of the bone near the
    neighbouring slice's brain encloses, where it continues that brain (:func:`_continuing_brain`, at most
    :data:`HULL_MAX_GROWTH` times its area)."""
    def hull_space(z, neighbour):
        near = ndimage.distance_transform_edt(~neighbour) * pixel_mm <= HULL_BONE_REACH_MM
        return _convex_hull_space(bone[z] & near) & ~bone[z]

    return _continuing_brain(gaps, brain, hull_space, max_growth=HULL_MAX_GROWTH)


def _convex_hull_space(bone: np.ndarray) -> np.ndarray:
    """The pixels of a 2-D slice inside the convex hull of its ``bone`` pixels, the bone excluded (empty
    when the bone is too small or flat for a hull)."""
    from scipy.spatial import ConvexHull, QhullError

    out = np.zeros(bone.shape, dtype=bool)
    rows = np.flatnonzero(bone.any(axis=1))
    if rows.size < 2:
        return out
    # each row's first and last bone pixel span the same hull as all of them
    first = bone[rows].argmax(axis=1)
    last = bone.shape[1] - 1 - bone[rows, ::-1].argmax(axis=1)
    points = np.concatenate([np.column_stack([rows, first]), np.column_stack([rows, last])]).astype(float)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return out
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(first.min()), int(last.max()) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    normal_y, normal_x, offset = hull.equations[:, 0], hull.equations[:, 1], hull.equations[:, 2]
    inside = np.ones(yy.shape, dtype=bool)
    for a, b, c in zip(normal_y, normal_x, offset, strict=True):
        inside &= a * yy + b * xx + c <= 1e-9
    out[y0:y1, x0:x1] = inside & ~bone[y0:y1, x0:x1]
    return out


def _field_edge_tissue(hu: np.ndarray) -> np.ndarray | None:
    """Tissue (HU above -500) on the edge of the scanned field: on the array's border, or next to
    padding (:data:`PADDING_HU`) on a slice where the padding also meets air (a reconstruction field's
    circle around air, not a background masked to padding around the body); None when there is none."""
    faces = (hu[:, 0, :], hu[:, -1, :], hu[:, :, 0], hu[:, :, -1])
    padded = bool(hu.min() < PADDING_HU) if hu.size else False
    if not padded and not any((face > -500).any() for face in faces):
        return None
    edge = np.zeros(hu.shape, dtype=bool)
    edge[:, (0, -1), :] = True
    edge[:, :, (0, -1)] = True
    if padded:
        beside = ndimage.binary_dilation(hu < PADDING_HU, structure=ndimage.generate_binary_structure(2, 1)[None])
        meets_air = (beside & (hu >= PADDING_HU) & (hu < -500)).any(axis=(1, 2))
        edge[meets_air] |= beside[meets_air]
    edge &= hu > -500
    return edge if edge.any() else None


def _any_in_blocks(mask: np.ndarray, factor: int) -> np.ndarray:
    """``(z, y, x)`` mask on a grid ``factor`` times coarser in y and x: True where any covered voxel is
    (the last row / column of blocks padded with False)."""
    nz, ny, nx = mask.shape
    padded = mask if not (ny % factor or nx % factor) else np.pad(mask, ((0, 0), (0, -ny % factor), (0, -nx % factor)))
    coarse = padded[:, 0::factor, 0::factor].copy()
    for dy in range(factor):
        for dx in range(factor):
            if dy or dx:
                coarse |= padded[:, dy::factor, dx::factor]
    return coarse


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest 3-D face-connected component of ``mask`` (the first in scan order on a tie); None if empty."""
    if not mask.any():
        return None
    box = padded_box(mask, pad=0)
    labels, _ = ndimage.label(mask[box])
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1)
    return out


#: HU range of voxels a parenchymal haematoma may hold (blood, its hypodense parts, partial volume),
#: used by :func:`brain_only`.
HAEMATOMA_HU = (-50.0, 150.0)
#: A predicted component whose voxels lie at a median distance from the skull below this (mm) is a
#: rim along it (extra-axial blood, partial-volume bone), not a parenchymal haematoma: on the
#: synthetic cohort the median distance of parenchymal haematomas is 8 mm or more, that of
#: subdural collections 1-5 mm; a haematoma of 1 mL (radius 6 mm) against the inner table lies at
#: about 4 mm.
EXTRA_AXIAL_MEDIAN_MM = 3.0
#: Bone pieces smaller than this (mL) are not skull for :func:`brain_only` (calcifications are < 0.2 mL).
SKULL_MIN_ML = 0.5


def brain_only(mask: np.ndarray, hu: np.ndarray, spacing, intracranial: np.ndarray | None = None, *,
               bone_hu: float = BONE_HU) -> np.ndarray:
    """Keep the part of a predicted haematoma mask that anatomy allows.

    A parenchymal haematoma lies inside the brain, not in bone, air or fat, and not as a thin rim
    along the skull. Voxels outside ``intracranial`` (e.g. :func:`skull_strip`) or outside
    :data:`HAEMATOMA_HU` are removed; then every 3-D connected component whose voxels lie at a
    median distance from the skull (bone: HU above ``bone_hu``, in pieces of at least
    :data:`SKULL_MIN_ML`, so not a calcification) below :data:`EXTRA_AXIAL_MEDIAN_MM` is removed.

    Parameters
    ----------
    mask : numpy.ndarray of bool, ``(z, y, x)``
    hu : numpy.ndarray, ``(z, y, x)``
        The CT in HU.
    spacing : (float, float, float)
        Voxel spacing ``(x, y, z)`` in mm.
    intracranial : numpy.ndarray of bool, optional
        The intracranial space; None skips that test.

    Returns
    -------
    numpy.ndarray of bool

    Raises
    ------
    ValueError
        ``mask``, ``hu`` and ``intracranial`` are not one 3-D shape, ``intracranial`` is not
        boolean, or ``spacing`` is not three positive numbers.
    """
    mask, hu = np.asarray(mask, dtype=bool), np.asarray(hu)
    shapes = {"mask": mask.shape, "hu": hu.shape}
    if intracranial is not None:
        shapes["intracranial"] = np.shape(intracranial)
    if mask.ndim != 3 or len(set(shapes.values())) != 1:
        raise ValueError(f"brain_only: mask, hu and intracranial must be one (z, y, x) shape; got {shapes}")
    if len(spacing) != 3 or not all(np.isfinite(float(v)) and float(v) > 0 for v in spacing):
        raise ValueError(f"brain_only: spacing must be three positive (x, y, z) sizes in mm; got {tuple(spacing)}")
    if intracranial is not None:
        intracranial = np.asarray(intracranial)
        if intracranial.dtype != bool:
            raise ValueError(f"brain_only: intracranial must be a boolean mask; got dtype {intracranial.dtype}")
    if not mask.any():
        return mask.copy()
    sampling = (float(spacing[2]), float(spacing[1]), float(spacing[0]))
    voxel_ml = float(np.prod(sampling)) / 1000.0
    margin = [int(math.ceil(2 * EXTRA_AXIAL_MEDIAN_MM / d)) + 1 for d in sampling]
    # everything below happens in the mask's bounding box plus the distance margin: the same
    # components, and the same bone around each of them, as in the whole volume
    work = padded_box(mask, pad=margin)
    mask = mask[work] & (hu[work] > HAEMATOMA_HU[0]) & (hu[work] < HAEMATOMA_HU[1])
    if intracranial is not None:
        mask &= intracranial[work]
    out = np.zeros(shapes["mask"], dtype=bool)
    if not mask.any():
        return out
    labels, count = ndimage.label(mask)
    # the skull: bone in pieces of at least SKULL_MIN_ML over the whole scan (a calcification is smaller)
    skull = _large_pieces(hu, bone_hu, work, voxel_ml, SKULL_MIN_ML)
    keep = np.zeros(count + 1, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        # distances below 2 × the threshold are exact inside a box padded by that much
        padded = tuple(slice(max(b.start - m, 0), min(b.stop + m, n))
                       for b, m, n in zip(box, margin, mask.shape, strict=True))
        bone = skull[padded]
        component = labels[padded] == index
        if not bone.any():
            keep[index] = True
            continue
        distance = ndimage.distance_transform_edt(~bone, sampling=sampling)
        keep[index] = float(np.median(distance[component])) >= EXTRA_AXIAL_MEDIAN_MM
    out[work] = keep[labels]
    return out


def _large_pieces(hu: np.ndarray, threshold: float, box: tuple[slice, ...], voxel_ml: float, min_ml: float
                  ) -> np.ndarray:
    """Inside ``box``, the voxels above ``threshold`` (HU) whose face-connected piece of the whole volume's
    voxels above it holds at least ``min_ml`` (mL; ``voxel_ml`` per voxel).

    The pieces are found in a region around ``box`` that grows (doubling) only while a piece reaching
    into ``box`` is below ``min_ml`` there and touches the region's inner faces, so might continue
    outside: a piece that does not touch them is a whole piece, and one already large enough inside
    the region is large in the volume. The result is that of labelling the whole volume, at the cost
    of the box (the skull, one large piece, is decided in the first region)."""
    shape = hu.shape
    region = box
    while True:
        labels, _ = ndimage.label(hu[region] > threshold)
        sizes = np.bincount(labels.ravel())
        large = sizes * voxel_ml >= min_ml
        large[0] = False
        inner = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region, strict=True))
        reaching = np.zeros(len(sizes), dtype=bool)
        reaching[labels[inner]] = True
        whole = all(r.start == 0 and r.stop == n for r, n in zip(region, shape, strict=True))
        if not whole:
            open_faces = np.zeros(len(sizes), dtype=bool)
            for axis, (r, n) in enumerate(zip(region, shape, strict=True)):
                if r.start > 0:
                    open_faces[np.take(labels, 0, axis=axis)] = True
                if r.stop < n:
                    open_faces[np.take(labels, -1, axis=axis)] = True
            open_faces[0] = False
            if not (reaching & ~large & open_faces).any():
                whole = True
        if whole:
            return large[labels[inner]]
        region = tuple(slice(max(r.start - (r.stop - r.start), 0), min(r.stop + (r.stop - r.start), n))
                       for r, n in zip(region, shape, strict=True))


def preprocess(case: Case, window_hu: tuple[float, float], strip: bool, intracranial: np.ndarray | None = None,
               *, box=None) -> np.ndarray:
    """Windowed ``[0, 1]`` volume; voxels outside the intracranial space set to 0 when ``strip``.

    ``intracranial`` is that space when the caller has it already (else :func:`skull_strip`).
    ``box`` (in-plane ``(y0, y1, x0, x1)``, e.g. :func:`head_box`): only that part is computed and
    returned, ``(z, y1 - y0, x1 - x0)``, for a caller that crops to it.
    """
    if strip and intracranial is None:
        intracranial = skull_strip(case.hu)
    if box is None:
        image = window(case.hu, *window_hu)
        if strip:
            image[~intracranial] = 0.0
        return image
    region = (slice(None), slice(box[0], box[1]), slice(box[2], box[3]))
    part = window(case.hu[region], *window_hu)
    if strip:
        part[~intracranial[region]] = 0.0
    return part


def head_box(hu: np.ndarray, intracranial: np.ndarray | None, spacing, margin_mm: float = 6.0):
    """In-plane ``(y0, y1, x0, x1)`` box of the intracranial space (else the head) plus ``margin_mm``."""
    region = intracranial if intracranial is not None and not intracranial.all() else hu > -300
    flat = region.any(axis=0)
    if not flat.any():
        return 0, hu.shape[1], 0, hu.shape[2]
    y0, y1, x0, x1 = bbox_2d(flat)
    my, mx = int(math.ceil(margin_mm / spacing[1])), int(math.ceil(margin_mm / spacing[0]))
    return max(y0 - my, 0), min(y1 + my, hu.shape[1]), max(x0 - mx, 0), min(x1 + mx, hu.shape[2])


def to_physical_grid(volume: np.ndarray, spacing, target_mm: float, box, multiple: int, *,
                     is_mask: bool = False):
    """Crop ``(z, y, x)`` slices to ``box`` and resample them in-plane to ``target_mm`` pixels.

    The result is zero-padded to a multiple of ``multiple``. Returns ``(array, undo)``;
    ``undo(prob)`` maps a ``(z, Y, X)`` float map back to the full native grid (0 outside the box),
    ``undo(prob, crop=True)`` to the box only (``(z, y1 - y0, x1 - x0)``).
    """
    import torch
    from torch.nn import functional as F

    y0, y1, x0, x1 = box
    z, full_h, full_w = volume.shape
    h0, w0 = y1 - y0, x1 - x0
    h = max(1, int(round(h0 * float(spacing[1]) / target_mm)))
    w = max(1, int(round(w0 * float(spacing[0]) / target_mm)))
    crop = np.ascontiguousarray(volume[:, y0:y1, x0:x1], dtype=np.float32)
    if (h, w) == (h0, w0):
        resized = crop
    else:
        tensor = torch.from_numpy(crop)[:, None]
        # antialias: a 0.45 mm scan brought to 1 mm must not alias its noise
        resized = F.interpolate(tensor, size=(h, w), mode="bilinear", align_corners=False,
                                antialias=(h < h0 or w < w0))[:, 0].numpy()
    if is_mask:
        resized = (resized >= 0.5).astype(np.uint8)
    out = np.zeros((z, padded_size(h, multiple), padded_size(w, multiple)), dtype=resized.dtype)
    out[:, :h, :w] = resized

    def undo(prob: np.ndarray, *, crop: bool = False) -> np.ndarray:
        part = np.ascontiguousarray(prob[:, :h, :w], dtype=np.float32)
        if (h, w) != (h0, w0):
            part = F.interpolate(torch.from_numpy(part)[:, None], size=(h0, w0), mode="bilinear",
                                 align_corners=False)[:, 0].numpy()
        if crop:
            return part
        full = np.zeros((prob.shape[0], full_h, full_w), dtype=np.float32)
        full[:, y0:y1, x0:x1] = part
        return full

    return out, undo


def padded_size(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return int(math.ceil(size / multiple) * multiple)


def to_network_grid(volume: np.ndarray, input_size: int | None, multiple: int, *, is_mask: bool = False):
    """Bring ``(z, y, x)`` slices to the network grid: resized to ``input_size`` or padded to ``multiple``.

    Returns ``(array, undo)``; ``undo(prob)`` maps a ``(z, Y, X)`` float map back to the original grid
    (``undo(prob, crop=True)`` is the same: the whole grid is the box).
    """
    import torch
    from torch.nn import functional as F

    z, h, w = volume.shape
    if input_size is None:
        ph, pw = padded_size(h, multiple), padded_size(w, multiple)
        out = np.zeros((z, ph, pw), dtype=volume.dtype)
        out[:, :h, :w] = volume

        def undo(prob: np.ndarray, *, crop: bool = False) -> np.ndarray:
            return prob[:, :h, :w]

        return out, undo
    size = padded_size(int(input_size), multiple)
    if (h, w) == (size, size):
        return volume, lambda prob, *, crop=False: prob
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    if is_mask:
        resized = (resized >= 0.5).astype(np.uint8)

    def undo(prob: np.ndarray, *, crop: bool = False) -> np.ndarray:
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
    spacing_x, spacing_y = case.spacing[:2]
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
