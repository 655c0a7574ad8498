"""Image input/output, the case manifest and input validation.

One reader module per concept: :mod:`radhe.io.image` (volumes), :mod:`radhe.io.manifest`
(the case table), :mod:`radhe.io.validation` (per-case checks), :mod:`radhe.io.orientation` (a
volume's voxel order) and :mod:`radhe.io.dicom_masks` (RTSTRUCT and DICOM-SEG masks onto the CT grid).
"""

from radhe.io.dicom_masks import read_dicom_mask
from radhe.io.image import read_dicom_series, read_image, write_image
from radhe.io.manifest import RESERVED_COLUMNS, feature_columns, load_manifest
from radhe.io.validation import (
    CaseCheck,
    LoadedCase,
    ValidationReport,
    load_checked_case,
    read_mask,
    validate_case,
    validate_manifest,
)

__all__ = [
    "read_image",
    "read_dicom_series",
    "read_dicom_mask",
    "write_image",
    "load_manifest",
    "feature_columns",
    "RESERVED_COLUMNS",
    "validate_case",
    "validate_manifest",
    "load_checked_case",
    "LoadedCase",
    "read_mask",
    "CaseCheck",
    "ValidationReport",
]
