"""ClinicalFeatures and TabularFeatures: column choice, leakage, imputation, encoding."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.features import ClinicalFeatures, TabularFeatures
from radhe.features.tabular import OUTCOME_COLUMNS


def manifest(n=12, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "case_id": [f"ich{i:04d}" for i in range(n)],
            "patient_id": [f"p{i // 2:04d}" for i in range(n)],
            "image": [f"/data/images/ich{i:04d}.nii" for i in range(n)],
            "mask": [f"/data/masks/ich{i:04d}.nii" for i in range(n)],
            "site": rng.choice(["site_a", "site_b"], n),
            "age_years": rng.normal(65, 10, n).round(),
            "sex": rng.choice(["F", "M"], n),
            "gcs": rng.integers(3, 16, n),
            "anticoagulant": rng.integers(0, 2, n),
            "location": ["basal_ganglia", "thalamus", "lobar"] * (n // 3),
            "baseline_volume_ml": rng.gamma(2, 10, n),
            "followup_volume_ml": rng.gamma(2, 12, n),
            "he": rng.integers(0, 2, n),
        },
        index=pd.RangeIndex(100, 100 + n),
    )
    frame.loc[[101, 104], "age_years"] = np.nan
    frame.loc[102, "sex"] = None
    return frame


def test_auto_columns_exclude_reserved_outcome_paths_and_site():
    m = manifest()
    m["mask_pred"] = [f"/tmp/pred/{c}.nii.gz" for c in m["case_id"]]
    m["some_path"] = [f"relative/{c}.nrrd" for c in m["case_id"]]
    out = ClinicalFeatures().fit_transform(m)
    used = ClinicalFeatures().fit(m).columns_
    assert set(used) == {"age_years", "sex", "gcs", "anticoagulant", "location", "baseline_volume_ml"}
    for forbidden in ("he", "followup_volume_ml", "case_id", "patient_id", "image", "mask", "mask_pred",
                      "some_path", "site"):
        assert not any(name.split("__", 1)[1].startswith(forbidden) for name in out.columns), forbidden
    assert all(name.startswith("clinical__") for name in out.columns)


def test_exclude_and_site_opt_in():
    m = manifest()
    assert "site" in ClinicalFeatures(exclude=()).fit(m).columns_
    assert "gcs" not in ClinicalFeatures(exclude=("site", "gcs")).fit(m).columns_
    assert "gcs" not in ClinicalFeatures(exclude="gcs").fit(m).columns_


@pytest.mark.parametrize("cls", [ClinicalFeatures, TabularFeatures])
@pytest.mark.parametrize("outcome", OUTCOME_COLUMNS)
def test_explicit_outcome_column_is_refused(cls, outcome):
    with pytest.raises(ConfigurationError, match="outcome"):
        cls(columns=["age_years", outcome]).fit(manifest())


def test_outcome_never_reaches_the_model():
    """A table whose only signal is in the outcome columns must give a chance-level model."""
    from sklearn.model_selection import cross_val_score

    from radhe.model_selection import PatientStratifiedKFold
    from radhe.pipeline import make_pipeline

    rng = np.random.default_rng(3)
    n = 80
    y = rng.integers(0, 2, n)
    table = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "patient_id": [f"p{i}" for i in range(n)],
            "noise_a": rng.normal(size=n),
            "noise_b": rng.normal(size=n),
            "he": y,
            "followup_volume_ml": 10 + 30 * y + rng.normal(size=n),
        }
    )
    for kwargs in ({"radiomics": None}, {"radiomics": None, "clinical": ClinicalFeatures()}):
        pipe = make_pipeline(**kwargs, random_state=0)
        pipe.fit(table, y)
        names = list(pipe.named_steps["features"].get_feature_names_out())
        assert not any("he" == n.split("__", 1)[1] or "followup" in n for n in names), names
        scores = cross_val_score(pipe, table, y, cv=PatientStratifiedKFold(4, random_state=0), scoring="roc_auc")
        assert scores.mean() < 0.8


def test_imputation_uses_training_rows_only():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, np.nan], "c": ["a", "a", "b", None]})
    test = pd.DataFrame({"x": [np.nan, 100.0], "c": [None, "b"]}, index=[7, 9])
    cf = ClinicalFeatures().fit(train)
    assert cf.medians_["x"] == 2.0
    assert cf.modes_["c"] == "a"
    out = cf.transform(test)
    assert list(out.index) == [7, 9]
    assert list(out.columns) == ["clinical__x", "clinical__x_missing", "clinical__c_b"]
    np.testing.assert_array_equal(out.to_numpy(), [[2.0, 1.0, 0.0], [100.0, 0.0, 1.0]])


def test_missing_indicator_only_where_missing():
    m = manifest()
    names = ClinicalFeatures().fit(m).get_feature_names_out()
    assert "clinical__age_years_missing" in names
    assert "clinical__gcs_missing" not in names
    assert "clinical__age_years_missing" not in ClinicalFeatures(missing_indicator=False).fit(m).get_feature_names_out()


def test_infinite_values_are_imputed():
    frame = pd.DataFrame({"x": [1.0, np.inf, 3.0, -np.inf, 5.0]})
    out = ClinicalFeatures().fit_transform(frame)
    assert np.isfinite(out.to_numpy()).all()
    assert out["clinical__x"].tolist() == [1.0, 3.0, 3.0, 3.0, 5.0]


def test_one_hot_encoding_and_unseen_categories():
    m = manifest()
    cf = ClinicalFeatures().fit(m)
    names = list(cf.get_feature_names_out())
    assert "clinical__sex_M" in names and "clinical__sex_F" not in names  # two levels -> one column
    assert {"clinical__location_basal_ganglia", "clinical__location_lobar", "clinical__location_thalamus"} <= set(names)
    new = m.iloc[:3].copy()
    new["location"] = ["cerebellar", "lobar", None]  # unseen, seen, missing
    with pytest.raises(InputError, match="location.*'cerebellar' \\(case 'ich0000'\\)"):
        cf.transform(new)  # unseen categories are refused by default (see test_clinical_categories.py)
    with pytest.warns(InputWarning, match="cerebellar"):
        out = ClinicalFeatures(handle_unknown="ignore").fit(m).transform(new)
    loc = out[[c for c in names if c.startswith("clinical__location_")]]
    assert loc.iloc[0].sum() == 0  # unseen, ignored -> all zeros
    assert loc.iloc[1]["clinical__location_lobar"] == 1
    assert loc.iloc[2].sum() == 1  # missing -> most frequent category


def test_transform_without_outcome_columns_and_with_extra_columns():
    m = manifest()
    cf = ClinicalFeatures().fit(m)
    new = m.drop(columns=["he", "followup_volume_ml"]).assign(extra=1.0).iloc[::-1]
    out = cf.transform(new)
    assert list(out.index) == list(new.index)
    pd.testing.assert_frame_equal(out.sort_index(), cf.transform(m))


def test_missing_used_column_names_it():
    m = manifest()
    cf = ClinicalFeatures().fit(m)
    with pytest.raises(InputError, match="gcs"):
        cf.transform(m.drop(columns=["gcs"]))


def test_explicit_columns_and_forced_categorical():
    m = manifest()
    cf = ClinicalFeatures(columns=["gcs", "sex"], categorical=["gcs"]).fit(m)
    assert cf.categorical_columns_ == ["gcs", "sex"]
    assert all(n.startswith(("clinical__gcs_", "clinical__sex_")) for n in cf.get_feature_names_out())
    with pytest.raises(InputError, match="nonexistent"):
        ClinicalFeatures(columns=["nonexistent"]).fit(m)


def test_identifier_like_text_column_is_dropped_with_a_warning():
    m = manifest()
    m["accession"] = [f"ACC{i}" for i in range(len(m))]
    with pytest.warns(UserWarning, match="accession"):
        cf = ClinicalFeatures(max_categories=5).fit(m)
    assert "accession" not in cf.columns_
    assert "accession" in cf.dropped_columns_


def test_numbers_stored_as_text_are_numeric():
    frame = pd.DataFrame({"x": np.array([1.5, 2.5, "3"], dtype=object)})
    cf = ClinicalFeatures().fit(frame)
    assert cf.numeric_columns_ == ["x"]


def test_tabular_passes_numbers_through_unchanged():
    m = manifest()
    m.loc[100, "baseline_volume_ml"] = np.inf
    tf = TabularFeatures().fit(m)
    out = tf.transform(m)
    assert all(name.startswith("tabular__") for name in out.columns)
    # every non-reserved, non-outcome column is a feature, except the site (as in ClinicalFeatures)
    assert {"age_years", "baseline_volume_ml"} <= set(tf.columns_) and "site" not in tf.columns_
    assert "site" in TabularFeatures(exclude=()).fit(m).columns_
    assert np.isnan(out.loc[101, "tabular__age_years"])  # NaN left for the pipeline's clean step
    assert np.isinf(out.loc[100, "tabular__baseline_volume_ml"])
    np.testing.assert_array_equal(out["tabular__gcs"], m["gcs"].astype(float))


def test_numpy_input_gets_generic_names():
    X = np.arange(12.0).reshape(4, 3)
    out = TabularFeatures().fit_transform(X)
    assert list(out.columns) == ["tabular__x0", "tabular__x1", "tabular__x2"]


def test_no_warning_on_a_clean_manifest():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ClinicalFeatures().fit_transform(manifest())


@pytest.mark.parametrize("cls", [ClinicalFeatures, TabularFeatures])
def test_outcome_under_another_name_is_flagged(cls):
    X = manifest()
    X["expansion"] = X["he"]  # the outcome, not named as in OUTCOME_COLUMNS
    with pytest.warns(UserWarning, match=r"\['expansion'\] equal the outcome"):
        cls().fit(X, X["he"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls().fit(X.drop(columns="expansion"), X["he"])
        cls(exclude=("site", "expansion")).fit(X, X["he"])


def test_site_is_never_a_feature_by_default_on_the_tabular_path():
    import radhe

    m = manifest()
    y = (np.arange(len(m)) % 3 == 0).astype(int)
    pipe = radhe.make_pipeline(radiomics=None, random_state=0).fit(m, y)
    names = list(pipe.named_steps["features"].get_feature_names_out())
    assert names and not [n for n in names if "site" in n]


@pytest.mark.parametrize("cls", [ClinicalFeatures, TabularFeatures])
def test_free_text_is_judged_against_the_number_of_cases(cls):
    n = 40
    table = pd.DataFrame({
        "x": np.arange(n, dtype=float),
        "notes": [f"note {i}" for i in range(n)],  # 40 < max_categories, but every value seen once
        "grade": ["a", "a", "b", "b", "c", "c", "d", "a"] * (n // 8),
    })
    with pytest.warns(UserWarning, match=r"'notes' \(text with 40 distinct values in 40 cases, 40 of them seen once"):
        fitted = cls().fit(table)
    assert fitted.columns_ == ["x", "grade"]
    assert "notes" in fitted.dropped_columns_
    # a genuine category keeps working in a handful of cases, also with a rare level
    few = pd.DataFrame({"sex": ["F", "M", "M"], "location": ["deep", "deep", "lobar"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cls().fit(few).categorical_columns_ == ["sex", "location"]
        rare = pd.DataFrame({"location": ["deep", "lobar", "deep", "lobar", "infratentorial", "cerebellar"]})
        assert cls().fit(rare).categories_["location"] == ["cerebellar", "deep", "infratentorial", "lobar"]
    # named explicitly, the notes are the user's categories
    assert cls(columns=["notes"]).fit(table).categorical_columns_ == ["notes"]


@pytest.mark.parametrize("cls", [ClinicalFeatures, TabularFeatures])
def test_text_among_numbers_names_the_column_rows_and_values(cls):
    array = np.array([[1.0, "a"], ["unknown", "b"], [3.0, "a"], ["5 mL", "b"]], dtype=object)
    with pytest.raises(InputError, match=r"column 'x0' holds numbers, but 2 values are not numbers: "
                                         r"'unknown' \(row 1\), '5 mL' \(row 3\)\. A value such as '5 mL' carries a unit"):
        cls().fit(array)
    # declared categorical, the same column is encoded as categories without complaint
    assert cls(categorical=["x0"]).fit(array).categorical_columns_ == ["x0", "x1"]
    # a number in a text column of categories is just another category
    side = pd.DataFrame({"side": ["left", "right", "left", "2", "right", "2"]})
    assert cls().fit(side).categories_["side"] == ["2", "left", "right"]


def test_missing_markers_whitespace_and_infinite_values_at_transform():
    train = pd.DataFrame({"case_id": ["a", "b", "c", "d"], "x": [1.0, 2.0, 3.0, 4.0], "sex": ["F", "M", "M", "F"]})
    cf = ClinicalFeatures().fit(train)
    new = pd.DataFrame({"case_id": ["e", "f", "g"], "x": [" 2 ", "NA", np.inf], "sex": [" M", "n/a", "F "]})
    with pytest.warns(UserWarning, match=r"infinite values replaced by the training median.*'x' \(case 'g'\)"):
        out = cf.transform(new)
    # "NA" and inf take the training median (2.5); " M" is M; "n/a" takes the most frequent sex (F, first of a tie)
    np.testing.assert_array_equal(out.to_numpy(), [[2.0, 1.0], [2.5, 0.0], [2.5, 0.0]])
    with pytest.raises(InputError, match=r"column 'x' held numbers in fit, but 1 value is not a number: 'high' \(case 'h'\)"):
        cf.transform(pd.DataFrame({"case_id": ["h"], "x": ["high"], "sex": ["F"]}))
