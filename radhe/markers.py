"""Moved to :mod:`radhe.nn.markers` (kept so that ``from radhe.markers import ...`` still works)."""

from radhe.nn.markers import MARKER_LABELS, NCCTMarkerClassifier, marker_pos_weight, per_label_auc

__all__ = ["NCCTMarkerClassifier", "MARKER_LABELS", "marker_pos_weight", "per_label_auc"]
