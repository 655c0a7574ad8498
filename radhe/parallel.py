"""Running per-case work in parallel: joblib locally, a Dask cluster through joblib's dask backend.

radhe's estimators take ``n_jobs`` and run through :func:`run_tasks`, which uses
:class:`joblib.Parallel`. Whatever joblib backend is active is used, so the same code runs

* on this machine: ``n_jobs=2`` starts two worker processes (joblib's default "loky" backend);
* on a Dask cluster: inside ``with radhe.parallel.dask_backend("tcp://scheduler:8786"):``
  (or joblib's own ``with joblib.parallel_config(backend="dask"):`` with a
  ``distributed.Client`` connected), with ``n_jobs=-1`` to use every worker.

Workers run SimpleITK with one thread each: with several processes per machine, more threads
only compete for the same cores.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator

__all__ = ["run_tasks", "dask_backend", "progress", "effective_n_jobs", "single_threaded"]

#: Extractions of more than this many cases show a progress bar (when verbose).
PROGRESS_MIN_TASKS = 5


def effective_n_jobs(n_jobs: int | None) -> int:
    """The number of workers ``n_jobs`` means under the active joblib backend."""
    import joblib

    return joblib.effective_n_jobs(n_jobs)


def single_threaded() -> None:
    """Limit SimpleITK to one thread in this process (called in parallel workers)."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _call_indexed(func, index, args, limit_threads):
    if limit_threads:
        single_threaded()
    return index, func(*args)


def run_tasks(
    func: Callable,
    tasks: Iterable[tuple],
    *,
    n_jobs: int | None = 1,
    verbose: bool = False,
    desc: str = "cases",
    total: int | None = None,
) -> Iterator[tuple[int, object]]:
    """Run ``func(*args)`` for every ``args`` in ``tasks``; yield ``(position, result)`` as each finishes.

    Results come in completion order (so callers can store each as soon as it exists); the position
    says which task it belongs to. ``n_jobs=1`` without an active parallel backend runs in this
    process, in order. A progress bar (tqdm) is shown when ``verbose`` and there are more than
    :data:`PROGRESS_MIN_TASKS` tasks.
    """
    import joblib

    tasks = list(tasks)
    if not tasks:
        return
    total = len(tasks) if total is None else total
    bar = progress(total, desc=desc, enabled=verbose and total > PROGRESS_MIN_TASKS)
    try:
        if _sequential(n_jobs):
            for i, args in enumerate(tasks):
                result = func(*args)
                bar.update(1)
                yield i, result
            return
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        jobs = (joblib.delayed(_call_indexed)(func, i, args, True) for i, args in enumerate(tasks))
        for i, result in parallel(jobs):
            bar.update(1)
            yield i, result
    finally:
        bar.close()


def _sequential(n_jobs) -> bool:
    import joblib
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    is_default = type(backend).__name__ in ("LokyBackend", "SequentialBackend", "MultiprocessingBackend")
    if n_jobs is None:
        return joblib.effective_n_jobs(None) == 1 and is_default
    return n_jobs == 1


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress(total: int, *, desc: str = "", enabled: bool = True):
    """A tqdm progress bar on stderr, or a silent stand-in when not ``enabled``."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="case", file=sys.stderr, dynamic_ncols=True)


@contextlib.contextmanager
def dask_backend(address=None, **client_kwargs):
    """Run radhe's parallel work (``n_jobs``) on a Dask cluster for the duration of the block.

    Parameters
    ----------
    address : str, distributed.Client, distributed cluster or None
        A scheduler address (``"tcp://10.0.0.5:8786"``), an existing client or cluster object.
        None uses ``$DASK_SCHEDULER_ADDRESS`` when set, else starts a ``LocalCluster`` on this
        machine (closed when the block ends).
    **client_kwargs
        Passed to :class:`distributed.Client` when one is created here.

    Yields
    ------
    distributed.Client

    Examples
    --------
    >>> with dask_backend("tcp://scheduler:8786"):          # doctest: +SKIP
    ...     X_rad = RadiomicsFeatures(n_jobs=-1).fit_transform(manifest)
    """
    import joblib
    from distributed import Client

    own_client = None
    if address is None:
        address = os.environ.get("DASK_SCHEDULER_ADDRESS")
    if isinstance(address, Client):
        client = address
    else:
        client = own_client = Client(address, **client_kwargs) if address is not None else Client(
            processes=True, **client_kwargs
        )
    try:
        with joblib.parallel_config(backend="dask", n_jobs=-1):
            yield client
    finally:
        if own_client is not None:
            cluster = own_client.cluster if address is None else None
            own_client.close()
            if cluster is not None:
                cluster.close()
