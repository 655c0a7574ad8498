"""Haematoma-expansion labels on hand-made edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radhe.errors import InputError
from radhe.labels import haematoma_expansion


@pytest.mark.parametrize(
    ("baseline", "followup", "expected"),
    [
        (10.0, 16.0, 1.0),     # +6 mL is not > 6 mL, but +60 % > 33 %
        (30.0, 36.0, 0.0),     # exactly +6 mL and +20 %: strict >, no expansion
        (30.0, 36.01, 1.0),    # just over 6 mL
        (100.0, 133.0, 1.0),   # exactly +33 %, but +33 mL > 6 mL
        (12.0, 15.96, 0.0),    # exactly +33 % (3.96 mL): not expanded
        (12.0, 15.97, 1.0),    # just over 33 %
        (20.0, 18.0, 0.0),     # shrinkage
        (0.0, 0.0, 0.0),
        (0.0, 0.5, 1.0),       # any growth from nothing is > 33 % of 0
        (5.0, 5.0, 0.0),
    ],
)
def test_scalar_edge_cases(baseline, followup, expected):
    assert haematoma_expansion(baseline, followup) == expected


def test_vectorised_nan_and_series():
    base = np.array([10.0, np.nan, 30.0, 8.0])
    follow = np.array([20.0, 12.0, np.nan, 8.5])
    out = haematoma_expansion(base, follow)
    assert out[0] == 1.0 and out[3] == 0.0
    assert np.isnan(out[1]) and np.isnan(out[2])

    s_base = pd.Series([10.0, 20.0], index=["a", "b"])
    out = haematoma_expansion(s_base, [11.0, 30.0])
    assert isinstance(out, pd.Series)
    assert list(out.index) == ["a", "b"]
    assert out.tolist() == [0.0, 1.0]

    assert np.isnan(haematoma_expansion(float("nan"), 3.0))
    assert haematoma_expansion(10.0, [10.0, 17.0]).tolist() == [0.0, 1.0]   # broadcasting


def test_thresholds_are_parameters():
    assert haematoma_expansion(30.0, 40.0, absolute_ml=12.5) == 1.0          # +33.3 % > 33 %
    assert haematoma_expansion(30.0, 40.0, absolute_ml=12.5, relative=None) == 0.0
    assert haematoma_expansion(30.0, 40.0, absolute_ml=None, relative=0.5) == 0.0
    assert haematoma_expansion(30.0, 39.0, absolute_ml=None) == 0.0          # +30 %
    with pytest.raises(InputError):
        haematoma_expansion(1.0, 2.0, absolute_ml=None, relative=None)
    with pytest.raises(InputError):
        haematoma_expansion(1.0, 2.0, absolute_ml=-1.0)


def test_negative_or_invalid_volumes_raise():
    with pytest.raises(InputError, match="negative"):
        haematoma_expansion(-1.0, 3.0)
    with pytest.raises(InputError, match="negative"):
        haematoma_expansion([1.0, 2.0], [3.0, -0.1])
    with pytest.raises(InputError):
        haematoma_expansion([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError):
        haematoma_expansion(np.inf, 3.0)


def test_two_series_are_paired_by_index_not_position():
    baseline = pd.Series([10.0, 30.0], index=["a", "b"])
    followup = pd.Series([31.0, 11.0], index=["b", "a"])  # +1 mL each, listed in the other order
    out = haematoma_expansion(baseline, followup)
    assert list(out.index) == ["a", "b"] and list(out) == [0.0, 0.0]
    with pytest.raises(InputError, match="different indexes"):
        haematoma_expansion(baseline, pd.Series([11.0, 31.0], index=["a", "c"]))


@pytest.mark.parametrize(
    "y, expected",
    [
        ([0, 1, 1], [0, 1, 1]),
        ([False, True, False], [0, 1, 0]),
        ([0.0, 1.0, 0.0], [0, 1, 0]),
        (["0", " 1", "0"], [0, 1, 0]),
        (pd.Series([1, 0, 1], dtype="Int64"), [1, 0, 1]),
    ],
    ids=["int", "bool", "float", "text", "nullable"],
)
def test_check_labels_accepts_every_spelling_of_0_1(y, expected):
    from radhe._checks import check_labels

    out = check_labels(y)
    assert out.dtype.kind == "i"
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "y, message",
    [
        (pd.Series([0, None, 1], index=[5, 6, 7], dtype="Int64", name="he"), r"'he' is missing for 1 of 3 cases \(row 6\)"),
        (["no", "yes", "no"], r"0/1.*'no' \(rows 0, 2\), 'yes' \(row 1\); text labels are not guessed.*== 'yes'"),
        ([0, 1, 2, 1], r"0/1.*2 \(row 2\)$"),
        ([1, 1, 1], r"one class only: all 3 cases are 1"),
        ([], r"no cases \(the manifest has 0 rows"),
        ([[0, 1], [1, 0]], r"one-dimensional"),
    ],
    ids=["missing", "text", "three_values", "one_class", "empty", "two_dimensional"],
)
def test_check_labels_refuses_and_names_the_rows(y, message):
    from radhe._checks import check_labels

    with pytest.raises(InputError, match=message):
        check_labels(y, where="test")


def test_evaluate_refuses_a_label_series_out_of_the_manifests_order_and_fit_pairs_by_position():
    """``radhe.evaluate`` takes the manifest and its labels from the user: a Series sorted or
    re-indexed apart from the manifest would give cases other cases' labels, and is refused. ``fit``
    pairs by position, as scikit-learn's tools expect (``permutation_test_score`` shuffles y alone)."""
    from sklearn.model_selection import StratifiedKFold, permutation_test_score

    import radhe
    from radhe.evaluation import cross_validate_predictions

    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({"case_id": [f"c{i}" for i in range(40)], "patient_id": [f"p{i}" for i in range(40)],
                             "age_years": rng.normal(70, 10, 40), "gcs": rng.integers(3, 16, 40)},
                            index=[f"r{i}" for i in range(40)])
    y = pd.Series(np.r_[np.ones(12), np.zeros(28)].astype(int), index=manifest.index, name="he")
    pipe = radhe.make_pipeline(radiomics=None, random_state=0)
    with pytest.raises(InputError, match=r"^evaluate: the outcome 'he' holds the manifest's row labels in another "
                                         r"order: row 0 of the manifest has index 'r0' \(case 'c0'\), the label in "
                                         r"that position has index 'r12'.*y\.loc\[manifest\.index\]"):
        radhe.evaluate(pipe, manifest, y.sort_values(), cv=2)
    with pytest.raises(InputError, match=r"other row labels than the manifest: row 0 .* index 0; .*y\.to_numpy\(\)"):
        cross_validate_predictions(pipe, manifest, y.reset_index(drop=True), cv=2)
    # the same labels under an index of another dtype, or the manifest's own column, are aligned
    numbered = manifest.reset_index(drop=True)
    cross_validate_predictions(pipe, numbered, pd.Series(y.to_numpy(), index=pd.Index(range(40), dtype="Int64")),
                               cv=2, threshold_cv=None)
    # a permutation test shuffles y alone and fits by position
    score, permuted, _ = permutation_test_score(pipe, manifest, y, cv=StratifiedKFold(2), n_permutations=2,
                                                random_state=0)
    assert np.isfinite(score) and np.isfinite(permuted).all()


@pytest.mark.parametrize("index", [pd.Index([pd.NA, 1, 2, 3], dtype=object), pd.Index(["a", 1, "b", 2])],
                         ids=["NA_label", "mixed_types"])
def test_an_unusual_label_index_gets_the_named_error_not_a_crash(index):
    from radhe._checks import check_labels

    manifest = pd.DataFrame({"case_id": list("wxyz")}, index=[10, 11, 12, 13])
    with pytest.raises(InputError, match=r"other row labels than the manifest: row 0 of the manifest has index 10 "
                                         r"\(case 'w'\)"):
        check_labels(pd.Series([0, 1, 0, 1], index=index), manifest, aligned=True)
