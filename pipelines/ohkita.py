"""Ohkita & Hirano: U-Net segmentation + wavelet CNN for multi-label NCCT marker classification.

大北 剛, 平野 北斗 (Kyushu Institute of Technology). 深層学習を用いた脳血腫拡大マーカーの分類:
モバイル医療情報アプリを目指して (Classification of haematoma expansion markers by deep learning:
towards a mobile medical information application).

The paper classifies NCCT markers of expansion; this pipeline uses the classifier, exposed as the
reusable estimator :class:`radhe.nn.markers.NCCTMarkerClassifier`, as a feature branch of an
expansion model: predicted marker probabilities (``marker__<label>``) + clinical variables →
K-best → logistic regression. The report adds the per-label marker AUCs and the paper's
patient-level versus random split comparison, both measured.

Mapping of the paper's methods section to this pipeline
-------------------------------------------------------
* *§4.1 preprocessing: HU window a = 0, b = 80; bone removal; centring* → the segmenter and the
  marker CNN use a 0–80 HU window; the segmenter strips the skull (``skull_strip=True``); the
  marker CNN sees crops centred on the haematoma (:func:`radhe.nn.slices.roi_crops`), which
  subsumes the centring.
* *§4.2 joint model: a U-Net segments the haematoma; a Wavelet CNN (VGG16 whose pooling layers are
  wavelet transforms) classifies, using the U-Net encoder's features too; two-stage training, the
  U-Net frozen in stage 2* → step ``"segment"`` (:class:`~radhe.segmentation.HematomaSegmenter`,
  stage 1) and branch ``"cnn"`` = :class:`~radhe.nn.markers.NCCTMarkerClassifier` (stage 2) with
  Haar-wavelet pooling (:class:`~radhe.nn.networks.HaarPool2d`). With
  ``unet_features=True`` the classifier also trains its own U-Net and concatenates the frozen
  encoder's features (the bottleneck averaged over the haematoma) to the wavelet CNN's.
* *Multi-label classification of hypodensity, irregular margin, blend sign and fluid level:
  sigmoid outputs, weighted BCE with weight(c) = negatives(c) / positives(c) (eq. 2)* →
  ``NCCTMarkerClassifier(labels=MARKER_LABELS, pos_weight="balanced")``.
* *§5.2.2 the haematoma region only: trained with reference masks, tested with the segmentation
  model's masks* → ``train_mask_column="mask"``, ``mask_column="mask_pred"`` (the mask is a second
  input channel).
* *§5.1.1 random vs patient split: the random split puts slices of one patient in both sets and
  looks better* → :func:`split_leak_comparison`, reported as a table (slice-level per-label AUC).
* *Per-label AUC (tables of §5.2)* → :func:`marker_auc`, out-of-fold per-label AUC with
  patient-grouped folds.

Where this differs from the paper
---------------------------------
* A small wavelet CNN (3 blocks) instead of VGG16, a plain U-Net instead of the EfficientNet-b3
  encoder; no pretrained weights.
* No conditional SNGAN augmentation (the paper's +3 % on hypodensity) and no Grad-CAM.
* Markers are labelled per case (the synthetic cohort's markers); every slice of the ROI carries
  its case's labels.
* The paper stops at marker classification; the expansion model on top of the predicted markers
  is radhe's addition, as the issue asked.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from radhe._log import get_logger

log = get_logger("radhe.pipelines")

NAME = "ohkita"
TITLE = "Ohkita & Hirano: U-Net + wavelet CNN multi-label NCCT marker classifier feeding an expansion model"
ABOUT = ("A U-Net (0–80 HU, skull stripped) segments the haematoma in each training fold; a Haar-wavelet CNN "
         "trained with weighted multi-label BCE reads hypodensity, irregular margin, blend sign and fluid level from "
         "the haematoma ROI; its marker probabilities and the clinical variables (without the radiologists' marker "
         "readings) feed a logistic regression. Extra sections: per-label marker AUC and patient-level vs "
         "slice-random splitting. Differences: small networks, no SNGAN augmentation, no Grad-CAM.")
TINY = dict(epochs=1, base_channels=4, levels=3, input_size=64, crop_size=32, n_features=8, n_threads=1,
            skull_strip=False)


def _marker_settings(cnn_kw: dict) -> dict:
    settings = dict(pooling="haar", pos_weight="balanced", window=(0.0, 80.0), epochs=15, n_slices=3)
    settings.update(cnn_kw)
    return settings


def build_pipeline(**overrides):
    """The expansion model on predicted NCCT markers (a :func:`radhe.make_pipeline` pipeline).

    Parameters
    ----------
    **overrides
        ``random_state``; network settings (``epochs``, ``base_channels``, ``input_size``,
        ``crop_size``, ``n_features``, ``n_threads``, ... see
        :func:`radhe_pipelines._common.split_overrides`); ``unet_features`` (bool, default False: the
        marker CNN also uses a frozen U-Net encoder's features); any other
        :func:`radhe.make_pipeline` argument.
    """
    from radhe.constants import NCCT_MARKERS
    from radhe.features.clinical import ClinicalFeatures
    from radhe.nn.markers import NCCTMarkerClassifier

    from ._common import published_pipeline, segmenter

    def settings(random_state, seg_kw, cnn_kw, rest):
        seg_settings = {"window": (0.0, 80.0), "skull_strip": True, **seg_kw}
        unet_features = bool(rest.pop("unet_features", False))
        markers = NCCTMarkerClassifier(
            segmenter=segmenter(random_state, **seg_settings) if unet_features else None,
            train_mask_column="mask", random_state=random_state, **_marker_settings(cnn_kw))
        return dict(
            segmenter=segmenter(random_state, **seg_settings), radiomics=None, cnn=markers,
            # the radiologists' marker readings are replaced by the CNN's
            clinical=ClinicalFeatures(exclude=("site", *NCCT_MARKERS)),
            selector="f_classif", k=10, classifier="logistic",
        )

    return published_pipeline(overrides, settings)


def param_grid() -> dict:
    """Features kept, logistic regularisation, and the marker CNN's pooling (wavelet vs max)."""
    return {"select__k": [5, 10, 20], "classify__C": [0.01, 0.1, 1.0], "features__cnn__pooling": ["haar", "max"]}


# ------------------------------------------------------------------------------ marker studies
def _marker_classifier(seed, overrides):
    from radhe.nn.markers import NCCTMarkerClassifier

    from ._common import split_overrides

    _, cnn_kw, _ = split_overrides(overrides or {})
    return NCCTMarkerClassifier(random_state=seed, **_marker_settings(cnn_kw))


def _stratify_labels(manifest, labels):
    """One stratification label per case: has any of the markers."""
    values = manifest[list(labels)].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy()
    return (values.sum(axis=1) > 0).astype(int)


def marker_auc(manifest, *, folds: int = 5, seed: int = 0, overrides=None) -> pd.DataFrame:
    """Out-of-fold per-label AUC of :class:`~radhe.nn.markers.NCCTMarkerClassifier` (patient-grouped folds).

    The classifier is trained and applied on the reference masks (it is the marker reader that is
    measured here, not the segmentation). Returns one row per label: ``auc`` (case level),
    ``n_positive``, ``prevalence``, ``pos_weight`` (the last fold's).
    """
    from sklearn.base import clone

    from radhe.model_selection import PatientStratifiedKFold
    from radhe.nn.markers import per_label_auc

    template = _marker_classifier(seed, overrides)
    labels = list(template.labels)
    cv = PatientStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = np.full((len(manifest), len(labels)), np.nan)
    weights = np.full(len(labels), np.nan)
    for k, (train, test) in enumerate(cv.split(manifest, _stratify_labels(manifest, labels))):
        start = time.perf_counter()
        model = clone(template).fit(manifest.iloc[train])
        proba[test] = model.predict_proba(manifest.iloc[test])
        weights = model.pos_weight_
        log.info("ohkita: marker AUC fold %d/%d: marker CNN trained and applied in %.1f s", k + 1, folds,
                 time.perf_counter() - start)
    targets = manifest[labels].to_numpy(dtype=float)
    return pd.DataFrame({"auc": per_label_auc(targets, proba), "n_positive": np.nansum(targets, axis=0).astype(int),
                         "prevalence": np.nanmean(targets, axis=0), "pos_weight": weights},
                        index=pd.Index(labels, name="marker"))


def split_leak_comparison(manifest, *, folds: int = 5, seed: int = 0, overrides=None) -> pd.DataFrame:
    """Per-label slice-level AUC with patient-level versus slice-random K-fold splits (Ohkita §5.1.1).

    Every ROI slice of every case (reference masks) is one sample labelled with its case's markers.
    ``patient``: folds of patients, so a test slice's neighbours were never seen. ``random``:
    folds of slices drawn at random, so the neighbouring slices of a test slice — nearly the same
    image — are in the training set and the estimate is optimistic (leakage).

    Returns
    -------
    pandas.DataFrame
        One row per label: ``auc_patient_split``, ``auc_random_split``, ``optimism``
        (random − patient), ``n_positive_slices``; plus a row ``mean`` over the labels with both AUCs.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    from radhe.model_selection import PatientStratifiedKFold
    from radhe.nn.markers import per_label_auc

    template = _marker_classifier(seed, overrides)
    labels = list(template.labels)
    data, slice_case, slice_targets = clone(template).slice_samples(manifest, mask_column="mask")
    keep = np.unique(slice_case).tolist()

    case_frame = manifest.iloc[keep]
    case_folds = PatientStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(
        case_frame, _stratify_labels(case_frame, labels))
    patient_splits = []
    for train_cases, test_cases in case_folds:
        train_ids, test_ids = np.asarray(keep)[train_cases], np.asarray(keep)[test_cases]
        patient_splits.append((np.flatnonzero(np.isin(slice_case, train_ids)),
                               np.flatnonzero(np.isin(slice_case, test_ids))))
    random_splits = list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(data))

    results = {}
    for name, splits in (("patient", patient_splits), ("random", random_splits)):
        proba = np.full(slice_targets.shape, np.nan)
        for k, (train, test) in enumerate(splits):
            start = time.perf_counter()
            model = clone(template).set_params(random_state=seed + k).fit_slices(data[train], slice_targets[train])
            proba[test] = model.predict_slices_proba(data[test])
            log.info("ohkita: %s-split fold %d/%d: %d training slices, trained and applied in %.1f s", name, k + 1,
                     len(splits), len(train), time.perf_counter() - start)
        results[name] = per_label_auc(slice_targets, proba)
    table = pd.DataFrame({"auc_patient_split": results["patient"], "auc_random_split": results["random"]},
                         index=pd.Index(labels, name="marker"))
    table["optimism"] = table["auc_random_split"] - table["auc_patient_split"]
    table["n_positive_slices"] = np.nansum(slice_targets, axis=0).astype(int)
    both = table.dropna(subset=["auc_patient_split", "auc_random_split"])
    table.loc["mean"] = [both["auc_patient_split"].mean(), both["auc_random_split"].mean(),
                         both["optimism"].mean(), int(table["n_positive_slices"].sum())]
    return table


def extra_sections(manifest, y, result, *, seed: int = 0, folds: int = 5, overrides=None) -> list:
    """The report's marker sections: per-label AUC and the split comparison."""
    from ._common import html_table

    aucs = marker_auc(manifest, folds=folds, seed=seed, overrides=overrides)
    leak = split_leak_comparison(manifest, folds=folds, seed=seed, overrides=overrides)
    note_auc = ('<p class="note">Out-of-fold, patient-grouped; the wavelet CNN reads the reference-mask ROI. '
                "pos_weight = negatives / positives of the training slices (weighted BCE). "
                "AUC is undefined (–) for a marker with one class only.</p>")
    note_leak = ('<p class="note">Slice-level AUC: every ROI slice is a sample. With a random split the neighbouring '
                 "slices of a test slice are in the training set; the difference (optimism) is the leak that "
                 "patient-level splitting removes.</p>")
    return [
        ("NCCT marker classification (per-label AUC)", html_table(aucs, index_label="Marker") + note_auc, aucs),
        ("Patient-level vs slice-random split", html_table(leak, index_label="Marker") + note_leak, leak),
    ]


def main(argv=None) -> int:
    from . import _common

    return _common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
