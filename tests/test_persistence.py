"""save_model / load_model: the skops default (no pickle), joblib as an option, no machine paths in a model."""

from __future__ import annotations

import json
import os
import warnings
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import make_ct_volume

import radhe
from radhe.cache import FeatureCache
from radhe.errors import ConfigurationError, InputError, ModelVersionWarning
from radhe.persistence import METADATA_MEMBER, is_trusted_type, load_model, running_versions, save_model

PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": ["Mean", "Energy", "Maximum"], "glcm": ["Contrast"], "shape": ["MeshVolume"]},
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("persist")
    rows = []
    for i in range(8):
        image, mask = make_ct_volume(shape=(8, 32, 32), seed=i, blob_radius_vox=4 + i % 3)
        sitk.WriteImage(image, str(folder / f"img{i}.nii"))
        sitk.WriteImage(mask, str(folder / f"msk{i}.nii"))
        rows.append({"case_id": f"c{i}", "patient_id": f"p{i}", "image": str(folder / f"img{i}.nii"),
                     "mask": str(folder / f"msk{i}.nii"), "age": 60 + i, "sex": "FM"[i % 2], "he": i % 2})
    return pd.DataFrame(rows)


def _fit(cohort, tmp_path, **kwargs):
    pipe = radhe.make_pipeline(radiomics=PARAMS, random_state=0, memory=tmp_path / "memory", **kwargs)
    return pipe.fit(cohort, cohort["he"])


def _radiomics(model):
    return dict(model.named_steps["features"].transformers_)["radiomics"]


def test_pipeline_round_trips_through_skops_without_machine_paths(cohort, tmp_path):
    model = _fit(cohort, tmp_path)
    expected = model.predict_proba(cohort)
    path = radhe.save_model(model, tmp_path / "out" / "model.skops")
    assert path == tmp_path / "out" / "model.skops" and zipfile.is_zipfile(path)
    assert sorted(os.listdir(path.parent)) == ["model.skops"]  # written atomically: no temporary file left
    data = path.read_bytes()
    assert str(tmp_path / "memory").encode() not in data and b"radiomics" in data  # no cache location
    # the user's model keeps its run-time settings; the file has none
    assert model.memory == str(tmp_path / "memory") and _radiomics(model).cache == str(tmp_path / "memory" / "radiomics")
    import skops.io as sio

    names = sio.get_untrusted_types(file=path)
    assert "radhe.pipeline.RadhePipeline" in names and all(is_trusted_type(n) for n in names)

    loaded = radhe.load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(cohort), expected)
    assert loaded.memory is None and _radiomics(loaded).cache is None
    assert dict(loaded.named_steps["features"].transformers)["radiomics"].cache is None
    assert list(loaded[:-1].get_feature_names_out()) == list(model[:-1].get_feature_names_out())
    # a loaded model has no cache unless given one
    cached = radhe.load_model(path, cache=tmp_path / "predict-cache")
    np.testing.assert_array_equal(cached.predict_proba(cohort), expected)
    assert len(FeatureCache(tmp_path / "predict-cache")) == len(cohort)


def test_joblib_is_an_option(cohort, tmp_path):
    model = _fit(cohort, tmp_path)
    expected = model.predict_proba(cohort)
    for name in ("model.joblib", "model.pkl"):
        path = save_model(model, tmp_path / name)
        assert not zipfile.is_zipfile(path)
        assert joblib.load(path).memory is None  # the file itself holds no cache location
        np.testing.assert_array_equal(load_model(path).predict_proba(cohort), expected)
    # another name: joblib only when asked, both ways
    path = save_model(model, tmp_path / "model.bin", format="joblib")
    with pytest.raises(InputError, match="not a skops model file.*format='joblib'"):
        load_model(path)
    np.testing.assert_array_equal(load_model(path, format="joblib").predict_proba(cohort), expected)
    assert zipfile.is_zipfile(save_model(model, tmp_path / "model.bin"))  # default: skops
    with pytest.raises(ConfigurationError, match="suffix of a joblib file"):
        save_model(model, tmp_path / "m.pkl", format="skops")
    with pytest.raises(ConfigurationError, match="format must be one of"):
        save_model(model, tmp_path / "m.skops", format="pickle")
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "none.skops")


def test_old_pickles_lose_their_cache_locations_on_load(cohort, tmp_path):
    model = _fit(cohort, tmp_path)
    joblib.dump(model, tmp_path / "old.joblib")  # as `radhe fit` wrote them before
    assert joblib.load(tmp_path / "old.joblib").memory is not None
    with pytest.warns(ModelVersionWarning, match="records no radhe or feature-engine version"):
        loaded = load_model(tmp_path / "old.joblib")
    assert loaded.memory is None and _radiomics(loaded).cache is None


