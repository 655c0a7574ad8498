"""Small synthetic head CTs for the segmentation and CNN-embedding tests (not collected by pytest).

A head with a 1000-HU skull, brain at ~35 HU and one ellipsoid haematoma at ~65 HU placed at a
random position and size, written as uncompressed NIfTI. Cheaper and more varied (random
positions) than the session cohort, so the networks must actually learn to find the bleed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radhe.io import write_image


def make_case(shape=(12, 64, 64), seed=0, radius=None, spacing=(3.0, 3.0, 6.0)):
    """``(ct int16, mask uint8, spacing)``; ``shape`` is numpy ``(z, y, x)``; ``radius=0``: no haematoma."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape).astype(np.float32)
    nz, ny, nx = shape
    cy, cx = ny / 2, nx / 2
    r = min(ny, nx) / 2 - 2
    rr = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    zz = (z - nz / 2) / (nz / 2 + 1)
    head_r = r * np.sqrt(np.clip(1 - zz**2, 0.2, 1))
    ct = np.full(shape, -1000.0, np.float32)
    ct[rr < head_r] = 1000.0
    brain = rr < head_r - 3
    ct[brain] = 35 + rng.normal(0, 4, int(brain.sum()))
    if radius is None:
        radius = rng.uniform(3, 8)
    blob = np.zeros(shape, bool)
    if radius > 0:
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, r * 0.4)
        by, bx, bz = cy + dist * np.sin(angle), cx + dist * np.cos(angle), rng.uniform(nz * 0.35, nz * 0.65)
        axes = radius * rng.uniform(0.7, 1.3, 3)
        blob = (((y - by) / axes[0]) ** 2 + ((x - bx) / axes[1]) ** 2
                + ((z - bz) * spacing[2] / spacing[0] / axes[2]) ** 2) < 1
        if radius < 1.5:  # a tiny haematoma: at least the centre voxel
            blob[int(bz), int(by), int(bx)] = True
        blob &= brain
        ct[blob] = 65 + rng.normal(0, 6, int(blob.sum()))
    return ct.astype(np.int16), blob.astype(np.uint8), spacing


def make_cohort(out, n, shape=(12, 64, 64), seed=0, radii=None) -> pd.DataFrame:
    """Manifest of ``n`` cases in ``out``: ``case_id``, ``patient_id``, ``image``, ``mask``, ``vol``, ``he``.

    ``he`` is 1 for haematomas larger than the median (a label a CNN can learn from the image).
    """
    out = Path(out)
    rows = []
    for i in range(n):
        radius = None if radii is None else radii[i]
        ct, mask, spacing = make_case(shape, seed * 1000 + i, radius=radius)
        case_id = f"c{seed:02d}{i:03d}"
        image_path = write_image(ct, out / "images" / f"{case_id}.nii", spacing=spacing)
        mask_path = write_image(mask, out / "masks" / f"{case_id}.nii", spacing=spacing)
        rows.append({"case_id": case_id, "patient_id": f"p{seed:02d}{i:03d}", "image": str(image_path),
                     "mask": str(mask_path), "vol": int(mask.sum())})
    frame = pd.DataFrame(rows)
    frame["he"] = (frame["vol"] > frame["vol"].median()).astype(int)
    return frame
