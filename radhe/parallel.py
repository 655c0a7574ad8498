"""Running per-case work in parallel: joblib locally, a Dask cluster through joblib's dask backend.

radhe's estimators take ``n_jobs`` and run through :func:`run_tasks`, which uses
:class:`joblib.Parallel`. Whatever joblib backend is active is used, so the same code runs

* on this machine: ``n_jobs=2`` starts two worker processes (joblib's default "loky" backend);
* on a Dask cluster: inside ``with radhe.parallel.dask_backend("tcp://scheduler:8786"):``
  (or joblib's own ``with joblib.parallel_config(backend="dask"):`` with a
  ``distributed.Client`` connected), with ``n_jobs=-1`` to use every worker.

Workers run SimpleITK with one thread each: with several processes per machine, more threads
only compete for the same cores.

Local worker processes never outlive the process that started them. joblib's loky workers
wait for work from their parent and, when the parent is killed (``SIGTERM``, ``SIGKILL``, an
out-of-memory kill), would stay alive holding their memory. :func:`run_tasks` and
:func:`make_parallel` start them with :func:`watch_parent` as initializer: a daemon thread in each
worker checks every :data:`PARENT_POLL_SECONDS` that its parent is alive and ends the worker
(``os._exit``) when it is not. A polling thread rather than Linux's ``prctl(PR_SET_PDEATHSIG)``:
that signal fires when the *thread* that forked the worker ends, which would kill healthy workers
started from a short-lived thread; polling also works on macOS. A worker busy in a C call that
holds the GIL exits as soon as the call returns.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

__all__ = ["run_tasks", "make_parallel", "watch_parent", "dask_backend", "progress", "effective_n_jobs", "stop_workers",
           "single_threaded", "PARENT_POLL_SECONDS"]

#: Extractions of more than this many cases show a progress bar (when verbose).
PROGRESS_MIN_TASKS = 5

#: Seconds between a worker's checks that the process that started it is still alive.
PARENT_POLL_SECONDS = 0.25

#: Seconds an idle local worker process waits for more work before it ends (joblib's default).
WORKER_IDLE_SECONDS = 300

#: Exit status of a worker ended by :func:`watch_parent`.
ORPHAN_EXIT_STATUS = 75


def watch_parent(parent_pid: int, interval: float = PARENT_POLL_SECONDS) -> None:
    """Worker initializer: end this process as soon as the process ``parent_pid`` has died.

    Starts one daemon thread (once per process) that polls, every ``interval`` seconds, whether
    ``parent_pid`` is still this process's parent (``os.getppid()``; when it was not the parent to
    begin with, e.g. a fork server in between, whether it still exists), and calls
    ``os._exit(ORPHAN_EXIT_STATUS)`` when it is gone. Does nothing in the process ``parent_pid`` itself.

    Parameters
    ----------
    parent_pid : int
        Process id of the process that runs the parallel loop (``os.getpid()`` there).
    interval : float, default PARENT_POLL_SECONDS
        Seconds between checks.
    """
    global _WATCHDOG
    if parent_pid == os.getpid() or _WATCHDOG is not None:
        return
    direct = os.getppid() == parent_pid

    def parent_alive() -> bool:
        if direct:
            return os.getppid() == parent_pid
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
        return True

    if not parent_alive():
        os._exit(ORPHAN_EXIT_STATUS)

    def watch():
        while parent_alive():
            time.sleep(interval)
        os._exit(ORPHAN_EXIT_STATUS)

    _WATCHDOG = threading.Thread(target=watch, name="radhe-parent-watchdog", daemon=True)
    _WATCHDOG.start()


_WATCHDOG: threading.Thread | None = None


def _watched_backend():
    """The active joblib backend with :func:`watch_parent` as its workers' initializer; None to keep it.

    Only joblib's process pool (loky, the default) is changed, keeping its settings; a Dask or
    threading backend, or a loky backend given an initializer of its own, is left as it is.
    """
    from joblib._parallel_backends import LokyBackend
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if type(backend) is not LokyBackend or "initializer" in backend.backend_kwargs:
        return None
    return LokyBackend(nesting_level=backend.nesting_level, inner_max_num_threads=backend.inner_max_num_threads,
                       **{**backend.backend_kwargs, "initializer": watch_parent, "initargs": (os.getpid(),)})


def make_parallel(n_jobs: int | None = None, **kwargs):
    """A :class:`joblib.Parallel` whose local worker processes end when this process dies.

    Same arguments as :class:`joblib.Parallel` (without ``backend``); under a Dask or threading
    backend (``joblib.parallel_config``) it is a plain ``joblib.Parallel``. See :func:`watch_parent`.
    """
    import joblib

    if "backend" in kwargs:
        raise TypeError("make_parallel chooses the backend; use joblib.Parallel for another one")
    return joblib.Parallel(n_jobs=n_jobs, backend=_watched_backend(), **kwargs)


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
        n_workers = _local_pool_workers(n_jobs)
        if n_workers is not None:
            for i, result in _run_on_local_pool(func, tasks, n_workers):
                bar.update(1)
                yield i, result
            return
        parallel = make_parallel(n_jobs=n_jobs, return_as="generator_unordered")
        jobs = (joblib.delayed(_call_indexed)(func, i, args, True) for i, args in enumerate(tasks))
        for i, result in parallel(jobs):
            bar.update(1)
            yield i, result
    finally:
        bar.close()


def _local_pool_workers(n_jobs) -> int | None:
    """Worker processes for :func:`_run_on_local_pool`; None unless joblib's default process pool is active."""
    import joblib
    from joblib._parallel_backends import LokyBackend
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if type(backend) is not LokyBackend or backend.backend_kwargs:
        return None  # Dask, threads, or a loky backend with settings of its own: joblib runs it
    workers = joblib.effective_n_jobs(n_jobs)
    return workers if workers > 1 else None


