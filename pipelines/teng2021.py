"""Teng et al. 2021 (BioMind): dilated U-Net → ROI radiomics + CNN features → gradient boosting.

Teng L, Ren Q, Zhang P, Wu Z, Guo W, Ren T. Artificial intelligence can effectively predict early
hematoma expansion of intracerebral hemorrhage analyzing noncontrast computed tomography image.
Front Aging Neurosci 2021;13:632138.

Mapping of the paper's methods section to this pipeline
-------------------------------------------------------
* *Segmentation model: "U-Net ... normalization by a Hounsfield unit (HU) value window 0–100 ...
  two 3×3 convolution layers and a 2×2 max-pooling layer ... dilated convolution on the second
  convolution layers of each downsampling block ... 1×1 convolution layer with sigmoid"* → step
  ``"segment"``: :class:`radhe.segmentation.HematomaSegmenter` (``window=(0, 100)``,
  ``dilation=2``; :class:`~radhe.nn.networks.UNet2d` has exactly these blocks) with
  ``segmenter="fold"``, trained inside each training fold on the reference masks. By default the
  U-Net shipped with radhe instead (:meth:`radhe.segmentation.HematomaSegmenter.pretrained`: trained
  on synthetic CT only, as Teng's was trained on its own development scans and not on the cases it
  is tested on; ``epochs=0``: fixed in every fold, each case segmented once). Its predicted masks
  define the ROI of both feature branches, for training and test cases alike.
* *Prediction model, first branch: "radiomics features on the ROI ... Laplacian of Gaussian and
  wavelet ... together with the original images ... intensity, texture, and geometric"* → branch
  ``"radiomics"``: :class:`~radhe.features.RadiomicsFeatures` with the ``"teng2021"`` preset
  (original + LoG σ = 1–5 mm + the eight first-level wavelet decompositions, all feature classes:
  1,316 features; the paper had 1,379).
* *Second branch: "a convolutional neural network (CNN) similar with the downsampling stage of
  U-Net ... terminates at a fully connected layer ... softmax ... the flattened output feature
  maps were extracted as the CNN features"* → branch ``"cnn"``:
  :class:`~radhe.features.CNNEmbedder` ``kind="roi_cnn"`` (conv blocks + max pooling + a fully
  connected embedding layer, trained on the expansion label; input the 0–100 HU CT and the
  predicted mask).
* *"the radiomics features and the CNN features were concatenated and inputted to the gradient
  boosting classifier"* → in-fold cleaning, no scaling, no selection, then gradient-boosted trees
  (``"xgboost"``: :class:`radhe.classifiers.BalancedXGBClassifier`).
* *Clinical evaluation: "the risk of hematoma enlargement was set according to the AUC curve
  analysis ... specificity, sensitivity, positive predictive value, negative predictive value,
  and the Yoden index"* → the report's threshold metrics at the Youden threshold chosen on each
  training fold (inner CV), with bootstrap CIs.

Where this differs from the paper
---------------------------------
* No clinical variables are used, as in the paper; but the networks are small and trained on the
  cohort at hand (the paper: 1,899 development scans at 512 × 512), slices resized to 128 pixels.
* The paper does not name its gradient-boosting implementation; XGBoost with the positive class
  re-weighted on the training fold stands in.
* 1,316 rather than 1,379 radiomics features (pyradiomics' default feature set per image type).
"""

from __future__ import annotations

import sys

from ._common import smoke_radiomics

NAME = "teng2021"
TITLE = "Teng et al. 2021: dilated U-Net → radiomics (original + LoG + wavelet) + CNN → gradient boosting"
ABOUT = ("A 2-D U-Net segments the haematoma (radhe's shipped one by default; with segmenter='fold' a dilated "
         "U-Net, HU window 0–100, trained in each training fold); ROI radiomics "
         "(original, LoG, wavelet) and ROI-CNN features of the predicted masks are concatenated and classified "
         "by gradient-boosted trees; threshold metrics at the Youden point of the training folds. Differences: "
         "small networks, XGBoost as the gradient booster, 1,316 radiomics features at the default settings.")

#: A small radiomics configuration of the same image types, for smoke tests and CPU runs: shape
#: (geometry, once) and first-order features of the original, LoG (2 mm) and wavelet images (194).
TINY_RADIOMICS = smoke_radiomics({"Original": {}, "LoG": {"sigma": [2.0]}, "Wavelet": {}})
TINY = dict(segmenter="fold", epochs=1, base_channels=4, levels=3, input_size=64, crop_size=32, n_features=8,
            n_threads=1, radiomics=TINY_RADIOMICS)


def build_pipeline(**overrides):
    """The Teng 2021 pipeline (a :func:`radhe.make_pipeline` pipeline).

    Parameters
    ----------
    **overrides
        ``random_state``; network settings ``epochs``, ``seg_epochs``, ``cnn_epochs``,
        ``base_channels``, ``levels``, ``input_size``, ``crop_size``, ``n_features``, ``n_threads``,
        ``batch_size``, ``cache_dir`` (see :func:`radhe_pipelines._common.split_overrides`);
        ``radiomics`` (preset name or parameter dict, default ``"teng2021"``); any other
        :func:`radhe.make_pipeline` argument (e.g. ``classifier``).
    """
    from radhe.features.radiomics import RadiomicsFeatures

    from ._common import published_pipeline, roi_cnn, segment_step

    def settings(random_state, seg_kw, cnn_kw, rest):
        return dict(
            segmenter=segment_step(rest.pop("segmenter", "pretrained"), random_state, seg_kw,
                                   **{"window": (0.0, 100.0), "dilation": 2}),
            radiomics=RadiomicsFeatures(params=rest.pop("radiomics", "teng2021"), on_error="skip"),
            cnn=roi_cnn(random_state, **{"window": (0.0, 100.0), "pooling": "max", "mask_channel": True, **cnn_kw}),
            clinical=None, selector=None, classifier="xgboost",
        )

    return published_pipeline(overrides, settings)


def param_grid() -> dict:
    """Depth and learning rate of the gradient-boosted trees (radhe's small XGBoost grid)."""
    return {"classify__max_depth": [2, 3], "classify__learning_rate": [0.03, 0.1]}


def main(argv=None) -> int:
    from . import _common

    return _common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
