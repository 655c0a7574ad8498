"""Feature families: which columns of a feature table belong together (radiomics, CNN, clinical, ...).

The family-wise stacked model (:class:`radhe.stacking.FamilyStackingClassifier`) fits one
sub-model per family, so the families must be known. They come from the column names radhe's
branches already write (``<branch>__<feature>``, see :class:`~radhe.features.FeatureFusion`) and,
for tables a user brings, from the names pyradiomics gives its features:

==============  ================================================================================
family          columns
==============  ================================================================================
``radiomics``   branch ``radiomics__``; or any column whose name holds a pyradiomics key
                ``<image type>_<class>_<feature>`` (``original_shape_Sphericity``,
                ``wavelet-LLH_glcm_Idmn``, ``log-sigma-3-0-mm-3D_firstorder_Mean``), also behind a
                prefix the user added (``ct_original_shape_MeshVolume``)
``cnn``         branch ``cnn__``
``markers``     branch ``marker__`` (predicted NCCT markers) and radiologist marker reads: the
                columns :data:`radhe.constants.NCCT_MARKERS` (``hypodensity``, ``blend_sign``, ...)
``clinical``    branch ``clinical__`` (other than marker reads)
``tabular``     anything else (branch ``tabular__`` or an unprefixed column)
==============  ================================================================================

Missing-value indicators (``<column>_missing``) and one-hot columns (``<column>_<level>``) stay in
the family of their column. Families can also be given explicitly as ``{family: [columns]}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from radhe.constants import NCCT_MARKERS
from radhe.errors import ConfigurationError

__all__ = ["FAMILY_ORDER", "feature_family_of", "group_features", "radiomics_key"]

#: Families in display order.
FAMILY_ORDER = ("radiomics", "cnn", "markers", "clinical", "tabular")

_IMAGE_TYPE = (
    r"(?:original|wavelet\d?-[LH]{2,3}|log-sigma-[0-9]+(?:-[0-9]+)?-mm-[23]D|square|squareroot|logarithm|"
    r"exponential|gradient|lbp-2D|lbp-3D-(?:m\d+|k))"
)
_CLASS = r"(?:shape2D|shape|firstorder|glcm|glrlm|glszm|gldm|ngtdm)"
#: A pyradiomics feature key anywhere in a column name (after the start or an underscore).
_RADIOMICS_KEY = re.compile(rf"(?:^|[_\-.]){_IMAGE_TYPE}_{_CLASS}_[A-Za-z0-9]+", re.IGNORECASE)

_BRANCH_FAMILIES = {"radiomics": "radiomics", "cnn": "cnn", "marker": "markers", "markers": "markers"}


def radiomics_key(name: str) -> str | None:
    """The pyradiomics feature key ``<image type>_<class>_<feature>`` a column name holds (after its
    start or a separator: ``"ct_original_shape_MeshVolume"`` → ``"original_shape_MeshVolume"``), or None."""
    match = _RADIOMICS_KEY.search(str(name))
    return None if match is None else match.group(0).lstrip("_-.")


def _is_marker(name: str) -> bool:
    return any(name == m or name.startswith(f"{m}_") for m in NCCT_MARKERS)


def feature_family_of(name: str) -> str:
    """The family (one of :data:`FAMILY_ORDER`) of one feature column, from its name.

    Parameters
    ----------
    name : str
        A column name such as ``"radiomics__original_shape_MeshVolume"``, ``"clinical__gcs"``,
        ``"tabular__ct_original_firstorder_Mean"`` or a bare ``"original_glcm_Idmn"``.

    Returns
    -------
    str

    Examples
    --------
    >>> feature_family_of("tabular__ct_wavelet-LLH_glcm_Idmn")
    'radiomics'
    >>> feature_family_of("clinical__blend_sign")
    'markers'
    >>> feature_family_of("clinical__age_years_missing")
    'clinical'
    """
    name = str(name)
    branch, sep, rest = name.partition("__")
    if not sep:
        branch, rest = "", name
    if branch in _BRANCH_FAMILIES:
        return _BRANCH_FAMILIES[branch]
    if _RADIOMICS_KEY.search(rest):
        return "radiomics"
    if _is_marker(rest):
        return "markers"
    if branch == "clinical":
        return "clinical"
    return "tabular"


def group_features(columns: Sequence[str], families="auto") -> dict[str, list[str]]:
    """Group feature columns into families.

    Parameters
    ----------
    columns : sequence of str
        The feature names, in table order.
    families : "auto", "single" or mapping, default "auto"
        "auto": by name (:func:`feature_family_of`). "single": every column in one family
        ``"all"``. A mapping ``{family: [column, ...]}``: columns named by their feature name
        (``"tabular__age"``), by the name without the branch prefix (``"age"``) or by the manifest
        column they were encoded from (``"grade"`` holds ``tabular__grade_2``, ``tabular__grade_3``).
        Names the table does not hold (e.g. dropped as constant in this fold) are ignored; a feature
        in no family is refused, so that nothing is silently left out.

    Returns
    -------
    dict
        ``{family: [columns]}`` in :data:`FAMILY_ORDER` (explicit families in the given order),
        columns in table order; empty families are left out.

    Raises
    ------
    radhe.errors.ConfigurationError
        An unknown ``families`` value; a mapping putting a column in two families or leaving
        a feature column out.
    """
    columns = [str(c) for c in columns]
    if isinstance(families, str):
        if families == "single":
            return {"all": list(columns)} if columns else {}
        if families != "auto":
            raise ConfigurationError(f"families must be 'auto', 'single' or a mapping, got {families!r}")
        grouped: dict[str, list[str]] = {}
        for column in columns:
            grouped.setdefault(feature_family_of(column), []).append(column)
        order = [f for f in FAMILY_ORDER if f in grouped]
        return {f: grouped[f] for f in order}
    if not isinstance(families, Mapping):
        raise ConfigurationError(f"families must be 'auto', 'single' or a mapping, got {type(families).__name__}")
    owner: dict[str, str] = {}
    for family, members in families.items():
        members = [members] if isinstance(members, str) else [str(m) for m in members]
        for m in members:
            if m in owner and owner[m] != str(family):
                raise ConfigurationError(f"column {m!r} is in two families ({owner[m]!r} and {family!r})")
            owner[m] = str(family)
    result: dict[str, list[str]] = {str(f): [] for f in families}
    left_out = []
    for column in columns:
        family = _declared_family(column, owner)
        if family is None:
            left_out.append(column)
        else:
            result[family].append(column)
    if left_out:
        raise ConfigurationError(
            f"{len(left_out)} feature column(s) are in no family: {left_out[:10]}; add them (or the manifest "
            "column they come from) to a family, or leave them out of the model"
        )
    return {f: cols for f, cols in result.items() if cols}


def _declared_family(column: str, owner: Mapping[str, str]) -> str | None:
    """The family a mapping gives ``column``: by its full name, by its name without the branch prefix,
    or by the manifest column it was made from (``<column>_<level>``, ``<column>_missing``; the
    longest such column wins)."""
    if column in owner:
        return owner[column]
    _, sep, rest = column.partition("__")
    bare = rest if sep else column
    if bare in owner:
        return owner[bare]
    best = None
    for name in owner:
        if bare.startswith(f"{name}_") and (best is None or len(name) > len(best)):
            best = name
    return owner[best] if best is not None else None
