"""Blood that is not the parenchymal haematoma: subdural, epidural and subarachnoid haemorrhage.

A clinical head CT holds more than the spontaneous intracerebral haematoma: extra-axial blood
(subdural crescents, epidural lenses) and subarachnoid blood in the sulci. They are distractors for
a segmenter of the parenchymal haematoma, which must leave them out; the haematoma-expansion label
and the parenchymal mask (label 1) never include them. With ``labels`` they get their own mask
labels (:data:`OTHER_BLOOD_LABELS`), as Xu et al. (2021) segment ICH, EDH and SDH separately.

Shapes, in the head frame (mm) on the head's cropped grid:

- subdural (crescent): the layer under the inner table, ``0 <= depth < t(d)``, over a cap of the
  convexity around a random direction on one side (never across the falx); thickness
  ``t(d) = T sqrt(1 - (d / w)^2)`` with ``d`` the angular distance to the cap's centre, ``T`` 3-12 mm,
  ``w`` 30-55°; acute (55-80 HU), subacute (34-48 HU) or chronic (8-22 HU);
- epidural (lens): the same construction with a biconvex profile ``t(d) = T (1 - (d / w)^2)``,
  ``T`` 6-22 mm, ``w`` 18-30°, 58-85 HU;
- subarachnoid: the CSF of the sulci under a cap of the convexity (or of the basal surface) turned to
  blood of 42-68 HU.

None of them enters the parenchymal haematoma or a 3 mm margin around it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from radhe.datasets._fields import smooth_field
from radhe.datasets._head import HeadPhantom

__all__ = ["OTHER_BLOOD_RATES", "OTHER_BLOOD_LABELS", "draw_other_blood", "render_other_blood"]

#: Per-case probabilities of each kind of other blood (spontaneous-ICH cohorts: a minority of scans).
OTHER_BLOOD_RATES = {"subdural": 0.07, "epidural": 0.02, "subarachnoid": 0.10}

#: Mask labels when the cohort labels other blood (label 1 is the parenchymal haematoma).
OTHER_BLOOD_LABELS = {"subdural": 2, "epidural": 3, "subarachnoid": 4, "intraventricular": 5}


def draw_other_blood(rng: np.random.Generator, scale: float) -> list[str]:
    """The kinds of other blood of one case; ``scale`` multiplies :data:`OTHER_BLOOD_RATES`.

    The random draws do not depend on ``scale`` (it only moves the thresholds), so scale 0 and 1
    give the same cases apart from the added blood.
    """
    draws = rng.random(len(OTHER_BLOOD_RATES))
    return [kind for kind, u in zip(OTHER_BLOOD_RATES, draws, strict=True)
            if u < min(1.0, OTHER_BLOOD_RATES[kind] * scale)]


def _cap_direction(rng, *, basal: bool = False):
    """A unit direction (normalised head frame) on the convexity, or on the basal surface."""
    for _ in range(1000):
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        if basal and v[2] < -0.45 and abs(v[0]) > 0.3:
            return v
        if not basal and abs(v[0]) > 0.35 and v[2] > -0.25:
            return v
    return np.array([1.0, 0.0, 0.3]) / np.hypot(1.0, 0.3)


def _angular_distance(head: HeadPhantom, direction: np.ndarray) -> np.ndarray:
    """Angle (radians) between each voxel's normalised position and ``direction``, ``(z, y, x)``."""
    a, b, c = head.inner_semi_axes
    qx, qy = (head.X / a)[None], (head.Y / b)[None]
    qz = (head.Z / c)[:, None, None]
    norm = np.sqrt(qx**2 + qy**2 + qz**2) + np.float32(1e-6)
    cos = (qx * direction[0] + qy * direction[1] + qz * direction[2]) / norm
    return np.arccos(np.clip(cos, -1.0, 1.0)).astype(np.float32, copy=False)


def render_other_blood(rng: np.random.Generator, head: HeadPhantom, kinds: list[str],
                       haematoma: np.ndarray) -> dict[str, np.ndarray]:
    """Paint the ``kinds`` of other blood into ``head.ct`` (in place); their masks by kind.

    Parameters
    ----------
    haematoma : numpy.ndarray of bool
        The parenchymal haematoma on the head's grid; other blood keeps 3 mm away from it.

    Returns
    -------
    dict
        Kind → boolean mask on the head's (cropped) grid; kinds that found no room are left out.
    """
    if not kinds:
        return {}
    dx, dy, dz = head.spacing
    near_clot = np.zeros_like(haematoma)
    if haematoma.any():
        near_clot = ndimage.distance_transform_edt(~haematoma, sampling=(dz, dy, dx)) < 3.0
    allowed = head.intracranial & ~head.ventricles & ~near_clot
    texture = smooth_field(rng, head.Z, head.Y[:, 0], head.X[0], (dz, 3.0, 3.0))[0]
    masks = {}
    for kind in kinds:
        if kind in ("subdural", "epidural"):
            direction = _cap_direction(rng)
            if kind == "subdural":
                thickness, width = rng.uniform(3.0, 12.0), np.deg2rad(rng.uniform(30.0, 55.0))
                profile = np.sqrt(np.clip(1.0 - (_angular_distance(head, direction) / width) ** 2, 0.0, 1.0))
                stage = rng.choice(["acute", "subacute", "chronic"], p=[0.6, 0.2, 0.2])
                low, high = {"acute": (55.0, 80.0), "subacute": (34.0, 48.0), "chronic": (8.0, 22.0)}[stage]
            else:
                thickness, width = rng.uniform(6.0, 22.0), np.deg2rad(rng.uniform(18.0, 30.0))
                profile = np.clip(1.0 - (_angular_distance(head, direction) / width) ** 2, 0.0, 1.0)
                low, high = 58.0, 85.0
            region = (head.depth >= 0) & (head.depth < thickness * profile) & allowed
            # the falx keeps a subdural or epidural collection on its side of the midline
            region &= (np.sign(direction[0]) * head.X)[None] > 1.5
            value = np.float32(rng.uniform(low, high))
        else:  # subarachnoid: sulcal CSF under a cap of the brain's surface
            direction = _cap_direction(rng, basal=rng.random() < 0.3)
            cap = _angular_distance(head, direction) < np.deg2rad(rng.uniform(25.0, 45.0))
            csf = head.tissue_hu["csf"]
            sulcal = head.ct < np.float32(csf + 0.6 * (head.tissue_hu["white_matter"] - csf))
            region = cap & sulcal & (head.depth >= 0) & (head.depth < 20.0) & allowed
            value = np.float32(rng.uniform(42.0, 68.0))
        if not region.any():
            continue
        head.ct[region] = value + np.float32(2.5) * texture[region]
        masks[kind] = region
        allowed &= ~region  # one kind of blood per voxel: a later kind never paints over an earlier one
    return masks
