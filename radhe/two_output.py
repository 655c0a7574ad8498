"""Moved to :mod:`radhe.nn.two_output` (kept so that ``from radhe.two_output import ...`` still works)."""

from radhe.nn.two_output import TwoOutputUNetClassifier

__all__ = ["TwoOutputUNetClassifier"]
