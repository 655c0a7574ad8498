"""Shared fixtures. Data that tests need is generated on disk; ../shared is optional."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

# Tests use one thread per library: the CI machine has 2 cores and runs some tests in parallel work.
os.environ.setdefault("OMP_NUM_THREADS", "1")

@pytest.fixture(autouse=True)
def _process_locale_unchanged():
    """No test may leave the process locale changed (GDCM's DICOM writer sets it to "C", after which
    every later text read in the session is ASCII-only and fails far from the cause)."""
    import locale

    before = locale.setlocale(locale.LC_ALL)
    yield
    after = locale.setlocale(locale.LC_ALL)
    if after != before:
        locale.setlocale(locale.LC_ALL, before)
        pytest.fail(f"the test changed the process locale from {before!r} to {after!r}")


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} not present (only in the project's workspace)")
    return SHARED_DATA


def make_ct_volume(shape=(12, 40, 40), spacing=(0.5, 0.5, 5.0), seed=0, blob_radius_vox=6):
    """A small CT-like volume (HU) with a dense blob, and its binary mask, as SimpleITK images.

    ``shape`` is numpy ``(z, y, x)``; ``spacing`` is SimpleITK ``(x, y, z)`` in mm.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    cz, cy, cx = (s // 2 for s in shape)
    head = ((y - cy) ** 2 + (x - cx) ** 2) < (min(shape[1:]) // 2 - 2) ** 2
    ct = np.where(head, 35.0, -1000.0) + rng.normal(0, 5, shape)
    ct[head & (((y - cy) ** 2 + (x - cx) ** 2) > (min(shape[1:]) // 2 - 5) ** 2)] = 1000.0
    blob = ((z - cz) * spacing[2] / spacing[0]) ** 2 / 4 + (y - cy) ** 2 + (x - cx) ** 2 < blob_radius_vox**2
    ct[blob] = 65.0 + rng.normal(0, 5, int(blob.sum()))
    image = sitk.GetImageFromArray(ct.astype(np.int16))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(blob.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A small synthetic cohort (see :func:`radhe.datasets.make_ich_cohort`) shared by the session.

    Returns the manifest DataFrame; its folder holds ``manifest.csv`` and ``oracle.csv``.
    """
    from radhe.datasets import make_ich_cohort

    out = tmp_path_factory.mktemp("cohort")
    return make_ich_cohort(40, out, shape=(96, 96, 16), random_state=0)
