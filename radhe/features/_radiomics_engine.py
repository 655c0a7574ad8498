"""Fast pyradiomics extraction with pyradiomics' own numbers.

:func:`extract_case` computes what ``RadiomicsFeatureExtractor(params).execute(image, mask)`` returns,
minus the ``diagnostics_*`` entries, with pyradiomics' own preprocessing functions and feature
classes. It is faster because it skips work whose result is thrown away or can be obtained more
cheaply *exactly*:

* no diagnostics: pyradiomics hashes image and mask (SHA1) and computes label statistics of the
  whole volume for the ``diagnostics_*`` entries, which radhe drops;
* the mask's label check and bounding box come from one pass of numpy over the mask instead of
  ``numpy.unique`` (a sort) plus ``LabelStatisticsImageFilter`` over the whole volume; the
  geometry check is the one ITK performs (same tolerances); on a mismatch pyradiomics' own
  ``checkMask`` runs, so its errors and ``correctMask`` behave as in pyradiomics;
* the shape class's marching-cubes surface, volume and diameters are computed by
  :func:`mesh_coefficients`: the same mesh as pyradiomics' C code (same vertex coordinates, same
  triangles), vectorised, and the maximum diameters searched only among the vertices that can
  attain them (a farthest pair of a point set lies on its convex hull; a point between two others
  on a grid line is never on the hull) instead of all O(n^2) vertex pairs. The distance of the
  winning pair is computed with the same floating-point expression as pyradiomics, so it is the
  same number;
* filters are applied to the region of interest's bounding box plus a margin instead of the
  whole volume: wavelet and gradient (bounded support; margin larger than the support: the same
  values; an axis the margin reaches the image border of is kept whole, so the wavelet's
  wrap-around is unchanged) and LoG. ITK's LoG is a sum of separable recursive (IIR) Gaussian
  passes with infinite support and a response decaying like exp(-1.7 d / sigma); it runs on the box
  plus 24 sigma on each side (cut at the image border), and after each pass only the lines the
  later passes read are kept (:func:`laplacian_of_gaussian_in_box`, bit-identical to SimpleITK's
  filter on the same crop). The influence of the voxels beyond the margin is ~1e-18 of the signal,
  but the double-precision recursion's rounding depends on where a line starts, so a float32 value
  can differ in its last bit: measured on 8 benchmark cases of 512 x 512 x 32, five sigmas, 1 voxel
  of 2.45 million inside the ROI boxes, by 1 unit in the last place (features differ by < 1e-13).
  The intensity filters that use the whole image's maximum (square, square root, logarithm,
  exponential) and LBP run on the whole volume, as in pyradiomics.

* the fixed-bin-width discretisation's minimum and maximum are taken with ``ndarray.min()`` /
  ``max()`` instead of Python's builtins iterating the array (:func:`numpy_bin_edges`, for the
  duration of an extraction only): the same numbers.

Everything else (normalisation, resampling, resegmentation, cropping, discretisation, the texture
matrices and feature formulas) is pyradiomics' own code called with the same settings.
"""

from __future__ import annotations

import collections
import contextlib
import logging

import numpy as np
import SimpleITK as sitk

__all__ = [
    "ExtractionConfig", "resolve_params", "extract_case", "extract_task", "mesh_coefficients", "quiet_radiomics",
    "laplacian_of_gaussian_in_box", "numpy_bin_edges",
]


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


_QUIET = _BelowError()


@contextlib.contextmanager
def quiet_radiomics():
    """While radhe extracts, keep pyradiomics' own console handler to errors (it warns on every case).

    A filter on the stderr handler that pyradiomics installs (``radiomics.handler``), for the
    duration only. No logger's level is changed and the user's own handlers are untouched: a program
    that configured logging for ``radiomics`` still receives every message it asked for.
    """
    import radiomics  # its import installs the handler: import first

    handler = getattr(radiomics, "handler", None)
    if handler is None:
        yield
        return
    handler.addFilter(_QUIET)
    try:
        yield
    finally:
        handler.removeFilter(_QUIET)


def _bin_edges_with_numpy_extrema(original):
    """pyradiomics' ``getBinEdges`` with the fixed-bin-width extrema taken by numpy.

    pyradiomics takes ``min(parameterValues)`` and ``max(parameterValues)`` with Python's builtins,
    which iterate a numpy array element by element (about a tenth of a LoG + wavelet extraction).
    ``ndarray.min()`` / ``max()`` return the same numbers, of the same type, for a non-empty array
    without NaN, except that a tie between ``-0.0`` and ``+0.0`` may resolve differently: the builtin
    keeps the first zero it meets, and so does this function (the sign reaches the first edge). The
    rest of the computation is pyradiomics' code, unchanged. Anything else (bin count, an empty
    array, NaN, a list) goes to pyradiomics' function.
    """
    import numpy
    from radiomics import imageoperations

    def get_bin_edges(parameterValues, **kwargs):  # noqa: N803 (pyradiomics' signature)
        if (kwargs.get("binCount") is not None or not isinstance(parameterValues, numpy.ndarray)
                or parameterValues.ndim != 1 or parameterValues.size == 0):
            return original(parameterValues, **kwargs)
        minimum = parameterValues.min()
        if numpy.isnan(minimum):
            return original(parameterValues, **kwargs)
        if minimum == 0:  # the builtin's zero: the first one in the array, with its sign
            minimum = parameterValues[numpy.argmax(parameterValues == 0)]
        maximum = parameterValues.max()
        bin_width = kwargs.get("binWidth", 25)
        low = minimum - (minimum % bin_width)
        edges = numpy.arange(low, maximum + 2 * bin_width, bin_width)
        if len(edges) == 1:  # flat region: one bin, as pyradiomics
            edges = [edges[0] - 0.5, edges[0] + 0.5]
        imageoperations.logger.debug("Calculated %d bins for bin width %g with edges: %s)", len(edges) - 1,
                                     bin_width, edges)
        return edges

    get_bin_edges.__wrapped__ = original
    return get_bin_edges


