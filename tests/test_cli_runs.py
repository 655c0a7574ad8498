"""Runs of the command lines as a user has them: an outcome column of their own name, Ctrl-C, a folder that
held an earlier run, an interrupted ``synth --force``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from radhe_pipelines import _common
from sklearn.base import BaseEstimator, ClassifierMixin

from radhe.cli import EXIT_INTERRUPTED, main
from radhe.datasets import make_ich_cohort
from radhe.errors import InputError
from radhe.io import load_manifest


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Path of the manifest of a small synthetic cohort (absolute paths)."""
    folder = tmp_path_factory.mktemp("runs") / "cohort"
    make_ich_cohort(16, folder, shape=(64, 64, 12), random_state=0)
    return folder / "manifest.csv"


# ------------------------------------------------------------------ an outcome column of another name
SEEN_COLUMNS: list = []


class ColumnRecorder(ClassifierMixin, BaseEstimator):
    """A classifier that records the columns of every table it is fitted on (and predicts the prevalence)."""

    def fit(self, X, y):
        SEEN_COLUMNS.append(list(X.columns))
        self.classes_ = np.array([0, 1])
        self.prevalence_ = float(np.mean(y))
        return self

    def predict_proba(self, X):
        return np.tile([1 - self.prevalence_, self.prevalence_], (len(X), 1))


def _recording_module():
    return types.SimpleNamespace(NAME="recorder", TITLE="records its columns", BASELINES=False, EXPLAIN=False,
                                 build_pipeline=lambda random_state=None: ColumnRecorder())


def test_a_pipeline_run_leaves_an_outcome_of_another_name_out_of_the_features(cohort, tmp_path):
    manifest = load_manifest(cohort).rename(columns={"he": "expansion"})  # a lab's own name for the outcome
    SEEN_COLUMNS.clear()
    run = _common.run_pipeline(_recording_module(), manifest, out=tmp_path / "out", folds=2, label="expansion",
                               threshold_cv=None, n_bootstrap=20, verbose=False)
    assert SEEN_COLUMNS and all("expansion" not in columns for columns in SEEN_COLUMNS)
    assert all("gcs" in columns for columns in SEEN_COLUMNS)  # the other columns are kept
    assert list(run["result"].main.predictions.frame["y"]) == list(manifest["expansion"])
    assert "expansion" in manifest.columns  # the caller's table is not changed


