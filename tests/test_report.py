"""radhe.report: the self-contained HTML report, metrics.json, and rendering in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from radhe.evaluation import evaluate
from radhe.evaluation.result import format_comparison
from radhe.report import render_html, write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADINGS = [
    "Cohort and validation",
    "Discrimination",
    "Threshold metrics",
    "Calibration",
    "Comparison with baselines",
    "Feature importance",
]


class _Features(TransformerMixin, BaseEstimator):
    columns = ["radiomics__original_shape_Sphericity", "radiomics__original_glcm_Contrast", "clinical__age_years", "cnn__e1"]

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X[self.columns].copy()

    def get_feature_names_out(self, input_features=None):
        return np.array(self.columns, dtype=object)


@pytest.fixture(scope="module")
def result():
    from imblearn.pipeline import Pipeline
    from sklearn.feature_selection import SelectKBest
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    n = 120
    X = pd.DataFrame({"case_id": [f"ich{i:04d}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)]})
    for c in _Features.columns:
        X[c] = rng.normal(size=n)
    X["baseline_volume_ml"] = np.exp(rng.normal(2.5, 0.8, n))
    X["onset_to_ct_h"] = rng.uniform(0.5, 6, n)
    X["hypodensity"] = (rng.random(n) < 0.3).astype(int)
    X["blend_sign"] = (rng.random(n) < 0.2).astype(int)
    logit = X[_Features.columns[0]] + 1.5 * X["hypodensity"] + 0.5 * (X["onset_to_ct_h"] < 2.5) - 0.8
    X["he"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    pipe = Pipeline(
        [("features", _Features()), ("scale", StandardScaler()), ("select", SelectKBest(k=3)),
         ("classify", LogisticRegression())]
    ).set_output(transform="pandas")
    return evaluate(pipe, X, cv=4, n_bootstrap=200, threshold_cv=None, name="hybrid model")


def test_write_html_is_self_contained(result, tmp_path):
    path = write_html(result, tmp_path / "out")
    assert path == tmp_path / "out" / "report.html"
    text = path.read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in text
    # no external asset: every src is an embedded image; no script, stylesheet link or remote URL
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) >= 9 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in text and "<link" not in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["main"]["name"] == "hybrid model"
    assert set(metrics["baselines"]) >= {"BAT score", "Volume (logistic)", "Hypodensity"}
    assert metrics["comparison"]["BAT score"]["delong_p"] is not None
    assert metrics["feature_importance"][0]["feature"].split("__")[0] in {"radiomics", "clinical", "cnn"}
    # an explicit .html path, custom title and waterfall case ids
    other = write_html(result, tmp_path / "r.html", title="My title", waterfall_cases=["ich0005"], write_json=False)
    body = other.read_text(encoding="utf-8")
    assert "<title>My title</title>" in body and "ich0005" in body
    assert not (tmp_path / "metrics.json").exists()


def test_render_html_without_baselines_or_explanation(result):
    from dataclasses import replace

    bare = replace(result, baselines={}, comparison=None, explanation=None)
    text = render_html(bare)
    assert "Comparison with baselines" not in text and "Feature importance" not in text
    assert "Discrimination" in text


def test_figures_for_print_beside_the_report(result, tmp_path):
    """Every figure also as a 300 dpi PNG and a parseable SVG (text as text, legible sizes), linked."""
    import struct
    import xml.etree.ElementTree as ET

    path = write_html(result, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    pngs, svgs = sorted((tmp_path / "figures").glob("*.png")), sorted((tmp_path / "figures").glob("*.svg"))
    assert len(pngs) == len(svgs) >= 8 and {p.stem for p in pngs} == {p.stem for p in svgs}
    for png in pngs:
        assert f'href="figures/{png.name}"' in text
    width_px = struct.unpack(">I", (tmp_path / "figures" / "roc-curve.png").read_bytes()[16:20])[0]
    assert width_px == 6 * 300  # the ROC figure is 6 inches wide: 300 dpi
    root = ET.parse(tmp_path / "figures" / "roc-curve.svg").getroot()
    assert root.tag.endswith("svg")
    texts = [el for el in root.iter() if el.tag.endswith("text")]
    words = " ".join("".join(el.itertext()) for el in texts)
    assert "False positive rate" in words or "1 − specificity" in words or "specificity" in words.lower()
    sizes = [float(m) for el in texts for m in re.findall(r"font-size:\s*([0-9.]+)px", el.get("style", ""))]
    sizes += [float(m) for el in texts for m in re.findall(r"font:\s*(?:\w+\s+)*([0-9.]+)px", el.get("style", ""))]
    assert sizes and min(sizes) >= 8.0 * 0.999  # no label below 8 pt at the figure's size
    assert not write_html(result, tmp_path / "bare" / "report.html", figures=False).with_name("figures").exists()


def test_predictions_csv_has_every_case_out_of_fold(result, tmp_path):
    write_html(result, tmp_path / "report.html")
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert list(table.columns) == ["case_id", "patient_id", "fold", "label", "probability", "threshold",
                                   "predicted_class"]
    assert len(table) == result.main.n and table["case_id"].is_unique
    assert np.allclose(table["probability"], result.main.score, atol=1e-5)
    assert ((table["probability"] >= table["threshold"]).astype(int) == table["predicted_class"]).all()
    assert (table.groupby("fold")["threshold"].nunique() == 1).all() and table["fold"].nunique() == 4
    # no patient in two folds
    assert (table.groupby("patient_id")["fold"].nunique() == 1).all()


def test_undefined_values_print_as_na_and_the_header_says_what_ran(result):
    from dataclasses import replace

    text = render_html(result)
    assert "– (–––)" not in text and "∞" not in text and "(–" not in text
    assert "Features computed (fold 1)" in text
    row = re.search(r"Features computed \(fold 1\)</td><td>([^<]*)</td>", text).group(1)
    assert "(4 features)" in row and "3 enter the classifier (median over 4 folds)" in row
    metrics = result.main.metrics.copy()
    # LR+ with neither true nor false positives: 0 / 0, undefined
    metrics.loc["lr_pos", ["estimate", "ci_low", "ci_high"]] = [np.nan, np.nan, np.nan]
    text = render_html(replace(result, main=replace(result.main, metrics=metrics)))
    assert "∞" not in text and "<td>LR+</td><td>n/a</td><td>n/a</td>" in text
    # LR+ with true positives and no false positive: infinite, its lower bound a number the report keeps
    metrics.loc["lr_pos", ["estimate", "ci_low", "ci_high"]] = [np.inf, 11.16, np.inf]
    text = render_html(replace(result, main=replace(result.main, metrics=metrics)))
    assert "<td>LR+</td><td>∞</td><td>11.160 – ∞</td>" in text
    assert "∞ (11.16–∞)" in format_comparison(pd.DataFrame(
        {"auc": [0.8], "auc_ci_low": [0.7], "auc_ci_high": [0.9], "delong_p": [np.nan], "delta_auc": [0.0],
         **{f"{m}{s}": [np.inf if m == "lr_pos" and s != "_ci_low" else (11.16 if m == "lr_pos" else 0.5)]
            for m in ("sensitivity", "specificity", "lr_pos", "lr_neg") for s in ("", "_ci_low", "_ci_high")}},
        index=["model"]))["LR+"].iloc[0]
    # a finite LR+ whose interval reaches a test without false positives: unbounded, not undefined
    metrics.loc["lr_pos", ["estimate", "ci_low", "ci_high"]] = [2.448, 0.0, np.inf]
    text = render_html(replace(result, main=replace(result.main, metrics=metrics)))
    assert "<td>2.448</td><td>0.000 – ∞</td>" in text


def test_importance_intervals_never_go_below_zero(result):
    imp = result.explanation.importance()
    assert (imp["ci_low"] >= 0).all()
    assert ((imp["ci_low"] <= imp["mean_abs_shap"] + 1e-12) & (imp["mean_abs_shap"] <= imp["ci_high"] + 1e-12)).all()
    fam = result.explanation.family_importance()
    assert (fam["ci_low"] >= 0).all() and (fam["ci_low"] <= fam["mean_abs_shap"] + 1e-12).all()


def _chromium(args, tmp_path, timeout=90):
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium); "
                    "the HTML report is checked without a browser in test_write_html_is_self_contained")
def test_report_renders_in_chromium(result, tmp_path):
    from PIL import Image

    path = write_html(result, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    proc = _chromium([f"--screenshot={shot}", "--window-size=1200,2000", path.as_uri()], tmp_path)
    assert shot.exists(), proc.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"))
    assert image.shape == (2000, 1200)
    # not blank: many distinct grey levels and a good share of non-white pixels (text, tables, figures)
    assert np.unique(image).size > 50
    assert (image < 200).mean() > 0.02
    dom = _chromium(["--dump-dom", path.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in dom.stdout
    assert "hybrid model" in dom.stdout


@pytest.mark.slow
def test_demo_like_report_on_imaging_cohort(small_cohort, tmp_path):
    """What `make demo` does: the default pipeline (radiomics + clinical) on a synthetic imaging cohort."""
    from radhe.pipeline import make_pipeline

    res = evaluate(make_pipeline(random_state=0, k=10), small_cohort, cv=3, n_bootstrap=200, threshold_cv=None)
    assert res.main.n == len(small_cohort)
    fams = set(res.explanation.importance()["family"])
    assert fams & {"radiomics: shape", "radiomics: first-order", "radiomics: texture"}
    path = write_html(res, tmp_path)
    assert path.exists() and (tmp_path / "metrics.json").exists()


def test_segmentation_quality_section_with_a_segmenter_in_the_pipeline(small_cohort, tmp_path):
    """Out-of-fold Dice / IoU against the reference masks, fall-backs counted and warned about, overlays drawn."""
    import radhe
    from radhe.nn.slices import load_case
    from radhe.segmentation import HematomaSegmenter, dice_score

    segmenter = HematomaSegmenter(base_channels=4, levels=3, epochs=1, batch_size=8, n_threads=1, random_state=0,
                                  validation_fraction=0.0, cache_dir=tmp_path / "masks")
    pipe = radhe.make_pipeline(segmenter=segmenter, radiomics=radhe.RadiomicsFeatures(params={
        "setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}}, "featureClass": {"shape": None}},
        on_error="skip"), clinical=None, fusion="concat", random_state=0)
    result = evaluate(pipe, small_cohort, cv=3, baselines=False, explain=False, n_bootstrap=50, threshold_cv=None)
    quality = result.segmentation
    assert quality is not None and quality.reference_column == "mask"
    cases = quality.cases
    assert sorted(cases["case_id"]) == sorted(small_cohort["case_id"].astype(str))  # every case, once, out of fold
    assert quality.per_fold["n_cases"].sum() == len(small_cohort) and len(quality.per_fold) == 3
    # the recorded Dice is the Dice of the files on disk
    row = cases.iloc[0]
    truth = load_case(small_cohort.set_index("case_id").loc[row["case_id"], "image"], row["reference"],
                      case_id=row["case_id"]).mask
    predicted = load_case(small_cohort.set_index("case_id").loc[row["case_id"], "image"], row["path"],
                          case_id=row["case_id"]).mask
    assert row["dice"] == pytest.approx(dice_score(truth, predicted))
    assert quality.n_fallback + quality.n_empty == int(cases["status"].isin(["fallback", "empty"]).sum())
    text = render_html(result)
    assert "<h2>Segmentation quality</h2>" in text and "Fell back to the most probable region" in text
    assert all(f'alt="Segmentation {label}"' in text for label in ("best", "median", "worst"))
    assert ('class="warning"' in text) == (quality.fallback_share > 0.10)
    metrics = result.to_dict()["segmentation"]
    assert metrics["n_cases"] == len(small_cohort) and 0 <= metrics["dice_mean"] <= 1


def test_reporting_checklist_is_filled_from_the_run(result, tmp_path):
    import sklearn

    from radhe.evaluation.checklist import reporting_checklist

    path = write_html(result, tmp_path / "report.html")
    assert 'href="checklist.md"' in path.read_text(encoding="utf-8")
    text = (tmp_path / "checklist.md").read_text(encoding="utf-8")
    assert text == reporting_checklist(result)
    main = result.main
    assert f"| Participants / cases analysed (20a) | {main.n} cases of {main.n} patients |" in text
    assert f"| Outcome events (20a) | {main.n_positive} (" in text
    assert "more than 6 mL or more than 33 %" in text  # the outcome column "he" has a known definition
    assert "4-fold PatientStratifiedKFold, grouped by patient" in text
    assert f"scikit-learn {sklearn.__version__}" in text
    sha = result.metadata["parameters_sha256"]
    assert len(sha) == 64 and f"`{sha}`" in text
    assert "| `classify__C` | `1.0` |" in text  # every hyper-parameter
    assert f"| ROC AUC (DeLong CI) | {main.auc.auc:.3f} (" in text
    for line in text.splitlines():  # well-formed Markdown tables: two or three cells per row
        if line.startswith("|"):
            assert line.replace("\\|", "").count("|") in (3, 4), line


def test_parameter_hash_identifies_the_configuration():
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression

    from radhe.evaluation.checklist import parameter_hash, run_facts

    X = pd.DataFrame({"a": [1.0, np.nan, 3.0], "site": ["A", "B", "A"]})
    one = run_facts(LogisticRegression(C=0.5), X, label_column=None)
    assert one["parameters_sha256"] == run_facts(clone(LogisticRegression(C=0.5)), X, label_column=None)["parameters_sha256"]
    assert one["parameters_sha256"] != run_facts(LogisticRegression(C=1.0), X, label_column=None)["parameters_sha256"]
    assert one["missing_values"] == {"a": 1} and one["sites"] == {"A": 2, "B": 1}
    assert parameter_hash({"x": "1"}) == parameter_hash({"x": "1"})


def test_report_shows_out_of_fold_conformal_coverage(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    n = 200
    X = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)],
                      "x": rng.normal(size=n)})
    X["he"] = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X["x"] - 1)))).astype(int)

    class OneColumn(LogisticRegression):
        def fit(self, X, y):
            return super().fit(X[["x"]], y)

        def predict_proba(self, X):
            return super().predict_proba(X[["x"]])

    res = evaluate(OneColumn(), X, cv=4, baselines=False, explain=False, n_bootstrap=50, conformal=0.8)
    text = write_html(res, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Per-patient uncertainty: conformal prediction sets at 80%" in text
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert set(table["conformal_set_80"]) <= {"{}", "{0}", "{1}", "{0, 1}"}
    covered = [str(label) in s for label, s in zip(table["label"], table["conformal_set_80"], strict=True)]
    summary = res.to_dict()["conformal"]
    assert summary["all"]["coverage"] == pytest.approx(np.mean(covered))
    assert 0.65 < summary["all"]["coverage"] < 0.95


def test_a_report_of_predictions_that_separate_the_classes_says_the_slope_is_undefined(tmp_path):
    """No finite calibration slope exists when the out-of-fold risks separate the classes: it is NaN,
    written as null in metrics.json (which refuses NaN) and shown as n/a, not a crash."""
    import warnings

    import radhe

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20), np.zeros(40)].astype(int)
    manifest = pd.DataFrame({"case_id": [f"c{i}" for i in range(60)], "patient_id": [f"p{i}" for i in range(60)],
                             "age_years": rng.normal(70, 1, 60) + 40 * y, "gcs": rng.integers(3, 16, 60), "he": y})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(radhe.make_pipeline(radiomics=None, random_state=0), manifest, cv=3, n_bootstrap=50,
                          explain=False, threshold_cv=None, conformal=None, baselines=False)
    assert result.main.auc.auc == 1.0 and np.isnan(result.main.calibration_fit["slope"])
    write_html(result, tmp_path / "report.html")
    assert json.loads((tmp_path / "metrics.json").read_text())["main"]["calibration"]["slope"] is None
    assert "slope n/a (ideal 1)" in (tmp_path / "report.html").read_text()


def test_numbers_as_shown_keep_infinity_and_drop_the_sign_of_zero():
    from radhe._format import format_estimate, format_interval, format_number

    assert format_number(-6e-17, 2) == "0.00" and format_number(-0.006, 2) == "-0.01"
    assert format_estimate(np.inf, 2) == "∞" and format_estimate(np.nan) == "n/a"
    assert format_interval(np.inf, 11.16, np.inf, 2) == "∞ (11.16–∞)"
    assert format_interval(np.nan, 0.1, 0.2) == "n/a" and format_interval(0.5, np.nan, 0.7) == "0.500 (CI n/a)"


def test_conformal_table_header_names_its_rows(result):
    from dataclasses import replace

    predictions = replace(result.main.predictions, extra={
        **result.main.predictions.extra, "conformal_confidence": 0.9,
        "conformal_sets": np.column_stack([result.main.score < 0.6, result.main.score > 0.2])})
    text = render_html(replace(result, main=replace(result.main, predictions=predictions)))
    table = re.search(r"conformal prediction sets at[^<]*</h3>\s*<table><thead><tr>(.*?)</tr>", text).group(1)
    headers = re.findall(r"<th>([^<]*)</th>", table)
    assert headers[0] == "Outcome" and len(set(headers)) == len(headers)


def test_a_zero_width_auc_interval_is_flagged(result):
    from dataclasses import replace

    assert "separate the classes completely" not in render_html(result)
    y = result.main.y
    separated = replace(result.main, auc=replace(result.main.auc, auc=1.0, ci_low=1.0, ci_high=1.0))
    text = render_html(replace(result, main=separated))
    assert f"zero width; it understates the uncertainty of the AUC (on {int(y.sum())} cases" in text
