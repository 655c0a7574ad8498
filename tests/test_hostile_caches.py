"""Hostile caches, workers and model files (issue 11 §3): each gives a named radhe error or the clean result.

One table: every entry builds a hostile situation on real files in ``tmp_path`` (a cache folder
that is a file, an entry that is a folder or a FIFO, images overwritten at the same paths with
their modification time set back, a crafted model file, ...) and says what must happen:

* ``Error(cls, match)``: that radhe error, with a message naming the problem;
* ``Same()``: the scenario returns ``(hostile, clean)`` results, which must be identical (and
  differ from the stale result the bug gave, where the scenario returns one).

Below the table: worker processes of a parallel extraction end when their parent is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from conftest import make_ct_volume

import radhe
from radhe.cache import FeatureCache
from radhe.errors import ConfigurationError, InputError
from radhe.features.radiomics import RadiomicsFeatures
from radhe.persistence import load_model, save_model

PARAMS = {  # a few features: these tests are about caches, not values
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": ["Mean", "Energy", "Maximum"], "glcm": ["Contrast"], "shape": ["MeshVolume"]},
}
N_CASES = 8


# ------------------------------------------------------------------------------------ helpers

def write_cohort(folder: Path, shift: float = 0.0) -> pd.DataFrame:
    """Tiny CT volumes and masks in ``folder``; ``shift`` (HU) is added inside the haematoma."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(N_CASES):
        image, mask = make_ct_volume(shape=(8, 32, 32), seed=i, blob_radius_vox=4 + i % 3)
        write_case(image, mask, folder / f"img{i}.nii", folder / f"msk{i}.nii", shift * (1 if i % 2 else -1))
        rows.append({"case_id": f"c{i}", "patient_id": f"p{i}", "image": str(folder / f"img{i}.nii"),
                     "mask": str(folder / f"msk{i}.nii"), "he": int(i % 2 == 1)})
    return pd.DataFrame(rows)


def write_case(image, mask, image_path: Path, mask_path: Path, shift: float) -> None:
    if shift:
        array = sitk.GetArrayFromImage(image).astype(np.int16)
        array[sitk.GetArrayFromImage(mask) > 0] += np.int16(shift)
        shifted = sitk.GetImageFromArray(array)
        shifted.CopyInformation(image)
        image = shifted
    sitk.WriteImage(image, str(image_path))
    sitk.WriteImage(mask, str(mask_path))


def overwrite_images(manifest: pd.DataFrame, shift: float, *, keep_mtime: bool) -> None:
    """Rewrite every image at its path with other intensities (same size); optionally set its mtime back."""
    for i, path in enumerate(manifest["image"]):
        before = os.stat(path)
        image, mask = make_ct_volume(shape=(8, 32, 32), seed=i, blob_radius_vox=4 + i % 3)
        array = sitk.GetArrayFromImage(image).astype(np.int16)
        array[sitk.GetArrayFromImage(mask) > 0] += np.int16(shift * (1 if i % 2 else -1))
        new = sitk.GetImageFromArray(array)
        new.CopyInformation(image)
        sitk.WriteImage(new, path)
        assert os.stat(path).st_size == before.st_size  # only the content differs
        if keep_mtime:  # what cp --preserve, rsync -t or unpacking an archive do
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            assert os.stat(path).st_mtime_ns == before.st_mtime_ns


def small_pipeline(**kwargs):
    return radhe.make_pipeline(radiomics=kwargs.pop("radiomics", PARAMS), clinical=None, fusion="concat",
                               random_state=0, **kwargs)


def fitted_scores(manifest, **kwargs) -> np.ndarray:
    return small_pipeline(**kwargs).fit(manifest, manifest["he"]).predict_proba(manifest)[:, 1]


def extract(manifest, cache=None, params=PARAMS) -> pd.DataFrame:
    return RadiomicsFeatures(params, cache=cache).fit_transform(manifest)


def a_cache_entry(cache: Path) -> Path:
    return sorted(cache.glob("*/*.npz"))[0]


@dataclass
class Error:
    cls: type
    match: str


@dataclass
class Same:
    pass


# ------------------------------------------------------------------------------- the scenarios

def cache_folder_is_a_file(tmp_path, manifest):
    (tmp_path / "cache").write_text("not a folder")
    extract(manifest, cache=tmp_path / "cache")


def cache_folder_inside_a_file(tmp_path, manifest):
    (tmp_path / "cache").write_text("not a folder")
    extract(manifest, cache=tmp_path / "cache" / "radiomics")


