"""The ``radhe`` command line and its outputs: never an input file, never an existing file without --force,
and a bad --out refused before any work (no traceback, nothing written)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from test_cli import run_cli

from radhe.cli import main
from radhe.datasets import make_ich_cohort
from radhe.io import load_manifest


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """(folder, manifest path) of a small synthetic cohort (its manifest lists absolute paths)."""
    folder = tmp_path_factory.mktemp("outputs") / "cohort"
    make_ich_cohort(12, folder, shape=(64, 64, 12), random_state=0)
    return folder, folder / "manifest.csv"


def _copy_manifest(manifest: Path, path: Path, *, drop=(), rows=None) -> Path:
    table = load_manifest(manifest)  # absolute paths: the copy works from any folder
    table = table.drop(columns=list(drop)) if drop else table
    (table if rows is None else table.head(rows)).to_csv(path, index=False)
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("radhe: error: ") and "Traceback" not in err, err
    return err


def test_extract_refuses_to_write_over_its_manifest(cohort, tmp_path, capsys, monkeypatch):
    manifest = _copy_manifest(cohort[1], tmp_path / "manifest.csv", rows=2)
    before = manifest.read_bytes()
    for out, force in ((manifest, []), (manifest, ["--force"]), ("./manifest.csv", ["--force"])):
        monkeypatch.chdir(tmp_path)  # the same file under another spelling is still the same file
        assert main(["extract", "--manifest", str(manifest), "--out", str(out), *force]) == 1
        err = _error(capsys)
        assert "is the input manifest" in err and "choose another --out" in err
        assert "radhe: extract" not in err  # refused before extracting
    os.link(manifest, tmp_path / "hardlink.csv")  # another name of one file
    assert main(["extract", "--manifest", str(manifest), "--out", str(tmp_path / "hardlink.csv"), "--force"]) == 1
    assert "is the input manifest" in _error(capsys)
    assert manifest.read_bytes() == before


def test_extract_and_predict_replace_an_existing_table_only_with_force(cohort, tmp_path, capsys):
    manifest = _copy_manifest(cohort[1], tmp_path / "m.csv", rows=2)
    out = tmp_path / "features.csv"
    out.write_text("my earlier results\n")
    assert main(["extract", "--manifest", str(manifest), "--out", str(out)]) == 1
    err = _error(capsys)
    assert f"output file '{out}' exists; choose another --out or pass --force to replace it" in err
    assert out.read_text() == "my earlier results\n"
    assert main(["extract", "--manifest", str(manifest), "--out", str(out), "--force"]) == 0
    assert list(pd.read_csv(out)["case_id"]) == ["ich0001", "ich0002"]
    # predict: checked before the model is even looked for
    preds = tmp_path / "preds.csv"
    preds.write_text("kept\n")
    predict = ["predict", "--model", str(tmp_path / "none.skops"), "--manifest", str(manifest), "--out"]
    assert main([*predict, str(preds)]) == 1
    assert "exists; choose another --out or pass --force" in _error(capsys) and preds.read_text() == "kept\n"
    assert main([*predict, str(preds), "--force"]) == 1
    assert "model file" in _error(capsys) and preds.read_text() == "kept\n"  # got as far as the model
    assert main([*predict, str(manifest), "--force"]) == 1
    assert "is the input manifest" in _error(capsys)
    # an output that is a folder is refused before any work too
    (tmp_path / "table.csv").mkdir()
    assert main(["extract", "--manifest", str(manifest), "--out", str(tmp_path / "table.csv"), "--force"]) == 1
    assert "output file" in _error(capsys)


def test_fit_and_predict_never_write_over_their_inputs(cohort, tmp_path, capsys):
    manifest = _copy_manifest(cohort[1], tmp_path / "m.csv")
    before = manifest.read_bytes()
    # fit replaces a model file of an earlier fit, but not the manifest (it would write a model over it)
    assert main(["fit", "--manifest", str(manifest), "--out", str(manifest)]) == 1
    assert "is the input manifest" in _error(capsys) and manifest.read_bytes() == before
    model = tmp_path / "model.csv"  # a skops model, whatever its name
    assert main(["fit", "--manifest", str(manifest), "--out", str(model)]) == 0
    capsys.readouterr()
    saved = model.read_bytes()
    assert main(["predict", "--model", str(model), "--manifest", str(manifest), "--out", str(model), "--force"]) == 1
    assert "is the input model file" in _error(capsys) and model.read_bytes() == saved
    preds = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--manifest", str(manifest), "--out", str(preds)]) == 0
    first = pd.read_csv(preds)
    assert main(["predict", "--model", str(model), "--manifest", str(manifest), "--out", str(preds),
                 "--threshold", "0"]) == 1
    assert "exists" in _error(capsys)
    pd.testing.assert_frame_equal(pd.read_csv(preds), first)
    assert main(["predict", "--model", str(model), "--manifest", str(manifest), "--out", str(preds),
                 "--threshold", "0", "--force"]) == 0
    assert (pd.read_csv(preds)["predicted_class"] == 1).all()
    assert manifest.read_bytes() == before


def test_segment_never_writes_over_the_input_manifest_and_needs_force_to_replace(cohort, tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    manifest = _copy_manifest(cohort[1], folder / "manifest.csv", drop=["mask"], rows=2)  # CT only
    before = manifest.read_bytes()
    for force in ([], ["--force"]):
        assert main(["segment", "--manifest", str(manifest), "--out", str(folder), "--threads", "1", *force]) == 1
        err = _error(capsys)
        assert f"output file '{folder / 'manifest.csv'}' is the input manifest" in err
    assert manifest.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["manifest.csv"]

    out = tmp_path / "seg"
    assert main(["segment", "--manifest", str(manifest), "--out", str(out), "--threads", "1"]) == 0
    capsys.readouterr()
    (out / "segmentation.csv").write_text("reviewed by hand\n")
    assert main(["segment", "--manifest", str(manifest), "--out", str(out), "--threads", "1"]) == 1
    assert "exists; choose another --out or pass --force" in _error(capsys)
    assert (out / "segmentation.csv").read_text() == "reviewed by hand\n"
    assert main(["segment", "--manifest", str(manifest), "--out", str(out), "--threads", "1", "--force"]) == 0
    assert list(pd.read_csv(out / "segmentation.csv")["case_id"]) == ["ich0001", "ich0002"]
    # an --out that is a file
    assert main(["segment", "--manifest", str(manifest), "--out", str(manifest), "--threads", "1"]) == 1
    assert "output folder" in _error(capsys) and manifest.read_bytes() == before


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_evaluate_and_report_refuse_a_bad_out_before_cross_validating(command, cohort, tmp_path):
    """The console script, as a user runs it: one error line, no traceback, no fold run, nothing changed."""
    results = tmp_path / "results"
    results.write_text("not a folder\n")
    common = ["--manifest", cohort[1], "--folds", "2", "--bootstrap", "20", "--threshold-cv", "0"]
    out = run_cli(command, *common, "--out", results)
    assert out.returncode == 1
    assert out.stderr == f"radhe: error: output folder '{results}' is a file; choose another --out\n"
    out = run_cli(command, *common, "--out", results / "sub")
    assert out.returncode == 1
    assert out.stderr == (f"radhe: error: cannot create the output folder '{results / 'sub'}': '{results}' "
                          "is a file\n")
    assert results.read_text() == "not a folder\n"
    # a manifest named like one of the outputs, in the --out folder
    folder = tmp_path / "run"
    folder.mkdir()
    manifest = _copy_manifest(cohort[1], folder / "predictions.csv")
    before = manifest.read_bytes()
    out = run_cli(command, *common[2:], "--manifest", manifest, "--out", folder)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"radhe: error: output file '{manifest}' is the input manifest")
    assert manifest.read_bytes() == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_failed_write_is_an_error_naming_the_file(cohort, tmp_path, capsys):
    manifest = _copy_manifest(cohort[1], tmp_path / "m.csv", rows=2)
    full = tmp_path / "full.csv"
    full.symlink_to("/dev/full")  # every write fails: "No space left on device"
    assert main(["extract", "--manifest", str(manifest), "--out", str(full), "--force"]) == 1
    assert f"radhe: error: cannot write '{full}': No space left on device" in _error(capsys)


@pytest.mark.parametrize("command", ["extract", "segment", "predict"])
def test_force_is_offered_where_outputs_are_protected(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--force" in capsys.readouterr().out
