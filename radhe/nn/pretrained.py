"""Weights shipped inside the package: where they are, what they were trained with, how they load.

radhe never downloads weights. The shipped segmenter (:data:`SEGMENTER_WEIGHTS`) was trained only on
synthetic data by ``tools/train_pretrained_segmenter.py``; its model card is ``docs/model-card.md``.
A weight file is a NumPy ``.npz`` of the network's ``state_dict`` (read with ``allow_pickle=False``:
loading runs no code) beside a ``.json`` with the estimator parameters it needs, how it was made,
and the file's SHA-256, which is checked on every load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from radhe.errors import ConfigurationError

__all__ = ["WEIGHTS_DIR", "SEGMENTER_WEIGHTS", "SEGMENTER_TRAINING_SPACING_MM", "weights_info", "load_weights",
           "save_weights"]

#: Folder of the shipped weight files (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Name of the shipped haematoma segmenter's weights (``<name>.npz`` and ``<name>.json``).
SEGMENTER_WEIGHTS = "segmenter-synthetic-v1"

#: Voxel sizes (mm) of the scans the shipped segmenter was trained on (``docs/model-card.md``: the
#: cohorts of ``tools/train_pretrained_segmenter.py``, fields of view of 220-260 mm on 256²-512² grids,
#: slices of 2.5-6.5 mm): ``{"in_plane": (smallest, largest), "slice": (smallest, largest)}``.
SEGMENTER_TRAINING_SPACING_MM = {"in_plane": (0.43, 1.02), "slice": (2.5, 6.5)}


def _paths(name: str, folder: Path | None = None) -> tuple[Path, Path]:
    folder = WEIGHTS_DIR if folder is None else Path(folder)
    return folder / f"{name}.npz", folder / f"{name}.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_info(name: str = SEGMENTER_WEIGHTS, folder=None) -> dict:
    """The record of a weight file: ``parameters`` (what the estimator must be set to), ``training``
    (data, seed, cohort size, time, validation scores), ``sha256``.

    Raises
    ------
    radhe.errors.ConfigurationError
        No such weights (a source checkout without them, or a wrong name).
    """
    weights, record = _paths(name, folder)
    if not weights.is_file() or not record.is_file():
        raise ConfigurationError(
            f"pretrained weights '{name}' are not installed (looked for {weights} and {record}); they ship "
            "with radhe's package, or are made by tools/train_pretrained_segmenter.py")
    return json.loads(record.read_text())


def load_weights(name: str = SEGMENTER_WEIGHTS, folder=None) -> tuple[dict, dict]:
    """``(state_dict of CPU tensors, record)`` of a weight file, after checking its SHA-256."""
    import torch

    info = weights_info(name, folder)
    weights, _ = _paths(name, folder)
    digest = _sha256(weights)
    if digest != info.get("sha256"):
        raise ConfigurationError(f"pretrained weights '{weights}' are damaged: SHA-256 {digest} differs from the "
                                 f"recorded {info.get('sha256')}")
    with np.load(weights, allow_pickle=False) as arrays:
        state = {key: torch.from_numpy(np.array(arrays[key])) for key in arrays.files}
    return state, info


def save_weights(state: dict, parameters: dict, training: dict, name: str, folder) -> Path:
    """Write ``state`` (a ``state_dict``) and its record; returns the ``.npz`` path."""
    weights, record = _paths(name, folder)
    weights.parent.mkdir(parents=True, exist_ok=True)
    np.savez(weights, **{key: value.detach().cpu().numpy() for key, value in state.items()})
    info = {"name": name, "parameters": parameters, "training": training, "sha256": _sha256(weights)}
    record.write_text(json.dumps(info, indent=1, sort_keys=True, default=float) + "\n")
    return weights
