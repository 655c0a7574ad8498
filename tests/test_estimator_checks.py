"""scikit-learn's estimator checks on radhe's tabular transformers, selectors and classifiers.

Every check passes except those listed in ``EXPECTED_FAILURES`` with the reason they cannot apply.
The image branches (RadiomicsFeatures, CNNEmbedder, HematomaSegmenter) read files named in a
manifest, so the checks' random numeric matrices do not apply to them; their own tests cover the
scikit-learn API (clone, get/set_params, fit/transform shapes).
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from radhe.classifiers import BalancedXGBClassifier, CalibratedSVC
from radhe.features import ClinicalFeatures, FeatureFusion, TabularFeatures
from radhe.selection import FeatureCleaner, KBestSelector

EXPECTED_FAILURES = {
    "CalibratedSVC": {
        "check_sample_weight_equivalence_on_dense_data": (
            "libsvm's sample weights rescale C per sample, which is not exactly equivalent to repeating "
            "samples, and the internal calibration folds differ between the weighted and repeated data "
            "(scikit-learn marks SVC's own check as an expected failure for the same reason)"
        ),
    },
    # XGBClassifier itself fails these; BalancedXGBClassifier only adds class weights and label encoding
    "BalancedXGBClassifier": {
        "check_estimators_overwrite_params": "xgboost.XGBClassifier sets objective='multi:softprob' in fit for 3+ classes",
        "check_dont_overwrite_parameters": "xgboost.XGBClassifier sets objective='multi:softprob' in fit for 3+ classes",
        "check_all_zero_sample_weights_error": "XGBoost's own error message (base_score must be in (0,1)) differs",
        "check_sample_weight_equivalence_on_dense_data": (
            "histogram binning and balanced class weights recomputed from repeated rows make weighting and "
            "repeating differ (XGBClassifier fails it too)"
        ),
        "check_sample_weight_equivalence_on_sparse_data": (
            "histogram binning and balanced class weights recomputed from repeated rows make weighting and "
            "repeating differ (XGBClassifier fails it too)"
        ),
        "check_classifiers_multilabel_output_format_predict": (
            "xgboost.XGBClassifier returns float predictions for multi-label targets"
        ),
    },
}


def expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@parametrize_with_checks(
    [
        ClinicalFeatures(),
        TabularFeatures(),
        FeatureFusion([("tabular", TabularFeatures())]),
        FeatureCleaner(),
        KBestSelector(k=3),
        CalibratedSVC(),
        BalancedXGBClassifier(n_estimators=10),
    ],
    expected_failed_checks=expected_failed_checks,
)
@pytest.mark.filterwarnings("ignore:Unknown data type:UserWarning")  # XGBoost converting sparse inputs
def test_sklearn_compatible(estimator, check):
    check(estimator)