def cache_entry_is_a_folder(tmp_path, manifest):
    extract(manifest, cache=tmp_path / "cache")
    entry = a_cache_entry(tmp_path / "cache")
    entry.unlink()
    entry.mkdir()
    extract(manifest, cache=tmp_path / "cache")


def cache_entry_is_a_fifo(tmp_path, manifest):
    extract(manifest, cache=tmp_path / "cache")
    entry = a_cache_entry(tmp_path / "cache")
    entry.unlink()
    os.mkfifo(entry)  # reading it would block forever
    extract(manifest, cache=tmp_path / "cache")


def cache_subfolder_is_a_file(tmp_path, manifest):
    extract(manifest, cache=tmp_path / "cache")
    shard = a_cache_entry(tmp_path / "cache").parent
    for file in shard.iterdir():
        file.unlink()
    shard.rmdir()
    shard.write_text("not a folder")
    extract(manifest, cache=tmp_path / "cache")


def cache_entry_garbage(tmp_path, manifest):
    first = extract(manifest, cache=tmp_path / "cache")
    a_cache_entry(tmp_path / "cache").write_bytes(b"PK\x03\x04 not really a zip")
    return extract(manifest, cache=tmp_path / "cache"), first


def image_overwritten_mtime_kept_radiomics_cache(tmp_path, manifest):
    stale = extract(manifest, cache=tmp_path / "cache")
    overwrite_images(manifest, 40.0, keep_mtime=True)
    return extract(manifest, cache=tmp_path / "cache"), extract(manifest), stale


def memory_is_a_file(tmp_path, manifest):
    (tmp_path / "memory").write_text("not a folder")
    fitted_scores(manifest, memory=tmp_path / "memory", radiomics_cache=None)


def memory_joblib_folder_is_a_file(tmp_path, manifest):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "joblib").write_text("not a folder")
    fitted_scores(manifest, memory=tmp_path / "memory", radiomics_cache=None)


def memory_images_overwritten(tmp_path, manifest):
    # the report: joblib hashed the path strings, so the refit returned the first model
    stale = fitted_scores(manifest, memory=tmp_path / "memory", radiomics_cache=None)
    overwrite_images(manifest, 40.0, keep_mtime=False)
    return fitted_scores(manifest, memory=tmp_path / "memory", radiomics_cache=None), fitted_scores(manifest), stale


def memory_images_overwritten_mtime_kept(tmp_path, manifest):
    stale = fitted_scores(manifest, memory=tmp_path / "memory")  # and the per-case cache <memory>/radiomics
    overwrite_images(manifest, 40.0, keep_mtime=True)
    return fitted_scores(manifest, memory=tmp_path / "memory"), fitted_scores(manifest), stale


def memory_parameter_file_edited(tmp_path, manifest):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    stale = fitted_scores(manifest, radiomics=str(params), memory=tmp_path / "memory", radiomics_cache=None)
    other = {**PARAMS, "featureClass": {"firstorder": ["Minimum", "Median", "Skewness"], "shape": ["Sphericity"]}}
    params.write_text(yaml.safe_dump(other))
    return (fitted_scores(manifest, radiomics=str(params), memory=tmp_path / "memory", radiomics_cache=None),
            fitted_scores(manifest, radiomics=other), stale)


def memory_entry_damaged(tmp_path, manifest):
    first = fitted_scores(manifest, memory=tmp_path / "memory", radiomics_cache=None)
    outputs = sorted((tmp_path / "memory").rglob("output.pkl"))
    assert outputs
    for output in outputs:
        output.write_bytes(b"garbage")
    return fitted_scores(manifest, memory=tmp_path / "memory", radiomics_cache=None), first


def fitted_model(tmp_path, manifest, **kwargs):
    return small_pipeline(radiomics_cache=tmp_path / "rcache", **kwargs).fit(manifest, manifest["he"])


def model_file_truncated(tmp_path, manifest):
    path = save_model(fitted_model(tmp_path, manifest), tmp_path / "model.skops")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    load_model(path)


def model_member_damaged(tmp_path, manifest):
    path = save_model(fitted_model(tmp_path, manifest), tmp_path / "model.skops")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["schema.json"] = members["schema.json"][:-200]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    load_model(path)


def model_pickle_named_skops(tmp_path, manifest):
    import joblib

    joblib.dump(fitted_model(tmp_path, manifest), tmp_path / "model.skops")  # a pickle, whatever its name
    load_model(tmp_path / "model.skops")


def model_names_os_system(tmp_path, manifest):
    import skops.io as sio
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # a model that would run a shell command at predict time
    sio.dump(sk_pipeline(FunctionTransformer(os.system)), tmp_path / "evil.skops")
    load_model(tmp_path / "evil.skops")


