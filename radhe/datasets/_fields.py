"""Smooth random fields on a voxel grid, built by separable interpolation of coarse white noise.

A field with correlation length ``L`` mm is white noise on a grid of spacing ``L`` interpolated to
the voxel grid with Gaussian weights. The interpolation is three small matrix products (one per
axis), which makes a full-size field cost a few milliseconds instead of a 3-D convolution.
"""

from __future__ import annotations

import numpy as np

__all__ = ["smooth_field", "interpolation_matrix"]


def interpolation_matrix(coords_mm: np.ndarray, step_mm: float) -> tuple[np.ndarray, int]:
    """Gaussian interpolation weights from a coarse grid of spacing ``step_mm`` to ``coords_mm``.

    Returns the ``(len(coords), n_coarse)`` weight matrix (rows sum to 1) and ``n_coarse``.
    """
    coords_mm = np.asarray(coords_mm, dtype=np.float64)
    lo, hi = coords_mm.min() - 2 * step_mm, coords_mm.max() + 2 * step_mm
    n_coarse = int(np.ceil((hi - lo) / step_mm)) + 1
    nodes = lo + step_mm * np.arange(n_coarse)
    w = np.exp(-0.5 * ((coords_mm[:, None] - nodes[None, :]) / (0.6 * step_mm)) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32), n_coarse


def smooth_field(rng: np.random.Generator, z_mm, y_mm, x_mm, step_mm, n_fields: int = 1) -> np.ndarray:
    """``n_fields`` independent smooth fields of unit standard deviation, shape ``(n, nz, ny, nx)``.

    Parameters
    ----------
    rng : numpy.random.Generator
    z_mm, y_mm, x_mm : 1-D arrays
        Voxel centre coordinates (mm) along each axis.
    step_mm : float or (float, float, float)
        Correlation length (coarse grid spacing) along z, y, x.
    """
    step = np.broadcast_to(np.asarray(step_mm, dtype=float), (3,))
    wz, cz = interpolation_matrix(z_mm, step[0])
    wy, cy = interpolation_matrix(y_mm, step[1])
    wx, cx = interpolation_matrix(x_mm, step[2])
    coarse = rng.standard_normal((n_fields, cz, cy, cx), dtype=np.float32)
    nz, ny, nx = len(wz), len(wy), len(wx)
    # z first, then x, then y: every step is one 2-D BLAS product on a small operand.
    out = wz @ coarse.transpose(1, 0, 2, 3).reshape(cz, -1)             # (nz, n*cy*cx)
    out = out.reshape(-1, cx) @ wx.T                                    # (nz*n*cy, nx)
    out = out.reshape(nz, n_fields, cy, nx).transpose(2, 0, 1, 3).reshape(cy, -1)
    out = wy @ out                                                      # (ny, nz*n*nx)
    out = np.ascontiguousarray(out.reshape(ny, nz, n_fields, nx).transpose(2, 1, 0, 3))
    # Interpolation shrinks the variance; restore unit standard deviation (deterministic factor).
    scale = np.sqrt((wz**2).sum(1)).mean() * np.sqrt((wy**2).sum(1)).mean() * np.sqrt((wx**2).sum(1)).mean()
    out /= np.float32(scale)
    return out
