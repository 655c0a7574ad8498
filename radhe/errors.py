"""Exceptions and warnings raised by radhe.

Every error about a user's data names the case, the file and the problem, so a failure in a
cohort of hundreds of scans can be traced to one row of the manifest.
"""

from __future__ import annotations

import warnings

__all__ = ["RadheError", "InputError", "ConfigurationError", "InputWarning", "ModelVersionWarning", "format_case"]


class RadheError(Exception):
    """Base class of every exception raised by radhe itself."""


class InputError(RadheError, ValueError):
    """A case, file or table given to radhe is invalid.

    Parameters
    ----------
    message : str
        What is wrong.
    case_id : str, optional
        The manifest's ``case_id`` of the offending case; prefixed to the message.
    path : str or path-like, optional
        The file concerned; mentioned in the message when not already in it.

    Attributes
    ----------
    case_id, path, problem : str or None
        The parts of the message, for programs that collect failures in a table.
    """

    def __init__(self, message: str, *, case_id: object = None, path: object = None):
        self.case_id = None if case_id is None else str(case_id)
        self.path = None if path is None else str(path)
        self.problem = message
        parts = []
        if self.case_id is not None:
            parts.append(format_case(self.case_id) + ":")
        parts.append(message)
        if self.path is not None and self.path not in message:
            parts.append(f"(file '{self.path}')")
        super().__init__(" ".join(parts))


class ConfigurationError(RadheError, ValueError):
    """A setting or parameter combination given to a radhe estimator is invalid."""


class InputWarning(UserWarning):
    """Input that is usable but suspicious (e.g. intensities that do not look like HU)."""


class ModelVersionWarning(UserWarning):
    """A saved model was written by another radhe or feature-engine version than the running one.

    Issued by :func:`radhe.load_model` (in the spirit of scikit-learn's
    ``InconsistentVersionWarning``) when the versions recorded in the model file differ from the
    running ones, or when the file records none (written before radhe recorded them, or by
    ``joblib.dump`` / ``skops.io.dump`` directly). Features computed by another engine may differ
    from those the model was fitted on: refit the model with the running radhe.

    Parameters
    ----------
    message : str
        What differs, naming the file and both versions.
    path : str or path-like, optional
        The model file.
    saved : dict or None, optional
        The versions recorded in the file (``{"radhe": ..., "feature_engine": ...}``); None when it
        records none.
    running : dict or None, optional
        The running versions, with the same keys.

    Attributes
    ----------
    path : str or None
    saved, running : dict or None
    """

    def __init__(self, message: str, *, path: object = None, saved: dict | None = None,
                 running: dict | None = None):
        self.path = None if path is None else str(path)
        self.saved = None if saved is None else dict(saved)
        self.running = None if running is None else dict(running)
        super().__init__(message)


def format_case(case_id: object) -> str:
    """Return ``"case '<id>'"``, the prefix used in every per-case message."""
    return f"case '{case_id}'"


#: At most this many cases are listed in one aggregated warning (the rest are counted).
MAX_LISTED_CASES = 20


def warn_cases(summary: str, problems: list[str], *, stacklevel: int = 2) -> None:
    """One :class:`~radhe.errors.InputWarning` for a step's problem cases: the summary, then one line per case."""
    listed = problems[:MAX_LISTED_CASES]
    more = len(problems) - len(listed)
    text = summary + ":\n  " + "\n  ".join(listed) + (f"\n  ... and {more} more" if more > 0 else "")
    warnings.warn(text, InputWarning, stacklevel=stacklevel + 1)
