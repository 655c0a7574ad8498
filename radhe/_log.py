"""radhe's messages go through :mod:`logging`, logger ``"radhe"`` (and ``"radhe.<module>"``).

As a library radhe adds only a :class:`logging.NullHandler`: what is shown, and where, is the
application's choice (``logging.basicConfig(level=logging.INFO)`` shows progress). The command line
shows INFO messages on stderr (``--quiet``: warnings only). An estimator created with
``verbose=True`` shows its progress even in a program that configured no logging at all
(:func:`console_if_unconfigured`). radhe never changes the level of a logger it does not own.
"""

from __future__ import annotations

import contextlib
import logging
import sys

__all__ = ["LOGGER_NAME", "get_logger", "console", "console_if_unconfigured", "command_line_warnings"]

LOGGER_NAME = "radhe"
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

_FORMAT = "radhe: %(message)s"


def get_logger(module: str) -> logging.Logger:
    """The logger of a radhe module (``radhe.<last part of the module name>``)."""
    name = module if module.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{module}"
    return logging.getLogger(name)


def _command_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as a command-line user reads it: its category and message, not the source line that raised it."""
    return f"radhe: warning: {category.__name__}: {message}\n"


@contextlib.contextmanager
def command_line_warnings():
    """Warnings shown without the library file and source line that raised them, for the duration."""
    import warnings

    previous = warnings.formatwarning
    warnings.formatwarning = _command_line_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


@contextlib.contextmanager
def console(level: int = logging.INFO):
    """Show radhe's messages of ``level`` and above on stderr for the duration (the command line's setting)."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, old_level) if old_level else level)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _configured() -> bool:
    logger = logging.getLogger(LOGGER_NAME)
    while logger is not None:
        if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


@contextlib.contextmanager
def console_if_unconfigured(enabled: bool = True):
    """For ``verbose=True``: show INFO messages on stderr unless the program configured logging itself."""
    if enabled and not _configured():
        with console(logging.INFO):
            yield
    else:
        yield
