"""bat_score's onset-to-CT time: durations in hours, impossible times and text refused by case."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from radhe.baselines import BATScore, bat_score
from radhe.errors import InputError


def cases(onset):
    n = len(onset)
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "blend_sign": [1, 0, 0, 1][:n],
                         "hypodensity": [0, 1, 0, 1][:n], "onset_to_ct_h": onset})


EXPECTED = [1 + 2, 2 + 0, 0 + 0, 3 + 2]  # onset 1 h, 3 h, missing, 1.5 h (cut-off 2.5 h)


@pytest.mark.parametrize("onset", [
    pd.to_timedelta(["1h", "3h", None, "90min"]),  # timedelta64 dtype: not nanoseconds
    [pd.Timedelta("1h"), datetime.timedelta(hours=3), None, pd.Timedelta(minutes=90)],  # object cells
    [1.0, 3.0, np.nan, 1.5],
    ["1", " 3 ", "NA", "1.5"],  # numbers as text; the text read_csv reads as missing
], ids=["timedelta64", "timedelta-cells", "hours", "text-hours"])
def test_onset_time_in_hours_or_as_durations(onset):
    assert bat_score(cases(onset)).tolist() == EXPECTED


def test_durations_respect_the_cutoff_in_hours():
    X = cases(pd.to_timedelta(["2h29min", "2h30min", "2h31min"]))
    assert bat_score(X).tolist() == [1 + 2, 2 + 0, 0]


@pytest.mark.parametrize("onset", [[1.0, -1.0, 2.0, -0.5], pd.to_timedelta(["1h", "-1h", "2h", "-30min"])],
                         ids=["hours", "timedelta64"])
def test_negative_onset_time_is_refused_naming_the_cases(onset):
    with pytest.raises(InputError, match=r"onset_to_ct_h.*-1\.0 \(case 'c1'\), -0\.5 \(case 'c3'\)"):
        bat_score(cases(onset))


def test_infinite_onset_time_is_refused_but_missing_is_not_early():
    with pytest.raises(InputError, match=r"inf \(case 'c1'\)"):
        bat_score(cases([1.0, np.inf, 2.0, 1.0]))
    assert bat_score(cases([np.nan, None, pd.NaT, ""])).tolist() == [1, 2, 0, 3]


def test_text_that_is_not_a_number_is_refused_naming_values_and_cases():
    with pytest.raises(InputError) as info:
        bat_score(cases(["1", "2 h", "unknown", 1.0]))
    message = str(info.value)
    assert "'onset_to_ct_h'" in message
    assert "'2 h' (case 'c1')" in message and "'unknown' (case 'c2')" in message


def test_dates_are_not_onset_times():
    with pytest.raises(InputError, match="dates/times"):
        bat_score(cases(pd.to_datetime(["2021-03-04 14:30"] * 4)))
    with pytest.raises(InputError, match="durations"):  # a marker is not a duration
        bat_score(cases([1.0] * 4).assign(blend_sign=pd.to_timedelta(["1h"] * 4)))


def test_the_classifier_scores_durations_as_hours():
    X = cases(pd.to_timedelta(["1h", "3h", None, "90min"]))
    model = BATScore().fit(X, [1, 0, 0, 1])
    assert model.decision_function(X).tolist() == EXPECTED


@pytest.mark.parametrize("coding", [[2, 1, 1, 2], [1, 0, -1, 1], [0.3, 0.0, 0.9, 1.0], [1, 0, np.inf, 1]],
                         ids=["1/2-coding", "negative", "probability", "inf"])
def test_marker_columns_other_than_0_1_are_refused_naming_the_cases(coding):
    """Read as "> 0 is present", a 1/2 coding made every case a blend sign: refused instead."""
    from radhe.baselines import MarkerClassifier

    X = cases([1.0, 3.0, np.nan, 1.5]).assign(blend_sign=coding)
    with pytest.raises(InputError, match=r"column 'blend_sign' \(an NCCT marker\) must hold 1 \(present\) or 0"):
        bat_score(X)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(InputError, match=r"blend_sign.*cases? 'c"):
        MarkerClassifier().fit(X, y)


def test_marker_columns_as_booleans_or_with_missing_reads():
    X = cases([1.0, 3.0, np.nan, 1.5])
    as_bool = X.assign(blend_sign=[True, False, False, True], hypodensity=pd.array([0, 1, None, 1], dtype="Int64"))
    np.testing.assert_array_equal(bat_score(as_bool).to_numpy(), [3, 2, 0, 5])
