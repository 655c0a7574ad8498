"""Automatic haematoma segmentation (a small 2-D U-Net) and segmentation metrics.

* :class:`HematomaSegmenter` — scikit-learn transformer: ``fit`` trains on ground-truth masks,
  ``transform`` writes predicted masks and adds their paths as a manifest column.
* :func:`dice_score`, :func:`iou_score`, :func:`slice_metrics`, :func:`segmentation_metrics`,
  :func:`volume_agreement` — evaluation.

The segmenter lives with the other deep-learning code in :mod:`radhe.nn`; torch is imported only
when a network is built or run, so importing this package is cheap.
"""

from __future__ import annotations

from radhe._lazy import lazy_exports

_EXPORTS = {
    "radhe.nn.segmenter": ("HematomaSegmenter", "default_cache_dir", "postprocess"),
    "radhe.segmentation.metrics": (
        "dice_score", "iou_score", "slice_metrics", "segmentation_metrics", "volume_agreement",
    ),
    "radhe.nn.slices": ("skull_strip", "window", "brain_only"),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