@contextlib.contextmanager
def numpy_bin_edges():
    """While radhe extracts, pyradiomics bins with :func:`_bin_edges_with_numpy_extrema` (same edges)."""
    from radiomics import imageoperations

    original = imageoperations.getBinEdges
    if getattr(original, "__wrapped__", None) is not None:  # already inside
        yield
        return
    imageoperations.getBinEdges = _bin_edges_with_numpy_extrema(original)
    try:
        yield
    finally:
        imageoperations.getBinEdges = original


# ---------------------------------------------------------------------------------------------
# Parameters


class ExtractionConfig:
    """Validated pyradiomics parameters: ``settings``, ``image_types`` and ``features`` dicts.

    Built by :func:`resolve_params` through ``RadiomicsFeatureExtractor`` itself, so the defaults
    and validation (pykwalify schema) are pyradiomics'.
    """

    def __init__(self, settings: dict, image_types: dict, features: dict):
        import copy

        settings, image_types, features = copy.deepcopy((settings, image_types, features))
        self.settings = dict(settings)
        self.image_types = {k: dict(v or {}) for k, v in image_types.items()}
        self.features = {k: (list(v) if v else None) for k, v in features.items()}

    def as_params(self) -> dict:
        """The configuration in pyradiomics' parameter-file schema."""
        return {
            "setting": dict(self.settings),
            "imageType": {k: dict(v) for k, v in self.image_types.items()},
            "featureClass": {k: (list(v) if v else None) for k, v in self.features.items()},
        }

    def __getstate__(self):
        return self.as_params()

    def __setstate__(self, state):
        self.__init__(state["setting"], state["imageType"], state["featureClass"])


_RESOLVED: dict[str, dict] = {}


def resolve_params(params) -> ExtractionConfig:
    """Parse a pyradiomics parameter dict or YAML/JSON file path into an :class:`ExtractionConfig`.

    Validation is pyradiomics' (pykwalify, ~10 ms); results are memoised per parameter content.
    """
    import json
    import os
    import warnings

    from radiomics.featureextractor import RadiomicsFeatureExtractor

    if params is None:
        memo_key = "defaults"
    elif isinstance(params, dict):
        memo_key = "dict:" + json.dumps(params, sort_keys=True, default=repr)
    else:
        st = os.stat(str(params))
        memo_key = f"file:{os.path.abspath(str(params))}:{st.st_size}:{st.st_mtime_ns}"
    if memo_key not in _RESOLVED:
        # the extractor sets SimpleITK's process-wide tolerances from "geometryTolerance"; only the
        # extraction itself should (extract_task restores them after each case)
        tolerances = (sitk.ProcessObject.GetGlobalDefaultCoordinateTolerance(),
                      sitk.ProcessObject.GetGlobalDefaultDirectionTolerance())
        with warnings.catch_warnings(), quiet_radiomics():
            # pykwalify loads pyradiomics' schema extension with the deprecated importlib load_module()
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                if params is None:
                    extractor = RadiomicsFeatureExtractor()
                elif isinstance(params, dict):
                    extractor = RadiomicsFeatureExtractor(dict(params))
                else:
                    extractor = RadiomicsFeatureExtractor(str(params))
            finally:
                sitk.ProcessObject.SetGlobalDefaultCoordinateTolerance(tolerances[0])
                sitk.ProcessObject.SetGlobalDefaultDirectionTolerance(tolerances[1])
        features = {name: (list(v) if v else None) for name, v in extractor.enabledFeatures.items()}
        _RESOLVED[memo_key] = ExtractionConfig(extractor.settings, extractor.enabledImagetypes, features).as_params()
    state = _RESOLVED[memo_key]
    return ExtractionConfig(state["setting"], state["imageType"], state["featureClass"])


# ---------------------------------------------------------------------------------------------
# Marching-cubes mesh: surface area, volume and maximum diameters (pyradiomics' cshape.c, exactly)

