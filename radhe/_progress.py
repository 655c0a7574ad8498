"""Progress messages of radhe's long steps: one INFO line per step, with its duration.

Messages go through :mod:`logging` (logger ``"radhe"``, see :mod:`radhe._log`). A step that runs
inside a larger one already reported line by line (a pipeline fitted in a cross-validation fold, a
baseline's folds) reports at DEBUG instead, so a cross-validation shows one line per fold, not one
per fold, step and inner fit; ``logging.getLogger("radhe").setLevel(logging.DEBUG)`` shows them all.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time

from radhe._log import get_logger

__all__ = ["level", "inner", "timed", "PipelineFitClock"]

_INNER = contextvars.ContextVar("radhe_inner_step", default=False)

log = get_logger("radhe.pipeline")


def level() -> int:
    """The level of a progress line here: INFO, or DEBUG inside a step already reported (:func:`inner`)."""
    return logging.DEBUG if _INNER.get() else logging.INFO


@contextlib.contextmanager
def inner():
    """Work in this block is part of a step reported on its own: its progress lines go to DEBUG."""
    token = _INNER.set(True)
    try:
        yield
    finally:
        _INNER.reset(token)


@contextlib.contextmanager
def timed(logger: logging.Logger, message: str, *args, start: str | None = None):
    """Log ``message % args`` followed by ``" in <seconds> s"`` when the block ends without an error.

    ``start``: a line logged when the block begins too (for steps that take minutes). Both go at
    :func:`level`'s level.
    """
    lvl = level()
    if start is not None:
        logger.log(lvl, start, *args)
    began = time.perf_counter()
    yield
    logger.log(lvl, message + " in %.1f s", *args, time.perf_counter() - began)


class PipelineFitClock:
    """Times each step of a :class:`radhe.pipeline.RadhePipeline` fit from the pipeline's step hook.

    The pipeline calls :meth:`step_starts` when it is about to fit step ``i`` (scikit-learn's
    ``_log_message`` hook, called before every step, the final one included); the clock logs the
    previous step's duration then, and the last step's and the total when the fit ends. Passthrough
    steps are not reported.
    """

    def __init__(self, pipeline, n_rows: int | None):
        self.pipeline = pipeline
        self.n_rows = n_rows
        self._current = None
        self._token = None

    def __enter__(self):
        self.level = level()
        self._token = _INNER.set(True)  # a pipeline fitted inside this one (a sub-model) reports at DEBUG
        self._began = self._step_began = time.perf_counter()
        return self

    def step_starts(self, index: int) -> None:
        self._finish()
        self._current, self._step_began = index, time.perf_counter()

    def _finish(self) -> None:
        if self._current is None:
            return
        index, self._current = self._current, None
        steps = self.pipeline.steps
        name, step = steps[index]
        if step is None or (isinstance(step, str) and step == "passthrough"):
            return
        log.log(self.level, "fit: step %d/%d '%s' (%s) in %.1f s", index + 1, len(steps), name, type(step).__name__,
                time.perf_counter() - self._step_began)

    def __exit__(self, exc_type, exc, tb):
        _INNER.reset(self._token)
        if exc_type is None:
            self._finish()
            rows = "" if self.n_rows is None else f" on {self.n_rows} cases"
            log.log(self.level, "fit: %d steps%s in %.1f s", len(self.pipeline.steps), rows,
                    time.perf_counter() - self._began)
        return False
