"""Hostile settings and tables: evaluation settings that would run and report nonsense, manifests
whose columns or identifiers cannot be read unambiguously, command-line values outside their range.

Each is refused before anything is fitted, with a message that names the setting, or the rows."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

import radhe
from radhe.cli import main
from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.evaluation import cross_validate_predictions


def _table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"case_id": [f"c{i:02d}" for i in range(n)], "patient_id": [f"p{i:02d}" for i in range(n)],
                      "age_years": rng.normal(70, 10, n)})
    X["he"] = (X["age_years"] + rng.normal(0, 10, n) > 72).astype(int)
    return X


class _Age(LogisticRegression):
    """A logistic regression on the table's age column (the rest of the manifest ignored)."""

    def fit(self, X, y, **kwargs):
        return super().fit(X[["age_years"]], y)

    def predict_proba(self, X):
        return super().predict_proba(X[["age_years"]])


@pytest.mark.parametrize("settings, message", [
    ({"threshold": float("nan")}, r"finite number; got nan"),
    ({"threshold": float("inf")}, r"finite number; got inf"),
    ({"threshold": "median"}, r"'youden', 'sensitivity' or a number"),
    ({"threshold_cv": 1}, r"threshold_cv must be None, 0 .* or an integer >= 2"),
    ({"target_sensitivity": 1.5}, r"target_sensitivity must be a number in \(0, 1\]"),
    ({"conformal": 90}, r"conformal must be None or a confidence in \(0, 1\)"),
    ({"n_bootstrap": -5}, r"n_bootstrap must be a whole number >= 0"),
])
def test_evaluate_refuses_settings_before_fitting(settings, message):
    class Recorder(_Age):
        def fit(self, X, y, **kwargs):
            raise AssertionError("fitted before the settings were checked")

    with pytest.raises(ConfigurationError, match=message):
        radhe.evaluate(Recorder(), _table(), cv=3, baselines=False, explain=False, **settings)
    if "n_bootstrap" not in settings:
        with pytest.raises(ConfigurationError, match=message):
            cross_validate_predictions(Recorder(), _table(), _table()["he"], cv=3, **settings)


def test_a_fixed_threshold_outside_the_probabilities_is_refused():
    X = _table()
    with pytest.raises(ConfigurationError, match=r"threshold=5 lies outside \[0, 1\].*probabilities of _Age"):
        cross_validate_predictions(_Age(), X, X["he"], cv=3, threshold=5, threshold_cv=None, conformal=None)
    # inside the range it is used as it is, in every fold
    pred = cross_validate_predictions(_Age(), X, X["he"], cv=3, threshold=0.4, threshold_cv=None, conformal=None)
    assert set(pred.frame["threshold"]) == {0.4}


def test_no_bootstrap_is_a_run_without_bootstrap_intervals():
    result = radhe.evaluate(_Age(), _table(), cv=3, baselines=False, explain=False, n_bootstrap=0,
                            threshold_cv=None, conformal=None)
    assert np.isfinite(result.main.auc.auc) and np.isfinite(result.main.metrics.loc["sensitivity", "estimate"])


def test_an_inner_threshold_cv_too_fine_for_a_small_cohort_says_so():
    X = _table(n=8, seed=1)
    X["he"] = [1, 1, 1, 0, 0, 0, 0, 0]
    with pytest.raises(InputError, match=r"threshold_cv=3, the inner cross-validation .* on its 4 training case"
                                         r".*each outcome has fewer cases than folds"):
        radhe.evaluate(_Age(), X, cv=2, baselines=False, explain=False, n_bootstrap=10, conformal=None)
    # the outer folds too, named by their counts
    with pytest.raises(InputError, match=r"cannot make 6 stratified folds from 8 case\(s\) \(5 with y=0, 3 with y=1\)"):
        list(radhe.model_selection.PatientStratifiedKFold(6).split(X, X["he"]))


def test_manifest_with_a_repeated_column_name_is_refused(tmp_path):
    X = _table(3).assign(image=["a.nii", "b.nii", "c.nii"])
    repeated = pd.concat([X, X[["image"]]], axis=1)
    with pytest.raises(InputError, match=r"column name\(s\) \['image'\] appear more than once"):
        radhe.load_manifest(repeated)
    # a CSV header repeating a name: pandas would rename the second 'image.1' and read the first
    path = tmp_path / "m.csv"
    path.write_text("case_id,image,image\nc1,a.nii,b.nii\n")
    with pytest.raises(InputError, match=r"manifest '.*m.csv': column name\(s\) \['image'\] appear more than once"):
        radhe.load_manifest(path)
    # a repeated column radhe does not read (an export's two "Comment" columns) is told apart, with a warning
    path.write_text("case_id,image,Comment,Comment\nc1,a.nii,x,y\n")
    with pytest.warns(InputWarning, match=r"\['Comment'\] appear more than once; radhe does not read them"):
        assert list(radhe.load_manifest(path).columns[:4]) == ["case_id", "image", "Comment", "Comment.1"]
    # unnamed columns (an index written by pandas) keep pandas' names and are no repetition
    path.write_text("case_id,image,,\nc1,a.nii,1,2\n")
    assert list(radhe.load_manifest(path).columns[:4]) == ["case_id", "image", "Unnamed: 2", "Unnamed: 3"]


