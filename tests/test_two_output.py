"""TwoOutputUNetClassifier: Zhong 2021's U-Net with a segmentation and an expansion output."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from _segdata import make_cohort
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from radhe.errors import ConfigurationError, InputError
from radhe.io import read_image
from radhe.two_output import TwoOutputUNetClassifier

TINY = dict(base_channels=4, levels=3, input_size=64, n_threads=1, skull_strip=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    # he = 1 for the larger half of the haematomas: learnable from the CT alone
    return make_cohort(tmp_path_factory.mktemp("twoout"), 40, seed=4)


@pytest.fixture(scope="module")
def fitted(cohort):
    train = cohort.iloc[:28]
    return TwoOutputUNetClassifier(epochs=4, random_state=0, **TINY).fit(train, train["he"])


def test_segmentation_output_learns_the_haematoma(fitted, cohort):
    history = fitted.history_
    assert history["segmentation_loss"].iloc[-1] < history["segmentation_loss"].iloc[0]
    assert np.isfinite(history["classification_loss"]).all()
    test = cohort.iloc[28:]
    dice = fitted.dice(test)
    assert list(dice.index) == list(test.index)
    assert dice.mean() > 0.5  # four epochs suffice to find a bright ellipsoid
    masks = fitted.predict_masks(test.iloc[:1])
    image = read_image(test["image"].iloc[0])
    assert masks[0].shape == image.GetSize()[::-1] and masks[0].dtype == np.uint8


def test_probabilities_use_the_largest_predicted_slices(fitted, cohort):
    test = cohort.iloc[28:]
    proba = fitted.predict_proba(test)
    assert proba.shape == (len(test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(fitted.classes_, [0, 1])
    assert set(fitted.predict(test)) <= {0, 1}
    state = dict(vars(fitted))
    used = fitted.selected_slices(test)
    assert vars(fitted).keys() == state.keys()  # prediction does not change fitted state
    assert list(used.index) == list(test.index)
    assert all(len(s) == 2 * fitted.n_slices + 1 for s in used["slices"])
    # the chosen slices hold the predicted haematoma where there is one
    assert (used["predicted_area_px"].map(max) > 0).mean() > 0.8


def test_same_seed_same_model_and_pickles(fitted, cohort, tmp_path):
    train, test = cohort.iloc[:28], cohort.iloc[28:32]
    again = clone(fitted).fit(train, train["he"])
    np.testing.assert_array_equal(again.predict_proba(test), fitted.predict_proba(test))
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(test), fitted.predict_proba(test))


def test_bad_inputs_raise_precise_errors(cohort):
    train = cohort.iloc[:6]
    with pytest.raises(InputError, match="both classes"):
        TwoOutputUNetClassifier(epochs=1, **TINY).fit(train, np.zeros(len(train), int))
    with pytest.raises(InputError, match="mask"):
        TwoOutputUNetClassifier(epochs=1, **TINY).fit(train.drop(columns="mask"), train["he"])
    with pytest.raises(ConfigurationError, match="window"):
        TwoOutputUNetClassifier(window=(80, 0), **TINY).fit(train, train["he"])
    with pytest.raises(ConfigurationError, match="input_size"):
        TwoOutputUNetClassifier(**{**TINY, "input_size": 2}).fit(train, train["he"])


@pytest.mark.slow
def test_expansion_output_learns_an_image_label(cohort):
    train, test = cohort.iloc[:28], cohort.iloc[28:]
    model = TwoOutputUNetClassifier(epochs=15, random_state=0, **TINY).fit(train, train["he"])
    assert roc_auc_score(test["he"], model.predict_proba(test)[:, 1]) > 0.8
