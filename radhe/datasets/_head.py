"""Head phantom: scalp, skull, skull base, brain parenchyma, ventricles, calcifications, artefacts.

Coordinates are in mm, in a head frame centred on the centre of the skull ellipsoid, with the
DICOM/ITK patient axes: ``x`` towards the patient's left, ``y`` towards posterior, ``z`` towards the
vertex. The scan grid is the head frame rotated in-plane by a small random yaw and shifted by a few
millimetres, as when a patient lies in a gantry.

Anatomy (values drawn per case; see docs/cohort.md):

- scalp 4 mm, 10–30 HU; skull shell 5–8 mm, outer and inner tables 1,250–1,500 HU, diploe 650–900 HU;
- skull base: a floor (anterior, middle and posterior cranial fossae, sella, petrous ridges) below
  which lies bone with trabecular texture, sphenoid sinus and mastoid air cells;
- cerebral cortex (grey matter 33–40 HU) as a ribbon under a thin CSF layer, sulci (CSF) and gyri
  from a smooth random field, white matter 26–30 HU, deep grey nuclei (caudate, lentiform,
  thalamus), cerebellum and brainstem in the posterior fossa, smooth low-frequency texture;
- lateral, third and fourth ventricles (CSF 3–9 HU) whose size grows with age (atrophy);
- orbits under the anterior fossa (retro-orbital fat −110 to −70 HU around the globe, 5–20 HU);
- distractors: pineal and choroid plexus calcifications (> 100 HU), falx, partial-volume bone at the
  skull base, beam-hardening (Hounsfield bar between the petrous bones, streaks, peripheral
  brightening) and, on the low slices, bright skull-base smears and streaks of 40–90 HU in the brain
  within a few mm of the bone; scanner noise is added later by the cohort (its level depends on the site).

Every tissue boundary is drawn with a partial-volume fraction (the projected voxel extent along the
boundary normal), so thick slices blur oblique surfaces as real 5 mm slices do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from radhe.datasets._fields import smooth_field

__all__ = ["HeadPhantom", "make_head", "LANDMARKS", "gantry_tilt_shifts", "tilt_slices", "tilt_head"]

#: Outer-skull semi-axes (mm) of an average adult head: left-right, antero-posterior, cranio-caudal.
SKULL_SEMI_AXES_MM = (71.0, 91.0, 80.0)

#: Landmarks of an average head (head frame, mm), scaled per case by the head size.
LANDMARKS = {
    "putamen": (24.0, -2.0, 12.0),
    "caudate": (12.0, -20.0, 20.0),
    "thalamus": (11.0, 12.0, 13.0),
    "cerebellum": (22.0, 44.0, -34.0),
    "pons": (0.0, 14.0, -34.0),
    "pineal": (0.0, 22.0, 8.0),
    "choroid_plexus": (19.0, 30.0, 16.0),
    "third_ventricle": (0.0, 2.0, 8.0),
    "fourth_ventricle": (0.0, 30.0, -32.0),
}


@dataclass
class HeadPhantom:
    """One synthetic head: the CT (HU, float32, numpy ``(z, y, x)``), tissue masks and geometry.

    Arrays cover the head's in-plane bounding box only (``crop`` within the full grid of
    ``full_shape``); :meth:`to_full` embeds one in the full grid.
    """

    ct: np.ndarray
    spacing: tuple[float, float, float]          # (x, y, z) mm
    origin: tuple[float, float, float]           # (x, y, z) mm, ITK/LPS
    X: np.ndarray                                # (ny, nx) head-frame x of each (cropped) in-plane voxel
    Y: np.ndarray                                # (ny, nx) head-frame y
    Z: np.ndarray                                # (nz,) head-frame z of each slice
    intracranial: np.ndarray                     # bool: inside the inner table and above the skull base
    parenchyma: np.ndarray                       # bool: brain tissue a haematoma may occupy
    ventricles: np.ndarray                       # bool: ventricular CSF
    depth: np.ndarray                            # mm below the inner table (approximate), float32
    crop: tuple                                  # (row slice, column slice) of the full grid
    full_shape: tuple                            # (nz, ny, nx)
    scale: float                                 # head size relative to the average head
    inner_semi_axes: tuple[float, float, float]  # mm
    tissue_hu: dict = field(default_factory=dict)
    calcifications: list = field(default_factory=list)

    def to_full(self, array: np.ndarray, fill) -> np.ndarray:
        """Embed a cropped ``(z, y, x)`` array in the full grid, ``fill`` elsewhere."""
        out = np.full(self.full_shape, fill, dtype=array.dtype)
        out[(slice(None),) + tuple(self.crop)] = array
        return out

    def landmark(self, name: str, side: int = 1) -> np.ndarray:
        """Head-frame position (mm) of a landmark; ``side`` = +1 left, -1 right."""
        x, y, z = LANDMARKS[name]
        return np.array([side * x, y, z]) * self.scale

    def index_of(self, point) -> tuple[int, int, int]:
        """Nearest voxel ``(k, j, i)`` (numpy order) of a head-frame point."""
        d2 = (self.X - point[0]) ** 2 + (self.Y - point[1]) ** 2
        j, i = np.unravel_index(int(np.argmin(d2)), d2.shape)
        k = int(np.argmin(np.abs(self.Z - point[2])))
        return k, int(j), int(i)


def _frac(sd, width):
    """Partial-volume fraction inside a boundary at signed distance ``sd`` (negative inside)."""
    return np.clip(0.5 - sd / width, 0.0, 1.0)


class _Ellipsoid:
    """Signed distance (first-order) and partial-volume fraction of an axis-aligned ellipsoid."""

    def __init__(self, X, Y, Z, centre, semi, spacing):
        cx, cy, cz = centre
        a, b, c = semi
        dx, dy, dz = spacing
        qx, qy = (X - cx) / a, (Y - cy) / b
        qz = ((Z - cz) / c)[:, None, None]
        gxy = (qx / a) ** 2 + (qy / b) ** 2
        gz = (qz / c) ** 2
        wxy = np.abs(qx / a) * dx + np.abs(qy / b) * dy
        wz = np.abs(qz / c) * dz
        q = np.sqrt((qx**2 + qy**2)[None] + qz**2)
        grad = np.sqrt(gxy[None] + gz) + np.float32(1e-6)
        self.sd = (q - 1.0) * q / grad
        self.width = (wxy[None] + wz) / grad + np.float32(0.05 * min(dx, dy))

    def frac(self, offset=0.0):
        return _frac(self.sd - offset, self.width)


def _box(X, Y, Z, centre, radius, pad):
    """Index slices of the grid region within ``radius`` + ``pad`` mm of ``centre``, or None."""
    r = float(radius + pad)
    cx, cy, cz = (float(v) for v in centre)
    inside = (np.abs(X - cx) <= r) & (np.abs(Y - cy) <= r)
    ks = np.nonzero(np.abs(Z - cz) <= r)[0]
    if not inside.any() or ks.size == 0:
        return None
    js, is_ = np.nonzero(inside)
    return (slice(ks.min(), ks.max() + 1), slice(js.min(), js.max() + 1), slice(is_.min(), is_.max() + 1))


def _soft_ellipsoid(X, Y, Z, box, centre, semi, spacing, rotation=None):
    """Partial-volume occupancy of a (possibly rotated) ellipsoid over ``box``."""
    zs, ys, xs = box
    centre = [float(v) for v in centre]
    semi = [float(v) for v in semi]
    px = X[ys, xs] - centre[0]
    py = Y[ys, xs] - centre[1]
    pz = (Z[zs] - centre[2])[:, None, None]
    if rotation is not None:
        rotation = rotation.astype(np.float32)
        r = rotation
        u = r[0, 0] * px + r[1, 0] * py + r[2, 0] * pz
        v = r[0, 1] * px + r[1, 1] * py + r[2, 1] * pz
        w = r[0, 2] * px + r[1, 2] * py + r[2, 2] * pz
    else:
        u, v, w = px[None], py[None], pz
    q = np.sqrt((u / semi[0]) ** 2 + (v / semi[1]) ** 2 + (w / semi[2]) ** 2)
    mean_semi = float(np.mean(semi))
    width = 0.5 * (spacing[0] + spacing[1]) + 0.35 * spacing[2]
    return np.clip(0.5 - (q - 1.0) * np.float32(mean_semi / width), 0.0, 1.0).astype(np.float32, copy=False)


def _skull_floor(X, Y, s):
    """Height (mm, head frame) of the skull base under each in-plane point."""
    sig = lambda t: 1.0 / (1.0 + np.exp(-t))  # noqa: E731
    anterior = sig(-(Y + 32.0 * s) / (5.0 * s))            # anterior cranial fossa (orbital roofs)
    middle = sig(-(Y - 6.0 * s) / (4.0 * s)) * (1 - anterior)  # middle cranial fossa
    floor = -66.0 * s + 36.0 * s * anterior + 18.0 * s * middle
    # sella turcica / clivus: a midline ridge between the middle fossae
    floor += 14.0 * s * np.exp(-((X / (9.0 * s)) ** 2)) * middle
    # petrous ridges: oblique from postero-lateral (|x| 48, y 22) to antero-medial (|x| 12, y -2)
    ax, ay, bx, by = 48.0 * s, 22.0 * s, 12.0 * s, -2.0 * s
    ux, uy = bx - ax, by - ay
    length2 = ux * ux + uy * uy
    t = np.clip(((np.abs(X) - ax) * ux + (Y - ay) * uy) / length2, 0.0, 1.0)
    dist2 = (np.abs(X) - (ax + t * ux)) ** 2 + (Y - (ay + t * uy)) ** 2
    floor += 24.0 * s * np.exp(-dist2 / (2 * (4.5 * s) ** 2))
    return floor.astype(np.float32, copy=False)


def make_head(rng: np.random.Generator, shape_xyz, *, fov_mm: float, slice_mm: float,
              age_years: float, streak_strength: float = 1.0, yaw_sd_deg: float = 4.0) -> HeadPhantom:
    """Draw one head phantom on a grid of ``shape_xyz`` voxels (x, y, z).

    Parameters
    ----------
    rng : numpy.random.Generator
    shape_xyz : (int, int, int)
    fov_mm : float
        In-plane field of view (mm) of the shorter in-plane side; pixels are square, of
        ``fov_mm / min(nx, ny)``.
    slice_mm : float
        Slice spacing (mm).
    age_years : float
        Drives brain atrophy: wider sulci and CSF layer, larger ventricles, more calcification.
    streak_strength : float
        Relative strength of beam-hardening artefacts (a property of the scanner / site).
    yaw_sd_deg : float
        Standard deviation (degrees) of the head's in-plane rotation in the gantry.
    """
    nx, ny, nz = (int(v) for v in shape_xyz)
    dx = dy = float(fov_mm) / min(nx, ny)                             # square pixels
    dz = float(slice_mm)
    s = float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1))              # head size
    a, b, c = (v * s for v in SKULL_SEMI_AXES_MM)
    t_skull = rng.uniform(5.0, 8.0)
    ai, bi, ci = a - t_skull, b - t_skull, c - t_skull
    atrophy = float(np.clip((age_years - 40.0) / 50.0 + rng.normal(0, 0.15), 0.0, 1.2))

    # scan geometry: the top slice just above the vertex, small in-plane shift and yaw
    z_top = c + rng.uniform(-4.0, 3.0)
    zc = z_top - dz * (nz - 1) - dz * 0.5 + dz * np.arange(nz)          # slice centres, head frame
    yaw = np.deg2rad(rng.normal(0.0, 1.0) * yaw_sd_deg)
    shift = rng.normal(0.0, 3.0, size=2)
    xs = (np.arange(nx) - (nx - 1) / 2.0) * dx
    ys = (np.arange(ny) - (ny - 1) / 2.0) * dy
    Xs, Ys = np.meshgrid(xs, ys)                                      # scanner frame (ny, nx)
    cos, sin = np.cos(yaw), np.sin(yaw)
    X_full = (cos * (Xs - shift[0]) + sin * (Ys - shift[1])).astype(np.float32, copy=False)
    Y_full = (-sin * (Xs - shift[0]) + cos * (Ys - shift[1])).astype(np.float32, copy=False)
    Z = zc.astype(np.float32, copy=False)
    spacing = (dx, dy, dz)
    # work on the head's bounding box only; air elsewhere
    in_head = (X_full / (a + 6.0 + dx)) ** 2 + (Y_full / (b + 6.0 + dy)) ** 2 <= 1.0
    rows, cols = np.nonzero(in_head)
    crop = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    X, Y = X_full[crop], Y_full[crop]

    outer = _Ellipsoid(X, Y, Z, (0, 0, 0), (a, b, c), spacing)
    inner = _Ellipsoid(X, Y, Z, (0, 0, 0), (ai, bi, ci), spacing)
    floor = _skull_floor(X, Y, s)
    sd_floor = (floor[None] - Z[:, None, None]).astype(np.float32, copy=False)     # negative above the floor
    f_head = outer.frac(offset=4.0)
    f_skull = outer.frac()
    f_inner = inner.frac()
    f_floor = _frac(sd_floor, np.float32(dz + dx))
    f_ic = np.minimum(f_inner, f_floor)
    depth = -np.maximum(inner.sd, sd_floor)                           # mm below the inner table

    # --- tissue values of this case
    wm = rng.uniform(26.0, 30.0)
    gm = wm + rng.uniform(7.0, 10.0)
    csf = rng.uniform(3.0, 9.0)
    hu = {"white_matter": wm, "grey_matter": gm, "csf": csf, "deep_grey": gm - 1.5,
          "cerebellum": 0.5 * (gm + wm) + 1.5, "brainstem": wm + 2.0,
          "table": rng.uniform(1250.0, 1500.0), "diploe": rng.uniform(650.0, 900.0),
          "scalp": rng.uniform(10.0, 30.0)}

    # --- random fields: parenchymal texture, sulci (gyral pattern), trabecular bone
    fields = smooth_field(rng, Z, ys[crop[0]], xs[crop[1]], (10.0, 12.0, 12.0), n_fields=1)[0]
    sulc = smooth_field(rng, Z, ys[crop[0]], xs[crop[1]], (8.0, 4.5, 4.5), n_fields=1)[0]

    tissue = np.float32(wm) + np.float32(1.6) * fields
    # cortical ribbon under a CSF layer, sulci reaching ~15 mm deep
    csf_layer = 1.0 + 2.0 * atrophy
    ribbon = 3.2
    sulcus_threshold = 1.05 - 0.45 * atrophy
    with np.errstate(over="ignore"):
        depth_weight = np.exp(-np.maximum(depth - csf_layer, 0) / 9.0)
    s_score = sulc * depth_weight
    grey = np.clip((csf_layer + ribbon - depth) / 1.2 + 0.5, 0, 1)
    grey = np.maximum(grey, np.clip((s_score - (sulcus_threshold - 0.55)) / 0.3, 0, 1))
    tissue += np.float32(gm - wm) * grey.astype(np.float32, copy=False)
    csf_frac = np.maximum(np.clip((csf_layer - depth) / 0.8 + 0.5, 0, 1),
                          np.clip((s_score - sulcus_threshold) / 0.25, 0, 1))
    tissue += (np.float32(csf) - tissue) * csf_frac.astype(np.float32, copy=False)

    # posterior fossa: cerebellum (with folia) and brainstem, below the tentorium
    tent = (-16.0 * s + 0.12 * (Y - 20.0 * s)).astype(np.float32, copy=False)      # tentorium height
    infra = _frac((Z[:, None, None] - tent[None]).astype(np.float32, copy=False), np.float32(dz))
    infra *= (Y > -6.0 * s)[None]
    cereb = np.float32(hu["cerebellum"]) + np.float32(2.0) * sulc
    tissue += (cereb - tissue) * (infra * (depth > csf_layer))

    ventricles = np.zeros(tissue.shape, dtype=np.float32)

    def paint(centre, semi, value, target, rotation=None, blend=True, pad=4.0):
        box = _box(X, Y, Z, centre, max(semi), pad + dz)
        if box is None:
            return None, None
        occ = _soft_ellipsoid(X, Y, Z, box, centre, semi, spacing, rotation)
        if target is not None:
            if blend:
                target[box] += (np.float32(value) - target[box]) * occ
            else:
                np.maximum(target[box], occ, out=target[box])
        return box, occ

    # deep grey nuclei, brainstem
    for side in (-1, 1):
        paint(np.array([side * 24.0, -2.0, 11.0]) * s, np.array([6.0, 14.0, 10.0]) * s, hu["deep_grey"], tissue)
        paint(np.array([side * 12.0, -19.0, 19.0]) * s, np.array([4.5, 8.0, 9.0]) * s, hu["deep_grey"], tissue)
        paint(np.array([side * 10.0, 12.0, 12.0]) * s, np.array([8.0, 11.0, 8.0]) * s, hu["deep_grey"], tissue)
    paint(np.array([0.0, 12.0, -30.0]) * s, np.array([12.0, 12.0, 22.0]) * s, hu["brainstem"], tissue)

    # ventricles (size grows with atrophy)
    vf = 0.7 + 0.8 * atrophy
    for side in (-1, 1):
        # lateral ventricle: body, frontal horn and atrium / occipital horn
        paint(np.array([side * (9.0 + 2 * atrophy), 0.0, 22.0]) * s, np.array([3.5 * vf, 22.0, 6.0 * vf]) * s,
              None, ventricles, blend=False)
        paint(np.array([side * (10.0 + 2 * atrophy), -22.0, 16.0]) * s, np.array([3.5 * vf, 8.0, 6.5 * vf]) * s,
              None, ventricles, blend=False)
        paint(np.array([side * (17.0 + 2 * atrophy), 26.0, 14.0]) * s, np.array([5.0 * vf, 10.0, 6.0 * vf]) * s,
              None, ventricles, blend=False)
    paint(np.array([0.0, 2.0, 8.0]) * s, np.array([1.0 + 1.5 * atrophy, 12.0, 7.0]) * s, None, ventricles,
          blend=False)
    paint(np.array([0.0, 30.0, -32.0]) * s, np.array([5.0, 3.0 + atrophy, 5.0]) * s, None, ventricles, blend=False)
    ventricles *= f_ic
    tissue += (np.float32(csf) - tissue) * ventricles

    # interhemispheric fissure with the falx (anterior and posterior to the deep structures)
    fissure_w = 1.2 + 1.5 * atrophy
    away = (np.abs(Y) > 28.0 * s) | (Z[:, None, None] > 30.0 * s)
    fiss = np.clip((fissure_w - np.abs(X))[None] / dx + 0.5, 0, 1) * away * (Z[:, None, None] > -10 * s)
    tissue += (np.float32(csf) - tissue) * fiss.astype(np.float32, copy=False)
    falx_hu = rng.uniform(45.0, 80.0)
    falx = np.clip((0.6 - np.abs(X))[None] / dx + 0.5, 0, 1) * away * (Z[:, None, None] > -10 * s)
    tissue += (np.float32(falx_hu) - tissue) * (0.5 * falx).astype(np.float32, copy=False)

    # calcifications: pineal, choroid plexus (glomus), more frequent with age
    calcifications = []
    if rng.random() < 0.45 + 0.3 * atrophy:
        centre = np.array([0.0, 22.0, 8.0]) * s + rng.normal(0, 1.0, 3)
        r = rng.uniform(1.5, 3.5)
        paint(centre, (r, r, r), rng.uniform(180.0, 450.0), tissue)
        calcifications.append(("pineal", centre, r))
    if rng.random() < 0.35 + 0.35 * atrophy:
        for side in (-1, 1):
            centre = np.array([side * (19.0 + 2 * atrophy), 30.0, 16.0]) * s + rng.normal(0, 1.0, 3)
            r = rng.uniform(1.5, 3.0)
            paint(centre, (r, r * 1.3, r), rng.uniform(150.0, 380.0), tissue)
            calcifications.append(("choroid_plexus", centre, r))

    # beam hardening: peripheral brightening, Hounsfield bar, streaks at the skull base
    tissue += np.float32(rng.uniform(1.0, 4.0)) * np.exp(-np.maximum(depth, 0) / 6.0).astype(np.float32, copy=False)
    zprof = np.clip((-15.0 * s - Z) / (15.0 * s), 0, 1).astype(np.float32, copy=False)       # low slices only
    if zprof.any():
        bar = -streak_strength * rng.uniform(10.0, 25.0) * np.exp(-((Y - 4.0 * s) / (4.0 * s)) ** 2)
        bar *= np.abs(X) < 40.0 * s
        theta = np.arctan2(Y, X)
        n1, n2 = rng.integers(12, 30, size=2)
        streak = streak_strength * rng.uniform(2.0, 5.0) * (
            np.cos(n1 * theta + rng.uniform(0, 2 * np.pi)) * np.cos(n2 * theta + rng.uniform(0, 2 * np.pi)))
        tissue += (zprof[:, None, None] * (bar + streak).astype(np.float32, copy=False)[None])

    # bone: skull profile (dense tables, diploe) and skull base (trabecular, air cells)
    u = np.clip(-outer.sd / t_skull, 0.0, 1.0)
    skull_hu = np.float32(hu["diploe"]) + np.float32(hu["table"] - hu["diploe"]) * np.abs(2 * u - 1) ** 1.5
    base_hu = np.float32(rng.uniform(550, 800)) + np.float32(220.0) * fields
    bone = skull_hu + (base_hu - skull_hu) * f_inner
    for centre, semi, air in (
        (np.array([0.0, -22.0, -48.0]) * s, np.array([11.0, 9.0, 9.0]) * s, -950.0),        # sphenoid sinus
        (np.array([-47.0, 24.0, -50.0]) * s, np.array([9.0, 9.0, 9.0]) * s, -650.0),        # mastoid air cells
        (np.array([47.0, 24.0, -50.0]) * s, np.array([9.0, 9.0, 9.0]) * s, -650.0),
        (np.array([0.0, -80.0, -12.0]) * s, np.array([14.0, 5.0, 10.0]) * s, -900.0),       # frontal sinus
    ):
        box = _box(X, Y, Z, centre, max(semi), 4.0 + dz)
        if box is not None:
            # air cells stay inside the bone: a cortical layer of >= 1.5 mm on either side
            occ = _soft_ellipsoid(X, Y, Z, box, centre, semi, spacing)
            occ *= np.clip(-depth[box] - 1.5, 0.0, 1.0) * np.clip(-outer.sd[box] - 1.5, 0.0, 1.0)
            bone[box] += (np.float32(air) - bone[box]) * occ

    # orbits under the anterior cranial fossa: retro-orbital fat around the globe (drawn after every
    # other draw of this head, so the rest of the phantom is what it was without them)
    for side in (-1, 1):
        for centre, semi, value in (
            (np.array([side * 30.0, -58.0, -44.0]) * s, np.array([15.0, 22.0, 13.0]) * s, rng.uniform(-110.0, -70.0)),
            (np.array([side * 31.0, -66.0, -44.0]) * s, np.array([11.5, 11.5, 11.5]) * s, rng.uniform(5.0, 20.0)),
        ):
            box = _box(X, Y, Z, centre, max(semi), 4.0 + dz)
            if box is not None:
                occ = _soft_ellipsoid(X, Y, Z, box, centre, semi, spacing)
                occ *= np.clip(-depth[box] - 1.5, 0.0, 1.0) * np.clip(-outer.sd[box] - 1.0, 0.0, 1.0)
                bone[box] += (np.float32(value) - bone[box]) * occ
    # skull-base partial volume and streaks: 40-90 HU smears in the brain next to the petrous bone and
    # the fossae on the low slices, where a network trained without them marks blood
    low = np.clip((-20.0 * s - Z) / (15.0 * s), 0, 1).astype(np.float32, copy=False)
    if low.any():
        theta = np.arctan2(Y, X)
        n_streaks = int(rng.integers(6, 16))
        pattern = np.clip(np.cos(n_streaks * theta + rng.uniform(0, 2 * np.pi)), 0.0, 1.0) ** 6
        amplitude = np.float32(streak_strength * rng.uniform(25.0, 60.0))
        reach = np.float32(rng.uniform(4.0, 9.0))
        with np.errstate(over="ignore"):
            bloom = np.exp(-np.maximum(depth, 0) / reach).astype(np.float32, copy=False)
        tissue += amplitude * low[:, None, None] * bloom * (0.35 + 0.65 * pattern[None]).astype(np.float32)

    air = np.float32(-1000.0)
    ct = air + (np.float32(hu["scalp"]) - air) * f_head
    ct += (bone - np.float32(hu["scalp"])) * f_skull
    ct += (tissue - bone) * f_ic

    intracranial = f_ic > 0.5
    vent = ventricles > 0.5
    parenchyma = intracranial & ~vent & (depth > csf_layer + 1.0) & (fiss < 0.5)

    return HeadPhantom(
        ct=ct, spacing=spacing,
        origin=(float(-(nx - 1) / 2.0 * dx), float(-(ny - 1) / 2.0 * dy), float(zc[0])),
        X=X, Y=Y, Z=Z, intracranial=intracranial, parenchyma=parenchyma, ventricles=vent, depth=depth,
        crop=crop, full_shape=(nz, ny, nx), scale=s, inner_semi_axes=(ai, bi, ci), tissue_hu=hu,
        calcifications=calcifications,
    )



def gantry_tilt_shifts(tilt_deg: float, head: HeadPhantom, slice_mm: float) -> np.ndarray:
    """Per-row shift (in slices of ``slice_mm``, ``>= 0``, float) of a gantry tilted by ``tilt_deg``
    about the scanner's left-right axis: row ``j`` of a tilted slice lies ``y_j tan(tilt)`` higher than
    its centre row. The shifts are offset so that the head's lowest-shifted row has 0: a tilted stack
    that starts at the untilted top slice covers the whole head in every row. Rows outside the head
    (air) take the shift of the head's nearest row.
    """
    ny = head.full_shape[1]
    raw = (np.arange(ny) - (ny - 1) / 2.0) * head.spacing[1] * np.tan(np.deg2rad(tilt_deg)) / float(slice_mm)
    in_head = raw[head.crop[0]]
    return np.clip(raw, in_head.min(), in_head.max()) - in_head.min()


def tilt_slices(volume: np.ndarray, shifts: np.ndarray, n_out: int, fill, *, subslices: int = 1) -> np.ndarray:
    """The ``n_out`` tilted slices (numpy ``(z, y, x)``, index 0 the lowest) of an untilted ``volume``
    rendered in slices ``subslices`` times thinner, whose last slice is the top.

    Counted from the top, tilted slice ``q`` of row ``j`` covers the untilted heights ``q - shifts[j]``
    to ``q + 1 - shifts[j]`` (in output slices): the mean of its ``subslices`` thin slices, each read
    by linear interpolation, ``fill`` above the top. A boolean ``volume`` (a region) gives the voxels
    that region fills at least half of, the partial-volume rule of the untilted render. The result is
    what a scanner stores for a tilted series whose slices are stacked along the table (a sheared grid,
    as when a converter does not correct the tilt).
    """
    if volume.dtype == bool:
        return tilt_slices(volume.astype(np.float32), shifts, n_out, np.float32(bool(fill)), subslices=subslices) >= 0.5
    m = int(subslices)
    n_fine, ny = volume.shape[:2]
    shifts = np.asarray(shifts, dtype=np.float64)
    if m < 1 or shifts.shape != (ny,) or shifts.min() < 0 or n_fine < n_out * m:
        raise ValueError("tilt_slices: one shift >= 0 per row, subslices >= 1 and n_out * subslices <= the "
                         "volume's slices are needed")
    pad = int(np.ceil(shifts.max() * m)) + 2
    padded = np.concatenate([volume, np.full((pad,) + volume.shape[1:], fill, dtype=volume.dtype)])
    rows = np.arange(ny)[None, :]
    from_top = np.arange(n_out)[::-1, None] * m - shifts[None, :] * m             # (n_out, ny), thin slices

    def read(offset):
        height = (n_fine - 1) - (from_top + offset)                               # thin-slice index
        low = np.floor(height).astype(int)
        upper = (height - low).astype(np.float32)[..., None]
        below = padded[low, rows]
        return below + upper * (padded[low + 1, rows] - below)

    out = read(0.0)
    for i in range(1, m):
        out = out + read(float(i))
    return out / np.float32(m) if m > 1 else out


def tilt_head(head: HeadPhantom, shifts: np.ndarray, n_out: int, subslices: int = 1) -> HeadPhantom:
    """``head`` on the tilted stack of :func:`tilt_slices` (its voxel arrays ``ct``, ``intracranial``,
    ``parenchyma``, ``ventricles``, ``depth``, its spacing and origin); ``X``, ``Y``, ``Z`` and
    :meth:`~HeadPhantom.index_of` keep describing the untilted render."""
    rows = shifts[head.crop[0]]
    arrays = {name: tilt_slices(getattr(head, name), rows, n_out, False, subslices=subslices)
              for name in ("intracranial", "parenchyma", "ventricles")}
    arrays["ct"] = tilt_slices(head.ct, rows, n_out, np.float32(-1000.0), subslices=subslices)
    arrays["depth"] = tilt_slices(head.depth, rows, n_out, np.float32(head.depth.min()), subslices=subslices)
    dx, dy, dz_thin = head.spacing
    dz = dz_thin * subslices
    # the lowest tilted slice's centre where the shift is 0: the mean of its thin slices' centres
    n_fine = head.full_shape[0]
    z0 = head.origin[2] + (n_fine - n_out * subslices) * dz_thin + (subslices - 1) * dz_thin / 2.0
    return dataclasses.replace(head, **arrays, spacing=(dx, dy, dz), origin=head.origin[:2] + (z0,),
                               full_shape=(n_out,) + head.full_shape[1:])
