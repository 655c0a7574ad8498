"""Automatic haematoma segmentation (a small 2-D U-Net) and segmentation metrics.

* :class:`HematomaSegmenter` — scikit-learn transformer: ``fit`` trains on ground-truth masks,
  ``transform`` writes predicted masks and adds their paths as a manifest column.
* :func:`dice_score`, :func:`iou_score`, :func:`slice_metrics`, :func:`segmentation_metrics`,
  :func:`volume_agreement` — evaluation.

torch is imported only when a network is built or run, so importing this package is cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "HematomaSegmenter": "radhe.segmentation.segmenter",
    "default_cache_dir": "radhe.segmentation.segmenter",
    "postprocess": "radhe.segmentation.segmenter",
    "dice_score": "radhe.segmentation.metrics",
    "iou_score": "radhe.segmentation.metrics",
    "slice_metrics": "radhe.segmentation.metrics",
    "segmentation_metrics": "radhe.segmentation.metrics",
    "volume_agreement": "radhe.segmentation.metrics",
    "skull_strip": "radhe.segmentation._slices",
    "window": "radhe.segmentation._slices",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'radhe.segmentation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