def model_names_numpy_load(tmp_path, manifest):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    # numpy is trusted, its file readers are not
    sio.dump(FunctionTransformer(np.load, kw_args={"allow_pickle": True}), tmp_path / "reader.skops")
    load_model(tmp_path / "reader.skops")


def model_path_is_a_folder(tmp_path, manifest):
    (tmp_path / "model.skops").mkdir()
    load_model(tmp_path / "model.skops")


def save_over_a_folder(tmp_path, manifest):
    (tmp_path / "model.skops").mkdir()
    save_model(fitted_model(tmp_path, manifest), tmp_path / "model.skops")


def save_format_contradicts_suffix(tmp_path, manifest):
    save_model(fitted_model(tmp_path, manifest), tmp_path / "model.skops", format="joblib")


def model_cache_folder_deleted(tmp_path, manifest):
    import shutil

    model = fitted_model(tmp_path, manifest, memory=tmp_path / "memory")
    path = save_model(model, tmp_path / "model.skops")
    shutil.rmtree(tmp_path / "rcache")
    shutil.rmtree(tmp_path / "memory")
    scores = load_model(path).predict_proba(manifest)[:, 1]
    assert not (tmp_path / "rcache").exists() and not (tmp_path / "memory").exists()
    return scores, model.predict_proba(manifest)[:, 1]


CASES = [
    ("cache-folder-is-a-file", cache_folder_is_a_file, Error(ConfigurationError, "is a file, not a folder")),
    ("cache-folder-inside-a-file", cache_folder_inside_a_file, Error(ConfigurationError, "which is a file")),
    ("cache-entry-is-a-folder", cache_entry_is_a_folder, Error(ConfigurationError, r"\.npz' is a folder")),
    ("cache-entry-is-a-fifo", cache_entry_is_a_fifo, Error(ConfigurationError, "not a regular file")),
    ("cache-subfolder-is-a-file", cache_subfolder_is_a_file, Error(ConfigurationError, "is a file, not a folder")),
    ("cache-entry-garbage", cache_entry_garbage, Same()),
    ("image-overwritten-mtime-kept", image_overwritten_mtime_kept_radiomics_cache, Same()),
    ("memory-is-a-file", memory_is_a_file, Error(ConfigurationError, "memory folder .* is a file")),
    ("memory-joblib-is-a-file", memory_joblib_folder_is_a_file, Error(ConfigurationError, "joblib' is a file")),
    ("memory-images-overwritten", memory_images_overwritten, Same()),
    ("memory-images-overwritten-mtime-kept", memory_images_overwritten_mtime_kept, Same()),
    ("memory-parameter-file-edited", memory_parameter_file_edited, Same()),
    ("memory-entry-damaged", memory_entry_damaged, Same()),
    ("model-file-truncated", model_file_truncated, Error(InputError, "not a skops model file")),
    ("model-member-damaged", model_member_damaged, Error(InputError, "damaged skops model file")),
    ("model-pickle-named-skops", model_pickle_named_skops, Error(InputError, "not a skops model file")),
    ("model-names-os-system", model_names_os_system, Error(InputError, r"does not trust: \['posix.system'\]")),
    ("model-names-numpy-load", model_names_numpy_load, Error(InputError, "does not trust: .*numpy.*load")),
    ("model-path-is-a-folder", model_path_is_a_folder, Error(InputError, "not a file")),
    ("save-over-a-folder", save_over_a_folder, Error(ConfigurationError, "it is a folder")),
    ("save-format-contradicts-suffix", save_format_contradicts_suffix, Error(ConfigurationError, "suffix")),
    ("model-cache-folders-deleted", model_cache_folder_deleted, Same()),
]