# pyradiomics' triTable (radiomics/src/cshape.c, BSD-3-Clause): the triangles of each of the 128
# cube configurations, as edge numbers in hexadecimal, three per triangle.
_TRI = (
    " 083 190 183198 12a 08312a 92a029 2832a8a98 b23 b2008b 190b23 b2119b98b 3a1ba3 a1008a8ba 9033b9ba9 "
    "98aba8 478 043473 190478 194147173 12a478 34730412a 92a902478 2a9297273479 478b23 b47b24204 "
    "190478b23 47b94bb29192 3a1ba3478 ba114b10447b 4789033b9ba9 47b4b99ba 954 954083 054015 854835315 "
    "12a954 08312a954 2a5542240 2a5325354834 954b23 b2008b954 054015b23 215258b28548 3a1ba3954 "
    "549a1008a8ba 54050ba5bb03 548a58ba8 789579 309539357 780017715 157173 78957912a 12a309395357 "
    "0288258572a5 2a5253357 579789b23 579972209b27 b23018178157 21b17b157 7895793a1ba3 "
    "5705097b0a10ba0 ba003ba50078570 ba557b 65a 08365a 19065a 18319865a 165126 165126083 965906026 "
    "598582526832 b2365a b2008b65a 190b2365a b2119b98b65a 63b653513 08b0b50515b6 63b036065059 "
    "65969bb98 47865a 04347365a 19047865a 19414717365a 478165126 043473165126 478965906026 "
    "739479329596269 b2347865a b47b2420465a 190b2347865a 47b94bb2919265a 47863b653513 "
    "51b5b610b47b04b 47863b036065059 65969b4797b9 a4964a a4964a083 01aa60640 18316886461a 149124264 "
    "149124264083 024426 832824426 b23a4964a b2008ba4964a b2301aa60640 64161a148b2118b 964369139b63 "
    "18b081b61149641 63b036640 86468b 67a78a89a 67a0a709a073 67a1a7178018 67a1a7173 126168189678 "
    "269129679309739 078706602 273267 b2367a78a89a 207b2709767a9a7 67a1a7178018b23 b2117ba61167 "
    "896678169b63136 09167b 07870603bb60 67b"
)
_VERT_LIST = np.array(
    [[0, 0, 0.5], [0, 0.5, 1], [0, 1, 0.5], [0, 0.5, 0], [1, 0, 0.5], [1, 0.5, 1], [1, 1, 0.5], [1, 0.5, 0],
     [0.5, 0, 0], [0.5, 0, 1], [0.5, 1, 1], [0.5, 1, 0]],
    dtype=np.float64,
)
_GRID_ANGLES = ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0))


def _tri_table():
    cubes = _TRI.split(" ")
    assert len(cubes) == 128
    table = np.full((128, 5, 3), -1, dtype=np.int64)
    counts = np.zeros(128, dtype=np.int64)
    for i, code in enumerate(cubes):
        edges = [int(c, 16) for c in code]
        counts[i] = len(edges) // 3
        if edges:
            table[i, : counts[i]] = np.array(edges).reshape(-1, 3)
    return table, counts


_TRI_TABLE, _TRI_COUNT = _tri_table()


def mesh_coefficients(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Surface area, volume and the 4 maximum diameters of a mask, as ``cShape.calculate_coefficients``.

    Parameters
    ----------
    mask : ndarray of bool, (z, y, x)
        The ROI, padded with one empty voxel on every side (as pyradiomics' shape class does).
    spacing : ndarray of float, (3,)
        Voxel spacing in the array's axis order (z, y, x).

    Returns
    -------
    surface_area, volume : float
    diameters : ndarray (4,)
        Largest distance between mesh vertices with equal z (slice), equal y (column), equal x
        (row), and overall (3-D), in that order.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    m = np.ascontiguousarray(mask, dtype=bool)
    nz, ny, nx = m.shape
    cube = np.zeros((nz - 1, ny - 1, nx - 1), dtype=np.uint8)
    for bit, (dz, dy, dx) in enumerate(_GRID_ANGLES):
        cube |= m[dz:nz - 1 + dz, dy:ny - 1 + dy, dx:nx - 1 + dx].view(np.uint8) << np.uint8(bit)
    flip = cube >= 128
    cube[flip] ^= np.uint8(0xFF)

    # Vertices, stored as pyradiomics does: the vertex on edge 6 / 7 / 11 when point 6 / 4 / 3 is set.
    vertex_parts = []
    for point, edge in ((6, 6), (4, 7), (3, 11)):
        iz, iy, ix = np.nonzero(cube & np.uint8(1 << point))
        v = _VERT_LIST[edge]
        vertex_parts.append(np.column_stack((
            (iz.astype(np.float64) + v[0]) * spacing[0],
            (iy.astype(np.float64) + v[1]) * spacing[1],
            (ix.astype(np.float64) + v[2]) * spacing[2],
        )))
    vertices = np.concatenate(vertex_parts) if vertex_parts else np.zeros((0, 3))

    # Triangles: volume (signed tetrahedra from the origin) and surface area.
    iz, iy, ix = np.nonzero(cube)
    idx = cube[iz, iy, ix].astype(np.int64)
    sign = np.where(flip[iz, iy, ix], -1.0, 1.0)
    n_tri = _TRI_COUNT[idx]
    rep = np.repeat(np.arange(idx.size), n_tri)
    tri_no = np.arange(rep.size) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    edges = _TRI_TABLE[idx[rep], tri_no]  # (T, 3)
    origin = np.column_stack((iz[rep], iy[rep], ix[rep])).astype(np.float64)
    a = (origin + _VERT_LIST[edges[:, 0]]) * spacing
    b = (origin + _VERT_LIST[edges[:, 1]]) * spacing
    c = (origin + _VERT_LIST[edges[:, 2]]) * spacing
    ab = np.cross(a, b)
    volume = float(np.sum(sign[rep] * np.einsum("ij,ij->i", ab, c))) / 6
    cr = np.cross(a - c, b - c)
    surface = float(np.sum(0.5 * np.sqrt(np.einsum("ij,ij->i", cr, cr))))

    return surface, volume, mesh_diameters(vertices)


def _line_extremes(points: np.ndarray, along: int) -> np.ndarray:
    """The first and last point of every grid line parallel to axis ``along``."""
    if len(points) <= 2:
        return points
    keys = [d for d in range(3) if d != along]
    order = np.lexsort((points[:, along], points[:, keys[1]], points[:, keys[0]]))
    p = points[order]
    same = (p[1:, keys[0]] == p[:-1, keys[0]]) & (p[1:, keys[1]] == p[:-1, keys[1]])
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:] - 1, len(p) - 1]
    keep = np.unique(np.r_[starts, ends])
    return p[keep]


