"""Embedded default data: a synthetic non-contrast CT cohort of intracerebral haemorrhage.

:func:`make_ich_cohort` writes CT volumes, haematoma masks, a manifest (clinical variables, NCCT
markers, baseline and follow-up volumes, the expansion label) and a separate ``oracle.csv`` with the
true probability of expansion of every case. The generative model is documented in docs/cohort.md.
"""

from radhe.datasets.cohort import MANIFEST_COLUMNS, MARKER_COLUMNS, OUTCOME_COLUMNS, make_ich_cohort

__all__ = ["make_ich_cohort", "OUTCOME_COLUMNS", "MARKER_COLUMNS", "MANIFEST_COLUMNS"]
