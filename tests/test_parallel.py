"""radhe.parallel.run_tasks on joblib's local process pool: who runs what, and every result once."""

from __future__ import annotations

import os
import time

import pytest

import radhe.parallel as parallel
from radhe.parallel import run_tasks


def pid_after(seconds: float, index: int):
    time.sleep(seconds)
    return index, os.getpid()


def fails_on(index: int, bad: int):
    if index == bad:
        raise ValueError(f"task {index} is bad")
    return index


@pytest.fixture
def cold(monkeypatch):
    """No pool known to be running in this process (as in a fresh session)."""
    monkeypatch.setattr(parallel, "_last_pool", None)


def _check_complete(results, n):
    positions = [position for position, _ in results]
    assert sorted(positions) == list(range(n)), "every task once"
    for position, (index, _) in results:
        assert position == index, "each result belongs to its task"


def test_small_batch_on_a_cold_pool_runs_here(cold):
    """Starting workers would cost more than the batch: n_jobs=2 runs it in this process."""
    results = list(run_tasks(pid_after, [(0.01, i) for i in range(6)], n_jobs=2))
    _check_complete(results, 6)
    assert {pid for _, (_, pid) in results} == {os.getpid()}
    assert parallel._last_pool is None  # no pool was started


def test_long_batch_starts_the_pool_and_this_process_helps_only_while_it_starts(cold):
    # the first task, timed here, puts the batch above COLD_POOL_MIN_SECONDS
    seconds = 1.2 * parallel.COLD_POOL_MIN_SECONDS / 15
    tasks = [(seconds, i) for i in range(16)]
    results = list(run_tasks(pid_after, tasks, n_jobs=2))
    _check_complete(results, 16)
    pids = {pid for _, (_, pid) in results}
    assert os.getpid() in pids, "the first task runs here"
    assert pids - {os.getpid()}, "the rest went (at least partly) to worker processes"
    assert parallel._last_pool is not None and parallel._last_pool[1] == 2

    # the pool is now warm: the next call (the next fold) goes to the workers only, even a small one
    again = list(run_tasks(pid_after, [(0.01, i) for i in range(6)], n_jobs=2))
    _check_complete(again, 6)
    assert os.getpid() not in {pid for _, (_, pid) in again}


def test_a_workers_exception_reaches_the_caller(cold):
    list(run_tasks(pid_after, [(0.3, i) for i in range(12)], n_jobs=2))  # a warm pool
    with pytest.raises(ValueError, match="task 3 is bad"):
        list(run_tasks(fails_on, [(i, 3) for i in range(8)], n_jobs=2))
    # the pool still works after a failed batch
    assert sorted(i for _, i in run_tasks(fails_on, [(i, -1) for i in range(8)], n_jobs=2)) == list(range(8))


def test_a_caller_that_stops_early_leaves_the_pool_usable(cold):
    list(run_tasks(pid_after, [(0.3, i) for i in range(12)], n_jobs=2))
    for _ in run_tasks(pid_after, [(0.05, i) for i in range(10)], n_jobs=2):
        break  # e.g. the first failure raised by the caller with on_error="raise"
    results = list(run_tasks(pid_after, [(0.01, i) for i in range(5)], n_jobs=2))
    _check_complete(results, 5)


def test_sequential_and_dask_like_backends_keep_their_path():
    results = list(run_tasks(pid_after, [(0.0, i) for i in range(4)], n_jobs=1))
    _check_complete(results, 4)
    assert {pid for _, (_, pid) in results} == {os.getpid()}
    import joblib

    with joblib.parallel_config(backend="threading"):  # not the local process pool: joblib runs it
        assert parallel._local_pool_workers(2) is None
        results = list(run_tasks(pid_after, [(0.0, i) for i in range(4)], n_jobs=2))
    _check_complete(results, 4)
    assert {pid for _, (_, pid) in results} == {os.getpid()}
