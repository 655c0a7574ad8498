"""Bo et al. 2023: automatic segmentation → radiomics + CNN + clinical → K-best → SVM.

Bo R, Xiong Z, Huang T, Liu L, Chen Z. Using radiomics and convolutional neural networks for the
prediction of hematoma expansion after intracerebral hemorrhage. Int J Gen Med, 2023.

Mapping of the paper's methods section to this pipeline
-------------------------------------------------------
* *Automated segmentation ("ichseg" ... skull stripping ... binary hemorrhage mask; "hematoma
  volume is calculated automatically by counting the number of segment voxels multiplying them by
  the voxel size")* → step ``"segment"``: like ``ichseg``, a segmenter trained elsewhere and
  used as it is — the one shipped with radhe (:meth:`radhe.segmentation.HematomaSegmenter.pretrained`,
  skull-stripped, trained on synthetic CT only; ``epochs=0``: nothing is fitted on the cohort, and
  each case is segmented once in a cross-validation). Features use its predicted masks (the
  radiomics shape features include the planimetric volume ``MeshVolume`` / ``VoxelVolume``).
  ``segmenter="fold"`` trains a U-Net (skull-stripped, 0–80 HU) in each training fold instead.
* *"pyradiomics ... features ... according to ... IBSI"; "107 radiomics features"* → branch
  ``"radiomics"``: :class:`~radhe.features.RadiomicsFeatures` ``"ibsi_default"`` (original image,
  bin width 25 HU, the 107 pyradiomics features).
* *"Inception_V3 ... the axial slice maximum hematoma area image and 3 upper and 3 lower slices
  ... the features ... from the last fully connected layer as CNN features"* → branch ``"cnn"``:
  :class:`~radhe.features.CNNEmbedder` on ROI crops of the largest-area slice ± 3 slices
  (``n_slices=3``), trained on the expansion label ("warm-up training"), the embedding layer
  averaged over the 7 slices.
* *"15 clinical features"* (age, sex, blood pressure, platelets, INR, ...) → branch
  ``"clinical"``: :class:`~radhe.features.ClinicalFeatures` on the manifest's clinical columns.
* *"feature-level fusion ... K-highest score (K_Best) for the feature selection ... grid search
  ... the complexity parameter and the kernel type ... support vector machines (SVM)"* →
  in-fold cleaning and standardisation, :class:`~radhe.selection.KBestSelector` (ANOVA F, ``k``)
  and an SVM (:class:`radhe.classifiers.CalibratedSVC`); :func:`param_grid` is the grid over
  ``select__k``, ``classify__C`` and ``classify__kernel`` (``--grid`` runs it nested in the CV).
* *Metrics: "confusion matrix ... AUC-ROC ... precision ... recall ... F1 ... average precision
  (AP) ... the top 15 features"* → the report: confusion matrix, AUC with DeLong CI,
  PPV (precision), sensitivity (recall), F1, AP, and the top-15 out-of-fold SHAP features.

Where this differs from the paper
---------------------------------
* **No ImageNet weights offline**: Bo used an ImageNet-pre-trained Inception-v3 (6,144 features);
  radhe never downloads weights, so a small ROI CNN is trained on the training fold instead. With
  a local copy of the weights, pass ``cnn=CNNEmbedder(kind="backbone", backbone=...,
  backbone_weights=...)`` as an override.
* radhe's shipped U-Net replaces the R package ``ichseg``.
* The manifest's clinical variables stand in for Bo's 15 (no ADL index, D-dimer, fibrinogen, ...);
  the NCCT marker columns are clinical inputs here too unless excluded.
* Cross-validation instead of Bo's two random cohorts (CNN cohort / classifier cohort).
"""

from __future__ import annotations

import sys

from ._common import smoke_radiomics

NAME = "bo2023"
TITLE = "Bo et al. 2023: automatic masks → radiomics + CNN + clinical → K-best → SVM"
ABOUT = ("U-Net masks (radhe's shipped segmenter, as ichseg in the paper) → pyradiomics features (107 at the default settings) + ROI-CNN features of the largest-area slice "
         "± 3 slices + clinical variables → in-fold K-best selection → SVM; confusion matrix, AUC, precision, recall, "
         "F1, AP and the top-15 SHAP features. Difference: a small CNN trained on the fold replaces ImageNet "
         "Inception-v3 (no pretrained weights offline).")
#: Shape and first-order features of the original image only, for smoke tests.
TINY_RADIOMICS = smoke_radiomics({"Original": {}})
TINY = dict(segmenter="fold", epochs=1, base_channels=4, levels=3, input_size=64, crop_size=32, n_features=8,
            n_threads=1, skull_strip=False, radiomics=TINY_RADIOMICS)


def build_pipeline(**overrides):
    """The Bo 2023 pipeline (a :func:`radhe.make_pipeline` pipeline).

    Parameters
    ----------
    **overrides
        ``random_state``; network settings (``epochs``, ``base_channels``, ``input_size``,
        ``crop_size``, ... see :func:`radhe_pipelines._common.split_overrides`); ``radiomics`` (preset
        name or parameter dict, default ``"ibsi_default"``); ``k`` (default 20);
        any other :func:`radhe.make_pipeline` argument (e.g. ``cnn=`` a backbone embedder).
    """
    from radhe.features.radiomics import RadiomicsFeatures

    from ._common import published_pipeline, roi_cnn, segment_step

    def settings(random_state, seg_kw, cnn_kw, rest):
        return dict(
            segmenter=segment_step(rest.pop("segmenter", "pretrained"), random_state, seg_kw,
                                   **{"window": (0.0, 80.0), "skull_strip": True}),
            radiomics=RadiomicsFeatures(params=rest.pop("radiomics", "ibsi_default"), on_error="skip"),
            cnn=roi_cnn(random_state, **{"n_slices": 3, "window": (0.0, 80.0), **cnn_kw}),
            clinical="default", selector="f_classif", k=20, classifier="svm",
        )

    return published_pipeline(overrides, settings)


def param_grid() -> dict:
    """Bo's grid: the number of selected features, the SVM's C and its kernel."""
    return {"select__k": [10, 20, 40], "classify__C": [0.1, 1.0, 10.0], "classify__kernel": ["linear", "rbf"]}


def main(argv=None) -> int:
    from . import _common

    return _common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
