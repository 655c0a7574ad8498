"""A content-addressed, per-case cache of computed features.

Each case's features are stored in their own small file, named by a key that digests everything
the values depend on: the input files (path, size and modification time), the extraction
parameters and the versions of radhe and of the library that computed them. Consequences:

* a second fit on the same cases (another fold, another ``k`` or ``C`` in a grid search) reads
  the files instead of recomputing;
* an interrupted run resumes: every finished case was written as soon as it was computed;
* a changed image, mask or parameter gives a new key, so stale values are never returned;
* a file that is truncated or altered is detected (its stored key and checksum no longer match)
  and recomputed.

Files are written atomically (a temporary file, then :func:`os.replace`), so concurrent workers
and killed processes never leave a half-written entry under a valid name.

Keys use the files' size and modification time (``os.stat``), not their content: hashing every
CT volume would cost about as much as a feature extraction (see ``benchmarks/bench_cache.py``).
A file rewritten with new content gets a new modification time; copying a cohort elsewhere (new
paths) recomputes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FeatureCache", "file_fingerprint", "digest"]

_FORMAT = 1


def digest(obj) -> str:
    """SHA-256 hex digest of a JSON-serialisable object (keys sorted, so dict order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def file_fingerprint(path) -> dict | None:
    """``{"path", "size", "mtime_ns"}`` of a file (of every file in a folder, for DICOM series)."""
    if path is None:
        return None
    path = Path(path)
    try:
        resolved = path.resolve()
        if resolved.is_dir():
            entries = sorted(p for p in resolved.iterdir() if p.is_file())
            stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in entries]
            return {"path": str(resolved), "files": stats}
        st = resolved.stat()
    except OSError:
        return {"path": str(path), "missing": True}
    return {"path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class FeatureCache:
    """A folder of per-case feature files (``<dir>/<key[:2]>/<key>.npz``).

    Parameters
    ----------
    directory : str or path-like
        Created when missing. Safe to share between processes and runs; delete it to clear.
    """

    def __init__(self, directory):
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r})"

    def key(self, **parts) -> str:
        """Digest of ``parts`` (inputs' fingerprints, parameters, versions): the entry's name."""
        return digest({"format": _FORMAT, **parts})

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, float] | None:
        """The stored ``{name: value}`` of ``key``; None when absent or corrupted (then removed)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stored_key = str(data["key"])
                names = [str(n) for n in data["names"]]
                values = np.asarray(data["values"], dtype=np.float64)
                checksum = str(data["checksum"])
            if stored_key != key or checksum != _checksum(key, names, values) or len(names) != len(values):
                raise ValueError("checksum mismatch")
        except Exception:  # truncated zip, bad member, wrong checksum: recompute
            try:
                path.unlink()
            except OSError:
                pass
            return None
        return dict(zip(names, values.tolist(), strict=True))

    def store(self, key: str, features: dict[str, float]) -> Path:
        """Write ``features`` under ``key`` atomically; returns the file's path."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = list(features)
        values = np.array([float(features[n]) for n in names], dtype=np.float64)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    key=np.array(key),
                    names=np.array(names, dtype=str),
                    values=values,
                    checksum=np.array(_checksum(key, names, values)),
                )
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.npz")) if self.directory.exists() else 0


def _checksum(key: str, names: list[str], values: np.ndarray) -> str:
    h = hashlib.sha256(key.encode())
    h.update("\x00".join(names).encode("utf-8"))
    h.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return h.hexdigest()