@pytest.mark.parametrize("recode, expected", [
    (lambda he: he + 1, "must be 0/1"),                        # 1 = no expansion, 2 = expansion
    (lambda he: he * 0.8 + 0.1, "must be 0/1"),                 # a probability column by mistake
    (lambda he: he.where(he.index > 2), "is missing for 3 of 16 cases"),
])
def test_a_pipeline_refuses_an_outcome_that_is_not_0_1_before_fitting(cohort, tmp_path, capsys, recode, expected):
    manifest = load_manifest(cohort)
    manifest["coded"] = recode(manifest["he"])
    path = tmp_path / "coded.csv"
    manifest.to_csv(path, index=False)
    from radhe_pipelines import default

    assert default.main(["--manifest", str(path), "--label", "coded", "--out", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m radhe_pipelines.default: error: ") and expected in err and "coded" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "metrics.json").exists()
    with pytest.raises(InputError, match="has no outcome column 'nope'"):
        _common.run_pipeline(_recording_module(), manifest, out=tmp_path / "o2", label="nope", verbose=False)


# ------------------------------------------------------------------------------------------- Ctrl-C
def _interrupted(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``command``, send it SIGINT (Ctrl-C) once it reports progress, and return how it ended."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a test run started in the background of a shell (CI) ignores SIGINT, and its children inherit that:
    # the command gets the default disposition back, as in a terminal
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    progress = process.stderr.readline()  # the first progress line: the command is at work
    assert progress, "the command ended before reporting progress"
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, out, progress + err)


# commands that run for minutes (thousands of small synthetic cases) and report progress at once
LONG_COMMANDS = {
    "radhe": [sys.executable, "-m", "radhe", "synth", "-n", "5000", "--shape", "48", "48", "8", "-j", "1",
              "--out", "cohort"],
    "pipeline": [sys.executable, "-m", "radhe_pipelines.default", "-n", "5000", "--shape", "48", "48", "8",
                 "--out", "pl"],
}


@pytest.mark.parametrize("name", sorted(LONG_COMMANDS))
def test_ctrl_c_ends_a_command_with_one_line_and_status_130(name, tmp_path):
    ended = _interrupted(LONG_COMMANDS[name], tmp_path)
    assert ended.returncode == EXIT_INTERRUPTED == 130, ended.stderr
    assert "Traceback" not in ended.stderr
    assert ended.stderr.rstrip().splitlines()[-1].endswith(": interrupted")


# ------------------------------------------------------------------------- a folder of an earlier run
def test_evaluate_into_a_report_folder_removes_the_earlier_report_only(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    settings = ["--manifest", str(cohort), "--out", str(out), "--folds", "2", "--bootstrap", "20",
                "--threshold-cv", "0"]
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "my-figure-1.png").write_bytes(b"a figure of the user's")
    (out / "figures" / "roc-curve-draft.svg").write_text("<svg/>")
    assert main(["report", *settings, "--no-explain"]) == 0
    assert (out / "report.html").is_file() and (out / "figures" / "roc-curve.svg").is_file()
    assert main(["evaluate", *settings, "--seed", "5"]) == 0
    # the earlier page and figures described another run; metrics.json is this one's; the user's files stay
    assert not (out / "report.html").exists() and not (out / "figures" / "roc-curve.svg").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["my-figure-1.png", "roc-curve-draft.svg"]
    assert json.loads((out / "metrics.json").read_text())["main"]["n"] == 16
    (out / "report.html").write_text("<html><body>my own notes</body></html>")  # not a radhe report: kept
    assert main(["evaluate", *settings]) == 0
    assert (out / "report.html").read_text() == "<html><body>my own notes</body></html>"
    capsys.readouterr()


def test_a_report_replaces_only_the_figures_it_wrote(tmp_path):
    from radhe.report import FIGURE_LISTING, remove_figures

    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "waterfall-ich9999.png").write_bytes(b"an earlier report's figure")
    (folder / "photo.png").write_bytes(b"the user's")
    (folder / FIGURE_LISTING).write_text("waterfall-ich9999.png\n../outside.png\n")
    (tmp_path / "outside.png").write_bytes(b"never removed: not in the folder")
    assert remove_figures(folder) == [folder / "waterfall-ich9999.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["photo.png"] and (tmp_path / "outside.png").exists()
    assert remove_figures(folder) == []  # no listing: nothing removed
    (folder / "photo.png").unlink()
    (folder / FIGURE_LISTING).write_text("gone.png\n")
    remove_figures(folder)
    assert not folder.exists()  # emptied: the folder goes too


def test_an_interrupted_synth_force_leaves_no_manifest_of_the_earlier_cohort(tmp_path):
    out = tmp_path / "cohort"
    make_ich_cohort(3, out, shape=(48, 48, 8), random_state=0)
    assert (out / "manifest.csv").is_file()
    ended = _interrupted([*LONG_COMMANDS["radhe"], "--seed", "1", "--force"], tmp_path)
    assert ended.returncode == EXIT_INTERRUPTED, ended.stderr
    # new images are written; a manifest of the seed-0 cohort beside them would pair its labels with them
    assert not (out / "manifest.csv").exists() and not (out / "oracle.csv").exists()
    assert main(["validate", "--manifest", str(out / "manifest.csv")]) == 1


@pytest.mark.parametrize("name", ["default", "xu2021"])
@pytest.mark.parametrize("flags", [["-n", "30"], ["--shape", "64", "64", "12"]])
def test_a_pipeline_refuses_cohort_settings_it_would_ignore(name, flags, cohort, tmp_path, capsys):
    import importlib

    module = importlib.import_module(f"radhe_pipelines.{name}")
    assert module.main(["--manifest", str(cohort), "--out", str(tmp_path / "out"), *flags]) == 1
    err = capsys.readouterr().err
    assert f"python -m radhe_pipelines.{name}: error: " in err and "would be ignored" in err
    assert not (tmp_path / "out").exists()


def test_the_command_line_shows_warnings_without_library_source_lines(cohort, tmp_path):
    manifest = load_manifest(cohort)
    manifest["note"] = [f"free text {i}" for i in range(len(manifest))]  # left out, with a warning
    path = tmp_path / "m.csv"
    manifest.to_csv(path, index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ended = subprocess.run([sys.executable, "-m", "radhe", "-q", "fit", "--manifest", str(path), "--out",
                            str(tmp_path / "m.skops")], capture_output=True, text=True, env=env, timeout=600)
    assert ended.returncode == 0, ended.stderr
    assert "radhe: warning: UserWarning: ClinicalFeatures: column(s) not used: 'note'" in ended.stderr
    assert ".py:" not in ended.stderr  # not "site-packages/sklearn/base.py:972:" and its source line
