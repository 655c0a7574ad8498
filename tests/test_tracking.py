"""radhe.tracking: an evaluation's parameters, metrics and report files in MLflow (a local file store).

Every test reads the run back with ``mlflow.tracking.MlflowClient`` and compares it with what radhe
wrote to disk (metrics.json, predictions.csv, the report's files).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from radhe.errors import ConfigurationError
from radhe.evaluation import evaluate

mlflow = pytest.importorskip("mlflow", reason='the mlflow extra is not installed (pip install "radhe[mlflow]")')
from mlflow.tracking import MlflowClient  # noqa: E402

from radhe import tracking  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A local file store in tmp_path (mlflow >= 3.7 refuses folder stores without the opt-in)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for variable in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(variable, raising=False)
    return (tmp_path / "mlruns").as_uri()


def _table(n=90, seed=0):
    """A manifest-like table with the columns the default baselines read, and an outcome they predict."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"case_id": [f"ich{i:04d}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)]})
    X["age_years"] = rng.normal(70, 10, n)
    X["sbp_mmhg"] = rng.normal(160, 20, n)
    X["baseline_volume_ml"] = np.exp(rng.normal(2.5, 0.8, n))
    X["onset_to_ct_h"] = rng.uniform(0.5, 6, n)
    X["hypodensity"] = (rng.random(n) < 0.3).astype(int)
    X["blend_sign"] = (rng.random(n) < 0.2).astype(int)
    logit = 0.05 * (X["age_years"] - 70) + 1.5 * X["hypodensity"] + 0.5 * (X["onset_to_ct_h"] < 2.5) - 0.8
    X["he"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X


def _pipeline(C=0.5):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    columns = ["age_years", "sbp_mmhg", "baseline_volume_ml", "hypodensity"]
    return Pipeline([("select", ColumnTransformer([("num", StandardScaler(), columns)])),
                     ("classify", LogisticRegression(C=C, max_iter=500))])


def _artifacts(client, run_id, path=None) -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_evaluate_logs_params_metrics_and_report_files_equal_to_the_report(store, tmp_path):
    from radhe.report import write_html

    X = _table()
    result = evaluate(_pipeline(C=0.5), X, cv=3, n_bootstrap=50, threshold_cv=2, explain=False,
                      name="clinical model", mlflow={"tracking_uri": store, "experiment": "radhe tests"})
    run_ref = result.tracking
    assert run_ref is not None and run_ref.owned
    report = write_html(result, tmp_path / "report")
    folder = report.parent

    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_ref.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "radhe tests"
    assert run.data.tags["mlflow.runName"] == "clinical model"

    params = run.data.params
    assert params["pipeline.classify__C"] == "0.5"
    assert params["pipeline.classify"] == "LogisticRegression"  # an estimator is named, its params logged apart
    assert params["pipeline.classify__max_iter"] == "500"
    assert params["evaluation.n_bootstrap"] == "50" and params["evaluation.folds"] == "3"
    assert params["data.n_cases"] == str(len(X)) and params["data.n_positive"] == str(int(X["he"].sum()))

    saved = json.loads((folder / "metrics.json").read_text())
    main, metrics = saved["main"], run.data.metrics
    assert saved["metadata"]["mlflow"] == {"run_id": run_ref.run_id, "experiment_id": run.info.experiment_id}
    assert metrics["auc"] == pytest.approx(main["auc"]["auc"])
    assert metrics["auc_ci_low"] == pytest.approx(main["auc"]["ci_low"])
    assert metrics["auc_ci_high"] == pytest.approx(main["auc"]["ci_high"])
    assert metrics["brier"] == pytest.approx(main["brier"])
    assert metrics["calibration_intercept"] == pytest.approx(main["calibration"]["intercept"])
    assert metrics["calibration_slope"] == pytest.approx(main["calibration"]["slope"])
    for name in ("sensitivity", "specificity", "npv"):
        assert metrics[name] == pytest.approx(main["metrics"][name]["estimate"])
        assert metrics[f"{name}_ci_low"] == pytest.approx(main["metrics"][name]["ci_low"])
    assert metrics["baseline.bat_score.auc"] == pytest.approx(saved["baselines"]["BAT score"]["auc"]["auc"])
    assert metrics["baseline.hypodensity.delong_p"] == pytest.approx(saved["comparison"]["Hypodensity"]["delong_p"])
    assert metrics["conformal.coverage"] == pytest.approx(saved["conformal"]["all"]["coverage"])

    # per-fold AUCs as steps, equal to the AUC of each fold's rows of predictions.csv
    from sklearn.metrics import roc_auc_score

    predictions = pd.read_csv(folder / "predictions.csv")
    expected = [roc_auc_score(part["label"], part["probability"]) for _, part in predictions.groupby("fold")]
    history = sorted(client.get_metric_history(run_ref.run_id, "fold_auc"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx(expected)
    thresholds = sorted(client.get_metric_history(run_ref.run_id, "fold_threshold"), key=lambda m: m.step)
    # predictions.csv holds 6 significant digits
    assert [m.value for m in thresholds] == pytest.approx(predictions.groupby("fold")["threshold"].first().tolist(),
                                                           rel=1e-5)

    # every file of the report, byte for byte
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"report.html", "metrics.json", "predictions.csv", "checklist.md"} <= on_disk
    assert any(p.startswith("figures/") for p in on_disk)
    assert _artifacts(client, run_ref.run_id) == on_disk
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    client.download_artifacts(run_ref.run_id, "", str(downloaded))
    for name in on_disk:
        assert (downloaded / name).read_bytes() == (folder / name).read_bytes(), name
    assert run_ref.run_id in (folder / "report.html").read_text(encoding="utf-8")  # the report names its run


def test_mlflow_true_uses_the_active_run_and_leaves_it_open(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    X = _table(60, seed=1)
    with mlflow.start_run(run_name="my analysis") as active:
        result = evaluate(_pipeline(C=2.0), X, cv=3, n_bootstrap=20, threshold_cv=None, explain=False,
                          baselines=False, mlflow=True)
        assert result.tracking.run_id == active.info.run_id and not result.tracking.owned
        client = MlflowClient(tracking_uri=store)
        assert client.get_run(active.info.run_id).info.status == "RUNNING"  # radhe does not end the caller's run
        assert client.get_run(active.info.run_id).data.params["pipeline.classify__C"] == "2.0"
    assert MlflowClient(tracking_uri=store).get_run(active.info.run_id).info.status == "FINISHED"


def test_mlflow_true_without_an_active_run_starts_one_in_the_current_experiment(store, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from the environment")
    result = evaluate(_pipeline(), _table(60, seed=2), cv=3, n_bootstrap=20, threshold_cv=None, explain=False,
                      baselines=False, name="env model", mlflow=True)
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(result.tracking.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "from the environment"
    assert run.info.status == "FINISHED" and run.data.metrics["auc"] == pytest.approx(result.main.auc.auc)
    assert mlflow.active_run() is None  # radhe never leaves a run of its own open
    from radhe.report import write_html

    write_html(result, tmp_path / "not uploaded", figures=False, mlflow=False)
    assert _artifacts(client, run.info.run_id) == {"metrics.json", "predictions.csv", "checklist.md"}


def test_long_parameters_are_cut_to_mlflows_limits_and_named(store):
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

    tracker = tracking.prepare(store)
    long_key = "pipeline." + "k" * 400
    params = {"short": "1", "long": "x" * (MAX_PARAM_VAL_LENGTH + 500), long_key: "v", "odd(name)": "3"}
    run_ref = tracking.log_run(tracker, run_name="limits", params=params,
                               metrics={"finite": 0.5, "undefined": float("inf")})
    run = MlflowClient(tracking_uri=store).get_run(run_ref.run_id)
    logged = run.data.params
    assert len(logged["long"]) == MAX_PARAM_VAL_LENGTH and logged["long"].endswith("[truncated by radhe]")
    assert logged["short"] == "1" and logged["odd_name_"] == "3"  # characters MLflow refuses become "_"
    cut = [k for k in logged if k.startswith("pipeline.k")]
    assert len(cut) == 1 and len(cut[0]) == MAX_ENTITY_KEY_LENGTH and logged[cut[0]] == "v"
    assert run.data.tags["radhe.truncated_params"] == "long"
    assert run.data.metrics == {"finite": 0.5}  # inf is not a number MLflow can plot: named instead
    assert run.data.tags["radhe.undefined_metrics"] == "undefined"


def test_flatten_params_names_estimators_and_expands_dicts():
    from sklearn.linear_model import LogisticRegression

    flat = tracking.flatten_params({"clf": LogisticRegression(), "params": {"setting": {"binWidth": 25}},
                                    "steps": [("a", LogisticRegression())], "window": (0.0, 80.0)}, prefix="p.")
    assert flat == {"p.clf": "LogisticRegression", "p.params.setting.binWidth": "25", "p.steps": "a: LogisticRegression",
                    "p.window": "(0.0, 80.0)"}


def test_without_mlflow_tracking_is_a_configuration_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow were not installed
    fitted = []

    from sklearn.dummy import DummyClassifier

    class Recording(DummyClassifier):
        def fit(self, X, y, sample_weight=None):
            fitted.append(len(X))
            return super().fit(X, y, sample_weight)

    with pytest.raises(ConfigurationError, match=r'pip install "radhe\[mlflow\]"'):
        evaluate(Recording(), _table(30), cv=3, baselines=False, explain=False, mlflow=True)
    assert fitted == []  # refused before anything was fitted
    # not asking for tracking needs no mlflow
    assert evaluate(Recording(), _table(30), cv=3, baselines=False, explain=False, n_bootstrap=10,
                    threshold_cv=None).tracking is None


@pytest.mark.parametrize("bad", [42, "", {"tracking_uri": "file:/x", "colour": "red"}, {"tags": ["a"]}])
def test_invalid_mlflow_settings_are_refused(bad):
    with pytest.raises(ConfigurationError):
        tracking.tracking_settings(bad)


def test_a_store_that_cannot_be_opened_is_refused_before_fitting(tmp_path, monkeypatch):
    from packaging.version import Version

    if Version(mlflow.__version__) < Version("3.7"):
        pytest.skip("mlflow < 3.7 opens folder stores without MLFLOW_ALLOW_FILE_STORE")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigurationError, match="MLFLOW_ALLOW_FILE_STORE"):
        evaluate(_pipeline(), _table(30), cv=3, baselines=False, explain=False, mlflow=(tmp_path / "m").as_uri())


def test_a_failure_to_log_warns_and_keeps_the_result(store):
    tracker = tracking.prepare({"tracking_uri": store, "experiment": "soon deleted"})
    MlflowClient(tracking_uri=store).delete_experiment(tracker.experiment_id)  # e.g. deleted while a job ran
    with pytest.warns(tracking.TrackingWarning, match="logging to MLflow"):
        assert tracking.log_run(tracker, params={"a": "1"}, metrics={"m": 1.0}) is None


def test_cli_evaluate_mlflow_logs_the_run(tiny_cohort, store, tmp_path, capsys):
    from radhe.cli import main

    out = tmp_path / "eval"
    code = main(["evaluate", "--manifest", str(tiny_cohort), "--folds", "2", "--threshold-cv", "0",
                 "--bootstrap", "20", "--out", str(out), "--mlflow", store, "--mlflow-experiment", "cli"])
    assert code == 0, capsys.readouterr().err
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("cli")
    (run,) = client.search_runs([experiment.experiment_id])
    saved = json.loads((out / "metrics.json").read_text())
    assert run.data.metrics["auc"] == pytest.approx(saved["main"]["auc"]["auc"])
    assert run.data.params["pipeline.features__radiomics__params"]  # the default pipeline's radiomics settings
    assert {"metrics.json", "predictions.csv", "checklist.md"} <= _artifacts(client, run.info.run_id)
    assert "mlflow: logged" in capsys.readouterr().err


def test_cli_mlflow_without_mlflow_installed_exits_1_with_the_hint(tiny_cohort, tmp_path, monkeypatch, capsys):
    from radhe.cli import main

    monkeypatch.setitem(sys.modules, "mlflow", None)
    code = main(["evaluate", "--manifest", str(tiny_cohort), "--out", str(tmp_path / "x"), "--mlflow"])
    assert code == 1
    err = capsys.readouterr().err
    assert 'radhe: error: experiment tracking (mlflow=...) needs MLflow' in err and 'pip install "radhe[mlflow]"' in err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    """16 synthetic cases of 64 × 64 × 8 voxels: the default pipeline's radiomics run in seconds."""
    from radhe.datasets import make_ich_cohort

    folder = tmp_path_factory.mktemp("tiny") / "cohort"
    make_ich_cohort(16, folder, shape=(64, 64, 8), random_state=0)
    return folder / "manifest.csv"
