"""The per-case feature cache: hits, corruption, resume after a killed run, invalidation."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import make_ct_volume

from radhe.cache import FeatureCache, digest, file_fingerprint
from radhe.features.radiomics import RadiomicsFeatures

PARAMS = {  # a few features: these tests are about the cache, not the values
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": ["Mean", "Energy"], "glcm": ["Contrast"], "shape": ["MeshVolume"]},
}


@pytest.fixture
def cohort(tmp_path):
    rows = []
    for i in range(5):
        image, mask = make_ct_volume(shape=(8, 32, 32), seed=i, blob_radius_vox=4 + i % 2)
        img, msk = tmp_path / f"img{i}.nii", tmp_path / f"msk{i}.nii"
        sitk.WriteImage(image, str(img))
        sitk.WriteImage(mask, str(msk))
        rows.append({"case_id": f"c{i}", "image": str(img), "mask": str(msk)})
    return pd.DataFrame(rows)


@pytest.fixture
def counter(monkeypatch):
    """The image paths of the cases extracted (n_jobs=1 runs the engine's per-case task in this process)."""
    import radhe.features._radiomics_engine as engine

    calls = []
    original = engine.extract_task

    def counting(image, mask, *args, **kwargs):
        calls.append(str(image))
        return original(image, mask, *args, **kwargs)

    monkeypatch.setattr(engine, "extract_task", counting)
    return calls


def test_second_fit_does_no_extraction(cohort, tmp_path, counter):
    cache = tmp_path / "cache"
    first = RadiomicsFeatures(PARAMS, cache=cache).fit_transform(cohort)
    assert len(counter) == 5
    assert len(FeatureCache(cache)) == 5
    counter.clear()
    rf = RadiomicsFeatures(PARAMS, cache=cache)
    second = rf.fit(cohort).transform(cohort)
    again = rf.fit_transform(cohort)
    assert counter == []
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first, again)
    # Results with and without the cache are identical
    pd.testing.assert_frame_equal(first, RadiomicsFeatures(PARAMS).fit_transform(cohort))


@pytest.mark.parametrize("damage", ["garbage", "truncate", "tamper"])
def test_corrupted_cache_file_is_recomputed(cohort, tmp_path, counter, damage):
    cache = FeatureCache(tmp_path / "cache")
    first = RadiomicsFeatures(PARAMS, cache=cache.directory).fit_transform(cohort)
    files = sorted(cache.directory.glob("*/*.npz"))
    victim = files[2]
    if damage == "garbage":
        victim.write_bytes(b"not a zip file")
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:150])
    else:  # a valid file whose values were changed: the checksum no longer matches
        with np.load(victim) as data:
            parts = {k: data[k] for k in data.files}
        parts["values"] = parts["values"] + 1.0
        np.savez(victim, **parts)
    counter.clear()
    second = RadiomicsFeatures(PARAMS, cache=cache.directory).fit_transform(cohort)
    assert len(counter) == 1
    pd.testing.assert_frame_equal(first, second)
    assert len(cache) == 5


