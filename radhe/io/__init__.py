"""Image input/output, the case manifest and input validation.

One reader module per concept: :mod:`radhe.io.image` (volumes), :mod:`radhe.io.manifest`
(the case table) and :mod:`radhe.io.validation` (per-case checks).
"""

from radhe.io.image import read_dicom_series, read_image, write_image
from radhe.io.manifest import RESERVED_COLUMNS, feature_columns, load_manifest
from radhe.io.validation import CaseCheck, ValidationReport, validate_case, validate_manifest

__all__ = [
    "read_image",
    "read_dicom_series",
    "write_image",
    "load_manifest",
    "feature_columns",
    "RESERVED_COLUMNS",
    "validate_case",
    "validate_manifest",
    "CaseCheck",
    "ValidationReport",
]
