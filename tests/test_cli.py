"""The ``radhe`` command line: every command, its --help, and its bad-input paths (exit codes, messages)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from radhe.cli import main
from radhe.io import load_manifest

COMMANDS = ["synth", "validate", "segment", "extract", "fit", "predict", "evaluate", "report", "demo"]


def run_cli(*args):
    """Run the installed console script in a subprocess, as a user would."""
    exe = shutil.which("radhe") or str(__import__("pathlib").Path(sys.executable).with_name("radhe"))
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, encoding="utf-8", timeout=600)


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: radhe {command}" in capsys.readouterr().out


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--manifest"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cli_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cohort"
    result = run_cli("synth", "--out", out, "-n", 24, "--shape", 96, 96, 16, "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert "wrote 24 cases" in result.stdout
    return out


def test_synth_writes_a_loadable_cohort(cli_cohort):
    manifest = pd.read_csv(cli_cohort / "manifest.csv")
    assert len(manifest) == 24
    assert (cli_cohort / "oracle.csv").exists()
    assert "he_risk" not in manifest.columns


def test_validate_ok_and_bad_file(cli_cohort, tmp_path, capsys):
    assert main(["validate", "--manifest", str(cli_cohort / "manifest.csv")]) == 0
    assert "24 cases: 24 valid, 0 skipped" in capsys.readouterr().out

    manifest = load_manifest(cli_cohort / "manifest.csv")  # absolute paths
    manifest.loc[2, "image"] = str(tmp_path / "gone.nii")
    broken = tmp_path / "broken.csv"
    manifest.to_csv(broken, index=False)
    assert main(["validate", "--manifest", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("radhe: error: case 'ich0003': file not found")
    # skipping cases is not success: exit 3 (scripts notice), unless the user says it is fine
    assert main(["validate", "--manifest", str(broken), "--skip"]) == 3
    captured = capsys.readouterr()
    assert "skipped case 'ich0003': file not found" in captured.out and "1 case(s) skipped" in captured.err
    assert main(["validate", "--manifest", str(broken), "--skip", "--allow-skipped"]) == 0
    capsys.readouterr()
    # --label checks the outcome too
    assert main(["validate", "--manifest", str(cli_cohort / "manifest.csv"), "--label", "he"]) == 0
    assert "outcome 'he':" in capsys.readouterr().out
    manifest = load_manifest(cli_cohort / "manifest.csv")
    manifest["outcome"] = ["yes" if i == 4 else v for i, v in enumerate(manifest["he"])]
    manifest.to_csv(tmp_path / "text_label.csv", index=False)
    assert main(["validate", "--manifest", str(tmp_path / "text_label.csv"), "--label", "outcome"]) == 1
    err = capsys.readouterr().err
    assert "the outcome 'outcome' must be 0/1" in err and "'yes' (case 'ich0005')" in err
    manifest["outcome"] = 0  # a single class: refused before anything is read
    manifest.to_csv(tmp_path / "one_class.csv", index=False)
    assert main(["validate", "--manifest", str(tmp_path / "one_class.csv"), "--label", "outcome"]) == 1
    assert "class" in capsys.readouterr().err


def test_synth_refuses_a_folder_that_is_not_empty(cli_cohort, capsys):
    before = sorted(p.name for p in cli_cohort.iterdir())
    assert main(["synth", "--out", str(cli_cohort), "-n", "2", "--shape", "32", "32", "8"]) == 1
    assert "is not empty; choose another or pass --force" in capsys.readouterr().err
    assert sorted(p.name for p in cli_cohort.iterdir()) == before


def test_pipeline_help_lists_the_pipelines(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in ("default", "zhong2021", "teng2021", "bo2023", "xu2021", "ohkita"):
        assert name in out


def test_missing_manifest_and_missing_columns(tmp_path, capsys):
    assert main(["validate", "--manifest", str(tmp_path / "none.csv")]) == 1
    assert "manifest file not found" in capsys.readouterr().err
    pd.DataFrame({"case_id": ["a"], "image": ["a.nii"]}).to_csv(tmp_path / "m.csv", index=False)
    assert main(["fit", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "x.joblib")]) == 1
    assert "has no outcome column 'he'" in capsys.readouterr().err
    assert main(["extract", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "f.parquet")]) == 1
    assert "has no mask column 'mask'" in capsys.readouterr().err


def test_unknown_pipeline_is_refused_with_the_available_names(cli_cohort, tmp_path, capsys):
    code = main(["fit", "--manifest", str(cli_cohort / "manifest.csv"), "--pipeline", "nope",
                 "--out", str(tmp_path / "m.joblib")])
    assert code == 1
    err = capsys.readouterr().err
    assert "unknown pipeline 'nope'" in err and "default" in err


def test_extract_writes_features_and_records_failures(cli_cohort, tmp_path, capsys):
    manifest = load_manifest(cli_cohort / "manifest.csv").head(4)
    manifest.loc[1, "mask"] = str(tmp_path / "missing_mask.nii")
    path = tmp_path / "four.csv"
    manifest.to_csv(path, index=False)
    assert main(["extract", "--manifest", str(path), "--out", str(tmp_path / "f.parquet")]) == 1
    assert "case 'ich0002'" in capsys.readouterr().err
    assert main(["extract", "--manifest", str(path), "--out", str(tmp_path / "f.parquet"), "--skip"]) == 0
    printed = capsys.readouterr().out
    assert "1 case(s) failed" in printed
    features = pd.read_parquet(tmp_path / "f.parquet")
    assert f"4 cases x {features.shape[1] - 1} features" in printed
    assert list(features["case_id"]) == ["ich0001", "ich0002", "ich0003", "ich0004"]
    assert features.filter(like="radiomics__").iloc[1].isna().all()
    assert features.filter(like="radiomics__").drop(index=1).notna().all().all()
    assert "radiomics__original_shape_MeshVolume" in features.columns
    # the suffix names the format: .csv is CSV (not Parquet bytes), .tsv tab-separated, others refused
    assert main(["extract", "--manifest", str(path), "--out", str(tmp_path / "f.csv"), "--skip",
                 "--label", "he"]) == 0
    table = pd.read_csv(tmp_path / "f.csv")
    assert list(table.columns[:2]) == ["case_id", "he"] and len(table) == 4
    assert f"4 cases x {features.shape[1] - 1} features" in capsys.readouterr().out  # the outcome is no feature
    assert main(["extract", "--manifest", str(path), "--out", str(tmp_path / "f.tsv"), "--skip"]) == 0
    assert pd.read_csv(tmp_path / "f.tsv", sep="\t").shape == (4, features.shape[1])
    capsys.readouterr()
    assert main(["extract", "--manifest", str(path), "--out", str(tmp_path / "f.xlsx"), "--skip"]) == 1
    assert "name a table file ending in .csv, .tsv, .parquet" in capsys.readouterr().err
    assert not (tmp_path / "f.xlsx").exists()


def test_segment_writes_masks_a_manifest_listing_them_and_their_records(cli_cohort, tmp_path, capsys,
                                                                         monkeypatch):
    """CTs without masks → the shipped segmenter's masks, a manifest `radhe extract` reads, one record per case."""
    manifest = load_manifest(cli_cohort / "manifest.csv").head(3)
    path = tmp_path / "ct_only.csv"
    manifest.drop(columns="mask").to_csv(path, index=False)
    assert main(["segment", "--manifest", str(path), "--out", str(tmp_path / "seg"), "--threads", "1"]) == 0
    assert "segmented 3 cases" in capsys.readouterr().out
    written = load_manifest(tmp_path / "seg" / "manifest.csv")
    assert list(written["case_id"]) == list(manifest["case_id"]) and written["mask"].map(
        lambda p: __import__("pathlib").Path(p).is_file()).all()
    records = pd.read_csv(tmp_path / "seg" / "segmentation.csv")
    assert list(records["case_id"]) == list(manifest["case_id"])
    assert set(records["status"]) <= {"ok", "fallback", "empty"} and (records["volume_ml"] >= 0).all()
    # the predicted masks feed extraction directly
    assert main(["extract", "--manifest", str(tmp_path / "seg" / "manifest.csv"),
                 "--out", str(tmp_path / "features.csv"), "--skip"]) == 0
    assert len(pd.read_csv(tmp_path / "features.csv")) == 3
    # a relative --out (as in the docs): the written manifest still finds its masks, and validates
    monkeypatch.chdir(tmp_path)
    assert main(["segment", "--manifest", str(path), "--out", "relative", "--threads", "1"]) == 0
    relative = load_manifest(tmp_path / "relative" / "manifest.csv")
    assert relative["mask"].map(lambda p: __import__("pathlib").Path(p).is_file()).all()
    assert main(["validate", "--manifest", "relative/manifest.csv", "--skip", "--allow-skipped"]) == 0
    # a manifest that already has the column is refused, naming it
    capsys.readouterr()
    assert main(["segment", "--manifest", str(cli_cohort / "manifest.csv"), "--out", str(tmp_path / "s2")]) == 1
    assert "already has a column 'mask'" in capsys.readouterr().err