@pytest.mark.parametrize(("scenario", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input(scenario, expected, tmp_path):
    manifest = write_cohort(tmp_path / "data")
    if isinstance(expected, Error):
        with pytest.raises(expected.cls, match=expected.match) as info:
            scenario(tmp_path, manifest)
        assert not isinstance(info.value, OSError)  # never a bare NotADirectoryError & co.
        return
    hostile, clean, *stale = scenario(tmp_path, manifest)
    _assert_same(hostile, clean)
    if stale:  # the input really changed: the result a stale cache would give is another one
        assert not _equal(stale[0], clean)


def _equal(a, b) -> bool:
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    return np.array_equal(np.asarray(a), np.asarray(b))


def _assert_same(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        np.testing.assert_array_equal(a, b)


def test_table_is_large_enough():
    assert len(CASES) >= 8 and len({c[0] for c in CASES}) == len(CASES)


def test_untouched_memory_is_reused(tmp_path, monkeypatch):
    """The content stamp does not defeat the cache: unchanged files are not extracted again."""
    import radhe.features._radiomics_engine as engine

    manifest = write_cohort(tmp_path / "data")
    calls = []
    original = engine.extract_case
    monkeypatch.setattr(engine, "extract_case", lambda *a, **k: (calls.append(a[0]), original(*a, **k))[1])

    def fit():
        calls.clear()
        model = small_pipeline(memory=tmp_path / "memory", radiomics_cache=None).fit(manifest, manifest["he"])
        return model, len(calls)

    first, extracted = fit()
    assert extracted == N_CASES
    again, extracted = fit()
    assert extracted == 0  # the feature step came from the memory
    np.testing.assert_array_equal(first.predict_proba(manifest), again.predict_proba(manifest))
    os.utime(manifest["image"].iloc[0])  # touched: the stamp changes, the feature step is refitted
    assert fit()[1] == N_CASES


def test_cache_entry_error_names_the_file(tmp_path):
    manifest = write_cohort(tmp_path / "data")
    extract(manifest, cache=tmp_path / "cache")
    entry = a_cache_entry(tmp_path / "cache")
    entry.unlink()
    entry.mkdir()
    with pytest.raises(ConfigurationError) as info:
        extract(manifest, cache=tmp_path / "cache")
    assert str(entry) in str(info.value) and "remove it" in str(info.value)
    assert len(FeatureCache(tmp_path / "cache")) == N_CASES - 1  # nothing else was touched


# ------------------------------------------------------------------- workers of a killed parent

WORKER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from radhe.parallel import run_tasks

    def work(i, record):
        # the first two tasks (this process, timed) make the batch long enough to start the pool; every
        # other one records who runs it and stays busy, so the workers are busy when the parent is killed
        if i < 2:
            time.sleep(1.0)
            return os.getpid()
        with open(record, "a") as out:
            out.write(f"{os.getpid()}\\n")
        time.sleep(300)
        return os.getpid()

    for _, pid in run_tasks(work, [(i, sys.argv[1]) for i in range(8)], n_jobs=2):
        pass
""")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        import psutil
    except ImportError:  # /proc: the state is the field after the parenthesised name
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _kill_leftovers(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks processes through Linux semantics")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_end_when_their_parent_is_killed(tmp_path, sig):
    script = tmp_path / "parent.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    record = tmp_path / "pids.txt"
    record.touch()
    parent = subprocess.Popen([sys.executable, str(script), str(record)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    workers = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2:
            assert parent.poll() is None, f"the parent exited ({parent.poll()}) before both workers reported"
            assert time.monotonic() < deadline, "two worker processes did not start within 60 s"
            workers = {int(line) for line in record.read_text().split()} - {parent.pid}
            time.sleep(0.05)
        assert os.getpid() not in workers
        assert all(_alive(p) for p in workers)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        left = _wait_gone(workers, 10.0)
        assert not left, f"worker processes {left} outlived their parent by 10 s"
    finally:
        if parent.poll() is None:
            parent.kill()
        _kill_leftovers(workers)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks processes through Linux semantics")
def test_radhe_extract_workers_end_when_it_is_killed(tmp_path):
    """The issue's report, end to end: ``radhe extract -j 2`` killed with SIGKILL leaves no worker behind."""
    psutil = pytest.importorskip("psutil")
    image, mask = make_ct_volume(shape=(24, 160, 160), seed=0, blob_radius_vox=20)
    sitk.WriteImage(image, str(tmp_path / "img.nii"))
    sitk.WriteImage(mask, str(tmp_path / "msk.nii"))
    pd.DataFrame({"case_id": [f"c{i}" for i in range(400)], "image": str(tmp_path / "img.nii"),
                  "mask": str(tmp_path / "msk.nii")}).to_csv(tmp_path / "m.csv", index=False)
    exe = Path(sys.executable).with_name("radhe")
    parent = subprocess.Popen([str(exe), "--quiet", "extract", "--manifest", str(tmp_path / "m.csv"), "--out",
                               str(tmp_path / "f.csv"), "-j", "2"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parent.poll() is None:
            children = psutil.Process(parent.pid).children(recursive=True)
            workers = [c.pid for c in children if "popen_loky_posix" in " ".join(c.cmdline())]
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2 and parent.poll() is None, "extraction ended before its workers were seen"
        time.sleep(1.0)  # the workers are extracting
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        left = _wait_gone(workers, 10.0)
        assert not left, f"worker processes {left} outlived `radhe extract` by 10 s"
    finally:
        if parent.poll() is None:
            parent.kill()
        _kill_leftovers(workers)
