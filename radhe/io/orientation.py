"""The voxel order of an image: bringing its numpy array to one anatomical orientation and back.

Files store a volume's voxels in any of 48 axis orders (a NIfTI from dcm2niix usually stores rows from
posterior to anterior; a DICOM series anterior first; a reformat may store coronal slices). Code that
reads anatomy from the array's axes (a network, the axial slices of ABC/2) reorders the voxels to
:data:`CANONICAL_ORIENTATION` first: axes permuted and reversed, never resampled, as
:func:`SimpleITK.DICOMOrient` does, and maps what it computes back with :func:`to_native`.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

__all__ = ["CANONICAL_ORIENTATION", "canonical_order", "to_canonical", "to_native", "canonical_spacing"]

#: The canonical orientation: ITK's identity direction (DICOM's LPS). Along numpy ``(z, y, x)``, slices
#: run towards the vertex, rows towards posterior and columns towards the patient's left.
CANONICAL_ORIENTATION = "LPS"

_PATIENT_AXIS = {"L": (0, True), "R": (0, False), "P": (1, True), "A": (1, False), "S": (2, True), "I": (2, False)}

Order = tuple[tuple[int, int, int], tuple[bool, bool, bool]]
IDENTITY: Order = ((0, 1, 2), (False, False, False))


def canonical_order(image: sitk.Image) -> Order:
    """``(axes, flipped)`` bringing ``image``'s numpy array to :data:`CANONICAL_ORIENTATION`: canonical
    numpy axis ``a`` is the native axis ``axes[a]``, reversed where ``flipped[a]``.

    The orientation is SimpleITK's closest one to the direction cosines (an oblique scan goes to the
    patient axes nearest to its own), as :func:`SimpleITK.DICOMOrient` reorients.
    """
    if not isinstance(image, sitk.Image):
        raise TypeError(f"canonical_order needs a SimpleITK.Image, got {type(image).__name__}")
    if image.GetDimension() != 3:
        raise ValueError(f"canonical_order needs a 3-D image, got a {image.GetDimension()}-D one")
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    axes, flipped = [0, 0, 0], [False, False, False]
    for index_axis, letter in enumerate(code):  # ITK index axes x, y, z are numpy axes 2, 1, 0
        patient_axis, positive = _PATIENT_AXIS[letter]
        axes[2 - patient_axis] = 2 - index_axis
        flipped[2 - patient_axis] = not positive
    return tuple(axes), tuple(flipped)


def _check(array: np.ndarray, order: Order) -> None:
    axes, flipped = order
    if np.ndim(array) != 3 or sorted(axes) != [0, 1, 2] or len(flipped) != 3:
        raise ValueError(f"a (z, y, x) array and an (axes, flipped) order of canonical_order are needed; got an "
                         f"array of shape {np.shape(array)} and order {order!r}")


def to_canonical(array: np.ndarray, order: Order) -> np.ndarray:
    """A native ``(z, y, x)`` array in the canonical orientation (``array`` itself when already so)."""
    _check(array, order)
    axes, flipped = order
    if (tuple(axes), tuple(flipped)) == IDENTITY:
        return array
    return np.ascontiguousarray(np.flip(np.transpose(array, axes), tuple(a for a in range(3) if flipped[a])))


def to_native(array: np.ndarray, order: Order) -> np.ndarray:
    """The inverse of :func:`to_canonical`: a canonical array in the file's own voxel order."""
    _check(array, order)
    axes, flipped = order
    if (tuple(axes), tuple(flipped)) == IDENTITY:
        return array
    reversed_axes = tuple(a for a in range(3) if flipped[a])
    return np.ascontiguousarray(np.transpose(np.flip(array, reversed_axes), np.argsort(axes)))


def canonical_spacing(spacing, order: Order) -> tuple[float, float, float]:
    """The ``(x, y, z)`` spacing (mm) of the canonical array, from the image's own ``(x, y, z)`` spacing."""
    axes, _ = order  # numpy axis n of the image has spacing[2 - n]
    return tuple(float(spacing[2 - axes[2 - a]]) for a in range(3))
