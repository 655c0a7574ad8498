"""Zhong et al. 2021: a two-output U-Net predicting haematoma expansion from the CT alone.

Zhong J-W, Jin Y-J, Song Z-J, Lin B, Lu X-H, Chen F, Tong L-S. Deep learning for automatically
predicting early haematoma expansion in Chinese patients. Stroke and Vascular Neurology, 2021
(svn-2020-000647).

Mapping of the paper's methods section to this pipeline
-------------------------------------------------------
* *"baseline CT images were skull stripped and then normalised for signal intensity"* →
  :class:`radhe.nn.two_output.TwoOutputUNetClassifier` ``skull_strip=True`` and a 0–80 HU window
  mapped to [0, 1].
* *"resampled to ... matrix size of 256×256×32"* → every slice resized to ``input_size`` ×
  ``input_size`` (default 96, for a CPU; pass ``input_size=256`` for the paper's in-plane size).
* *"data augmentation ... three-dimensional rotation, translation and scaling"* → random in-plane
  rotations (±10°), scalings (±10 %), flips and intensity jitter of every training batch.
* *"A two-output deep learning model ... U-net ... The most aggregated contextual information
  was deposited in the middle layer ... used for a binary classification"* → one
  :class:`~radhe.nn.networks.UNet2d` whose decoder outputs the haematoma mask and whose
  bottleneck (global mean + max pooled) feeds a linear expansion head; both losses are trained
  together (segmentation: BCE + soft Dice; expansion: class-weighted BCE).
* *"No clinical information was applied as input"* → the network sees only the CT; the
  reference mask is used for training only.
* *"fivefold cross-validation"* → the report's patient-grouped, stratified 5-fold CV
  (``--folds``); each fold's threshold is chosen on its training cases.
* *"compared with the NCCT markers ... logistic regression ... haematoma volume ... BAT score ...
  Delong test"* → the report's baselines (each NCCT marker, volume logistic, BAT score and BAT
  logistic, :mod:`radhe.baselines`) on the same folds, paired DeLong p-values, sensitivity,
  specificity and likelihood ratios.

Where this differs from the paper
---------------------------------
* 2-D slices instead of a 3-D volume network (CPU budget); a case's probability is the mean
  expansion logit over the ``2 * n_slices + 1`` slices with the largest *predicted* haematoma area.
* A far smaller network (``base_channels=8``) at 96 pixels and 10 epochs by default, to keep a
  5-fold CV of 200 cases within about a quarter of an hour on two CPU cores (12 epochs took 16
  minutes; training-fold thresholds: the command line's default inner-CV thresholds fit the model
  four times per fold); no ten-fold offline augmentation; the paper's architecture details are in its supplement, which we did not have.
* Zhong validated on a temporal split (training 2012–2018, test 2018–2019); we cross-validate.
* No SHAP explanation: the model has no tabular features.
"""

from __future__ import annotations

import sys

NAME = "zhong2021"
TITLE = "Zhong et al. 2021: two-output U-Net (segmentation + expansion from the bottleneck)"
ABOUT = ("One 2-D U-Net trained on the CT only, with a segmentation output and an expansion output read from its "
         "bottleneck; compared with the NCCT markers, volume logistic regression and the BAT score by DeLong. "
         "Differences from the paper: 2-D slices, a small network, cross-validation instead of a temporal split.")
EXPLAIN = False
TINY = dict(epochs=1, base_channels=4, levels=3, input_size=64, n_threads=1, skull_strip=False)


def build_pipeline(**overrides):
    """:class:`radhe.nn.two_output.TwoOutputUNetClassifier` with Zhong's settings; ``overrides`` are its parameters."""
    from radhe.nn.two_output import TwoOutputUNetClassifier

    settings = dict(base_channels=8, levels=4, dilation=1, input_size=96, skull_strip=True, epochs=10,
                    window=(0.0, 80.0), n_slices=3)
    settings.update(overrides)
    return TwoOutputUNetClassifier(**settings)


def param_grid() -> dict:
    """Zhong tuned hyper-parameters by 5-fold CV: learning rate, loss balance and network width here."""
    return {"learning_rate": [1e-3, 3e-3], "segmentation_weight": [0.5, 1.0], "base_channels": [8, 16]}


def main(argv=None) -> int:
    from . import _common

    return _common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