def test_fit_saves_a_model_that_predicts(cli_cohort, tmp_path):
    model_path = tmp_path / "model.joblib"
    result = run_cli("fit", "--manifest", cli_cohort / "manifest.csv", "--out", model_path)
    assert result.returncode == 0, result.stderr
    model = joblib.load(model_path)
    manifest = load_manifest(cli_cohort / "manifest.csv")
    proba = model.predict_proba(manifest.head(5))
    assert proba.shape == (5, 2)


def test_predict_applies_a_fitted_model_to_new_cases(cli_cohort, tmp_path, capsys):
    manifest = load_manifest(cli_cohort / "manifest.csv")
    manifest.iloc[:16].to_csv(tmp_path / "train.csv", index=False)
    manifest.iloc[16:].drop(columns=["he"]).to_csv(tmp_path / "new.csv", index=False)  # new cases: no outcome
    assert main(["fit", "--manifest", str(tmp_path / "train.csv"), "--out", str(tmp_path / "m.joblib")]) == 0
    # fitted with a temporary cache folder (no --cache), saved without it
    assert b"radhe-cache-" not in (tmp_path / "m.joblib").read_bytes()
    assert main(["predict", "--model", str(tmp_path / "m.joblib"), "--manifest", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "preds.csv"), "--threshold", "0.3"]) == 0
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert preds["case_id"].tolist() == manifest["case_id"].iloc[16:].tolist()
    expected = joblib.load(tmp_path / "m.joblib").predict_proba(load_manifest(tmp_path / "new.csv"))[:, 1]
    assert np.allclose(preds["probability"], expected, atol=1e-6)
    assert (preds["predicted_class"] == (preds["probability"] >= 0.3)).all()
    assert "predicted 8 cases" in capsys.readouterr().out
    assert main(["predict", "--model", str(tmp_path / "none.joblib"), "--manifest", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 1
    assert "model file" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
    assert main(["predict", "--model", str(tmp_path / "m.joblib"), "--manifest", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "p.xlsx")]) == 1
    assert "name a table file ending in .csv, .tsv, .parquet" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "m.joblib"), "--manifest", str(tmp_path / "none.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 1
    assert "manifest file not found" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()


def test_fit_writes_a_skops_model_without_its_cache_folder(cli_cohort, tmp_path, capsys):
    """skops is the default format; the cache folder of the fit is neither saved nor re-created by predict."""
    import zipfile

    from radhe.cache import FeatureCache
    from radhe.persistence import load_model

    manifest = load_manifest(cli_cohort / "manifest.csv")
    manifest.iloc[:16].to_csv(tmp_path / "train.csv", index=False)
    manifest.iloc[16:].drop(columns=["he"]).to_csv(tmp_path / "new.csv", index=False)
    model, cache = tmp_path / "model.skops", tmp_path / "cache"
    assert main(["fit", "--manifest", str(tmp_path / "train.csv"), "--cache", str(cache), "--out", str(model)]) == 0
    assert zipfile.is_zipfile(model) and str(cache).encode() not in model.read_bytes()
    assert len(FeatureCache(cache)) == 16  # the fit used the cache
    shutil.rmtree(cache)
    predict = ["predict", "--model", str(model), "--manifest", str(tmp_path / "new.csv"), "--out"]
    assert main([*predict, str(tmp_path / "p.csv")]) == 0
    assert not cache.exists()
    expected = load_model(model).predict_proba(load_manifest(tmp_path / "new.csv"))[:, 1]
    assert np.allclose(pd.read_csv(tmp_path / "p.csv")["probability"], expected, atol=1e-9)
    assert main([*predict, str(tmp_path / "p2.csv"), "--cache", str(tmp_path / "predict-cache")]) == 0
    assert len(FeatureCache(tmp_path / "predict-cache")) == 8
    capsys.readouterr()
    # a pickle under a skops name is not loaded
    joblib.dump(load_model(model), tmp_path / "fake.skops")
    assert main([*predict[:2], str(tmp_path / "fake.skops"), *predict[3:], str(tmp_path / "p3.csv")]) == 1
    assert "not a skops model file" in capsys.readouterr().err and not (tmp_path / "p3.csv").exists()
    # --out a folder is refused before fitting
    assert main(["fit", "--manifest", str(tmp_path / "train.csv"), "--out", str(tmp_path)]) == 1
    assert "it is a folder" in capsys.readouterr().err


def test_custom_label_column_is_not_a_feature(cli_cohort, tmp_path):
    manifest = load_manifest(cli_cohort / "manifest.csv")  # absolute paths
    manifest["expansion"] = manifest["he"]
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    model_path = tmp_path / "model.joblib"
    assert main(["fit", "--manifest", str(tmp_path / "manifest.csv"), "--label", "expansion",
                 "--out", str(model_path)]) == 0
    names = list(joblib.load(model_path).named_steps["features"].get_feature_names_out())
    assert names and not [n for n in names if "expansion" in n]


def test_evaluate_and_report(cli_cohort, tmp_path, capsys):
    assert main(["evaluate", "--manifest", str(cli_cohort / "manifest.csv"), "--folds", "3",
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["main"]["auc"]["auc"] <= 1.0
    assert not (tmp_path / "eval" / "report.html").exists()
    assert "AUC" in capsys.readouterr().out
    manifest = pd.read_csv(cli_cohort / "manifest.csv")
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert list(predictions.columns) == ["case_id", "patient_id", "fold", "label", "probability", "threshold",
                                         "predicted_class", "conformal_set_90"]
    assert set(predictions["conformal_set_90"]) <= {"{}", "{0}", "{1}", "{0, 1}"}
    assert predictions["case_id"].astype(str).tolist() == manifest["case_id"].astype(str).tolist()
    assert (predictions["label"] == manifest["he"]).all() and set(predictions["fold"]) == {0, 1, 2}

    assert main(["report", "--manifest", str(cli_cohort / "manifest.csv"), "--folds", "3",
                 "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "<img" in html and "BAT" in html
    assert "BAT score" in json.loads((tmp_path / "rep" / "metrics.json").read_text())["baselines"]
    assert (tmp_path / "rep" / "predictions.csv").exists() and (tmp_path / "rep" / "figures" / "roc-curve.svg").exists()


def test_evaluate_refuses_a_pipeline_that_is_not_a_classifier(cli_cohort, tmp_path, capsys):
    code = main(["evaluate", "--manifest", str(cli_cohort / "manifest.csv"), "--pipeline", "xu2021",
                 "--out", str(tmp_path / "x")])
    assert code == 1
    assert "pipeline 'xu2021' is not a classifier" in capsys.readouterr().err


def test_progress_goes_to_stderr_through_logging_and_quiet_silences_it(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "a"), "-n", "2", "--shape", "32", "32", "8"]) == 0
    captured = capsys.readouterr()
    assert "radhe: make_ich_cohort: 2/2 cases" in captured.err and "wrote 2 cases" in captured.out
    assert main(["--quiet", "synth", "--out", str(tmp_path / "b"), "-n", "2", "--shape", "32", "32", "8"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "wrote 2 cases" in captured.out
    import logging

    assert not [h for h in logging.getLogger("radhe").handlers if not isinstance(h, logging.NullHandler)]
