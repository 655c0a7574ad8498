"""Progress of the long steps: INFO lines through the ``radhe`` logger (never print), ``--quiet`` silences them.

Fitting a pipeline logs one line per step with its duration; a cross-validation one line per fold
(the steps of each fold's fit at DEBUG); ``evaluate`` the bootstrap, each baseline and the SHAP
values; the report each figure; the command line shows them on stderr unless ``-q``.
"""

from __future__ import annotations

import logging
import re

import pytest

from radhe.evaluation import cross_validate_predictions, evaluate
from radhe.io import load_manifest
from radhe.pipeline import make_pipeline

STEP = re.compile(r"^fit: step (\d+)/(\d+) '(\w+)' \((\w+)\) in \d+\.\d s$")


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    """16 synthetic cases of 64 × 64 × 8 voxels (the default pipeline's radiomics run in seconds)."""
    from radhe.datasets import make_ich_cohort

    folder = tmp_path_factory.mktemp("progress") / "cohort"
    make_ich_cohort(16, folder, shape=(64, 64, 8), random_state=0)
    return folder / "manifest.csv"


def _clinical_pipeline():
    return make_pipeline(radiomics=None, fusion="concat", k=4, random_state=0)


def _messages(caplog, logger: str, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def test_pipeline_fit_logs_each_step_with_its_duration(tiny_cohort, caplog):
    manifest = load_manifest(tiny_cohort)
    pipeline = _clinical_pipeline()
    with caplog.at_level(logging.INFO, logger="radhe"):
        pipeline.fit(manifest, manifest["he"])
    lines = _messages(caplog, "radhe.pipeline")
    steps = [STEP.match(line).groups() for line in lines if STEP.match(line)]
    fitted = [(i + 1, name, type(step).__name__) for i, (name, step) in enumerate(pipeline.steps)
              if step not in (None, "passthrough")]
    assert [(int(i), name, cls) for i, n, name, cls in steps] == fitted  # every fitted step, in order, named
    assert {int(n) for _, n, _, _ in steps} == {len(pipeline.steps)}
    assert re.fullmatch(rf"fit: {len(pipeline.steps)} steps on 16 cases in \d+\.\d s", lines[-1])
    assert not [r for r in caplog.records if r.name.startswith("radhe") and r.levelno >= logging.WARNING]


def test_cross_validation_logs_each_fold_and_each_folds_steps_at_debug(tiny_cohort, caplog):
    manifest = load_manifest(tiny_cohort)
    with caplog.at_level(logging.DEBUG, logger="radhe"):
        cross_validate_predictions(_clinical_pipeline(), manifest, manifest["he"], cv=2, threshold_cv=None,
                                   name="clinical")
    folds = _messages(caplog, "radhe.evaluation.cv")
    assert [re.sub(r"[\d.]+ s$", "", m) for m in folds] == [f"clinical: fold {k}/2 fitted and scored in " for k in (1, 2)]
    assert not [m for m in _messages(caplog, "radhe.pipeline") if m.startswith("fit:")]  # no INFO line per step
    debug_steps = [m for m in _messages(caplog, "radhe.pipeline", logging.DEBUG) if STEP.match(m)]
    assert len(debug_steps) == 2 * len([s for _, s in _clinical_pipeline().steps if s not in (None, "passthrough")])


def test_evaluate_and_report_log_every_long_step(tiny_cohort, tmp_path, caplog):
    from dataclasses import replace

    from radhe.report import write_html

    manifest = load_manifest(tiny_cohort)
    with caplog.at_level(logging.DEBUG, logger="radhe"):
        result = evaluate(_clinical_pipeline(), manifest, cv=2, n_bootstrap=30, threshold_cv=None, name="clin",
                          explain=True)
        evaluation = _messages(caplog, "radhe.evaluation.result")
        caplog.clear()
        # the report's figure lines (the SHAP figures left out: the four of discrimination and calibration suffice)
        write_html(replace(result, explanation=None), tmp_path / "report")
    report = _messages(caplog, "radhe.report")

    def has(pattern, lines):
        return any(re.fullmatch(pattern, line) for line in lines)

    assert has(r"clin: evaluating on 16 cases \(\d+ with expansion\), 2 folds", evaluation)
    assert has(r"clin: metrics with 30 bootstrap replicates in \d+\.\d s", evaluation)
    for baseline in result.baselines:
        assert has(rf"baseline '{re.escape(baseline)}' cross-validated and summarised in \d+\.\d s", evaluation)
    assert has(r"clin: computing out-of-fold SHAP values of the 2 fold models", evaluation)
    assert has(r"clin: out-of-fold SHAP values of the 2 fold models in \d+\.\d s", evaluation)
    assert has(r"clin: evaluated in \d+\.\d s: AUC .*", evaluation)

    figures = [line for line in report if line.startswith("report: figure ")]
    assert len(figures) == 4 and has(r"report: figure 1 'ROC curve' in \d+\.\d s", figures)
    assert has(rf"report: {len(figures)} figures \(also saved for print in .*figures\) rendered in \d+\.\d s", report)
    assert report[-1] == f"report: wrote {tmp_path / 'report' / 'report.html'}"


def test_cli_fit_shows_each_step_on_stderr_and_quiet_silences_it(tiny_cohort, tmp_path, capsys):
    from radhe.cli import main

    args = ["fit", "--manifest", str(tiny_cohort), "--out", str(tmp_path / "m.joblib"), "--cache", str(tmp_path / "c")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert re.search(r"^radhe: fit: step 1/\d+ 'features' \(FeatureFusion\) in \d+\.\d s$", captured.err, re.M)
    assert re.search(r"^radhe: fit: \d+ steps on 16 cases in \d+\.\d s$", captured.err, re.M)
    assert "fitted pipeline 'default'" in captured.out and "fit: step" not in captured.out  # progress never printed

    assert main(["--quiet", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "fitted pipeline 'default'" in captured.out
    assert not [h for h in logging.getLogger("radhe").handlers if not isinstance(h, logging.NullHandler)]


def test_cli_evaluate_shows_folds_and_bootstrap_and_quiet_silences_them(tiny_cohort, tmp_path, capsys):
    from radhe.cli import main

    out = tmp_path / "eval"
    evaluate_args = ["evaluate", "--manifest", str(tiny_cohort), "--folds", "2", "--threshold-cv", "0",
                     "--bootstrap", "20", "--cache", str(tmp_path / "c"), "--out", str(out)]
    assert main(["--quiet", *evaluate_args]) == 0
    assert capsys.readouterr().err == ""
    assert main(evaluate_args) == 0
    err = capsys.readouterr().err
    assert "radhe: default pipeline: fold 2/2 fitted and scored in" in err and "bootstrap replicates in" in err
    assert not [h for h in logging.getLogger("radhe").handlers if not isinstance(h, logging.NullHandler)]
