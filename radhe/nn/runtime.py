"""Run-time settings of the deep-learning estimators: device, precision, CPU threads, seeds.

torch is imported only inside the functions.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = ["resolve_device", "torch_runtime", "default_threads", "seed_from", "use_bfloat16"]


def resolve_device(device: str | None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def torch_runtime(n_threads: int | None, seed: int | None = None, deterministic: bool = True):
    """Run a block with ``n_threads`` torch threads, a forked and seeded global RNG, deterministic algorithms.

    The caller's thread count, RNG state and determinism flag are restored afterwards.
    """
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if n_threads is not None:
            torch.set_num_threads(max(1, int(n_threads)))
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.random.fork_rng(devices=[] if not torch.cuda.is_available() else None):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def default_threads() -> int:
    """Torch threads used when ``n_threads=None``: the CPUs available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def seed_from(random_state) -> int:
    """An int seed from an sklearn-style ``random_state`` (None → 0, so results repeat by default)."""
    if random_state is None:
        return 0
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    return int(random_state)


def use_bfloat16(device, precision: str) -> bool:
    """Whether ``precision`` ("auto", "float32", "bfloat16") means bfloat16 autocast on ``device``.

    "auto" is bfloat16 only on CPUs with native bfloat16 support (2-3× faster there), else float32.
    """
    if precision == "bfloat16":
        return True
    if precision == "float32" or device.type != "cpu":
        return False
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - old torch builds
        return False
