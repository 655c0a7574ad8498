"""Hostile tables and labels (issue 11, "Tables and labels"): one catalogue, every entry point.

Every entry of ``CATALOGUE`` changes a clean 40-case manifest in one hostile way and says what
radhe must do with it:

* ``"error"``: a radhe error (:class:`~radhe.errors.InputError` unless told otherwise) whose message
  names what is wrong (``mentions``: the column, the cases, the values) — never a raw numpy,
  pandas or scikit-learn error, and never a silent encoding (21 one-hot columns of a blood
  pressure);
* ``"warn"``: a warning naming the column left out, and results identical to the clean case;
* ``"same"``: accepted, and results identical to what the input means (``means``: the clean
  manifest, or the clean manifest with those cells missing).

Each entry runs through the API (``RadhePipeline.fit`` / ``predict_proba`` of purely tabular
pipelines on both table branches, :func:`radhe.evaluate`) and, where ``cli`` says so, through
``radhe validate / fit / evaluate``. The manifest's image paths do not exist: a label or column
error must come before any extraction, which would fail with "file not found" instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import radhe
from radhe._checks import check_labels
from radhe.cli import main
from radhe.errors import ConfigurationError, InputError
from radhe.selection import FeatureCleaner

N = 40


def clean_manifest() -> pd.DataFrame:
    """40 cases with a signal in age and blood pressure; image and mask paths that do not exist."""
    rng = np.random.default_rng(11)
    age = rng.normal(70, 10, N).round()
    sbp = rng.normal(160, 25, N).round()
    inr = rng.normal(1.1, 0.15, N).round(2)
    he = (0.05 * (age - 70) + 0.04 * (sbp - 160) + rng.normal(0, 1, N) > 0.4).astype(int)
    ids = [f"c{i:02d}" for i in range(N)]
    return pd.DataFrame({
        "case_id": ids,
        "patient_id": [f"p{i:02d}" for i in range(N)],
        "image": [f"/nonexistent/radhe-hostile/{c}.nii.gz" for c in ids],
        "mask": [f"/nonexistent/radhe-hostile/{c}_mask.nii.gz" for c in ids],
        "age_years": age,
        "sbp_mmhg": sbp,
        "inr": inr,
        "gcs": rng.integers(3, 16, N),
        "anticoagulant": rng.integers(0, 2, N),
        "sex": rng.choice(["F", "M"], N),
        "location": np.array(["deep", "lobar", "infratentorial", "deep"] * (N // 4)),
        "he": he,
    })


# ------------------------------------------------------------------------------- the changes

def _set(column, cases, value, *, dtype=object):
    """Set ``column`` of the cases ``cases`` (case ids) to ``value`` (the column cast to ``dtype`` first)."""
    def change(m):
        m = m.copy()
        if dtype is not None:
            m[column] = m[column].astype(dtype)
        m.loc[m["case_id"].isin(cases), column] = value
        return m
    return change


def _assign(**columns):
    def change(m):
        return m.assign(**{k: (v(m) if callable(v) else v) for k, v in columns.items()})
    return change


def _only(*keep, **extra):
    """Keep only the identifier, path and outcome columns (plus ``keep``), and add ``extra``."""
    def change(m):
        m = m[["case_id", "patient_id", "image", "mask", *keep, "he"]].copy()
        for k, v in extra.items():
            m[k] = v(m) if callable(v) else v
        return m
    return change


def _compose(*changes):
    def change(m):
        for c in changes:
            m = c(m)
        return m
    return change


def _padded(m):
    m = m.copy()
    m["sex"] = [f" {v}" if i % 2 else f"{v} " for i, v in enumerate(m["sex"])]
    m["location"] = [f"{v}  " for v in m["location"]]
    m["sbp_mmhg"] = [f" {v:g} " for v in m["sbp_mmhg"]]
    return m


def _yes_no(m):
    return m.assign(he=np.where(m["he"] == 1, "yes", "no"))


def _duplicate_c03(m):
    return pd.concat([m, m[m["case_id"] == "c03"]], ignore_index=True)


def _identity(m):
    return m


@dataclass(frozen=True)
class Hostile:
    name: str
    change: Callable[[pd.DataFrame], pd.DataFrame]
    expect: str  # "error", "warn", "same"
    mentions: tuple[str, ...] = ()
    means: Callable[[pd.DataFrame], pd.DataFrame] = _identity
    labels: bool = False  # a problem of the outcome, not of a feature column
    error: type = InputError
    at_predict: bool = False  # the fitted model refuses it in new cases too
    extraction: bool = True  # an image pipeline refuses it before reading an image
    cli: tuple[str, ...] = ()  # commands that refuse it (errors) or accept it up to the images
    exact: bool = True  # results identical to the last bit (False: the same model up to rounding)


CATALOGUE = [
    # --- text in a column of numbers: an error naming column, cases, values ----------------------------
    Hostile("text_in_numbers", _set("sbp_mmhg", ["c03"], "unknown"), "error",
            ("'sbp_mmhg'", "'unknown' (case 'c03')", "categorical=['sbp_mmhg']"), at_predict=True,
            cli=("fit", "evaluate")),
    Hostile("number_with_unit", _set("sbp_mmhg", ["c05"], "150 mmHg"), "error",
            ("'sbp_mmhg'", "'150 mmHg' (case 'c05')", "unit"), at_predict=True, cli=("fit", "evaluate")),
    Hostile("decimal_comma", _assign(inr=lambda m: [f"{v:.2f}".replace(".", ",") for v in m["inr"]]), "error",
            ("'inr'", "40 values are not numbers", "decimal comma", "'c00'"), at_predict=True, cli=("fit",)),
    Hostile("several_bad_values", _compose(_set("sbp_mmhg", ["c01", "c07"], "unknown"),
                                           _set("sbp_mmhg", ["c09"], "n.d.")), "error",
            ("'sbp_mmhg'", "'unknown' (cases 'c01', 'c07')", "'n.d.' (case 'c09')"), at_predict=True),
    Hostile("mixed_types_with_text", _assign(gcs=lambda m: [("high" if i == 4 else [int(v), float(v), str(v)][i % 3])
                                                            for i, v in enumerate(m["gcs"])]), "error",
            ("'gcs'", "'high' (case 'c04')"), at_predict=True),
    # --- tables with nothing to learn from: a radhe error naming what is constant / missing ------------
    Hostile("constant_table", _only(k=1.0, j=lambda m: np.full(len(m), 7)), "error",
            ("FeatureCleaner", "__k: constant", "__j: constant"), extraction=False),
    Hostile("all_nan_table", _only(k=np.nan), "error", ("'k' (no value in any of the 40 rows)",), extraction=False),
    Hostile("no_feature_columns", _only(), "error", ("no feature", "['case_id', 'patient_id', 'image', 'mask', 'he']"),
            extraction=False),
    Hostile("identifiers_only", _only(site=lambda m: np.where(m["he"] == 1, "A", "B"),
                                      study_id=lambda m: np.arange(1001, 1001 + len(m)),
                                      notes=lambda m: [f"seen by dr {i}" for i in range(len(m))]), "error",
            ("'study_id' (an identifier", "'notes' (text with 40 distinct values"), extraction=False),
    # --- columns that are not features: left out with a warning, results as without them -------------
    Hostile("free_text_notes", _assign(notes=lambda m: [f"note {i}: small bleed" for i in range(len(m))]), "warn",
            ("'notes'", "free text")),
    Hostile("mostly_unique_notes", _assign(notes=lambda m: ["none" if i % 4 == 0 else f"remark {i}"
                                                             for i in range(len(m))]), "warn",
            ("'notes'", "free text")),
    Hostile("accession_numbers", _assign(accession=lambda m: [f"ACC{i:06d}" for i in range(len(m))]), "warn",
            ("'accession'", "identifier")),
    Hostile("numeric_identifier", _assign(study_id=lambda m: np.arange(1001, 1001 + len(m))), "warn",
            ("'study_id'", "identifier")),
    Hostile("camel_case_identifier", _assign(SeriesInstanceUID=lambda m: [f"1.2.840.{i}" for i in range(len(m))]),
            "warn", ("'SeriesInstanceUID'", "identifier")),
    Hostile("dates_as_text", _assign(admission=lambda m: [f"2021-03-{1 + i % 9:02d} 14:30" for i in range(len(m))]),
            "warn", ("'admission'", "dates")),
    Hostile("all_nan_column", _assign(troponin=np.nan), "warn", ("'troponin'", "no value")),
    Hostile("infinite_values", _set("sbp_mmhg", ["c04", "c06"], np.inf, dtype=float), "warn",
            ("'sbp_mmhg'", "cases 'c04', 'c06'"), means=_set("sbp_mmhg", ["c04", "c06"], np.nan, dtype=float)),
    # --- accepted: what the input means, to the last bit ------------------------------------------------
    Hostile("site_never_a_feature", _assign(site=lambda m: np.where(m["he"] == 1, "A", "B")), "same", cli=("fit",)),
    Hostile("missing_markers_as_text", _compose(_set("age_years", ["c02"], "NaN"), _set("age_years", ["c03"], "NA"),
                                                _set("age_years", ["c04"], ""), _set("age_years", ["c05"], " n/a ")),
            "same", means=_set("age_years", ["c02", "c03", "c04", "c05"], np.nan, dtype=float), cli=("fit",)),
    Hostile("missing_marker_in_category", _set("sex", ["c06"], "NA"), "same",
            means=_set("sex", ["c06"], None)),
    Hostile("whitespace", _padded, "same", cli=("fit",)),
    Hostile("numbers_as_text", _assign(sbp_mmhg=lambda m: [f"{v:g}" for v in m["sbp_mmhg"]]), "same"),
    Hostile("mixed_number_types", _assign(gcs=lambda m: pd.Series([[int(v), float(v), str(v)][i % 3]
                                                                   for i, v in enumerate(m["gcs"])], dtype=object)),
            "same"),
    Hostile("bool_dtype", _assign(anticoagulant=lambda m: m["anticoagulant"].astype(bool)), "same"),
    Hostile("booleans_as_text", _assign(anticoagulant=lambda m: np.where(m["anticoagulant"] == 1, "True", "False")),
            "same", exact=False),
    Hostile("constant_column", _assign(scanner=lambda m: np.full(len(m), 3.0)), "same"),
    Hostile("path_column", _assign(followup_ct=lambda m: [f"followup/{c}.nii.gz" for c in m["case_id"]]), "warn",
            ("'followup_ct' (file paths such as",)),
    Hostile("categorical_dtype", _assign(sex=lambda m: m["sex"].astype("category")), "same"),
    Hostile("string_dtype", _assign(location=lambda m: m["location"].astype("string")), "same"),
    Hostile("nullable_integers", _compose(_assign(gcs=lambda m: m["gcs"].astype("Int64")), _set("gcs", ["c08"], pd.NA,
                                                                                              dtype=None)),
            "same", means=_set("gcs", ["c08"], np.nan, dtype=float)),
    # --- labels ------------------------------------------------------------------------------------------
    Hostile("nan_labels", _set("he", ["c02", "c05"], np.nan, dtype=float), "error",
            ("'he'", "missing", "'c02'", "'c05'"), labels=True, cli=("validate", "fit", "evaluate")),
    Hostile("nan_labels_as_text", _set("he", ["c07"], "NA"), "error", ("'he'", "missing", "'c07'"), labels=True),
    Hostile("single_class", _assign(he=0), "error", ("'he'", "one class", "40"), labels=True, cli=("fit", "evaluate")),
    Hostile("text_labels", _yes_no, "error", ("'he'", "0/1", "'yes'", "'no'"), labels=True,
            cli=("validate", "fit", "evaluate")),
    Hostile("three_valued_labels", _assign(he=lambda m: np.arange(len(m)) % 3), "error", ("'he'", "0/1", "'c02'"),
            labels=True, cli=("validate", "fit", "evaluate")),
    Hostile("infinite_label", _set("he", ["c01"], np.inf, dtype=float), "error", ("'he'", "0/1", "'c01'"),
            labels=True, cli=("validate", "fit")),
    Hostile("header_only", lambda m: m.iloc[:0], "error", ("0 rows",), labels=True, cli=("fit", "evaluate")),
    Hostile("no_label_column", lambda m: m.drop(columns="he"), "error", ("'he'",), labels=True,
            cli=("validate", "fit", "evaluate")),
    Hostile("duplicated_case_id", _duplicate_c03, "error", ("duplicated", "'c03'"), labels=True,
            cli=("validate", "fit", "evaluate")),
    Hostile("bool_labels", _assign(he=lambda m: m["he"].astype(bool)), "same", labels=True, cli=("fit",)),
    Hostile("float_labels", _assign(he=lambda m: m["he"].astype(float)), "same", labels=True),
    Hostile("text_01_labels", _assign(he=lambda m: m["he"].astype(str)), "same", labels=True, cli=("fit",)),
]

BY_NAME = {entry.name: entry for entry in CATALOGUE}
TABLE = [e for e in CATALOGUE if not e.labels]
LABELS = [e for e in CATALOGUE if e.labels]
ERRORS = [e for e in CATALOGUE if e.expect == "error"]
#: (branch, make_pipeline arguments): both table branches, pooled logistic regression (fast).
BRANCHES = {
    "tabular": dict(radiomics=None, fusion="concat"),
    "clinical": dict(radiomics=None, clinical="default", fusion="concat"),
}


def _ids(entries):
    return [e.name for e in entries]


def _labels_of(X):
    return X["he"] if "he" in X.columns else None


def _assert_mentions(text: str, entry: Hostile):
    for part in entry.mentions:
        assert part in text, f"{entry.name}: {part!r} not in message: {text}"


def _pipe(branch, **kwargs):
    return radhe.make_pipeline(**BRANCHES[branch], random_state=0, **kwargs)


def _fit_predict(branch, X):
    """(probabilities of X's cases, names of the features the model uses) of a pipeline fitted on X."""
    pipe = _pipe(branch).fit(X, X["he"])
    return pipe.predict_proba(X)[:, 1], list(pipe.named_steps["clean"].get_feature_names_out())


def test_catalogue_is_complete():
    """At least 15 hostile inputs, of every kind, with unique names, each saying what it checks."""
    assert len(CATALOGUE) >= 15 and len(BY_NAME) == len(CATALOGUE)
    assert {e.expect for e in TABLE} == {"error", "warn", "same"}
    assert {e.expect for e in LABELS} == {"error", "same"}
    assert all(e.mentions for e in CATALOGUE if e.expect != "same")
    clean = clean_manifest()
    for entry in CATALOGUE:  # every change really changes the manifest
        changed = entry.change(clean)
        assert not (changed.shape == clean.shape and changed.equals(clean)), entry.name


# ------------------------------------------------------------------------------- API: fit / predict

@pytest.mark.parametrize("branch", sorted(BRANCHES))
@pytest.mark.parametrize("entry", TABLE + [e for e in LABELS if e.expect == "same"],
                         ids=_ids(TABLE + [e for e in LABELS if e.expect == "same"]))
def test_fit_and_predict(entry, branch):
    X = entry.change(clean_manifest())
    y = _labels_of(X)
    if entry.expect == "error":
        with pytest.raises(entry.error) as raised:
            _pipe(branch).fit(X, y)
        _assert_mentions(str(raised.value), entry)
        if entry.at_predict:  # a model fitted on clean data refuses the value in a new case too
            fitted = _pipe(branch).fit(clean_manifest(), clean_manifest()["he"])
            with pytest.raises(InputError) as raised:
                fitted.predict_proba(X)
            _assert_mentions(str(raised.value), entry)
            assert "in fit" in str(raised.value)
        return

    expected, expected_names = _fit_predict(branch, entry.means(clean_manifest()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, names = _fit_predict(branch, X)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if entry.expect == "warn":
        assert any(all(part in m for part in entry.mentions) for m in messages), (entry.name, messages)
    else:
        assert not messages, (entry.name, messages)
    assert not [n for n in names if "site" in n or "notes" in n or "_id" in n or "accession" in n], names
    if entry.exact:
        assert names == expected_names
        np.testing.assert_array_equal(got, expected)
    else:  # the same features under other names and in another order: the same model up to rounding
        assert len(names) == len(expected_names)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_stacked_default_model_refuses_text_in_numbers_and_accepts_missing_markers():
    """The default (family-stacked) tabular model behaves as the pooled one of the table above."""
    entry = BY_NAME["text_in_numbers"]
    with pytest.raises(InputError) as raised:
        radhe.make_pipeline(radiomics=None, random_state=0).fit(entry.change(clean_manifest()), clean_manifest()["he"])
    _assert_mentions(str(raised.value), entry)
    entry = BY_NAME["missing_markers_as_text"]
    X, means = entry.change(clean_manifest()), entry.means(clean_manifest())
    got = radhe.make_pipeline(radiomics=None, random_state=0).fit(X, X["he"]).predict_proba(X)
    expected = radhe.make_pipeline(radiomics=None, random_state=0).fit(means, means["he"]).predict_proba(means)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("entry", [e for e in LABELS if e.expect == "error"],
                         ids=_ids([e for e in LABELS if e.expect == "error"]))
def test_fit_refuses_labels(entry):
    X = entry.change(clean_manifest())
    with pytest.raises(entry.error) as raised:
        _pipe("tabular").fit(X, _labels_of(X))
    _assert_mentions(str(raised.value), entry)
    assert str(raised.value).startswith("RadhePipeline.fit: ")


def test_labels_of_another_length_and_shape():
    X = clean_manifest()
    with pytest.raises(InputError, match="40 rows but the outcome 'he' has 39 labels"):
        _pipe("tabular").fit(X, X["he"].iloc[:-1])
    with pytest.raises(InputError, match="one-dimensional"):
        _pipe("tabular").fit(X, np.c_[X["he"], X["he"]])
    # without a manifest, rows are named by their position
    with pytest.raises(InputError, match=r"missing for 1 of 3 cases \(row 1\)"):
        check_labels([0, np.nan, 1])


# ------------------------------------------------------------------------------- API: evaluate

@pytest.mark.parametrize("entry", LABELS + [BY_NAME["text_in_numbers"], BY_NAME["constant_table"],
                                            BY_NAME["whitespace"]],
                         ids=_ids(LABELS + [BY_NAME["text_in_numbers"], BY_NAME["constant_table"],
                                            BY_NAME["whitespace"]]))
def test_evaluate(entry):
    def run(X, **kwargs):
        return radhe.evaluate(_pipe("tabular"), X, cv=3, baselines=False, explain=False, n_bootstrap=20,
                              conformal=None, threshold_cv=None, **kwargs)

    X = entry.change(clean_manifest())
    if entry.expect == "error":
        with pytest.raises(entry.error) as raised:
            run(X)
        _assert_mentions(str(raised.value), entry)
        if entry.labels and entry.name != "no_label_column":
            assert "evaluate: " in str(raised.value)
        return
    got, expected = run(X), run(entry.means(clean_manifest()))
    np.testing.assert_array_equal(got.main.score, expected.main.score)
    assert got.main.auc.auc == expected.main.auc.auc


def test_cross_validate_predictions_names_the_cases_of_missing_labels():
    from radhe.evaluation import cross_validate_predictions

    X = BY_NAME["nan_labels"].change(clean_manifest())
    with pytest.raises(InputError, match=r"cross_validate_predictions: .*missing for 2 of 40 cases \(cases 'c02', 'c05'\)"):
        cross_validate_predictions(_pipe("tabular"), X, X["he"], cv=3)


# ------------------------------------------------------------------------------- before any extraction

def test_clean_manifest_reaches_extraction():
    """The control: on the clean manifest an image pipeline gets as far as reading the (absent) images."""
    X = clean_manifest()
    with pytest.raises(InputError, match="file not found"):
        radhe.make_pipeline(random_state=0).fit(X, X["he"])


@pytest.mark.parametrize("entry", [e for e in ERRORS if e.extraction], ids=_ids([e for e in ERRORS if e.extraction]))
def test_refused_before_extraction(entry):
    """Label and column errors come first: before any image is read (radiomics) or any network trained."""
    X = entry.change(clean_manifest())
    for pipeline in (radhe.make_pipeline(random_state=0), radhe.make_pipeline(cnn="roi_cnn", radiomics=None,
                                                                              random_state=0)):
        with pytest.raises(entry.error) as raised:
            pipeline.fit(X, _labels_of(X))
        assert "not found" not in str(raised.value)
        _assert_mentions(str(raised.value), entry)


# ------------------------------------------------------------------------------- feature cleaning

@pytest.mark.parametrize(
    "table, reasons",
    [
        (pd.DataFrame({"f__a": np.ones(6), "f__b": np.full(6, np.nan)}), ["f__a: constant", "f__b: no finite value"]),
        (pd.DataFrame({"f__a": [np.inf, -np.inf, np.nan, np.inf, 1.0, 1.0]}), ["f__a: constant"]),
        (pd.DataFrame({"f__rare": np.r_[1.0, np.zeros(99)]}), ["f__rare: near-constant (99 of 100 rows"]),
    ],
    ids=["constant_and_all_nan", "inf_and_one_value", "near_constant"],
)
def test_feature_cleaner_with_nothing_left_names_every_feature(table, reasons):
    y = np.arange(len(table)) % 2
    with pytest.raises(InputError) as raised:
        FeatureCleaner().fit(table, y)
    for reason in reasons:
        assert reason in str(raised.value)
    with pytest.raises(InputError, match="0 feature"):  # no column at all: still a radhe error
        FeatureCleaner().fit(np.empty((5, 0)), y[:5])


def test_configuration_errors_stay_configuration_errors():
    with pytest.raises(ConfigurationError, match="outcome"):
        _pipe("clinical").set_params(features__clinical__columns=["age_years", "he"]).fit(
            clean_manifest(), clean_manifest()["he"])


# ------------------------------------------------------------------------------- the command line

def _write(X: pd.DataFrame, folder: Path) -> Path:
    path = folder / "manifest.csv"
    X.to_csv(path, index=False)
    return path


def _cli_args(command: str, manifest: Path, out: Path) -> list[str]:
    if command == "validate":
        return ["validate", "--manifest", str(manifest), "--label", "he"]
    if command == "fit":
        return ["fit", "--manifest", str(manifest), "--out", str(out / "model.joblib")]
    return ["evaluate", "--manifest", str(manifest), "--out", str(out / "evaluation"), "--folds", "3",
            "--bootstrap", "10"]


CLI_CASES = [(e, c) for e in CATALOGUE for c in e.cli]


@pytest.mark.parametrize("entry, command", CLI_CASES, ids=[f"{e.name}-{c}" for e, c in CLI_CASES])
def test_cli(entry, command, tmp_path, capsys):
    manifest = _write(entry.change(clean_manifest()), tmp_path)
    status = main(_cli_args(command, manifest, tmp_path))
    err = capsys.readouterr().err
    assert status == 1, err
    assert "radhe: error: " in err and "Traceback" not in err, err
    err = err[err.index("radhe: error: "):]  # after the progress lines
    if entry.expect == "error":
        _assert_mentions(err, entry)
        assert "not found" not in err  # refused before any image was read
    else:  # accepted: the run gets as far as the (absent) images, as the clean manifest does
        assert "file not found" in err, err
    assert not (tmp_path / "model.joblib").exists()


def test_cli_console_script_refuses_text_in_numbers(tmp_path):
    """The installed ``radhe`` command, as a user runs it."""
    entry = BY_NAME["number_with_unit"]
    manifest = _write(entry.change(clean_manifest()), tmp_path)
    exe = shutil.which("radhe") or str(Path(sys.executable).with_name("radhe"))
    result = subprocess.run([exe, "fit", "--manifest", str(manifest), "--out", str(tmp_path / "m.joblib")],
                            capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert result.returncode == 1, result.stderr
    _assert_mentions(result.stderr, entry)
    assert "Traceback" not in result.stderr
