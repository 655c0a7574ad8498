"""Model evaluation: metrics with confidence intervals, cross-validated predictions, model comparison.

The one-call entry point is :func:`evaluate` (cross-validation of a pipeline and its baselines on the
same patient-grouped folds, every metric, out-of-fold SHAP); :func:`radhe.report.write_html` turns its
:class:`EvaluationResult` into a self-contained HTML report and ``metrics.json``.

Submodules: :mod:`radhe.evaluation.metrics` (AUC/DeLong, threshold metrics, curves, calibration),
:mod:`radhe.evaluation.cv` (out-of-fold predictions), :mod:`radhe.evaluation.result` (summaries).
"""

from radhe.evaluation import checklist, conformal, cv, metrics, result, segmentation
from radhe.evaluation.checklist import *  # noqa: F403
from radhe.evaluation.conformal import *  # noqa: F403
from radhe.evaluation.cv import *  # noqa: F403  (each submodule's __all__ is the public surface)
from radhe.evaluation.metrics import *  # noqa: F403
from radhe.evaluation.result import *  # noqa: F403
from radhe.evaluation.segmentation import *  # noqa: F403

__all__ = [*metrics.__all__, *cv.__all__, *result.__all__, *segmentation.__all__, *checklist.__all__, *conformal.__all__]
