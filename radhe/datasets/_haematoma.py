"""Haematoma: location, shape (regular ellipsoid to lobulated), density, and the NCCT markers.

Shape model
-----------
A point ``p`` (head frame, mm) is mapped to clot coordinates ``q = R^T (p - c) / s`` (``R`` the clot's
axes, ``s`` its size). With ``rho = |(q0, q1 / e, q2 / f)|`` (``e``, ``f`` the intermediate and least
axis ratios) and ``u`` the unit direction of that vector, the clot is the set

    rho < 1 + sum_k A_k exp(kappa_k (u . v_k - 1))      (lobes)
            - sum_m D_m exp(kappa_m (u . w_m - 1))      (indentations)
            + sum_j B_j cos(omega_j . q + phi_j)        (marginal irregularity)

whose amplitudes scale with an irregularity index in [0, 1]: index 0 is a smooth ellipsoid, index 1 a
multilobulated clot. ``s`` is set so that the analytic shape has the drawn volume; the clot is then
clipped to the brain parenchyma (it never enters skull, CSF spaces or ventricles).

Markers (drawn by :func:`draw_markers`, painted by :func:`render_clot`)
-----------------------------------------------------------------------
- hypodensity: 1-2 hypodense foci (25-40 HU) in the clot's interior (swirl / black hole);
- blend sign: the clot split by a plane into a hyperdense and a hypodense part differing by 20-32 HU,
  with a sharp boundary;
- fluid level: a horizontal interface (perpendicular to the antero-posterior axis, the direction of
  gravity in a supine patient), dense (72-86 HU) below, 34-46 HU above;
- irregular margin: irregularity index > 0.6 (lobulated, see above);
- intraventricular extension: blood (48-70 HU) in the ventricles near the clot and in the dependent
  occipital horns (or the fourth ventricle for infratentorial clots); outside the mask, which holds
  the parenchymal haematoma only;
- oedema rim: a 2-6 mm perihaematomal rim of 15-25 HU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from radhe.datasets._fields import smooth_field
from radhe.datasets._head import HeadPhantom, _box

__all__ = ["LOCATIONS", "ClotSpec", "draw_location", "draw_volume_ml", "draw_markers", "draw_clot_spec",
           "render_clot"]

#: Haematoma locations and their base frequencies (deep ~60 %, lobar ~28 %, infratentorial ~12 %).
LOCATIONS = {"basal_ganglia": 0.45, "thalamus": 0.18, "lobar": 0.25, "infratentorial": 0.12}
#: Median target volume (mL) by location (lobar larger, thalamic and infratentorial smaller).
MEDIAN_VOLUME_ML = {"basal_ganglia": 14.0, "thalamus": 8.5, "lobar": 21.0, "infratentorial": 8.5}
VOLUME_LOG_SD = 1.0
#: Shape parameters (tuned so that pyradiomics shape features match 545 real haematomas).
SHAPE = {
    "irregularity_mean": 0.25,           # mean logit of the irregularity index at 13 mL
    "irregular_above": 0.6,              # irregularity index above which the margin is "irregular"
    "elongation": (0.75, 0.12),          # intermediate / major axis ratio: mean, SD
    "flatness_ratio": (0.72, 0.12),      # least / intermediate axis ratio: mean, SD
    "lobe_rate": (1.0, 4.0),             # number of lobes: 1 + Poisson(a + b * irregularity)
    "lobe_amp": (0.3, 1.1),              # lobe amplitude range (times irregularity)
    "lobe_kappa": (4.0, 14.0),           # lobe concentration (higher: narrower lobes)
    "dent_rate": 3.0,                    # number of indentations: Poisson(dent_rate * irregularity)
    "dent_amp": (0.15, 0.4),
    "mode_amp": (0.06, 0.26),            # marginal irregularity: a + b * irregularity
}
VOLUME_RANGE_ML = (1.0, 100.0)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p):
    return float(np.log(p / (1.0 - p)))


def draw_location(rng: np.random.Generator, age_years: float) -> str:
    """Location; lobar haemorrhage (cerebral amyloid angiopathy) is more frequent in the elderly."""
    names = list(LOCATIONS)
    w = np.array([LOCATIONS[n] for n in names])
    w[names.index("lobar")] *= np.exp(0.03 * (age_years - 66.0))
    return str(rng.choice(names, p=w / w.sum()))


def draw_volume_ml(rng: np.random.Generator, location: str, anticoagulant: bool) -> float:
    """Target volume (mL): log-normal by location, larger on anticoagulants, truncated to 1-100 mL."""
    median = MEDIAN_VOLUME_ML[location] * (1.3 if anticoagulant else 1.0)
    lo, hi = VOLUME_RANGE_ML
    for _ in range(100):
        v = float(median * np.exp(VOLUME_LOG_SD * rng.standard_normal()))
        if lo <= v <= hi:
            return v
    return float(np.clip(v, lo, hi))


#: Marker prevalences aimed at (see docs/cohort.md for sources) and the covariate effects (log-odds).
MARKER_BASE = {"hypodensity": 0.28, "blend_sign": 0.17, "fluid_level": 0.025, "oedema_rim": 0.50}
IVE_BASE = {"basal_ganglia": 0.30, "thalamus": 0.55, "lobar": 0.15, "infratentorial": 0.30}


def draw_markers(rng: np.random.Generator, *, location: str, volume_ml: float, onset_to_ct_h: float,
                 anticoagulant: bool) -> dict:
    """Draw the NCCT marker flags and the latent clot properties of one case.

    Markers are more frequent in large clots and early scans (active bleeding); fluid levels mostly
    occur with anticoagulation; oedema is more visible on later scans.
    """
    lv = np.log(volume_ml / 13.0)
    lt = np.log(onset_to_ct_h / 2.5)
    ac = float(anticoagulant)
    p = {
        "hypodensity": _sigmoid(_logit(MARKER_BASE["hypodensity"]) + 0.6 * lv - 0.3 * lt + 0.4 * ac),
        "blend_sign": _sigmoid(_logit(MARKER_BASE["blend_sign"]) + 0.4 * lv - 0.3 * lt),
        "fluid_level": _sigmoid(_logit(MARKER_BASE["fluid_level"]) + 2.3 * ac + 0.3 * lv),
        "oedema_rim": _sigmoid(_logit(MARKER_BASE["oedema_rim"]) + 1.2 * lt + 0.3 * lv),
        "intraventricular_extension": _sigmoid(_logit(IVE_BASE[location]) + 0.6 * lv),
    }
    flags = {k: int(rng.random() < v) for k, v in p.items()}
    if flags["fluid_level"]:
        flags["blend_sign"] = 0           # a sedimented clot shows a level, not a blend
    # irregularity index in (0, 1): larger clots are more often irregular (Barras 2009)
    irregularity = float(_sigmoid(rng.normal(SHAPE["irregularity_mean"] + 0.45 * lv, 1.1)))
    flags["irregular_margin"] = int(irregularity > SHAPE["irregular_above"])
    latent = {
        "irregularity": irregularity,
        # texture heterogeneity (z-score) and mean clot density (HU): both visible and both in the risk
        "heterogeneity": float(rng.normal(0.0, 1.0)),
        "clot_density_hu": float(np.clip(rng.normal(63.0 - 2.0 * ac, 4.0), 52.0, 76.0)),
    }
    return {**flags, **latent}


@dataclass
class ClotSpec:
    """Geometry of one clot (head frame, mm) before rendering."""

    location: str
    side: int
    centre: np.ndarray
    rotation: np.ndarray                 # columns: clot axes in the head frame
    ratios: tuple[float, float]          # (e, f): intermediate / major, least / major
    irregularity: float
    lobes: list = field(default_factory=list)      # (unit vector, amplitude, kappa); negative = dent
    modes: list = field(default_factory=list)      # (omega vector, amplitude, phase)
    size_mm: float = 10.0
    radius: float = 3.0                  # radius bound in clot units (set by unit_volume)

    def level(self, q0, q1, q2):
        """``rho - (1 + g)``: negative inside the clot (clot coordinates, broadcasting arrays)."""
        e, f = self.ratios
        n0, n1, n2 = q0, q1 * np.float32(1.0 / e), q2 * np.float32(1.0 / f)
        rho = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2) + np.float32(1e-6)
        bound = np.ones_like(rho)
        for v, amp, kappa in self.lobes:
            cosang = (n0 * np.float32(v[0]) + n1 * np.float32(v[1]) + n2 * np.float32(v[2])) / rho
            bound += np.float32(amp) * np.exp(np.float32(kappa) * (cosang - np.float32(1.0)))
        for w, amp, phase in self.modes:
            bound += np.float32(amp) * np.cos(q0 * np.float32(w[0]) + q1 * np.float32(w[1])
                                              + q2 * np.float32(w[2]) + np.float32(phase))
        return rho - bound

    def inside(self, q0, q1, q2):
        """Boolean occupancy; the lobes are evaluated only where the ellipsoid radius leaves a doubt."""
        e, f = self.ratios
        rho = np.sqrt(q0 * q0 + (q1 * np.float32(1.0 / e)) ** 2 + (q2 * np.float32(1.0 / f)) ** 2)
        hi = self.extent()
        lo = 1.0 - sum(-a for _, a, _ in self.lobes if a < 0) - sum(abs(a) for _, a, _ in self.modes)
        out = rho < lo
        doubt = (rho >= lo) & (rho < hi)
        if doubt.any():
            out[doubt] = self.level(q0[doubt], q1[doubt], q2[doubt]) < 0
        return out

    def extent(self) -> float:
        """Upper bound of the clot radius in clot units."""
        return 1.0 + sum(max(a, 0.0) for _, a, _ in self.lobes) + sum(abs(a) for _, a, _ in self.modes)

    def unit_volume(self, n: int = 40) -> float:
        """Volume of the shape with ``size_mm = 1`` (numerical, on an ``n``^3 grid); sets ``radius``."""
        r = self.extent()
        g = np.linspace(-r, r, n, dtype=np.float32)
        q0, q1, q2 = np.meshgrid(g, g, g, indexing="ij")
        inside = self.inside(q0, q1, q2)
        step = 2 * r / (n - 1)
        norms = np.sqrt(q0[inside] ** 2 + q1[inside] ** 2 + q2[inside] ** 2)
        self.radius = float(norms.max() + 2 * step) if norms.size else r
        return float(inside.sum()) * step**3


def _unit(v):
    return v / np.linalg.norm(v)


def _rotation_with_major(rng, major):
    major = _unit(np.asarray(major, dtype=float))
    helper = _unit(rng.normal(size=3))
    second = _unit(helper - helper.dot(major) * major)
    third = np.cross(major, second)
    return np.column_stack([major, second, third])


def draw_clot_spec(rng: np.random.Generator, head: HeadPhantom, location: str, irregularity: float) -> ClotSpec:
    """Draw a clot's position, orientation and shape (its size is set by :func:`render_clot`)."""
    side = int(rng.choice([-1, 1]))
    ai, bi, ci = head.inner_semi_axes
    for _attempt in range(50):
        if location == "basal_ganglia":
            centre = head.landmark("putamen", side) + rng.normal(0, [3.0, 4.0, 3.0])
            major = [0.3 * rng.normal(), 1.0, 0.3 * rng.normal()]
        elif location == "thalamus":
            centre = head.landmark("thalamus", side) + rng.normal(0, [2.0, 3.0, 2.5])
            major = [0.3 * rng.normal(), 1.0, 0.5 * rng.normal()]
        elif location == "infratentorial":
            name = "cerebellum" if rng.random() < 0.7 else "pons"
            centre = head.landmark(name, side) + rng.normal(0, 2.5, 3)
            major = rng.normal(size=3)
        else:  # lobar: 12-30 mm under the inner table, away from the midline, above the skull base
            u = _unit(rng.normal(size=3) * [1.0, 1.0, 0.7])
            u[2] = abs(u[2]) * 0.9 - 0.05
            u = _unit(u)
            if abs(u[0]) < 0.3:
                continue
            radius = 1.0 / np.sqrt((u[0] / ai) ** 2 + (u[1] / bi) ** 2 + (u[2] / ci) ** 2)
            centre = u * (radius - rng.uniform(14.0, 30.0))
            major = np.cross(u, _unit(rng.normal(size=3)))          # tangential to the surface
        k, j, i = head.index_of(centre)
        if head.parenchyma[k, j, i] and head.depth[k, j, i] > 6.0:
            break
    rotation = _rotation_with_major(rng, major)
    e = float(np.clip(rng.normal(*SHAPE["elongation"]), 0.4, 1.0))
    f = float(e * np.clip(rng.normal(*SHAPE["flatness_ratio"]), 0.4, 1.0))
    spec = ClotSpec(location=location, side=side, centre=np.asarray(centre, float), rotation=rotation,
                    ratios=(e, f), irregularity=irregularity)
    n_lobes = 1 + rng.poisson(SHAPE["lobe_rate"][0] + SHAPE["lobe_rate"][1] * irregularity)
    for _ in range(n_lobes):
        spec.lobes.append((_unit(rng.normal(size=3)), float(irregularity * rng.uniform(*SHAPE["lobe_amp"])),
                           float(rng.uniform(*SHAPE["lobe_kappa"]))))
    for _ in range(rng.poisson(SHAPE["dent_rate"] * irregularity)):
        spec.lobes.append((_unit(rng.normal(size=3)), -float(irregularity * rng.uniform(*SHAPE["dent_amp"])),
                           float(rng.uniform(4.0, 9.0))))
    for _ in range(4):
        spec.modes.append((_unit(rng.normal(size=3)) * rng.uniform(2.5, 6.0),
                           float((SHAPE["mode_amp"][0] + SHAPE["mode_amp"][1] * irregularity)
                                 * rng.uniform(0.5, 1.0)),
                           float(rng.uniform(0, 2 * np.pi))))
    return spec