#: Work (estimated seconds in this process) below which a cold pool is not started: starting two
#: workers and their imports takes about 0.6 s of wall time and more of CPU on a 2-core machine.
COLD_POOL_MIN_SECONDS = 3.0

#: Tasks this process runs (and times) before it decides whether a cold pool would pay.
SEQUENTIAL_PROBE_TASKS = 2

class _LocalPool:
    """radhe's own loky process pool (not joblib's shared executor, whose reuse rules it would upset)."""

    def __init__(self, n_workers: int):
        from joblib._parallel_backends import ParallelBackendBase
        from joblib.externals.loky import ProcessPoolExecutor

        # joblib's thread limits for its workers (cores / workers), unless set in this process
        threads = str(max((os.cpu_count() or 1) // n_workers, 1))
        env = {name: os.environ.get(name, threads) for name in ParallelBackendBase.MAX_NUM_THREADS_VARS}
        # idle workers stay for joblib's 300 s: the next fold of a cross-validation finds them running
        self.executor = ProcessPoolExecutor(max_workers=n_workers, timeout=WORKER_IDLE_SECONDS, env=env,
                                            initializer=watch_parent, initargs=(os.getpid(),))
        self.n_workers = n_workers
        self.last_result: float | None = None  # time.monotonic() of the last result a worker returned

    @property
    def warm(self) -> bool:
        return self.last_result is not None and time.monotonic() - self.last_result < 0.9 * WORKER_IDLE_SECONDS

    def close(self) -> None:
        self.executor.shutdown(wait=False, kill_workers=True)


_pool: _LocalPool | None = None


def _local_pool(n_workers: int) -> _LocalPool:
    global _pool
    if _pool is not None and _pool.n_workers != n_workers:
        _pool.close()
        _pool = None
    if _pool is None:
        _pool = _LocalPool(n_workers)
    return _pool


def _discard_pool(pool: _LocalPool) -> None:
    """Kill the workers of a pool left with unfinished work (or broken) and forget it."""
    global _pool
    pool.close()
    if _pool is pool:
        _pool = None


def stop_workers() -> bool:
    """End radhe's local worker processes now (idle ones otherwise end after
    :data:`WORKER_IDLE_SECONDS`), freeing their memory; the next parallel call starts new ones.

    Not while a parallel run is being read: its workers are killed and the run fails.

    Returns
    -------
    bool
        Whether radhe had a worker pool to stop (its workers may already have ended, idle).
    """
    if _pool is None:
        return False
    _discard_pool(_pool)
    return True


def _run_on_local_pool(func, tasks: list, n_workers: int) -> Iterator[tuple[int, object]]:
    """Tasks on ``n_workers`` local processes, or in this process when starting them would not pay.

    Starting worker processes (and their imports) costs more than a few cases of extraction, so a
    small batch sent to a cold pool finishes later than in this process alone. A single task runs
    here. With no warm pool, this process runs the first task and times it; as the first also pays
    one-time costs, when the rest would take between one and two :data:`COLD_POOL_MIN_SECONDS` by that
    time it times a second one (up to :data:`SEQUENTIAL_PROBE_TASKS`) and uses their mean. When the
    rest would take less than :data:`COLD_POOL_MIN_SECONDS` here, it runs them too. Otherwise the pool starts
    and, until a worker returns its first result, this process keeps taking tasks (from the end of
    the queue, the workers from the front); when none is left to take it computes those still
    waiting for a worker, and the first result of a task is the one kept (the functions run here
    are pure). Once the pool is warm (the next fold of a cross-validation) the workers alone do
    the work. When the caller stops early or a task fails, the workers still busy are killed (as
    joblib does), so the next call does not wait for abandoned work.

    The pool is radhe's own loky executor (:class:`_LocalPool`), its workers started with
    :func:`watch_parent` and the thread limits joblib gives its workers.
    """
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, wait

    import SimpleITK as sitk

    pending = deque(range(len(tasks)))
    finished: set[int] = set()
    pool = _pool if _pool is not None and _pool.n_workers == n_workers and _pool.warm else None
    if pool is None or len(tasks) == 1:
        # the first task also pays this process's one-time costs (lazy imports, first use of the
        # libraries), so it can only overestimate a task's cost: when it says the pool would clearly
        # pay, the pool starts; when it is unclear, a second task is timed and their mean decides
        seconds = []
        while pending and len(seconds) < SEQUENTIAL_PROBE_TASKS:
            start = time.perf_counter()
            i = pending.popleft()
            result = func(*tasks[i])
            seconds.append(time.perf_counter() - start)
            finished.add(i)
            yield i, result
            if seconds[0] * len(pending) >= 2 * COLD_POOL_MIN_SECONDS:
                break
        if not pending:
            return
        if np.mean(seconds) * len(pending) < COLD_POOL_MIN_SECONDS:
            while pending:
                i = pending.popleft()
                yield i, func(*tasks[i])
            return
    if pool is None:
        pool = _local_pool(n_workers)
    warm = pool.warm
    in_flight: dict = {}  # future -> task position
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    complete = broken = False

    def submit():
        while pending and len(in_flight) < 2 * n_workers:
            i = pending.popleft()
            in_flight[pool.executor.submit(_call_indexed, func, i, tasks[i], True)] = i

    try:
        submit()
        while len(finished) < len(tasks):
            for future in [f for f in in_flight if f.done()]:
                i = in_flight.pop(future)
                _, result = future.result()  # a worker's exception is raised here
                warm = True
                pool.last_result = time.monotonic()
                if i not in finished:
                    finished.add(i)
                    yield i, result
            submit()
            if len(finished) == len(tasks):
                break
            waiting = [i for i in in_flight.values() if i not in finished]
            if not warm and (pending or waiting):
                i = pending.pop() if pending else waiting[-1]
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # the workers use the other cores
                try:
                    result = func(*tasks[i])
                finally:
                    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
                finished.add(i)
                yield i, result
            elif in_flight:
                wait(list(in_flight), return_when=FIRST_COMPLETED)
        complete = True
    except BrokenExecutor:  # a worker died (killed, out of memory): the next call starts a new pool
        broken = True
        raise
    finally:
        unfinished = [f for f in in_flight if not f.cancel()]
        if broken or (unfinished and not (complete and warm)):
            # abandoned work (an early stop, a failure) or a pool that never answered: kill it. A
            # completed batch whose leftovers are duplicates of tasks done here keeps a warm pool.
            _discard_pool(pool)


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
