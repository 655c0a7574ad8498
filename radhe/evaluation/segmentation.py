"""How well a pipeline's segmenter did inside the cross-validation: the report's "Segmentation quality" section.

When a pipeline has a segmentation step (:class:`radhe.segmentation.HematomaSegmenter`), each fold's
segmenter writes masks for its held-out cases; :func:`radhe.evaluation.cross_validate_predictions`
records them (``CVPredictions.extra["segmentation"]``). :func:`segmentation_quality` measures them:
how many predictions were empty or fell back to the most probable region, and — when the manifest
has reference masks — Dice and IoU per case and per fold and the agreement of the volumes (ICC,
Bland–Altman). Everything is out of fold: a case's mask comes from a network that never saw it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SegmentationQuality", "segmentation_quality", "segmentation_record", "FALLBACK_WARNING_SHARE"]

#: The report warns at its top when more than this share of the cases fell back (or came out empty).
FALLBACK_WARNING_SHARE = 0.10


@dataclass
class SegmentationQuality:
    """Out-of-fold quality of a pipeline's predicted masks.

    Attributes
    ----------
    cases : pandas.DataFrame
        One row per held-out case: ``case_id``, ``fold``, ``status`` ("ok", "fallback", "empty"),
        ``volume_pred_ml``, ``max_probability``, ``path`` (the predicted mask); with reference masks
        also ``dice``, ``iou``, ``volume_true_ml`` and ``reference`` (its path).
    per_fold : pandas.DataFrame
        Per fold: ``n_cases``, ``n_fallback``, ``n_empty`` and, with references, mean and median Dice,
        mean IoU.
    volume_agreement : dict or None
        :func:`radhe.volumetry.compare_volumes` of predicted against reference volumes (ICC,
        Bland–Altman bias and limits); None without reference masks (or fewer than 3 cases).
    reference_column : str or None
        The manifest column of the reference masks; None when the manifest has none.
    """

    cases: pd.DataFrame
    per_fold: pd.DataFrame
    volume_agreement: dict | None
    reference_column: str | None

    @property
    def n_fallback(self) -> int:
        return int((self.cases["status"] == "fallback").sum())

    @property
    def n_empty(self) -> int:
        return int((self.cases["status"] == "empty").sum())

    @property
    def fallback_share(self) -> float:
        """Share of the cases whose prediction was empty or replaced by the fall-back region."""
        return (self.n_fallback + self.n_empty) / max(len(self.cases), 1)

    @property
    def warning(self) -> str | None:
        """A sentence for the top of the report when too many predictions failed; None otherwise."""
        if self.fallback_share <= FALLBACK_WARNING_SHARE:
            return None
        return (f"The segmenter found no haematoma in {self.n_fallback + self.n_empty} of {len(self.cases)} "
                f"held-out cases ({self.fallback_share:.0%}): {self.n_fallback} fell back to the most probable "
                f"region and {self.n_empty} stayed empty. Features of those cases do not describe the "
                f"haematoma; train the segmenter longer or on more cases before trusting this model.")

    def extremes(self) -> dict:
        """``{"best": case_id, "median": ..., "worst": ...}`` by Dice (empty without reference masks)."""
        if "dice" not in self.cases or self.cases["dice"].isna().all():
            return {}
        ranked = self.cases.dropna(subset=["dice"]).sort_values("dice", kind="stable")
        return {"best": ranked["case_id"].iloc[-1], "median": ranked["case_id"].iloc[len(ranked) // 2],
                "worst": ranked["case_id"].iloc[0]}

    def to_dict(self) -> dict:
        out = {
            "n_cases": int(len(self.cases)),
            "n_fallback": self.n_fallback,
            "n_empty": self.n_empty,
            "fallback_share": float(self.fallback_share),
            "reference_column": self.reference_column,
            "per_fold": self.per_fold.reset_index().to_dict(orient="records"),
            "volume_agreement": self.volume_agreement,
        }
        if "dice" in self.cases:
            out["dice_mean"] = float(self.cases["dice"].mean())
            out["dice_median"] = float(self.cases["dice"].median())
            out["iou_mean"] = float(self.cases["iou"].mean())
        return out


def segmentation_record(fitted_pipeline, X) -> tuple[pd.DataFrame, str] | None:
    """The predicted masks of ``X``'s cases by the pipeline's segmentation step, and its reference mask column.

    Called right after the held-out fold ``X`` is scored: the step's ``prediction_records(X)`` (what
    its ``transform`` wrote beside each mask; transform keeps no state). None when the pipeline has
    no step with prediction records.
    """
    for _, step in getattr(fitted_pipeline, "steps", []):
        records = getattr(step, "prediction_records", None)
        if callable(records):
            return records(X), getattr(step, "mask_column", "mask")
    return None


def segmentation_quality(predictions, X: pd.DataFrame) -> SegmentationQuality | None:
    """Measure the predicted masks recorded in ``predictions`` (None when none were recorded)."""
    from radhe.nn.slices import is_missing
    from radhe.segmentation.metrics import segmentation_metrics, volume_agreement

    recorded = predictions.extra.get("segmentation")
    if recorded is None or recorded.empty:
        return None
    cases = recorded.rename(columns={"volume_ml": "volume_pred_ml"})
    cases["case_id"] = cases["case_id"].astype(str)
    reference = predictions.extra.get("segmentation_reference_column")
    agreement = None
    if reference is not None and reference in X.columns:
        paths = dict(zip(X["case_id"].astype(str), X[reference], strict=True))
        cases["reference"] = cases["case_id"].map(paths)
        known = ~cases["reference"].map(is_missing)
        if known.any():
            frame = pd.DataFrame({"case_id": cases.loc[known, "case_id"], "mask": cases.loc[known, "reference"],
                                  "mask_pred": cases.loc[known, "path"]})
            measured = segmentation_metrics(frame, pred_column="mask_pred", true_column="mask").set_index("case_id")
            for column in ("dice", "iou", "volume_true_ml"):
                cases[column] = cases["case_id"].map(measured[column])
            if known.sum() >= 3:
                agreement = volume_agreement(measured)
        else:
            reference = None
    else:
        reference = None
    grouped = cases.groupby("fold")
    per_fold = pd.DataFrame({
        "n_cases": grouped.size(),
        "n_fallback": grouped["status"].apply(lambda s: int((s == "fallback").sum())),
        "n_empty": grouped["status"].apply(lambda s: int((s == "empty").sum())),
    })
    if "dice" in cases:
        per_fold["dice_mean"] = grouped["dice"].mean()
        per_fold["dice_median"] = grouped["dice"].median()
        per_fold["iou_mean"] = grouped["iou"].mean()
    per_fold.index.name = "fold"
    agreement = None if agreement is None else {k: _plain(v) for k, v in agreement.items()}
    return SegmentationQuality(cases=cases.reset_index(drop=True), per_fold=per_fold, volume_agreement=agreement,
                               reference_column=reference)


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
