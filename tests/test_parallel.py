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
def cold():
    """No pool running in this process (as in a fresh session)."""
    if parallel._pool is not None:
        parallel._discard_pool(parallel._pool)
    yield


def _wait_until_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as stat:  # a killed worker its parent has not reaped yet
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except (ProcessLookupError, FileNotFoundError):
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} still running {timeout} s after stop_workers")


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
    assert parallel._pool is None  # no pool was started


def test_a_slow_first_task_alone_does_not_start_a_cold_pool(cold):
    """The first task pays one-time costs (imports, first use of a library): a batch whose other tasks
    are quick stays in this process instead of paying for workers too."""
    # by the first task the rest would take 1.5 times the threshold: the second is timed, and the mean
    slow_first = 1.5 * parallel.COLD_POOL_MIN_SECONDS / 15
    tasks = [(slow_first, 0)] + [(0.01, i) for i in range(1, 16)]
    results = list(run_tasks(pid_after, tasks, n_jobs=2))
    _check_complete(results, 16)
    assert {pid for _, (_, pid) in results} == {os.getpid()}
    assert parallel._pool is None


def test_one_quick_task_does_not_keep_a_long_batch_here(cold):
    """A quick second task (a case that fails its checks at once) does not make a long batch of slow
    tasks run serially: a first task showing the pool clearly pays starts it at once (a second is
    timed only when the rest would take one to two times COLD_POOL_MIN_SECONDS)."""
    # the first task alone says the rest would take 2.5 times the threshold: the pool starts at once
    seconds = 2.5 * parallel.COLD_POOL_MIN_SECONDS / 15
    results = list(run_tasks(pid_after, [(seconds, 0), (0.0, 1)] + [(seconds, i) for i in range(2, 16)], n_jobs=2))
    _check_complete(results, 16)
    assert {pid for _, (_, pid) in results} - {os.getpid()}, "workers took part"
    assert parallel.stop_workers()


def test_long_batch_starts_the_pool_and_this_process_helps_only_while_it_starts(cold):
    # the first tasks, timed here, put the batch above COLD_POOL_MIN_SECONDS
    seconds = 1.2 * parallel.COLD_POOL_MIN_SECONDS / 15
    tasks = [(seconds, i) for i in range(16)]
    results = list(run_tasks(pid_after, tasks, n_jobs=2))
    _check_complete(results, 16)
    pids = {pid for _, (_, pid) in results}
    assert os.getpid() in pids, "the first tasks run here"
    assert pids - {os.getpid()}, "the rest went (at least partly) to worker processes"
    assert parallel._pool is not None and parallel._pool.n_workers == 2 and parallel._pool.warm

    # the pool is now warm: the next call (the next fold) goes to the workers only, even a small one
    again = list(run_tasks(pid_after, [(0.01, i) for i in range(6)], n_jobs=2))
    _check_complete(again, 6)
    workers = {pid for _, (_, pid) in again}
    assert os.getpid() not in workers

    # stop_workers ends them now; the next small batch finds no pool and runs here
    assert parallel.stop_workers() and parallel._pool is None
    assert not parallel.stop_workers()
    for pid in workers:
        _wait_until_gone(pid)
    later = list(run_tasks(pid_after, [(0.01, i) for i in range(6)], n_jobs=2))
    assert {pid for _, (_, pid) in later} == {os.getpid()}


def test_a_workers_exception_reaches_the_caller(cold):
    list(run_tasks(pid_after, [(0.3, i) for i in range(12)], n_jobs=2))  # a warm pool
    with pytest.raises(ValueError, match="task 3 is bad"):
        list(run_tasks(fails_on, [(i, 3) for i in range(8)], n_jobs=2))
    # the pool still works after a failed batch
    assert sorted(i for _, i in run_tasks(fails_on, [(i, -1) for i in range(8)], n_jobs=2)) == list(range(8))


def test_a_caller_that_stops_early_leaves_no_abandoned_work(cold):
    list(run_tasks(pid_after, [(0.3, i) for i in range(12)], n_jobs=2))
    for _ in run_tasks(pid_after, [(2.0, i) for i in range(10)], n_jobs=2):
        break  # e.g. the first failure raised by the caller with on_error="raise"
    # the workers still busy with the abandoned tasks were killed, not left running for 2 s each
    assert parallel._pool is None
    results = list(run_tasks(pid_after, [(0.01, i) for i in range(5)], n_jobs=2))
    _check_complete(results, 5)


def test_joblib_and_scikit_learn_pools_still_work_after_ours(cold):
    """radhe's pool is its own: joblib's shared executor (make_parallel, scikit-learn's n_jobs) is untouched."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from radhe.parallel import make_parallel

    list(run_tasks(pid_after, [(0.3, i) for i in range(12)], n_jobs=2))  # our pool runs
    import joblib

    assert make_parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    X, y = make_classification(60, random_state=0)
    assert len(cross_val_score(LogisticRegression(), X, y, cv=3, n_jobs=2)) == 3
    single = list(run_tasks(pid_after, [(0.0, 0)], n_jobs=2))  # one task: run here
    assert single == [(0, (0, os.getpid()))]
    assert len(list(run_tasks(pid_after, [(0.01, i) for i in range(4)], n_jobs=2))) == 4  # ours, still warm


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