@pytest.mark.parametrize("blank", ["", "   "])
def test_manifest_with_a_blank_case_id_is_refused(blank):
    X = _table(3).assign(image=["a.nii", "b.nii", "c.nii"])
    X.loc[1, "case_id"] = blank
    with pytest.raises(InputError, match=r"case_id is blank in row\(s\) 1"):
        radhe.load_manifest(X)


@pytest.mark.parametrize("argv, message", [
    (["predict", "--model", "m.skops", "--manifest", "m.csv", "--out", "p.csv", "--threshold", "nan"],
     r"--threshold: 'nan': a probability threshold lies in \[0, 1\]"),
    (["predict", "--model", "m.skops", "--manifest", "m.csv", "--out", "p.csv", "--threshold", "1.5"],
     r"--threshold: '1.5'"),
    (["segment", "--manifest", "m.csv", "--out", "o", "--threshold", "1.5"], r"lies in \(0, 1\]"),
    (["segment", "--manifest", "m.csv", "--out", "o", "--threshold", "0"], r"lies in \(0, 1\]"),
    (["extract", "--manifest", "m.csv", "--out", "f.csv", "-j", "0"], r"-j/--n-jobs: '0': give 1 or more"),
    (["evaluate", "--manifest", "m.csv", "--out", "o", "--bootstrap", "-5"], r"--bootstrap: '-5'"),
])
def test_cli_refuses_values_outside_their_range(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_estimators_refuse_settings_outside_their_range():
    from radhe.features import RadiomicsFeatures
    from radhe.nn import HematomaSegmenter

    with pytest.raises(InvalidParameterError, match="n_jobs"):
        RadiomicsFeatures(n_jobs=0).fit(_table(2).assign(image=["a.nii", "b.nii"], mask=["a", "b"]))
    with pytest.raises(InvalidParameterError, match="threshold"):
        HematomaSegmenter(threshold=1.5).fit(_table(2).assign(image=["a.nii", "b.nii"], mask=["a", "b"]))


def test_python_dash_m_radhe_runs_the_command_line():
    out = subprocess.run([sys.executable, "-m", "radhe", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("radhe ")


@pytest.mark.parametrize("transformers, message", [
    ([("a", 3)], r"branch 'a' must be a transformer .* got 3"),
    ([("a", "passthrough")], r"branch 'a' must be a transformer .* got 'passthrough'"),
    ("clinical", r"transformers must be a list of \(name, transformer\) pairs"),
    ([("a",)], r"each branch must be a \(name, transformer\) pair"),
])
def test_feature_fusion_refuses_branches_that_are_not_transformers(transformers, message):
    from radhe.features.fusion import FeatureFusion

    with pytest.raises(ConfigurationError, match=message):
        FeatureFusion(transformers).fit(_table(4))


def test_a_categorical_column_that_is_not_in_the_table_is_refused():
    from radhe.features import ClinicalFeatures

    with pytest.raises(InputError, match=r"categorical column\(s\) \['agee'\] not found"):
        ClinicalFeatures(categorical=["agee"]).fit(_table(6))


def test_selectors_name_themselves_in_parameter_errors():
    from radhe.selection import FeatureCleaner, KBestSelector

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), np.r_[np.zeros(5), np.ones(5)]
    for estimator, name in ((KBestSelector(k=-1), "'k' parameter of KBestSelector"),
                            (KBestSelector(k=True), "k must be a non-negative integer"),
                            (KBestSelector(score_func="mutual_info", random_state="seed"),
                             "'random_state' parameter of KBestSelector"),
                            (KBestSelector(score_func="chi2"), "'score_func' parameter of KBestSelector"),
                            (FeatureCleaner(near_constant=2), "'near_constant' parameter of FeatureCleaner")):
        with pytest.raises(ConfigurationError, match=re.escape(name)):
            estimator.fit(X, y)


def test_an_outcome_given_as_one_column_is_read_as_labels_with_a_warning():
    from sklearn.exceptions import DataConversionWarning

    from radhe._checks import check_labels

    X = _table(6)
    X["he"] = [0, 1, 0, 1, 1, 0]
    for column in (X[["he"]], X[["he"]].to_numpy()):
        with pytest.warns(DataConversionWarning, match="given as a column"):
            assert check_labels(column, X, where="fit").tolist() == [0, 1, 0, 1, 1, 0]
    shuffled = X[["he"]].iloc[::-1]  # a one-column table is still aligned by its index
    with pytest.warns(DataConversionWarning), pytest.raises(InputError, match="index"):
        check_labels(shuffled, X, where="fit", aligned=True)
    with pytest.raises(InputError, match="must be one-dimensional"):
        check_labels(np.c_[X["he"], X["he"]], X, where="fit")
