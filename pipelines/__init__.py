"""Published haematoma-expansion methods as runnable radhe pipelines, one module per method.

=============  ==========================================================================================
module         method
=============  ==========================================================================================
``default``    :func:`radhe.make_pipeline` (radiomics + clinical, L2 logistic) with the small grid
``zhong2021``  two-output U-Net: segmentation head + expansion head on the bottleneck (Zhong 2021)
``teng2021``   dilated U-Net → ROI radiomics (original + LoG + wavelet) + CNN → gradient boosting (Teng 2021)
``bo2023``     automatic masks → radiomics + CNN (max-area slice ± 3) + clinical → K-best → SVM (Bo 2023)
``xu2021``     segmentation and volume quantification against ground truth and ABC/2 (Xu 2021)
``ohkita``     U-Net + wavelet CNN multi-label NCCT marker classifier feeding an HE model (Ohkita)
=============  ==========================================================================================

Each module exposes ``build_pipeline(**overrides)``, ``param_grid()`` and ``main()``:
``python -m radhe_pipelines.<name> [--manifest m.csv] [--out DIR]`` cross-validates the pipeline on the
manifest (default: a synthetic cohort generated in ``DIR/cohort``) and writes ``DIR/report.html``
and ``DIR/metrics.json``; ``radhe fit --pipeline <name>`` fits it. See ``docs/pipelines.md``.
"""

NAMES = ("default", "zhong2021", "teng2021", "bo2023", "xu2021", "ohkita")

from ._common import run_pipeline  # noqa: E402  (light: no heavy import at module level)

__all__ = ["NAMES", "run_pipeline"]