@dataclass
class RenderedClot:
    """The rendered haematoma: its mask (full grid) and what was drawn."""

    mask: np.ndarray
    volume_ml: float
    box: tuple
    info: dict


def _clot_coordinates(head, spec, box):
    zs, ys, xs = box
    px = head.X[ys, xs] - np.float32(spec.centre[0])
    py = head.Y[ys, xs] - np.float32(spec.centre[1])
    pz = (head.Z[zs] - np.float32(spec.centre[2]))[:, None, None]
    r = spec.rotation.astype(np.float32) / np.float32(spec.size_mm)
    q0 = r[0, 0] * px + r[1, 0] * py + r[2, 0] * pz
    q1 = r[0, 1] * px + r[1, 1] * py + r[2, 1] * pz
    q2 = r[0, 2] * px + r[1, 2] * py + r[2, 2] * pz
    return q0, q1, q2


def render_clot(rng: np.random.Generator, head: HeadPhantom, spec: ClotSpec, volume_ml: float,
                markers: dict) -> RenderedClot:
    """Draw the clot into ``head.ct`` (in place) and return its mask.

    Parameters
    ----------
    volume_ml : float
        Target volume of the analytic shape; the mask's volume is smaller where the shape is clipped
        to the parenchyma, and differs by the discretisation.
    markers : dict
        Flags and latent properties from :func:`draw_markers`.
    """
    dx, dy, dz = head.spacing
    voxel_ml = dx * dy * dz / 1000.0
    spec.size_mm = float((volume_ml * 1000.0 / spec.unit_volume()) ** (1.0 / 3.0))
    min_voxels = max(3, int(np.ceil(0.4 / voxel_ml)))
    for attempt in range(10):
        box = _box(head.X, head.Y, head.Z, spec.centre, spec.size_mm * spec.radius, dz)
        if box is not None:
            q0, q1, q2 = _clot_coordinates(head, spec, box)
            inside = spec.inside(q0, q1, q2) & head.parenchyma[box]
            if inside.sum() >= min_voxels:
                break
        if attempt == 4 or box is None:
            # very coarse grids: move the centre to the nearest parenchyma voxel
            k, j, i = np.nonzero(head.parenchyma)
            d2 = ((head.X[j, i] - spec.centre[0]) ** 2 + (head.Y[j, i] - spec.centre[1]) ** 2
                  + (head.Z[k] - spec.centre[2]) ** 2)
            n = int(np.argmin(d2))
            spec.centre = np.array([head.X[j[n], i[n]], head.Y[j[n], i[n]], head.Z[k[n]]], dtype=float)
        else:
            spec.size_mm *= 1.25
    if box is None or not inside.any():
        raise RuntimeError("could not place a haematoma in the head phantom (grid too coarse?)")
    # a tight box around the clot with a margin for the oedema rim and partial volume
    idx = np.nonzero(inside)
    margin = [int(np.ceil(8.0 / d)) for d in (dz, dy, dx)]
    tight = tuple(slice(max(sl.start + int(i.min()) - m, 0), min(sl.start + int(i.max()) + 1 + m, n))
                  for sl, i, m, n in zip(box, idx, margin, head.ct.shape, strict=True))
    full_inside = np.zeros(head.ct.shape, dtype=bool)
    full_inside[box] = inside
    box = tight
    inside = full_inside[box]
    q0, q1, q2 = _clot_coordinates(head, spec, box)
    sub = head.ct[box]
    info = {"size_mm": spec.size_mm}

    # distances (mm) inside and outside the clot
    sampling = (dz, dy, dx)
    d_out = ndimage.distance_transform_edt(~inside, sampling=sampling).astype(np.float32)
    d_in = ndimage.distance_transform_edt(inside, sampling=sampling).astype(np.float32)
    allowed = head.intracranial[box] & ~head.ventricles[box]

    # perihaematomal oedema rim
    if markers.get("oedema_rim"):
        width = rng.uniform(2.5, 6.0)
        rim_hu = rng.uniform(15.0, 24.0)
        w = np.clip((width - d_out) / 1.5 + 0.5, 0.0, 1.0) * (d_out > 0) * allowed
        sub += (np.float32(rim_hu) - sub) * w.astype(np.float32)
        info["oedema_width_mm"] = width

    # clot density and texture
    zs, ys, xs = box
    yy = np.arange(ys.start, ys.stop) * dy
    xx = np.arange(xs.start, xs.stop) * dx
    texture = smooth_field(rng, head.Z[zs], yy, xx, (dz, 3.5, 3.5))[0]
    amplitude = 2.0 * np.exp(0.45 * markers["heterogeneity"])
    clot_hu = np.float32(markers["clot_density_hu"]) + np.float32(amplitude) * texture
    dmax = float(d_in.max())

    if markers.get("fluid_level"):
        yv = head.Y[ys, xs][None] * np.ones_like(q0)
        level = np.quantile(yv[inside], rng.uniform(0.35, 0.6))
        dependent = yv > level                      # +y is posterior: the dependent side, supine
        clot_hu = np.where(dependent, np.float32(rng.uniform(72.0, 86.0)), np.float32(rng.uniform(34.0, 46.0)))
        clot_hu = clot_hu + np.float32(0.5 * amplitude) * texture
    elif markers.get("blend_sign"):
        angle = rng.uniform(0, 2 * np.pi)
        proj = (head.X[ys, xs] * np.cos(angle) + head.Y[ys, xs] * np.sin(angle))[None] * np.ones_like(q0)
        cut = np.quantile(proj[inside], rng.uniform(0.5, 0.72))
        hyper = np.float32(markers["clot_density_hu"] + 4.0)
        delta = np.float32(rng.uniform(20.0, 32.0))
        clot_hu = np.where(proj > cut, hyper - delta, hyper) + np.float32(0.6) * texture
        info["blend_delta_hu"] = float(delta)

    if markers.get("hypodensity") and dmax > 0:
        n_foci = 1 + int(rng.random() < 0.4)
        candidates = np.argwhere(d_in >= 0.5 * dmax)
        zc, yc, xc = (np.arange(n) for n in inside.shape)
        for _ in range(n_foci):
            k, j, i = candidates[rng.integers(len(candidates))]
            r = max(rng.uniform(0.45, 0.8) * dmax, 1.2 * max(dx, dy))
            dist = np.sqrt((((zc - k) * dz) ** 2)[:, None, None] + (((yc - j) * dy) ** 2)[None, :, None]
                           + (((xc - i) * dx) ** 2)[None, None, :]).astype(np.float32)
            dist += np.float32(0.25 * r) * texture                         # swirl: irregular outline
            focus = (dist < r) & (d_in > 0.6 * min(dx, dy))
            clot_hu = np.where(focus, np.float32(rng.uniform(25.0, 40.0)) + np.float32(1.5) * texture, clot_hu)

    # partial volume at the clot's edge: a slightly blurred occupancy
    occupancy = ndimage.gaussian_filter(inside.astype(np.float32), sigma=(0.25, 0.6, 0.6), mode="nearest")
    occupancy = np.maximum(occupancy, np.float32(0.65) * inside) * head.intracranial[box]
    sub += (clot_hu - sub) * occupancy

    # intraventricular extension: blood in the nearby and dependent ventricles
    if markers.get("intraventricular_extension"):
        k, j, i = np.nonzero(head.ventricles)
        if k.size:
            vx, vy, vz = head.X[j, i], head.Y[j, i], head.Z[k]
            near = ((vx - spec.centre[0]) ** 2 + (vy - spec.centre[1]) ** 2 + (vz - spec.centre[2]) ** 2
                    < (35.0 * head.scale) ** 2)
            if spec.location == "infratentorial":
                chosen = near | (vz < -20.0 * head.scale)
            else:
                chosen = near | ((vy > 16.0 * head.scale) & (vz > -10.0 * head.scale))
            head.ct[k[chosen], j[chosen], i[chosen]] = (
                np.float32(rng.uniform(48.0, 70.0)) + rng.normal(0, 2.0, int(chosen.sum())).astype(np.float32))
            intraventricular = np.zeros(head.ct.shape, dtype=bool)
            intraventricular[k[chosen], j[chosen], i[chosen]] = True
            info["intraventricular"] = intraventricular

    mask = full_inside                  # on the head's (cropped) grid
    volume = float(inside.sum()) * voxel_ml
    return RenderedClot(mask=mask, volume_ml=volume, box=box, info=info)