def test_pandas_objects_round_trip(tmp_path):
    frame = pd.DataFrame({
        "x": [1.5, np.nan, 3.0], "n": [1, 2, 3], "flag": [True, False, True], "text": ["a", None, "c"],
        "cat": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
        "s": pd.array(["u", pd.NA, "w"], dtype="string"), "i": pd.array([1, pd.NA, 3], dtype="Int64"),
        "t": pd.to_datetime(["2024-01-01", "2024-02-01", None]),
    }, index=pd.Index(["r1", "r2", "r3"], name="row"))
    frame.attrs["source"] = "test"
    duplicated = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    multi = pd.DataFrame(np.arange(4.0).reshape(2, 2), columns=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    objects = {"frame": frame, "duplicated": duplicated, "multi": multi, "series": frame["x"],
               "index": pd.RangeIndex(2, 10, 2, name="r"), "empty": pd.DataFrame(columns=["case_id", "problem"])}
    loaded = load_model(save_model(objects, tmp_path / "frames.skops"))
    for key in ("frame", "duplicated", "multi", "empty"):
        pd.testing.assert_frame_equal(loaded[key], objects[key])
    assert loaded["frame"].attrs == {"source": "test"}
    pd.testing.assert_series_equal(loaded["series"], objects["series"])
    pd.testing.assert_index_equal(loaded["index"], objects["index"], exact=True)


@pytest.fixture(scope="module")
def image_cohort(tmp_path_factory):
    from _segdata import make_cohort

    return make_cohort(tmp_path_factory.mktemp("netcohort"), 8, seed=4)


@pytest.mark.filterwarnings("ignore::radhe.errors.InputWarning")  # a one-epoch segmenter finds no bleed
def test_networks_round_trip(image_cohort, tmp_path):
    """Fitted torch estimators: their weights (CPU tensors, nn.Parameters of a backbone module) survive skops."""
    import torch

    from radhe.nn.embedder import CNNEmbedder
    from radhe.segmentation import HematomaSegmenter

    train = image_cohort
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten())
    models = {
        "roi_cnn": CNNEmbedder(epochs=1, n_features=4, crop_size=16, n_threads=1, random_state=0).fit(train, train["he"]),
        "backbone": CNNEmbedder(kind="backbone", backbone=backbone, finetune_backbone=True, epochs=1, crop_size=16,
                                n_threads=1).fit(train, train["he"]),
        "segmenter": HematomaSegmenter(base_channels=4, levels=3, epochs=1, n_threads=1, random_state=0,
                                       cache_dir=tmp_path / "masks").fit(train),
    }
    for name, model in models.items():
        path = save_model(model, tmp_path / f"{name}.skops")
        assert str(tmp_path / "masks").encode() not in path.read_bytes()
        loaded = load_model(path)
        if name == "segmenter":
            assert loaded.cache_dir is None and model.cache_dir == tmp_path / "masks"
            loaded.cache_dir = tmp_path / "masks2"
            ours, theirs = model.transform(train.head(2)), loaded.transform(train.head(2))
            for a, b in zip(ours["mask_pred"], theirs["mask_pred"], strict=True):
                assert a != b
                np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(a)),
                                              sitk.GetArrayFromImage(sitk.ReadImage(b)))
        else:
            pd.testing.assert_frame_equal(loaded.transform(train), model.transform(train))
        if model.model_state_ is not None:
            for key, tensor in model.model_state_.items():
                assert isinstance(loaded.model_state_[key], torch.Tensor)
                assert loaded.model_state_[key].dtype == tensor.dtype
                assert torch.equal(loaded.model_state_[key], tensor)
    loaded = load_model(tmp_path / "backbone.skops")
    assert all(isinstance(p, torch.nn.Parameter) for p in loaded.backbone_.parameters())


class UserNet:
    """A type of the user's own (e.g. a backbone class): never trusted unless named."""

    def __init__(self, scale=2.0):
        self.scale = scale


def test_types_of_ones_own_must_be_named(tmp_path):
    name = f"{UserNet.__module__}.UserNet"
    with pytest.raises(ConfigurationError, match=f"does not trust.*{name}"):
        save_model({"net": UserNet()}, tmp_path / "user.skops")
    assert not (tmp_path / "user.skops").exists()
    path = save_model({"net": UserNet(3.0)}, tmp_path / "user.skops", trusted=[name])
    with pytest.raises(InputError, match=f"does not trust: \\['{name}'\\]"):
        load_model(path)
    assert load_model(path, trusted=[name])["net"].scale == 3.0


@pytest.mark.parametrize(("name", "trusted"), [
    ("radhe.pipeline.RadhePipeline", True),
    ("imblearn.pipeline.Pipeline", True),
    ("sklearn.feature_selection._univariate_selection.f_classif", True),
    ("xgboost.core.Booster", True),
    ("lightgbm.basic.Booster", True),
    ("torch.nn.modules.conv.Conv2d", True),
    ("numpy.mean", True),
    ("collections.OrderedDict", True),
    ("builtins.eval", False),
    ("posix.system", False),
    ("subprocess.Popen", False),
    ("numpy.load", False),
    ("numpy.memmap", False),
    ("numpy.lib.npyio.NpzFile", False),
    ("pandas.read_pickle", False),
    ("pandas.eval", False),
    ("torch.load", False),
    ("torch.hub.load", False),
    ("torch.utils.data.DataLoader", False),
    ("scipy.io.loadmat", False),
    ("sklearn.datasets.fetch_openml", False),
    ("radhe.io.read_image", False),
    ("radhe.no_such_thing", False),
    ("numpy.__builtins__", False),
])
def test_trusted_types(name, trusted):
    assert is_trusted_type(name) is trusted


