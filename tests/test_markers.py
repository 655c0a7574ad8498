"""NCCTMarkerClassifier: Ohkita's multi-label wavelet-CNN marker reader, alone and as a feature branch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _segdata import make_cohort
from sklearn.base import clone

from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.markers import MARKER_LABELS, NCCTMarkerClassifier, marker_pos_weight, per_label_auc

TINY = dict(crop_size=32, n_features=8, n_threads=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Random-position haematomas; ``large`` (bigger than the median) is visible in the ROI, ``noise`` is not."""
    frame = make_cohort(tmp_path_factory.mktemp("markers"), 40, seed=4)
    rng = np.random.default_rng(0)
    frame["large"] = frame["he"]
    frame["noise"] = rng.integers(0, 2, len(frame))
    return frame


def test_pos_weight_is_negatives_over_positives_per_label():
    targets = np.array([[1, 0, 0], [0, 0, np.nan], [0, 0, 1], [1, 0, 1], [0, 0, 0]], dtype=float)
    # label 0: 2 positives, 3 negatives; label 1: none positive -> 1; label 2: 2 of 4 known -> 1
    np.testing.assert_allclose(marker_pos_weight(targets), [1.5, 1.0, 1.0])


def test_per_label_auc_skips_single_class_labels():
    targets = np.array([[0, 1], [1, 1], [0, 1], [1, 1]], dtype=float)
    proba = np.array([[0.1, 0.5], [0.9, 0.2], [0.2, 0.3], [0.8, 0.9]])
    aucs = per_label_auc(targets, proba)
    assert aucs[0] == 1.0 and np.isnan(aucs[1])


def test_learns_a_visible_marker_and_not_noise(cohort):
    train, test = cohort.iloc[:28], cohort.iloc[28:]
    clf = NCCTMarkerClassifier(labels=("large", "noise"), epochs=4, random_state=0, **TINY).fit(train)
    losses = clf.history_["loss"].to_numpy()
    assert losses[-1] < losses[0]
    proba = clf.predict_proba(test)
    assert proba.shape == (len(test), 2) and np.all((proba >= 0) & (proba <= 1))
    aucs = per_label_auc(test[["large", "noise"]].to_numpy(float), proba)
    assert aucs[0] > 0.85          # haematoma size is visible in a fixed-size ROI
    assert aucs[0] > aucs[1] + 0.2  # the random label is not learnt
    assert np.all(clf.pos_weight_ > 0.5) and np.all(clf.pos_weight_ < 2)  # both labels about balanced here


def test_transform_is_a_named_feature_frame_and_reproducible(cohort):
    train, test = cohort.iloc[:20], cohort.iloc[20:26]
    params = dict(labels=("large", "noise"), epochs=1, random_state=3, **TINY)
    a = NCCTMarkerClassifier(**params).fit(train)
    b = clone(NCCTMarkerClassifier(**params)).fit(train)
    features = a.transform(test)
    assert list(features.columns) == ["marker__large", "marker__noise"]
    assert list(features.index) == list(test.index)
    assert list(a.get_feature_names_out()) == ["marker__large", "marker__noise"]
    np.testing.assert_array_equal(features.to_numpy(), b.transform(test).to_numpy())
    assert set(np.unique(a.predict(test))) <= {0, 1}


def test_unweighted_loss_and_max_pooling(cohort):
    clf = NCCTMarkerClassifier(labels=("large",), pos_weight=None, pooling="max", epochs=1, random_state=0,
                               **TINY).fit(cohort.iloc[:12])
    np.testing.assert_array_equal(clf.pos_weight_, [1.0])
    assert clf.transform(cohort.iloc[12:14]).shape == (2, 1)


def test_case_without_mask_gets_nan_and_is_named(cohort):
    clf = NCCTMarkerClassifier(labels=("large",), epochs=1, random_state=0, **TINY).fit(cohort.iloc[:12])
    test = cohort.iloc[12:15].copy()
    test.loc[test.index[1], "mask"] = None
    with pytest.warns(InputWarning, match=test["case_id"].iloc[1]):
        proba = clf.predict_proba(test)
    assert np.isnan(proba[1]).all() and np.isfinite(proba[[0, 2]]).all()
    assert clf.failures_.empty  # fit's record; prediction names its cases in the warning, keeps no state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        assert clf.predict(test)[1, 0] == -1


def test_ground_truth_masks_for_training_predicted_masks_for_prediction(cohort):
    """Ohkita §5.2.2: train on reference masks, predict on the segmentation model's."""
    frame = cohort.iloc[:16].copy()
    frame["mask_pred"] = None  # no predicted mask yet: fitting must not read it
    clf = NCCTMarkerClassifier(labels=("large",), mask_column="mask_pred", train_mask_column="mask", epochs=1,
                               random_state=0, **TINY).fit(frame)
    frame["mask_pred"] = frame["mask"]
    assert np.isfinite(clf.predict_proba(frame)).all()


def test_joint_unet_encoder_features(cohort):
    from radhe.segmentation import HematomaSegmenter

    seg = HematomaSegmenter(base_channels=4, levels=3, epochs=1, n_threads=1, input_size=32)
    clf = NCCTMarkerClassifier(labels=("large",), segmenter=seg, epochs=1, random_state=0, **TINY).fit(cohort.iloc[:14])
    assert clf.n_extra_ == 4 * 2 ** 2  # the bottleneck width of a 3-level U-Net with 4 base channels
    assert np.isfinite(clf.transform(cohort.iloc[14:17]).to_numpy()).all()


def test_bad_inputs_raise_precise_errors(cohort):
    with pytest.raises(InputError, match="hypodensity"):
        NCCTMarkerClassifier(epochs=1, **TINY).fit(cohort.iloc[:6])  # default labels are not columns here
    bad = cohort.iloc[:6].assign(large=[0, 1, 2, 0, 1, 0])
    with pytest.raises(InputError, match="expected 0/1"):
        NCCTMarkerClassifier(labels=("large",), epochs=1, **TINY).fit(bad)
    with pytest.raises(ConfigurationError, match="pooling"):
        NCCTMarkerClassifier(labels=("large",), pooling="avg").fit(cohort.iloc[:6])
    with pytest.raises(ConfigurationError, match="pos_weight"):
        NCCTMarkerClassifier(labels=("large",), pos_weight="auto").fit(cohort.iloc[:6])
    assert MARKER_LABELS == ("hypodensity", "irregular_margin", "blend_sign", "fluid_level")


def test_slice_level_training_matches_slices_and_refuses_misshaped_targets(cohort):
    """slice_samples → fit_slices → predict_slices_proba (Ohkita's split study); bad targets are named."""
    clf = NCCTMarkerClassifier(labels=("large",), epochs=1, random_state=0, **TINY)
    data, slice_case, targets = clf.slice_samples(cohort.iloc[:10], mask_column="mask")
    assert len(data) == len(slice_case) == len(targets) and targets.shape[1] == 1
    assert set(slice_case) <= set(range(10))
    proba = clf.fit_slices(data, targets).predict_slices_proba(data[:5])
    assert proba.shape == (5, 1) and ((proba >= 0) & (proba <= 1)).all()
    with pytest.raises(InputError, match=r"fit_slices: targets must be \(\d+, 1\)"):
        NCCTMarkerClassifier(labels=("large",), **TINY).fit_slices(data, targets[:-1])
    with pytest.raises(InputError, match="lacks the marker column"):
        NCCTMarkerClassifier(labels=("nosuch",), **TINY).slice_samples(cohort.iloc[:4], mask_column="mask")
