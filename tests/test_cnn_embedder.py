"""CNNEmbedder (ROI CNN, U-Net bottleneck, user backbone) and the segmenter inside make_pipeline."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from _segdata import make_cohort
from sklearn.metrics import roc_auc_score

from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.nn.embedder import CNNEmbedder
from radhe.nn.slices import load_case, roi_crops
from radhe.segmentation import HematomaSegmenter

SEG_TINY = dict(base_channels=4, levels=3, epochs=2, batch_size=16, learning_rate=5e-3, n_threads=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    # he = 1 for the larger half of the haematomas: learnable from the image alone
    return make_cohort(tmp_path_factory.mktemp("cnncohort"), 30, seed=4)


def _tiny_backbone():
    """Stands for e.g. ``torchvision.models.inception_v3`` (a module-level callable pickles)."""
    import torch

    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def _names(n):
    return [f"cnn__{i}" for i in range(n)]


def test_roi_crops_centre_the_haematoma(cohort):
    case = load_case(cohort["image"].iloc[0], cohort["mask"].iloc[0])
    crops = roi_crops(case, window_hu=(0, 80), n_slices=3, roi_mm=80, size=32, mask_channel=True)
    areas = case.mask.reshape(len(case.mask), -1).sum(axis=1)
    z0 = int(np.argmax(areas))
    expected = min(len(areas), z0 + 4) - max(0, z0 - 3)
    assert crops.shape == (expected, 2, 32, 32) and crops.dtype == np.float32
    centre = crops[:, 1, 12:20, 12:20]
    assert centre.max() > 0.5  # the mask channel is centred on the haematoma
    assert 0.0 <= crops[:, 0].min() and crops[:, 0].max() <= 1.0


def test_roi_cnn_learns_the_label_and_returns_named_frame(cohort):
    train, test = cohort.iloc[:20], cohort.iloc[20:]
    emb = CNNEmbedder(epochs=8, n_features=16, crop_size=32, n_threads=1, random_state=0)
    features = emb.fit_transform(train, train["he"])
    assert list(features.columns) == _names(16) and list(features.index) == list(train.index)
    assert list(emb.get_feature_names_out()) == _names(16)
    assert np.isfinite(features.to_numpy()).all()
    losses = emb.history_["loss"].to_numpy()
    assert losses[-3:].mean() < losses[:2].mean()  # it learns
    held_out = emb.transform(test)
    assert list(held_out.index) == list(test.index)
    # held-out: the features separate large from small haematomas
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(features, train["he"])
    assert roc_auc_score(test["he"], model.predict_proba(held_out)[:, 1]) >= 0.75


def test_roi_cnn_is_deterministic_and_pickles(cohort, tmp_path):
    train, test = cohort.iloc[:10], cohort.iloc[20:24]
    params = dict(epochs=2, n_features=8, crop_size=32, n_threads=1, random_state=3, pooling="haar")
    a = CNNEmbedder(**params).fit(train, train["he"])
    b = CNNEmbedder(**params).fit(train, train["he"])
    fa, fb = a.transform(test), b.transform(test)
    pd.testing.assert_frame_equal(fa, fb)
    joblib.dump(a, tmp_path / "emb.joblib")
    pd.testing.assert_frame_equal(joblib.load(tmp_path / "emb.joblib").transform(test), fa)
    c = CNNEmbedder(**{**params, "random_state": 4}).fit(train, train["he"])
    assert not np.allclose(c.transform(test).to_numpy(), fa.to_numpy())


def test_set_output_pandas_and_empty_masks_give_nan(cohort, tmp_path):
    from radhe.io import write_image

    train = cohort.iloc[:8]
    emb = CNNEmbedder(epochs=1, n_features=4, crop_size=32, n_threads=1, random_state=0).set_output(
        transform="pandas")
    emb.fit(train, train["he"])
    test = cohort.iloc[20:23].copy()
    empty = write_image(np.zeros((12, 64, 64), np.uint8), tmp_path / "empty.nii", spacing=(3, 3, 6))
    test.loc[test.index[0], "mask"] = str(empty)
    test.loc[test.index[1], "mask"] = None
    with pytest.warns(InputWarning, match=r"2 case\(s\) without a usable ROI; their CNN features are NaN") as caught:
        out = emb.transform(test)
    named = [w for w in caught if issubclass(w.category, InputWarning)]
    assert len(named) == 1  # one warning for the call, naming both cases (not one warning per case)
    text = str(named[0].message)
    assert f"case '{test['case_id'].iloc[0]}': empty mask" in text and f"case '{test['case_id'].iloc[1]}': no" in text
    assert isinstance(out, pd.DataFrame) and list(out.columns) == _names(4)
    assert out.iloc[:2].isna().all().all() and np.isfinite(out.iloc[2].to_numpy()).all()
    assert emb.failures_.empty  # the record is of fit's cases: transform changes no fitted state


def test_fit_errors(cohort):
    train = cohort.iloc[:4]
    with pytest.raises(ConfigurationError, match="needs y"):
        CNNEmbedder(epochs=1).fit(train)
    with pytest.raises(ConfigurationError, match="'kind' parameter of CNNEmbedder must be"):
        CNNEmbedder(kind="resnet").fit(train, train["he"])
    with pytest.raises(ConfigurationError, match="needs backbone"):
        CNNEmbedder(kind="backbone").fit(train)
    with pytest.raises(InputError, match="lacks column"):
        CNNEmbedder(epochs=1, mask_column="mask_pred").fit(train, train["he"])


def test_unet_bottleneck_trains_its_segmenter_in_fit(cohort):
    train, test = cohort.iloc[:10], cohort.iloc[20:23]
    seg = HematomaSegmenter(**SEG_TINY)
    emb = CNNEmbedder(kind="unet_bottleneck", segmenter=seg, random_state=0, n_threads=1)
    features = emb.fit_transform(train)  # y is not needed
    width = SEG_TINY["base_channels"] * 2 ** (SEG_TINY["levels"] - 1)
    assert list(features.columns) == _names(width)
    assert not hasattr(seg, "model_state_")  # the given segmenter is cloned, not fitted in place
    assert emb.segmenter_ is not seg and emb.segmenter_.train_cases_
    out = emb.transform(test)
    assert np.isfinite(out.to_numpy()).all()
    assert out.to_numpy().std(axis=0).max() > 0  # features differ between cases

    # an already fitted segmenter is used as it is (not retrained)
    emb2 = CNNEmbedder(kind="unet_bottleneck", segmenter=emb.segmenter_, n_threads=1).fit(train)
    assert emb2.segmenter_ is emb.segmenter_
    pd.testing.assert_frame_equal(emb2.transform(test), out)

    from sklearn.frozen import FrozenEstimator

    emb3 = CNNEmbedder(kind="unet_bottleneck", segmenter=FrozenEstimator(emb.segmenter_), n_threads=1)
    from sklearn.base import clone

    pd.testing.assert_frame_equal(clone(emb3).fit(train).transform(test), out)


def test_backbone_from_local_weights_file(cohort, tmp_path):
    import torch

    factory = _tiny_backbone
    torch.manual_seed(0)
    reference = factory()
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    train, test = cohort.iloc[:6], cohort.iloc[20:22]
    emb = CNNEmbedder(kind="backbone", backbone=factory, backbone_weights=tmp_path / "weights.pt", crop_size=32,
                      n_threads=1)
    out = emb.fit(train).transform(test)  # frozen: no label needed
    assert list(out.columns) == _names(5)
    # the features are the loaded module's outputs, averaged over the ROI slices
    crops = emb._roi_crops(test.iloc[:1], emb.mask_column)[0]
    with torch.no_grad():
        expected = reference.eval()(emb._backbone_input(torch.from_numpy(crops))).mean(0).numpy()
    assert np.allclose(out.iloc[0].to_numpy(), expected, atol=1e-5)
    joblib.dump(emb, tmp_path / "bb.joblib")
    pd.testing.assert_frame_equal(joblib.load(tmp_path / "bb.joblib").transform(test), out)

    tuned = CNNEmbedder(kind="backbone", backbone=reference, finetune_backbone=True, epochs=1, crop_size=32,
                        n_threads=1).fit(train, train["he"])
    assert tuned.model_state_ is not None and tuned.transform(test).shape == (2, 5)
    with pytest.raises(InputError, match="not found"):
        CNNEmbedder(kind="backbone", backbone=factory, backbone_weights=tmp_path / "missing.pt").fit(train)


@pytest.mark.slow  # 60 s; the wiring is also covered by test_pipeline.py::test_segmenter_and_cnn_branches_on_cohort
def test_make_pipeline_with_segmenter_and_cnn_in_grid_search(cohort, tmp_path):
    radhe_pipeline = pytest.importorskip("radhe.pipeline")
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from radhe.segmentation import segmentation_metrics

    train, test = cohort.iloc[:24], cohort.iloc[24:]
    pipe = radhe_pipeline.make_pipeline(
        segmenter=HematomaSegmenter(base_channels=8, levels=3, epochs=6, learning_rate=5e-3, n_threads=1,
                                    cache_dir=tmp_path / "m", random_state=0),
        cnn=CNNEmbedder(epochs=6, n_features=8, crop_size=32, n_threads=1, random_state=0),
        radiomics=None, clinical=None, k=4, random_state=0, fusion="concat",
    )
    assert [name for name, _ in pipe.steps][:2] == ["segment", "features"]
    search = GridSearchCV(pipe, {"classify__C": [0.1, 1.0]}, scoring="roc_auc",
                          cv=StratifiedKFold(2, shuffle=True, random_state=0), error_score="raise")
    search.fit(train, train["he"])
    best = search.best_estimator_
    # the CNN branch read the predicted masks, not the ground truth
    assert best.get_params()["features__cnn__mask_column"] == "mask_pred"
    segmented = best.named_steps["segment"].transform(test)
    dice = segmentation_metrics(segmented, level="patient")["dice"]
    assert dice.mean() > 0.6, dice  # an all-empty prediction would score 0
    names = best[:-1].get_feature_names_out()
    assert 1 <= len(names) <= 4 and all(n.startswith("cnn__") for n in names)
    proba = search.predict_proba(test)[:, 1]
    assert np.isfinite(proba).all()
    assert search.best_score_ > 0.6 or roc_auc_score(test["he"], proba) > 0.6