# ----------------------------------------------------------------------------- recorded versions

def test_files_record_the_radhe_and_engine_versions(cohort, tmp_path):
    from radhe.features.radiomics import ENGINE_VERSION

    model = _fit(cohort, tmp_path)
    expected = model.predict_proba(cohort)
    running = {"radhe": radhe.__version__, "feature_engine": ENGINE_VERSION}
    assert running_versions() == running
    skops_path = save_model(model, tmp_path / "model.skops")
    with zipfile.ZipFile(skops_path) as archive:
        assert json.loads(archive.read(METADATA_MEMBER)) == running
    joblib_path = save_model(model, tmp_path / "model.joblib")
    # loaded by the radhe that saved them: no warning; joblib.load still gives the model itself
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelVersionWarning)
        for path in (skops_path, joblib_path):
            np.testing.assert_array_equal(load_model(path).predict_proba(cohort), expected)
        assert type(joblib.load(joblib_path)) is type(model)


def test_loading_a_file_of_another_version_warns_naming_file_and_versions(cohort, tmp_path, monkeypatch):
    from radhe.features import radiomics

    model = _fit(cohort, tmp_path)
    expected = model.predict_proba(cohort)
    # a skops file as an older radhe wrote it: its record says so
    path = save_model(model, tmp_path / "old.skops")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[METADATA_MEMBER] = json.dumps({"radhe": "0.0.9", "feature_engine": "1"}).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.warns(ModelVersionWarning) as record:
        loaded = load_model(path)
    (warning,) = [w.message for w in record if isinstance(w.message, ModelVersionWarning)]
    message = str(warning)
    assert f"model file '{path}'" in message
    assert "saved by radhe 0.0.9 (feature engine 1)" in message
    assert f"loaded by radhe {radhe.__version__} (feature engine {radiomics.ENGINE_VERSION})" in message
    assert warning.path == str(path) and warning.saved == {"radhe": "0.0.9", "feature_engine": "1"}
    np.testing.assert_array_equal(loaded.predict_proba(cohort), expected)  # loaded all the same

    # a joblib file saved by this radhe, loaded after the feature engine changed
    path = save_model(model, tmp_path / "model.joblib")
    monkeypatch.setattr(radiomics, "ENGINE_VERSION", "99")
    with pytest.warns(ModelVersionWarning, match=r"model file '.*model\.joblib' was saved by radhe \S+ \(feature "
                                                 r"engine 2\) and is loaded by radhe \S+ \(feature engine 99\)"):
        np.testing.assert_array_equal(load_model(path).predict_proba(cohort), expected)
    with pytest.warns(ModelVersionWarning, match=r"a model file was saved by .*\(feature engine 99\)"):
        assert type(joblib.load(path)) is type(model)  # plain joblib.load warns too


def test_files_that_record_no_version_load_with_a_warning(cohort, tmp_path):
    import skops.io as sio

    model = _fit(cohort, tmp_path)
    expected = model.predict_proba(cohort)
    joblib.dump(model, tmp_path / "plain.joblib")  # as radhe wrote them before recording versions
    with pytest.warns(ModelVersionWarning, match=r"model file '.*plain\.joblib' records no radhe or feature-engine "
                                                 r"version.*refit it") as record:
        loaded = load_model(tmp_path / "plain.joblib")
    assert record[0].message.saved is None
    np.testing.assert_array_equal(loaded.predict_proba(cohort), expected)

    path = save_model({"weights": np.arange(3.0)}, tmp_path / "new.skops")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist() if name != METADATA_MEMBER}
    with zipfile.ZipFile(tmp_path / "old.skops", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    sio.dump({"weights": np.arange(3.0)}, tmp_path / "sio.skops")
    for name in ("old.skops", "sio.skops"):
        with pytest.warns(ModelVersionWarning, match=f"model file '.*{name}' records no radhe"):
            np.testing.assert_array_equal(load_model(tmp_path / name)["weights"], np.arange(3.0))


@pytest.mark.parametrize("content", [b"{not json", b'{"radhe": 1}', b"[]"])
def test_a_damaged_version_record_is_refused(tmp_path, content):
    path = save_model({"weights": np.arange(3.0)}, tmp_path / "model.skops")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[METADATA_MEMBER] = content
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(InputError, match=f"damaged skops model file \\(its member '{METADATA_MEMBER}'"):
        load_model(path)


def test_untrusted_types_are_refused_before_the_version_record_is_read(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    sio.dump(FunctionTransformer(os.system), tmp_path / "evil.skops")  # and no version record
    with zipfile.ZipFile(tmp_path / "evil.skops", "a") as archive:
        archive.writestr(METADATA_MEMBER, b"{not json")
    with pytest.raises(InputError, match=r"does not trust: \['posix.system'\]"):
        load_model(tmp_path / "evil.skops")
