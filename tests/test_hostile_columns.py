"""Hostile manifest columns for the table branches: text that looks like a path but is not one, the
outcome under another name as text, and input columns whose features would share a name.

radhe's rule for the table branches: nothing is silently dropped or changed (a column left out is
named in a warning and in ``dropped_columns_``) and leakage is a bug.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import FunctionTransformer

import radhe
from radhe.errors import ConfigurationError, InputError
from radhe.features import ClinicalFeatures, FeatureFusion, TabularFeatures
from radhe.features.tabular import _is_path

N = 30
BRANCHES = [ClinicalFeatures, TabularFeatures]


def manifest(n=N, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:02d}" for i in range(n)]
    age = rng.normal(70, 10, n).round()
    he = (0.08 * (age - 70) + rng.normal(0, 1, n) > 0).astype(int)
    return pd.DataFrame({
        "case_id": ids,
        "patient_id": [f"p{i:02d}" for i in range(n)],
        "image": [f"/nonexistent/radhe-columns/{c}.nii.gz" for c in ids],
        "mask": [f"/nonexistent/radhe-columns/{c}_mask.nii.gz" for c in ids],
        "age_years": age,
        "gcs": rng.integers(3, 16, n),
        "sex": np.array(["F", "M"] * (n // 2)),
        "he": he,
    })


def fit_recording(transformer, X, y=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        transformer.fit(X, y)
    return [str(w.message) for w in caught]


# ----------------------------------------------------------------------------- path-like text

@pytest.mark.parametrize("value", ["160/90", "185/100", "DOAC/apixaban", "warfarin/INR>3", "none/none",
                                   "ASA/clopidogrel", "1/2", "n/k", "apixaban", "~5", "GCS 14/15", "/"])
def test_clinical_text_with_a_slash_is_not_a_path(value):
    assert not _is_path(value)


@pytest.mark.parametrize("value", ["/data/ct/c01", "./ct/c01", "../ct/c01", "~/ct/c01", "~ana/ct", "C:\\scans\\c01",
                                   "D:/scans/c01", "\\\\server\\share\\c01", "ct/c01.nii.gz", "c01.NII.GZ",
                                   "c01.nrrd", "c01.mha", "c01.mhd", "c01.dcm", "dicom/c01/", "s3://bucket/c01"])
def test_paths_are_paths(value):
    assert _is_path(value)


def test_every_image_suffix_radhe_reads_is_a_path():
    from radhe.io.image import IMAGE_SUFFIXES

    assert all(_is_path(f"scan{suffix}") and _is_path(f"cases/c01{suffix.upper()}") for suffix in IMAGE_SUFFIXES)


@pytest.mark.parametrize("cls", BRANCHES)
def test_text_with_slashes_is_used_not_silently_dropped(cls):
    m = manifest()
    m["anticoag_agent"] = ["warfarin/INR>3", "DOAC/apixaban", "none/none"] * (N // 3)
    m["bp_band"] = ["160/90", "185/100", "140/85"] * (N // 3)
    fitted = cls().fit(m)
    assert {"anticoag_agent", "bp_band"} <= set(fitted.categorical_columns_)
    assert f"{fitted._family}__bp_band_160/90" in fitted.feature_names_out_
    assert fitted.dropped_columns_ == {}


@pytest.mark.parametrize("cls", BRANCHES)
@pytest.mark.parametrize("paths", [
    lambda ids: [f"seg/{c}.nii.gz" for c in ids],                                   # relative, by suffix
    lambda ids: [f"/archive/dicom/{c}" for c in ids],                               # absolute DICOM folders
    lambda ids: [f"dicom/{c}" if i % 2 else f"/archive/{c}.nrrd" for i, c in enumerate(ids)],  # mixed
    lambda ids: [f"C:\\scans\\{c}" if i % 3 else None for i, c in enumerate(ids)],   # Windows, some missing
    lambda ids: pd.Categorical([f"~/seg/{c}" for c in ids]),                         # categorical dtype
])
def test_a_path_column_left_out_is_recorded_and_named(cls, paths):
    m = manifest()
    m["segmentation_file"] = paths(m["case_id"])
    transformer = cls()
    messages = fit_recording(transformer, m)
    assert "segmentation_file" not in transformer.columns_
    assert transformer.dropped_columns_["segmentation_file"].startswith("file paths such as ")
    assert any("'segmentation_file' (file paths such as" in message and "column(s) not used" in message
               for message in messages), messages


@pytest.mark.parametrize("cls", BRANCHES)
def test_a_column_of_paths_and_clinical_text_is_not_a_path_column(cls):
    m = manifest()
    m["anticoag_agent"] = ["/none", "DOAC apixaban", "warfarin"] * (N // 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = cls().fit(m)
    assert "anticoag_agent" in fitted.columns_


# ----------------------------------------------------------------------- the outcome renamed

def _yes_no(y):
    return np.where(y == 1, "yes", "no")


OUTCOME_COPIES = {
    "text yes/no": _yes_no,
    "text yes/no, some missing": lambda y: np.where(np.arange(len(y)) % 7 == 0, None, _yes_no(y)),
    "text inverted (no/yes)": lambda y: np.where(y == 1, "no", "yes"),
    "numeric 0/1 inverted": lambda y: 1 - y,
    "numeric copy": lambda y: y.astype(float),
    "numeric recoding 3/7": lambda y: np.where(y == 1, 7, 3),
    "boolean": lambda y: y == 1,
    "categorical dtype": lambda y: pd.Categorical(_yes_no(y)),
}


@pytest.mark.parametrize("cls", BRANCHES)
@pytest.mark.parametrize("copy", list(OUTCOME_COPIES), ids=list(OUTCOME_COPIES))
def test_the_outcome_under_another_name_is_flagged_whatever_its_type(cls, copy):
    m = manifest(n=40)  # a column with missing values is judged on 30 rows with a value or more
    y = m["he"].to_numpy()
    X = m.drop(columns=["he"])
    X["expansion_at_24h"] = OUTCOME_COPIES[copy](y)
    with pytest.warns(UserWarning, match=r"\['expansion_at_24h'\] equal the outcome y"):
        cls().fit(X, y)
    # y given as text is the same outcome
    with pytest.warns(UserWarning, match=r"\['expansion_at_24h'\] equal the outcome y"):
        cls().fit(X, _yes_no(y))


def test_the_warning_says_how_the_values_map_onto_y():
    m = manifest(n=40)
    X = m.drop(columns=["he"]).assign(expansion_at_24h=_yes_no(m["he"].to_numpy()))
    with pytest.warns(UserWarning, match=r"'expansion_at_24h': 'no' is y=0, 'yes' is y=1 on 40 training rows"):
        ClinicalFeatures().fit(X, m["he"])
    X.loc[[0, 5], "expansion_at_24h"] = None
    with pytest.warns(UserWarning, match=r"the 38 of 40 training rows with a value"):
        ClinicalFeatures().fit(X, m["he"])
    with pytest.warns(UserWarning, match=r"remove them from columns=\[\.\.\.\]"):
        ClinicalFeatures(columns=["age_years", "expansion_at_24h"]).fit(X, m["he"])


@pytest.mark.parametrize("cls", BRANCHES)
def test_a_predictive_but_imperfect_column_is_not_flagged(cls):
    m = manifest()
    y = m["he"].to_numpy()
    X = m.drop(columns=["he"])
    almost = _yes_no(y)
    almost[3] = "no" if almost[3] == "yes" else "yes"   # one case disagrees
    X["expansion_at_24h"] = almost
    X["flag"] = np.where(y == 1, 1.0, 0.0)
    X.loc[X.index[:N - 6], "flag"] = np.nan               # matches y, but on 6 rows only: chance
    X["score"] = y + np.linspace(0, 0.5, N)                # many values: a score, not a copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls().fit(X, y)
        cls().fit(X.assign(expansion_at_24h=_yes_no(y)), np.zeros(N, int))  # y of one class


def test_the_outcome_as_text_is_flagged_in_a_pipeline():
    m = manifest()
    X = m.drop(columns=["he"]).assign(expansion_at_24h=_yes_no(m["he"].to_numpy()))
    with pytest.warns(UserWarning, match=r"\['expansion_at_24h'\] equal the outcome y"):
        radhe.make_pipeline(radiomics=None, random_state=0).fit(X, m["he"])


# ------------------------------------------------------------------------ feature name collisions

@pytest.mark.parametrize("cls", BRANCHES)
def test_a_numeric_column_named_like_a_one_hot_column_is_refused(cls):
    m = manifest()
    m["sex_M"] = np.linspace(0, 1, N)
    family = cls._family
    with pytest.raises(InputError, match=rf"\['sex_M', 'sex'\].*'{family}__sex_M'.*rename") as caught:
        cls().fit(m)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InputError, match="columns=\\[\\.\\.\\.\\] without one of them"):
        cls(columns=["sex", "sex_M"]).fit(m)
    # either column alone is fine
    assert f"{family}__sex_M" in cls(exclude=("sex_M",)).fit(m).feature_names_out_
    assert f"{family}__sex_M" in cls(exclude=("sex",)).fit(m).feature_names_out_


def test_a_column_named_like_a_missing_value_indicator_is_refused():
    m = manifest()
    m.loc[[1, 4], "age_years"] = np.nan
    m["age_years_missing"] = np.linspace(0, 1, N)
    with pytest.raises(InputError, match=r"'clinical__age_years_missing' from the numeric column "
                                         r"'age_years_missing' and from the missing-value indicator"):
        ClinicalFeatures().fit(m)
    # TabularFeatures adds no indicator: no collision
    assert "tabular__age_years_missing" in TabularFeatures().fit(m).feature_names_out_


def test_two_text_columns_whose_categories_collide_are_refused():
    m = manifest()
    m["route"] = ["iv_bolus", "oral", "sc"] * (N // 3)
    m["route_iv"] = ["bolus", "none", "infusion"] * (N // 3)
    with pytest.raises(InputError, match=r"'clinical__route_iv_bolus' from category 'iv_bolus' of the column "
                                         r"'route' and from category 'bolus' of the column 'route_iv'"):
        ClinicalFeatures().fit(m)


def test_a_column_listed_twice_is_refused():
    with pytest.raises(ConfigurationError, match=r"\['gcs'\] listed more than once"):
        ClinicalFeatures(columns=["gcs", "age_years", "gcs"]).fit(manifest())


def test_a_collision_in_a_pipeline_is_refused_by_the_branch_not_blamed_on_several_branches():
    m = manifest()
    m["sex_M"] = np.linspace(0, 1, N)
    with pytest.raises(InputError, match=r"(Clinical|Tabular)Features: the input columns \['sex_M', 'sex'\]") as caught:
        radhe.make_pipeline(radiomics=None, random_state=0).fit(m, m["he"])
    assert "several branches" not in str(caught.value)


def _renamed(columns):
    return FunctionTransformer(lambda X: X[["age_years", "gcs"]].set_axis(columns, axis=1))


def test_fusion_names_the_branch_that_repeats_a_column():
    m = manifest()
    fusion = FeatureFusion([("clinical", ClinicalFeatures()), ("scores", _renamed(["scores__a", "scores__a"]))])
    with pytest.raises(ConfigurationError, match=r"branch 'scores' produces the column\(s\) \['scores__a'\] "
                                                 r"more than once") as caught:
        fusion.fit(m)
    assert "several branches" not in str(caught.value)


def test_fusion_names_the_branches_that_share_a_column():
    m = manifest()
    fusion = FeatureFusion([("clinical", ClinicalFeatures()), ("scores", _renamed(["clinical__gcs", "b"]))])
    with pytest.raises(ConfigurationError, match=r"several branches produce the same column\(s\): "
                                                 r"'clinical__gcs' by branches \['clinical', 'scores'\]"):
        fusion.fit(m)


@pytest.mark.parametrize("cls", BRANCHES)
def test_a_column_empty_for_every_new_case_is_named_with_the_value_imputed(cls):
    table = manifest()
    table["sex"] = np.where(np.arange(N) % 3, "M", "F")
    branch = cls().fit(table, table["he"])
    fitted = branch.transform(table)
    new = table.assign(age_years=np.nan, sex=None)  # an export that lost the columns
    with pytest.warns(radhe.errors.InputWarning, match="hold no value for any of the 30 cases") as caught:
        features = branch.transform(new)
    message = str(caught[0].message)
    median = table["age_years"].median()
    age = features[[c for c in features.columns if c.endswith("__age_years")]].to_numpy()
    if cls is ClinicalFeatures:  # imputes itself
        assert f"'age_years' = {median:.4g} (training median)" in message and np.allclose(age, median)
    else:  # leaves numbers missing for the model's imputer
        assert "'age_years' (left missing: the model's imputer" in message and np.isnan(age).all()
    assert "'sex' = 'M' (training's most frequent category)" in message
    assert features.shape == fitted.shape
    with warnings.catch_warnings():  # one case without a value, or a column with some values: imputation as usual
        warnings.simplefilter("error")
        branch.transform(new.head(1))
        branch.transform(table.assign(age_years=np.where(np.arange(N) % 2, np.nan, table["age_years"])))
    # a column often missing in training is empty in a small test fold by chance: no warning there
    sparse = table.assign(age_years=np.where(np.arange(N) % 4 == 0, table["age_years"], np.nan))  # 75 % missing
    branch = cls().fit(sparse, sparse["he"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        branch.transform(sparse.assign(age_years=np.nan).head(6))  # 0.75 ** 6 = 0.18
    with pytest.warns(radhe.errors.InputWarning, match="'age_years'.*cases 'c00', 'c01'"):
        branch.transform(sparse.assign(age_years=np.nan))  # 0.75 ** 30 < 1e-3
