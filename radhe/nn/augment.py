"""Training-time augmentation of slice batches (torch tensors; seeded by a :class:`torch.Generator`)."""

from __future__ import annotations

import math

__all__ = ["augment_batch", "augment_crops"]


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


def augment_crops(x, generator):
    """Flips, small rotations/scalings (all channels) and intensity jitter (channel 0) of a crop batch.

    Used for ROI crops whose channel 1 is a mask: only the CT channel's intensity is jittered.
    """
    import torch

    x, _ = augment_batch(x, None, generator, intensity=0.0)
    gain = 1 + (torch.rand(len(x), 1, 1, generator=generator) * 2 - 1) * 0.1
    x = x.clone()
    x[:, 0] = x[:, 0] * gain
    return x