def test_killed_run_resumes_without_recomputing(cohort, tmp_path, monkeypatch):
    import radhe.features._radiomics_engine as engine

    cache = tmp_path / "cache"
    original = engine.extract_case
    calls = []

    def dies_on_third(image, mask, config, label=None):
        calls.append(image)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is killed while extracting the third case
        return original(image, mask, config, label=label)

    monkeypatch.setattr(engine, "extract_case", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        RadiomicsFeatures(PARAMS, cache=cache).fit_transform(cohort)
    assert len(FeatureCache(cache)) == 2
    assert not list(cache.glob("*/.tmp-*")), "no half-written file left behind"

    calls.clear()
    monkeypatch.setattr(engine, "extract_case", original)
    task = engine.extract_task  # receives the paths (extract_case gets the images read from them)
    monkeypatch.setattr(engine, "extract_task", lambda *a, **k: (calls.append(a[0]), task(*a, **k))[1])
    out = RadiomicsFeatures(PARAMS, cache=cache).fit_transform(cohort)
    assert sorted(calls) == sorted(cohort["image"].iloc[2:])
    pd.testing.assert_frame_equal(out, RadiomicsFeatures(PARAMS).fit_transform(cohort))


def test_changed_inputs_or_params_invalidate(cohort, tmp_path, counter):
    cache = tmp_path / "cache"
    RadiomicsFeatures(PARAMS, cache=cache).fit_transform(cohort)
    counter.clear()
    # a rewritten image (new mtime) is recomputed, the others are not
    path = cohort["image"].iloc[1]
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    RadiomicsFeatures(PARAMS, cache=cache).fit_transform(cohort)
    assert counter == [path]
    # other parameters: everything recomputed, under new keys
    counter.clear()
    params = {**PARAMS, "setting": {"binWidth": 10, "label": 1}}
    RadiomicsFeatures(params, cache=cache).fit_transform(cohort)
    assert len(counter) == 5
    assert len(FeatureCache(cache)) == 11  # 5 + the touched image + 5 (stale entries stay until cleared)


def test_failed_cases_are_not_cached(cohort, tmp_path, counter):
    X = cohort.copy()
    X.loc[1, "mask"] = X.loc[1, "image"]  # a CT as mask: label 1 absent
    cache = tmp_path / "cache"
    rf = RadiomicsFeatures(PARAMS, cache=cache, on_error="skip")
    out = rf.fit_transform(X)
    assert out.iloc[1].isna().all() and len(rf.failures_) == 1
    assert len(FeatureCache(cache)) == 4


def test_feature_cache_roundtrip(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    key = cache.key(a=1, b=[1, 2])
    assert key == cache.key(b=[1, 2], a=1)
    assert cache.load(key) is None
    values = {"x": 1.5, "y": float("nan"), "z": -3e300}
    cache.store(key, values)
    loaded = cache.load(key)
    assert list(loaded) == ["x", "y", "z"] and loaded["x"] == 1.5 and np.isnan(loaded["y"])
    # a file stored under another key's name is rejected
    other = cache.key(a=2)
    os.makedirs(cache.path(other).parent, exist_ok=True)
    os.replace(cache.path(key), cache.path(other))
    assert cache.load(other) is None
    assert digest({"a": 1}) != digest({"a": 2})
    fp = file_fingerprint(tmp_path / "missing.nii")
    assert fp["missing"]


def test_fingerprint_sees_a_rewrite_whose_modification_time_was_set_back(tmp_path):
    """Same size, same mtime (``cp --preserve``, ``rsync -t``): the change time still differs."""
    import time

    path = tmp_path / "img.nii"
    path.write_bytes(b"a" * 100)
    before, st = file_fingerprint(path), os.stat(path)
    time.sleep(0.05)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = file_fingerprint(path)
    assert (after["size"], after["mtime_ns"]) == (before["size"], before["mtime_ns"])
    assert after != before


def test_content_stamp_covers_the_files_named_by_cells_and_parameters(tmp_path):
    import time

    from radhe.cache import content_stamp

    image, params, series = tmp_path / "img.nii", tmp_path / "params.yaml", tmp_path / "dicom"
    image.write_bytes(b"ct")
    params.write_text("setting: {binWidth: 25}")
    series.mkdir()
    (series / "1.dcm").write_bytes(b"slice")
    frame = pd.DataFrame({"image": [str(image)], "series": [str(series)], "sex": ["M"], "age": [70]})

    def stamp():
        return content_stamp(frame, RadiomicsFeatures(params=str(params), cache=str(tmp_path / "cache")))

    base = stamp()
    assert stamp() == base  # deterministic
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "entry").write_text("x")
    assert stamp() == base  # a folder parameter (the cache) is not content
    previous = base
    for path in (image, params, series / "1.dcm"):  # each file the inputs name is
        time.sleep(0.05)
        path.write_bytes(path.read_bytes() + b"!")
        now = stamp()
        assert now != previous
        previous = now
