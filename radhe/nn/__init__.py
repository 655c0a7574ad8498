"""The deep-learning subsystem: networks, slice data, augmentation, one training loop, run-time settings.

=====================  ======================================================================================
module                 what
=====================  ======================================================================================
``networks``           the torch modules (U-Net, ROI CNN, Haar pooling, two-output U-Net, marker net, backbone head)
``slices``             a case as arrays, HU windowing, skull stripping, anatomical post-processing, network
                       grids (fixed-size or physical pixel size), ROI crops, slice samples
``pretrained``         the weights shipped inside the package (the synthetic-only segmenter), checked on load
``augment``            training-time augmentation of slice batches
``training``           :func:`~radhe.nn.training.train_network`, the one training loop; shared losses
``runtime``            device, precision, CPU threads, seeds
``base``               the shared, documented ROI / network / training parameters and the estimator plumbing
``segmenter``          :class:`HematomaSegmenter` (a transformer writing predicted masks)
``embedder``           :class:`CNNEmbedder` (a feature branch: CNN features of the haematoma)
``markers``            :class:`NCCTMarkerClassifier` (NCCT expansion markers read by a wavelet CNN)
``two_output``         :class:`TwoOutputUNetClassifier` (segmentation + expansion outputs, Zhong 2021)
=====================  ======================================================================================

The estimators are also reachable where a pipeline author looks for them
(``radhe.segmentation.HematomaSegmenter``, ``radhe.features.CNNEmbedder``). torch is imported only when
a network is built or run, so importing this package is cheap.
"""

from __future__ import annotations

from radhe._lazy import lazy_exports

_EXPORTS = {
    "radhe.nn.segmenter": ("HematomaSegmenter",),
    "radhe.nn.embedder": ("CNNEmbedder",),
    "radhe.nn.markers": ("NCCTMarkerClassifier",),
    "radhe.nn.two_output": ("TwoOutputUNetClassifier",),
    "radhe.nn.base": ("SHARED_PARAMETERS",),
    "radhe.nn.training": ("train_network",),
    "radhe.nn.slices": ("roi_crops", "load_case"),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
