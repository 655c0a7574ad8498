"""FeatureCleaner and KBestSelector."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from radhe.errors import ConfigurationError
from radhe.selection import FeatureCleaner, KBestSelector


def frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = y + rng.normal(0, 0.5, n)
    X = pd.DataFrame(
        {
            "f__signal": signal,
            "f__signal_copy": 2.0 * signal - 0.3 * y,  # |r| ~ 0.99, less associated with y
            "f__noise": rng.normal(size=n),
            "f__constant": np.full(n, 3.0),
            "f__rare": np.r_[1.0, np.zeros(n - 1)],
            "f__all_nan": np.full(n, np.nan),
            "f__gappy": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        }
    )
    X.loc[3, "f__noise"] = np.inf
    X.loc[4, "f__noise"] = -np.inf
    return X, y


def test_cleaner_drops_and_imputes():
    X, y = frame()
    cleaner = FeatureCleaner().set_output(transform="pandas").fit(X, y)
    out = cleaner.transform(X)
    assert list(out.columns) == ["f__signal", "f__noise", "f__gappy"]
    assert np.isfinite(out.to_numpy()).all()
    reasons = cleaner.drop_reasons_
    assert reasons["f__constant"] == "constant"
    assert reasons["f__rare"].startswith("near-constant")
    assert "no finite value" in reasons["f__all_nan"]
    assert reasons["f__signal_copy"].startswith("correlated with f__signal")
    finite = X["f__noise"][np.isfinite(X["f__noise"])]
    assert out.loc[3, "f__noise"] == pytest.approx(np.median(finite))


def test_cleaner_keeps_the_feature_most_associated_with_y():
    X, y = frame()
    swapped = X[["f__signal_copy", "f__signal"]]
    kept = FeatureCleaner().fit(swapped, y).get_feature_names_out()
    assert list(kept) == ["f__signal"]  # the copy comes first but is less associated with y
    assert list(FeatureCleaner().fit(swapped).get_feature_names_out()) == ["f__signal_copy"]  # no y: column order


def test_cleaner_options():
    X, y = frame()
    names = FeatureCleaner(correlation_threshold=None, near_constant=1.0).fit(X, y).get_feature_names_out()
    assert "f__signal_copy" in names and "f__rare" in names and "f__constant" not in names
    with pytest.raises(ConfigurationError):
        FeatureCleaner(correlation_threshold=1.5).fit(X, y)
    with pytest.raises(ConfigurationError):
        FeatureCleaner(near_constant=0.1).fit(X, y)


def test_cleaner_uses_training_medians_at_transform():
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [5.0, 1.0, 4.0, 2.0, 3.0]})
    test = pd.DataFrame({"a": [np.nan, np.inf], "b": [np.nan, 0.0]})
    out = FeatureCleaner().fit(train).transform(test)
    np.testing.assert_array_equal(out, [[3.0, 3.0], [3.0, 0.0]])


def test_kbest_clips_k_without_warning():
    X, y = frame()
    X = X[["f__signal", "f__noise", "f__gappy"]].replace([np.inf, -np.inf], 0).fillna(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selector = KBestSelector(k=50).fit(X, y)
    assert selector.k_ == 3
    assert selector.transform(X).shape == (len(X), 3)
    assert KBestSelector(k="all").fit(X, y).k_ == 3


def test_kbest_ranks_signal_first_and_mutual_info():
    X, y = frame()
    X = X[["f__noise", "f__signal", "f__gappy"]].replace([np.inf, -np.inf], 0).fillna(0)
    for score in ("f_classif", "mutual_info"):
        selector = KBestSelector(k=1, score_func=score, random_state=0).set_output(transform="pandas").fit(X, y)
        assert list(selector.transform(X).columns) == ["f__signal"]


def test_kbest_constant_feature_ranks_last():
    X = pd.DataFrame({"const": np.ones(20), "x": np.r_[np.zeros(10), np.ones(10)] + np.linspace(0, 0.1, 20)})
    y = np.r_[np.zeros(10), np.ones(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert KBestSelector(k=1).set_output(transform="pandas").fit(X, y).transform(X).columns.tolist() == ["x"]


@pytest.mark.parametrize("k", [-1, 1.5, "some", True])
def test_kbest_invalid_k(k):
    X, y = frame()
    with pytest.raises(ConfigurationError):
        KBestSelector(k=k).fit(X[["f__signal"]], y)


def test_kbest_unknown_score_function():
    X, y = frame()
    with pytest.raises(ConfigurationError, match="score_func"):
        KBestSelector(score_func="chi3").fit(X[["f__signal"]], y)
