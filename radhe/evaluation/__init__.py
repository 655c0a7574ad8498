"""Model evaluation: metrics with confidence intervals, cross-validated predictions, model comparison.

The one-call entry point is :func:`evaluate` (cross-validation of a pipeline and its baselines on the
same patient-grouped folds, every metric, out-of-fold SHAP); :func:`radhe.report.write_html` turns its
:class:`EvaluationResult` into a self-contained HTML report and ``metrics.json``.

Submodules: :mod:`radhe.evaluation.metrics` (AUC/DeLong, threshold metrics, curves, calibration),
:mod:`radhe.evaluation.cv` (out-of-fold predictions), :mod:`radhe.evaluation.result` (summaries).
"""

from radhe.evaluation.cv import CVPredictions, cross_validate_predictions, make_cv, positive_score
from radhe.evaluation.metrics import (
    THRESHOLD_METRICS,
    AUCResult,
    DeLongResult,
    average_precision,
    bootstrap_metrics,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
    confusion_matrix_at,
    delong_covariance,
    delong_test,
    metrics_from_counts,
    pr_curve,
    roc_auc_ci,
    roc_curve_band,
    select_threshold,
    threshold_metrics,
)
from radhe.evaluation.result import (
    EvaluationResult,
    ModelReport,
    Report,
    compare_models,
    evaluate,
    format_comparison,
    summarize,
)

__all__ = [
    "AUCResult",
    "DeLongResult",
    "THRESHOLD_METRICS",
    "roc_auc_ci",
    "delong_test",
    "delong_covariance",
    "confusion_matrix_at",
    "metrics_from_counts",
    "threshold_metrics",
    "bootstrap_metrics",
    "select_threshold",
    "roc_curve_band",
    "pr_curve",
    "average_precision",
    "brier_score",
    "calibration_curve",
    "calibration_intercept_slope",
    "CVPredictions",
    "cross_validate_predictions",
    "make_cv",
    "positive_score",
    "ModelReport",
    "Report",
    "EvaluationResult",
    "summarize",
    "compare_models",
    "format_comparison",
    "evaluate",
]
