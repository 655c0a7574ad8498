"""ClinicalFeatures at prediction time: categories unseen in fit, and number-coded categories whose
dtype changes between fit and predict (a blank cell makes pandas read integer codes as float)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.features import ClinicalFeatures


def training_table():
    return pd.DataFrame({
        "case_id": list("abcdef"),
        "age": [70.0, 60, 65, 80, 75, 50],
        "sex": ["F", "M", "M", "F", "M", "F"],
        "location": ["lobar", "thalamus", "basal_ganglia", "lobar", "thalamus", "basal_ganglia"],
        "loc_code": [1, 2, 3, 1, 2, 3],
    })


def new_cases(**columns):
    n = len(next(iter(columns.values())))
    base = {"case_id": [f"new{i}" for i in range(n)], "age": [70.0] * n, "sex": ["M"] * n,
            "location": ["lobar"] * n, "loc_code": [1] * n}
    return pd.DataFrame({**base, **columns})


def fitted(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean training table: no warning
        return ClinicalFeatures(categorical=["loc_code"], **params).fit(training_table())


# -- categories not seen in fit ------------------------------------------------------------------

def test_unseen_category_of_a_two_level_variable_is_refused_by_default():
    """'m' and 'male' used to give clinical__sex_M = 0: exactly a female patient, silently."""
    cf = fitted()
    with pytest.raises(InputError) as info:
        cf.transform(new_cases(sex=["M", "m", "male", " M "]))
    message = str(info.value)
    assert "column 'sex'" in message
    assert "'m' (case 'new1')" in message and "'male' (case 'new2')" in message
    assert "seen in fit: 'F', 'M'" in message
    assert "new0" not in message and "new3" not in message  # 'M' and ' M ' are known
    assert "handle_unknown='ignore'" in message


def test_unseen_categories_of_several_columns_are_named_in_one_error():
    cf = fitted()
    with pytest.raises(InputError) as info:
        cf.transform(new_cases(location=["lobar", "cerebellar"], loc_code=[4, 1], sex=["M", "M"]))
    message = str(info.value)
    assert "column 'location': 'cerebellar' (case 'new1')" in message
    assert "'basal_ganglia', 'lobar', 'thalamus'" in message
    assert "column 'loc_code': '4' (case 'new0')" in message and "'1', '2', '3'" in message


def test_many_cases_with_an_unseen_category_are_listed_first_few_then_counted():
    cf = fitted()
    with pytest.raises(InputError, match=r"'cerebellar' \(cases 'new0', 'new1', 'new2', 'new3', 'new4', "
                                         r"\.\.\. \(12 in all\)\)"):
        cf.transform(new_cases(location=["cerebellar"] * 12))


def test_missing_values_are_not_unseen_categories():
    cf = fitted()
    out = cf.transform(new_cases(sex=[None, "NA", ""], location=[np.nan, "lobar", "  "]))
    mode_sex = float(cf.modes_["sex"] == "M")
    assert out["clinical__sex_M"].tolist() == [mode_sex] * 3
    assert out.filter(like="clinical__location_").sum(axis=1).tolist() == [1.0, 1.0, 1.0]


def test_ignore_encodes_zeros_and_warns_naming_column_categories_and_cases():
    cf = fitted(handle_unknown="ignore")
    state = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in vars(cf).items()}
    new = new_cases(sex=["M", "m", "male"], location=["cerebellar", "lobar", "lobar"])
    with pytest.warns(InputWarning) as record:
        out = cf.transform(new)
    message = " ".join(str(w.message) for w in record)
    assert "column 'sex': 'm' (case 'new1'), 'male' (case 'new2')" in message
    assert "column 'location': 'cerebellar' (case 'new0')" in message
    assert out["clinical__sex_M"].tolist() == [1.0, 0.0, 0.0]
    assert out.filter(like="clinical__location_").sum(axis=1).tolist() == [0.0, 1.0, 1.0]
    assert list(out.index) == list(new.index)
    # transform never changes the fitted state
    assert cf.categories_ == state["categories_"] and cf.modes_ == state["modes_"]
    assert list(cf.feature_names_out_) == list(state["feature_names_out_"])


def test_training_data_never_has_unseen_categories():
    table = training_table().assign(loc_code=[1.0, 2.0, np.nan, 1, 2.0, 3])  # codes with a blank cell
    table["mixed"] = pd.Series([1, 1.0, "1", np.int64(2), 2.0, " 2 "], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cf = ClinicalFeatures(categorical=["loc_code", "mixed"])
        out = cf.fit_transform(table)
        pd.testing.assert_frame_equal(out, clone(cf).fit(table).transform(table))
    assert cf.categories_["mixed"] == ["1", "2"]


def test_handle_unknown_is_validated():
    with pytest.raises(ConfigurationError, match="handle_unknown"):
        ClinicalFeatures(handle_unknown="drop").fit(training_table())
    assert ClinicalFeatures(handle_unknown="ignore").get_params()["handle_unknown"] == "ignore"


def test_a_category_only_in_a_held_out_fold_gives_the_clear_error():
    from radhe.evaluation import cross_validate_predictions
    from radhe.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    n = 40
    y = np.tile([0, 1], n // 2)
    table = pd.DataFrame({
        "case_id": [f"c{i:02d}" for i in range(n)],
        "patient_id": [f"p{i:02d}" for i in range(n)],
        "age_years": rng.normal(65, 10, n).round(),
        "location": np.tile(["lobar", "thalamus", "basal_ganglia", "lobar"], n // 4),
    })
    table.loc[[0, 1], "location"] = "cerebellar"  # only in the held-out fold below
    test = np.arange(0, 10)
    splits = [(np.arange(10, n), test), (test, np.arange(10, n))]
    pipe = make_pipeline(radiomics=None, clinical=ClinicalFeatures(), random_state=0)
    with pytest.raises(InputError, match=r"column 'location': 'cerebellar' \(cases 'c00', 'c01'\)"):
        cross_validate_predictions(pipe, table, y, splits=splits, threshold_cv=None)
    pipe.set_params(features__clinical__handle_unknown="ignore")
    with pytest.warns(InputWarning, match="cerebellar"):
        pred = cross_validate_predictions(pipe, table, y, splits=splits, threshold_cv=None)
    assert np.isfinite(pred.frame["score"]).all()


# -- number-coded categories: compared as values ------------------------------------------------

def test_integer_codes_read_as_float_at_predict_time_match_their_categories():
    """Fitted on ints 1, 2, 3; a blank cell in the new file makes the column 1.0, 2.0, NaN."""
    cf = fitted()
    assert cf.categories_["loc_code"] == ["1", "2", "3"]
    expected = cf.transform(new_cases(loc_code=[1, 2, 3, 1])).filter(like="loc_code")
    for codes in ([1.0, 2.0, 3.0, np.nan], pd.array([1, 2, 3, None], dtype="Int64"),
                  pd.Categorical([1.0, 2.0, 3.0, None]), ["1", " 2", "3", "NA"],
                  [np.int64(1), np.float32(2), 3, None]):
        out = cf.transform(new_cases(loc_code=codes)).filter(like="loc_code")
        # the blank cell takes the training mode (ties: first category, "1")
        np.testing.assert_array_equal(out.to_numpy(), expected.to_numpy(), err_msg=str(codes))


def test_float_codes_in_fit_keep_readable_names_and_non_integral_values_stay_distinct():
    table = training_table().assign(loc_code=[1.0, 2.0, np.nan, 1.0, 2.5, 2.0])
    cf = ClinicalFeatures(categorical=["loc_code"]).fit(table)
    assert cf.categories_["loc_code"] == ["1", "2", "2.5"]
    assert [n for n in cf.get_feature_names_out() if "loc_code" in n] == [
        "clinical__loc_code_1", "clinical__loc_code_2", "clinical__loc_code_2.5"]
    out = cf.transform(new_cases(loc_code=[2, 2.5, 1]))
    assert out["clinical__loc_code_2"].tolist() == [1.0, 0.0, 0.0]
    assert out["clinical__loc_code_2.5"].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(InputError, match=r"column 'loc_code': '2.25' \(case 'new0'\)"):
        cf.transform(new_cases(loc_code=[2.25]))


def test_make_pipeline_warns_for_a_category_absent_from_a_training_fold():
    """The pipeline's own branches take handle_unknown="ignore": a rare category absent from a
    training fold is no category there, and a warning names it and its cases."""
    from radhe.evaluation import cross_validate_predictions
    from radhe.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    n = 40
    y = np.tile([0, 1], n // 2)
    table = pd.DataFrame({"case_id": [f"c{i:02d}" for i in range(n)], "age_years": rng.normal(65, 10, n).round(),
                          "location": np.tile(["lobar", "thalamus", "basal_ganglia", "lobar"], n // 4)})
    table.loc[[0, 1], "location"] = "cerebellar"
    test = np.arange(0, 10)
    splits = [(np.arange(10, n), test), (test, np.arange(10, n))]
    for pipe in (make_pipeline(radiomics=None, clinical="default", random_state=0),
                 make_pipeline(radiomics=None, random_state=0)):  # the table as precomputed (tabular) features
        with pytest.warns(InputWarning, match=r"column 'location': 'cerebellar' \(cases 'c00', 'c01'\)"):
            pred = cross_validate_predictions(pipe, table, y, splits=splits, threshold_cv=None)
        assert np.isfinite(pred.frame["score"]).all()


def test_tabular_features_compare_categories_as_values_and_refuse_unseen_ones():
    from radhe.features import TabularFeatures

    table = pd.DataFrame({"case_id": list("abcdef"), "score": [1.0, 2, 3, 4, 5, 6], "site_code": [1, 2, 3, 1, 2, 3]})
    tf = TabularFeatures(categorical=["site_code"]).fit(table)
    expected = tf.transform(table)
    as_float = table.assign(site_code=[1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    pd.testing.assert_frame_equal(tf.transform(as_float), expected)
    with pytest.raises(InputError, match=r"TabularFeatures: categories not seen in fit: column 'site_code': '4'"):
        tf.transform(table.assign(site_code=[4, 2, 3, 1, 2, 3]))
    with pytest.raises(ConfigurationError):
        TabularFeatures(handle_unknown="drop").fit(table)


def test_a_transformer_saved_before_handle_unknown_keeps_its_behaviour(tmp_path):
    """A fitted ClinicalFeatures pickled by radhe before `handle_unknown` existed (no such attribute):
    after loading it has a value (get_params, clone and repr work), encodes an unseen category as zeros
    with a warning as it did, and compares categories by their text as it did (its categories of a
    float code column are "1.0", "2.0": the features keep their names and values)."""
    import pickle

    table = pd.DataFrame({"case_id": [f"c{i}" for i in range(6)], "age_years": [60.0, 70, 80, 65, 75, 85],
                          "code": ["1.0", "2.0", "1.0", "2.0", "1.0", "2.0"]})
    old = ClinicalFeatures(categorical=["code"]).fit(table)
    assert old.categories_["code"] == ["1.0", "2.0"]
    del old.handle_unknown  # the state an older radhe pickled
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.get_params()["handle_unknown"] == "ignore" and repr(clone(loaded))
    floats = table.assign(code=[1.0, 2.0, 1.0, 2.0, 1.0, 2.0])  # the column as a file with a blank cell reads
    np.testing.assert_array_equal(loaded.transform(floats)["clinical__code_2.0"], [0, 1, 0, 1, 0, 1])
    with pytest.warns(InputWarning, match="'3.0'"):
        loaded.transform(table.assign(code=["3.0"] * 6))


def test_classifiers_saved_before_the_sampler_parameter_load_without_one():
    import pickle

    from radhe.classifiers import CalibratedSVC, PenalizedLogisticCV

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.tile([0, 1], 20)
    for model in (PenalizedLogisticCV(spline_knots=None).fit(X, y), CalibratedSVC(random_state=0).fit(X, y)):
        del model.sampler
        loaded = pickle.loads(pickle.dumps(model))
        assert loaded.sampler is None and repr(clone(loaded))
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