def _max_sq_distance(p: np.ndarray, q: np.ndarray | None = None) -> float:
    """Largest squared distance between points of ``p`` (pyradiomics' expression and order)."""
    if len(p) < 2:
        return 0.0
    best = 0.0
    chunk = max(1, 2_000_000 // len(p))
    for start in range(0, len(p), chunk):
        a = p[start:start + chunk]
        d0 = a[:, None, 0] - p[None, :, 0]
        d1 = a[:, None, 1] - p[None, :, 1]
        d2 = a[:, None, 2] - p[None, :, 2]
        dist = d0 * d0 + d1 * d1 + d2 * d2
        best = max(best, float(dist.max()))
    return best


def _hull_points(p: np.ndarray, dims: list[int]) -> np.ndarray:
    """Convex-hull vertices of ``p`` projected on ``dims`` (all points when the hull is degenerate)."""
    if len(p) <= 64:
        return p
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(p[:, dims])
    except (QhullError, ValueError):
        return p
    return p[hull.vertices]


def _grouped_max(points: np.ndarray, axis: int) -> float:
    """Largest squared distance between points sharing the same coordinate on ``axis``.

    Groups are visited from the largest bounding box down; a group whose bounding-box diagonal
    cannot beat the best distance found so far is skipped (the bound is computed with the same
    rounding, so it never falls below a distance inside the group).
    """
    if len(points) < 2:
        return 0.0
    other = [d for d in range(3) if d != axis]
    order = np.argsort(points[:, axis], kind="stable")
    p = points[order]
    starts = np.flatnonzero(np.r_[True, p[1:, axis] != p[:-1, axis]])
    ends = np.r_[starts[1:], len(p)]
    ext = np.maximum.reduceat(p, starts, axis=0) - np.minimum.reduceat(p, starts, axis=0)
    bound = ext[:, 0] * ext[:, 0] + ext[:, 1] * ext[:, 1] + ext[:, 2] * ext[:, 2]
    best = 0.0
    for g in np.argsort(-bound, kind="stable"):
        if bound[g] < best:
            break
        s, e = starts[g], ends[g]
        if e - s >= 2:
            best = max(best, _max_sq_distance(_hull_points(p[s:e], other)))
    return best


def mesh_diameters(vertices: np.ndarray) -> np.ndarray:
    """pyradiomics' ``calculate_meshDiameter`` without the O(n^2) loop over all vertex pairs."""
    if len(vertices) == 0:
        return np.zeros(4)
    on_x_lines = _line_extremes(vertices, along=2)  # candidates for slice (z), column (y), 3-D
    on_y_lines = _line_extremes(vertices, along=1)  # candidates for row (x)
    d_slice = _grouped_max(on_x_lines, 0)
    d_column = _grouped_max(on_x_lines, 1)
    d_row = _grouped_max(on_y_lines, 2)
    d_3d = _max_sq_distance(_hull_points(on_x_lines, [0, 1, 2]))
    return np.sqrt(np.array([d_slice, d_column, d_row, d_3d], dtype=np.float64))


def _fast_shape_class():
    from radiomics import shape

    class FastRadiomicsShape(shape.RadiomicsShape):
        """pyradiomics' shape class with :func:`mesh_coefficients` in place of the C routine."""

        def _initSegmentBasedCalculation(self):
            self.pixelSpacing = np.array(self.inputImage.GetSpacing()[::-1])
            self.inputMask = sitk.ConstantPad(self.inputMask, (1, 1, 1), (1, 1, 1))
            self.maskArray = sitk.GetArrayFromImage(self.inputMask) == self.label
            self.labelledVoxelCoordinates = np.where(self.maskArray != 0)
            self.SurfaceArea, self.Volume, self.diameters = mesh_coefficients(self.maskArray, self.pixelSpacing)
            # Eigenvalues: pyradiomics' code, unchanged.
            Np = len(self.labelledVoxelCoordinates[0])
            coordinates = np.array(self.labelledVoxelCoordinates, dtype="int").transpose((1, 0))
            physicalCoordinates = coordinates * self.pixelSpacing[None, :]
            physicalCoordinates -= np.mean(physicalCoordinates, axis=0)
            physicalCoordinates /= np.sqrt(Np)
            covariance = np.dot(physicalCoordinates.T.copy(), physicalCoordinates)
            self.eigenValues = np.linalg.eigvals(covariance)
            machine_errors = np.bitwise_and(self.eigenValues < 0, self.eigenValues > -1e-10)
            if np.sum(machine_errors) > 0:
                self.eigenValues[machine_errors] = 0
            self.eigenValues.sort()

    return FastRadiomicsShape


_FAST_SHAPE = None


def _shape_class():
    global _FAST_SHAPE
    if _FAST_SHAPE is None:
        _FAST_SHAPE = _fast_shape_class()
    return _FAST_SHAPE


# ---------------------------------------------------------------------------------------------
# Mask handling


def _get_mask(mask: sitk.Image, settings: dict) -> tuple[sitk.Image, np.ndarray | None]:
    """pyradiomics' ``getMask`` checks; returns the mask and its ``== label`` array (or None: slow path)."""
    from radiomics import imageoperations

    label = int(settings.get("label", 1))
    arr = sitk.GetArrayViewFromImage(mask) if mask.GetNumberOfComponentsPerPixel() == 1 else None
    if arr is None or not np.issubdtype(arr.dtype, np.integer) or label < 0:
        return imageoperations.getMask(mask, **settings), None
    selected = arr == label
    if not selected.any():
        return imageoperations.getMask(mask, **settings), None  # raises pyradiomics' own error
    return mask, selected


def _same_geometry(image: sitk.Image, mask: sitk.Image) -> bool:
    """ITK's ``VerifyInputInformation`` test, with SimpleITK's current tolerances."""
    if image.GetSize() != mask.GetSize() or image.GetDimension() != mask.GetDimension():
        return False
    coordinate_tol = abs(sitk.ProcessObject.GetGlobalDefaultCoordinateTolerance() * image.GetSpacing()[0])
    direction_tol = sitk.ProcessObject.GetGlobalDefaultDirectionTolerance()
    return (
        np.max(np.abs(np.subtract(image.GetOrigin(), mask.GetOrigin()))) <= coordinate_tol
        and np.max(np.abs(np.subtract(image.GetSpacing(), mask.GetSpacing()))) <= coordinate_tol
        and np.max(np.abs(np.subtract(image.GetDirection(), mask.GetDirection()))) <= direction_tol
    )


def _check_mask(image, mask, selected, **settings):
    """pyradiomics' ``checkMask`` (same checks, errors and bounding box), from the ``== label`` array."""
    from radiomics import imageoperations

    if selected is None or not _same_geometry(image, mask):
        return imageoperations.checkMask(image, mask, **settings)
    min_dims = settings.get("minimumROIDimensions", 2)
    min_size = settings.get("minimumROISize", None)
    bbox = []
    for axis in (2, 1, 0):  # x, y, z
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(selected.any(axis=other))
        bbox += [int(present[0]), int(present[-1])]
    bbox = np.array(bbox)
    ndims = np.sum((bbox[1::2] - bbox[0::2] + 1) > 1)
    if ndims == 0:
        raise ValueError("mask only contains 1 segmented voxel! Cannot extract features for a single voxel.")
    if ndims < min_dims:
        raise ValueError(
            f"mask has too few dimensions (number of dimensions {ndims}, minimum required {min_dims})"
        )
    if min_size is not None:
        roi_size = int(np.count_nonzero(selected))
        if roi_size <= min_size:
            raise ValueError(f"Size of the ROI is too small (minimum size: {min_size:g}, ROI size: {roi_size:g}")
    return bbox, None


def _crop(image: sitk.Image, bbox: np.ndarray, pad) -> tuple[sitk.Image, np.ndarray]:
    """Crop to ``bbox`` widened by ``pad`` voxels per axis (x, y, z); returns the crop and the bbox in it."""
    size = np.array(image.GetSize())
    lower = np.maximum(bbox[0::2] - pad, 0)
    upper = np.minimum(bbox[1::2] + pad, size - 1)
    cropped = sitk.Crop(image, [int(v) for v in lower], [int(v) for v in size - 1 - upper])
    shifted = bbox.copy()
    shifted[0::2] -= lower
    shifted[1::2] -= lower
    return cropped, shifted


# ---------------------------------------------------------------------------------------------
# Filters


#: LoG margin, in units of sigma. ITK's recursive (IIR) Gaussian has infinite support but its
#: response decays like exp(-1.7 d / sigma): 24 sigma away it is ~1e-18 of the signal, far below
#: the float32 resolution of the filter's output. The values inside the ROI equal filtering the
#: whole volume except for rare last-bit differences (see the module docstring), which the
#: feature-equality tests in tests/test_radiomics_features.py bound.
LOG_MARGIN_SIGMAS = 24.0


def _wavelet_margin(kwargs) -> int:
    import pywt

    wavelet = pywt.Wavelet(kwargs.get("wavelet", "coif1"))
    levels = int(kwargs.get("start_level", 0)) + int(kwargs.get("level", 1))
    # Support of the stationary transform's filters after `levels` levels (dilated by 2**j), plus
    # the one-voxel wrap padding pyradiomics adds to odd dimensions.
    return int(sum((wavelet.dec_len - 1) * 2**j for j in range(levels))) + 2


def _image_type_margin(image_type: str, kwargs, spacing) -> np.ndarray | None:
    """Voxels (x, y, z) around the ROI a filter needs to give identical values inside it; None: whole image."""
    if image_type == "Original":
        return np.zeros(3, dtype=int)
    if image_type == "Wavelet":
        return np.full(3, _wavelet_margin(kwargs))
    if image_type == "Gradient":
        return np.full(3, 2)
    if image_type == "LoG":
        sigmas = [float(s) for s in kwargs.get("sigma", []) if float(s) > 0]
        if not sigmas:
            return np.zeros(3, dtype=int)
        return np.ceil(LOG_MARGIN_SIGMAS * max(sigmas) / np.asarray(spacing, dtype=float)).astype(int) + 2
    return None


def _filter_region(image: sitk.Image, bbox: np.ndarray, margin: np.ndarray) -> tuple[sitk.Image, np.ndarray]:
    """Crop for a filter: bbox widened by ``margin``; an axis the widened box reaches the border of is kept whole.

    Keeping such an axis whole keeps the filter's boundary handling (the wavelet's wrap-around, the
    gradient's border) exactly as on the whole volume. The LoG has its own crop (:func:`_log_images`).
    """
    size = np.array(image.GetSize())
    lower = bbox[0::2] - margin
    upper = bbox[1::2] + margin
    whole = (lower <= 0) | (upper >= size - 1)
    lower = np.where(whole, 0, lower)
    upper = np.where(whole, size - 1, upper)
    if np.all(whole):
        return image, bbox
    cropped = sitk.Crop(image, [int(v) for v in lower], [int(v) for v in size - 1 - upper])
    shifted = bbox.copy()
    shifted[0::2] -= lower
    shifted[1::2] -= lower
    return cropped, shifted


def _log_images(full_image, bbox, kwargs):
    """pyradiomics' ``getLoGImage`` (same checks, on the whole image's size); each sigma filters its own crop.

    Yields ``(image, name, kwargs, bbox_in_image)``.
    """
    size = np.array(full_image.GetSize())
    spacing = np.array(full_image.GetSpacing())
    if np.min(size) < 4:
        return
    for sigma in kwargs.get("sigma", []):
        if sigma > 0.0 and np.all(size >= np.ceil(sigma / spacing) + 1):
            margin = np.ceil(LOG_MARGIN_SIGMAS * float(sigma) / spacing).astype(int) + 2
            # each side cut on its own: the recursive filter's border handling at one end of a line
            # does not depend on the other end (unlike the wavelet's wrap-around)
            region, inner = _crop(full_image, bbox, margin)
            name = "log-sigma-{}-mm-3D".format(str(sigma).replace(".", "-"))
            filtered = laplacian_of_gaussian_in_box(region, inner, sigma)
            yield filtered, name, kwargs, _whole_box(filtered)


def _whole_box(image: sitk.Image) -> np.ndarray:
    """The (x0, x1, y0, y1, z0, z1) box, inclusive, of a whole image."""
    return np.array([[0, n - 1] for n in image.GetSize()]).ravel()


def _crop_axis(image: sitk.Image, axis: int, first: int, last: int) -> sitk.Image:
    """``image`` cut to voxels ``first..last`` (inclusive) along ``axis``; the other axes whole."""
    size = image.GetSize()
    lower = [0] * image.GetDimension()
    upper = [0] * image.GetDimension()
    lower[axis] = int(first)
    upper[axis] = int(size[axis] - 1 - last)
    return sitk.Crop(image, lower, upper)


def laplacian_of_gaussian_in_box(image: sitk.Image, bbox: np.ndarray, sigma: float) -> sitk.Image:
    """``LaplacianRecursiveGaussian(image, sigma, normalizeAcrossScale=True)`` inside ``bbox`` only.

    The values are bit-identical to running SimpleITK's filter on ``image`` and cropping its output
    to ``bbox`` (x0, x1, y0, y1, z0, z1, inclusive voxel indices), but most of the work is skipped.
    ITK's filter sums, over each axis ``d``, a second-order recursive Gaussian along ``d`` followed by
    zero-order ones along the other axes in increasing order, each a 1-D pass over whole image lines,
    accumulated in float32 as ``sum + term * (1 / spacing_d**2)``. This runs the same passes in the
    same order with the same pixel types, and after each pass keeps only the lines the later passes
    read: once axis ``d`` has been filtered, later passes never mix voxels along ``d``, so the image
    is cut to the box along ``d``. Only the first pass of each term covers the whole image.

    Parameters
    ----------
    image : SimpleITK.Image
        A 2-D or 3-D scalar image (any pixel type; the first pass writes float32, as ITK's filter
        does).
    bbox : numpy.ndarray
        The box to compute, in voxels of ``image``.
    sigma : float
        Gaussian sigma, in mm (physical units of the image's spacing).

    Returns
    -------
    SimpleITK.Image
        float32 image of the box, with the box's origin, spacing and direction.
    """
    spacing = image.GetSpacing()
    total = None
    for axis in range(image.GetDimension()):
        term = _recursive_gaussian(image, sigma, sitk.RecursiveGaussianImageFilter.SecondOrder, axis)
        term = _crop_axis(term, axis, bbox[2 * axis], bbox[2 * axis + 1])
        for other in range(image.GetDimension()):
            if other != axis:
                term = _recursive_gaussian(term, sigma, sitk.RecursiveGaussianImageFilter.ZeroOrder, other)
                term = _crop_axis(term, other, bbox[2 * other], bbox[2 * other + 1])
        values = sitk.GetArrayViewFromImage(term).astype(np.float64)
        # ITK's accumulation: static_cast<float>(sum + term * (1.0 / spacing**2)), in double
        scale = 1.0 / (float(spacing[axis]) ** 2)
        total = (values * scale if total is None else total.astype(np.float64) + values * scale).astype(np.float32)
        geometry = term
    out = sitk.GetImageFromArray(total)
    out.CopyInformation(geometry)
    return out


def _recursive_gaussian(image: sitk.Image, sigma: float, order, axis: int) -> sitk.Image:
    gaussian = sitk.RecursiveGaussianImageFilter()
    gaussian.SetSigma(float(sigma))
    gaussian.SetNormalizeAcrossScale(True)
    gaussian.SetOrder(order)
    gaussian.SetDirection(int(axis))
    return gaussian.Execute(image)


def _filtered_images(image_type, full_image, mask, bbox, kwargs):
    """Yield ``(image, name, kwargs, bbox_in_image)`` as pyradiomics' ``get<type>Image`` would."""
    from radiomics import imageoperations

    margin = _image_type_margin(image_type, kwargs, full_image.GetSpacing())
    if margin is None:
        generator = getattr(imageoperations, f"get{image_type}Image")
        for image, name, kw in generator(full_image, mask, **kwargs):
            yield image, name, kw, bbox
        return
    if image_type == "LoG":
        yield from _log_images(full_image, bbox, kwargs)
        return
    region, inner = _filter_region(full_image, bbox, margin)
    for image, name, kw in getattr(imageoperations, f"get{image_type}Image")(region, None, **kwargs):
        yield image, name, kw, inner


# ---------------------------------------------------------------------------------------------
# Extraction


def extract_case(image, mask, config: ExtractionConfig, label: int | None = None) -> collections.OrderedDict:
    """Features of one case, equal to ``RadiomicsFeatureExtractor.execute`` without ``diagnostics_*``.

    Parameters
    ----------
    image, mask : str or SimpleITK.Image
        Paths or images.
    config : ExtractionConfig
    label : int, optional
        Overrides ``config.settings["label"]``.

    Raises
    ------
    ValueError, RuntimeError, AssertionError
        pyradiomics' own errors for an invalid ROI or image.
    """
    with numpy_bin_edges():
        return _extract_case(image, mask, config, label)


def _extract_case(image, mask, config: ExtractionConfig, label: int | None) -> collections.OrderedDict:
    from radiomics import getFeatureClasses, imageoperations

    settings = dict(config.settings)
    if label is not None:
        settings["label"] = int(label)
    label = int(settings.get("label", 1))
    if settings.get("geometryTolerance") is not None:
        tol = settings["geometryTolerance"]
        sitk.ProcessObject.SetGlobalDefaultCoordinateTolerance(tol)
        sitk.ProcessObject.SetGlobalDefaultDirectionTolerance(tol)

    # radhe's reader, as every other step: DICOM series folders, and truncated NIfTI files refused
    # (SimpleITK zero-fills them, which would give features of a corrupted scan)
    from radhe.io.image import read_image

    image = read_image(image) if not isinstance(image, sitk.Image) else image
    mask = read_image(mask) if not isinstance(mask, sitk.Image) else mask

    if image.GetDimension() != 3 or mask.GetDimension() != 3 or settings.get("voxelBased", False):
        return _plain_execute(image, mask, config, settings)

    # 1. loadImage
    mask, selected = _get_mask(mask, settings)
    if settings.get("normalize", False):
        image = imageoperations.normalizeImage(image, **settings)
    if settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None:
        image, mask = imageoperations.resampleImage(image, mask, **settings)
        selected = None
    elif settings.get("preCrop", False):
        bb, corrected = imageoperations.checkMask(image, mask, **settings)
        if corrected is not None:
            mask = corrected
        image, mask = imageoperations.cropToTumorMask(image, mask, bb, **settings)
        selected = None
    if selected is None:
        mask = sitk.Cast(mask, sitk.sitkUInt32)
        selected = sitk.GetArrayViewFromImage(mask) == label

    # 2. checkMask
    bbox, corrected = _check_mask(image, mask, selected, **settings)
    if corrected is not None:
        mask = sitk.Cast(corrected, sitk.sitkUInt32)

    # 5. resegmentation (pyradiomics' function, on the whole volume)
    resegmented = None
    if settings.get("resegmentRange", None) is not None:
        resegmented = imageoperations.resegmentMask(image, sitk.Cast(mask, sitk.sitkUInt32), **settings)
        bbox, _ = imageoperations.checkMask(image, resegmented, **settings)
    shape_mask = resegmented if (settings.get("resegmentShape", False) and resegmented is not None) else mask
    texture_mask = resegmented if resegmented is not None else mask

    features = collections.OrderedDict()
    classes = getFeatureClasses()

    # 4. shape
    if "shape" in config.features or "shape2D" in config.features:
        crop_image = _crop(image, bbox, 0)[0]
        crop_mask = sitk.Cast(_crop(shape_mask, bbox, 0)[0], sitk.sitkUInt32)
        nd = crop_mask.GetDimension()
        if "shape" in config.features and nd == 3:
            _run_class(_shape_class(), "original_shape", crop_image, crop_mask, config.features["shape"],
                       settings, features)
        if "shape2D" in config.features:
            ok = nd == 2
            if nd == 3 and settings.get("force2D", False):
                dim = settings.get("force2Ddimension", 0)
                ok = (bbox[1::2] - bbox[0::2] + 1)[dim] > 1
            if ok:
                _run_class(classes["shape2D"], "original_shape2D", crop_image, crop_mask,
                           config.features["shape2D"], settings, features)

    # 6. other classes on every image type
    texture_crop = sitk.Cast(_crop(texture_mask, bbox, 0)[0], sitk.sitkUInt32)
    for image_type, custom in config.image_types.items():
        kwargs = dict(settings)
        kwargs.update(custom)
        for filtered, name, kw, inner in _filtered_images(image_type, image, texture_mask, bbox, kwargs):
            crop_img = _crop(filtered, inner, 0)[0]
            for class_name, names in config.features.items():
                if class_name.startswith("shape") or class_name not in classes:
                    continue
                _run_class(classes[class_name], f"{name}_{class_name}", crop_img, texture_crop, names, kw,
                           features)
    return features


def _plain_execute(image, mask, config, settings):
    """pyradiomics' own extractor (2-D images: not what radhe reads, but supported), diagnostics dropped."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    extractor = RadiomicsFeatureExtractor(config.as_params())
    extractor.settings.update(settings)
    extractor.settings["additionalInfo"] = False
    out = extractor.execute(image, mask, label=settings.get("label"))
    return collections.OrderedDict((k, v) for k, v in out.items() if not k.startswith("diagnostics_"))


def _run_class(cls, prefix, image, mask, names, kwargs, out):
    instance = cls(image, mask, **kwargs)
    if names:
        for feature in names:
            instance.enableFeatureByName(feature)
    for feature, value in instance.execute().items():
        out[f"{prefix}_{feature}"] = value


def extract_task(image, mask, config: ExtractionConfig, label: int | None = None, hu_check: bool = True,
                 case_id: object = None):
    """One case, for a parallel worker: ``("ok", {name: float})``, ``("input", (file, problem))`` or ``("error", message)``.

    The case is first read and checked by :func:`radhe.io.load_checked_case` (radhe's one validation
    path, with pyradiomics' ``geometryTolerance`` and ``minimumROIDimensions`` when set): "input" is a
    case that check refused, naming the file (the mask file for a mask problem); "error" one that
    pyradiomics could not process. Lives here, not beside the estimator, so workers import numpy,
    SimpleITK and pyradiomics only.
    """
    from radhe.errors import InputError
    from radhe.io.validation import GEOMETRY_TOLERANCE_MM, load_checked_case

    settings = config.settings
    tolerance = settings.get("geometryTolerance")
    try:
        loaded = load_checked_case(
            image, mask, case_id=case_id, label=int(settings.get("label", 1) if label is None else label),
            tolerance=GEOMETRY_TOLERANCE_MM if tolerance is None else float(tolerance), hu_check=hu_check,
            min_roi_dimensions=int(settings.get("minimumROIDimensions", 2)),
        )
    except InputError as exc:
        return "input", (exc.path, exc.problem)
    # a "geometryTolerance" setting changes SimpleITK's process-wide tolerances (as pyradiomics does);
    # restore them so that one extraction's settings do not decide whether the next case passes
    tolerances = (sitk.ProcessObject.GetGlobalDefaultCoordinateTolerance(),
                  sitk.ProcessObject.GetGlobalDefaultDirectionTolerance())
    try:
        with quiet_radiomics():
            features = extract_case(loaded.image, loaded.mask, config, label=label)
    except Exception as exc:  # pyradiomics raises ValueError, RuntimeError, AssertionError, ...
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, RuntimeError) and "ERROR:" in message:
            message = message.split("ERROR:", 1)[-1].strip()
        return "error", message
    finally:
        sitk.ProcessObject.SetGlobalDefaultCoordinateTolerance(tolerances[0])
        sitk.ProcessObject.SetGlobalDefaultDirectionTolerance(tolerances[1])
    return "ok", {name: float(value) for name, value in features.items()}
