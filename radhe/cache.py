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

Keys use a stamp of each file's content from ``os.stat`` — size, modification time and status
change time (``ctime``) — not its bytes: hashing every CT volume would cost about as much as a
feature extraction (see ``benchmarks/bench_cache.py``). Writing a file sets both times; the
modification time can be set back (``touch -d``, ``cp --preserve``, ``rsync -t``, unpacking an
archive) but the change time cannot, so a file overwritten at the same path always misses the
cache. Copying a cohort elsewhere (new paths), ``chmod`` or ``mv`` recompute.

:class:`ContentMemory` applies the same stamp to a pipeline's ``memory`` (joblib's cache of fitted
steps, which by itself keys a manifest by its path strings only): every file a manifest names is
stamped, so a pipeline refitted after images were overwritten at the same paths misses the cache.

A cache folder that is a file, or an entry that is a folder, raises
:class:`~radhe.errors.ConfigurationError` naming it (never ``NotADirectoryError``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from radhe.errors import ConfigurationError
from radhe.io.image import data_files

__all__ = ["FeatureCache", "ContentMemory", "file_fingerprint", "content_stamp", "digest", "check_folder"]

# 2: fingerprints hold the status change time (ctime) too
_FORMAT = 2


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


def file_fingerprint(path, *, data=True) -> dict | None:
    """A stamp of a file's content from ``os.stat``: ``{"path", "size", "mtime_ns", "ctime_ns"}``.

    ``path`` is resolved (a symbolic link is stamped by its target). A header whose voxels lie in
    other files (``.mhd`` → ``.raw``, ``.hdr`` → ``.img``: :func:`radhe.io.image.data_files`) has their
    stamps under ``"data_files"`` (``data=False``: the file's own stamp only). For a folder (a DICOM series)
    ``{"path", "files": [(name, size, mtime_ns, ctime_ns), ...]}`` of the files in it;
    ``{"path", "missing": True}`` when it cannot be read. None for None.
    """
    if path is None:
        return None
    try:
        path = Path(path)
        resolved = path.resolve()
        if resolved.is_dir():
            entries = sorted(p for p in resolved.iterdir() if p.is_file())
            stats = [(p.name, *_stamp(p.stat())) for p in entries]
            return {"path": str(resolved), "files": stats}
        st = resolved.stat()
    except (OSError, ValueError, TypeError):  # TypeError: a cell without a path (NaN); the reader names it
        return {"path": str(path), "missing": True}
    size, mtime_ns, ctime_ns = _stamp(st)
    stamp = {"path": str(resolved), "size": size, "mtime_ns": mtime_ns, "ctime_ns": ctime_ns}
    if not data:
        return stamp
    try:
        companions = data_files(resolved)
    except (OSError, ValueError):  # the header cannot be read or parsed: the reader names the problem
        companions = []
    if companions:
        # the data files' own stamps only: a .hdr names its .img and the .img its .hdr
        stamp["data_files"] = [file_fingerprint(p, data=False) for p in companions]
    return stamp


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def check_folder(path, what: str = "cache folder") -> Path:
    """``path`` as a Path, after checking it is, or can be created as, a folder.

    Raises
    ------
    radhe.errors.ConfigurationError
        ``path`` is a file (or another non-folder), or lies inside one.
    """
    if path is None or not isinstance(path, str | os.PathLike):
        raise ConfigurationError(f"{what} must be a folder path, got {path!r}")
    path = Path(path)
    try:
        if path.exists():
            if not path.is_dir():
                raise ConfigurationError(f"{what} '{path}' is a file, not a folder; remove it or choose another folder")
            return path
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigurationError(
                        f"{what} '{path}' lies inside '{parent}', which is a file, not a folder; choose another folder")
                break
    except OSError as error:  # e.g. a name too long, a permission denied on a parent
        raise ConfigurationError(f"{what} '{path}' cannot be used: {error.strerror or error}") from None
    return path


class FeatureCache:
    """A folder of per-case feature files (``<dir>/<key[:2]>/<key>.npz``).

    Parameters
    ----------
    directory : str or path-like
        Created when missing. Safe to share between processes and runs; delete it to clear.
    """

    def __init__(self, directory):
        self.directory = check_folder(directory, "feature cache folder")

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r})"

    def key(self, **parts) -> str:
        """Digest of ``parts`` (inputs' fingerprints, parameters, versions): the entry's name."""
        return digest({"format": _FORMAT, **parts})

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, float] | None:
        """The stored ``{name: value}`` of ``key``; None when absent or corrupted (then removed).

        Raises
        ------
        radhe.errors.ConfigurationError
            The entry is a folder or another non-file (a FIFO would block the read), or its
            sub-folder ``<key[:2]>`` is a file: something other than radhe wrote there.
        """
        path = self.path(key)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise ConfigurationError(
                f"feature cache folder '{self.directory}' is damaged: '{path.parent}' is a file, not a folder; "
                "remove it (or the whole cache folder)") from None
        except OSError as error:
            raise ConfigurationError(f"feature cache entry '{path}' cannot be read: {error.strerror or error}") from None
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise ConfigurationError(
                f"feature cache entry '{path}' is {kind}, not a feature file written by radhe; remove it "
                f"(or the whole cache folder '{self.directory}')")
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
        """Write ``features`` under ``key`` atomically; returns the file's path.

        Raises
        ------
        radhe.errors.ConfigurationError
            The entry cannot be written (its sub-folder is a file, the entry is a folder, no
            permission, no space left): the message names the file and the reason.
        """
        path = self.path(key)
        names = list(features)
        values = np.array([float(features[n]) for n in names], dtype=np.float64)
        try:
            check_folder(path.parent, "feature cache sub-folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        except OSError as error:
            raise ConfigurationError(
                f"cannot write the feature cache entry '{path}': {error.strerror or error}") from None
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
        except BaseException as error:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(error, OSError):
                what = "it is a folder" if path.is_dir() else (error.strerror or str(error))
                raise ConfigurationError(f"cannot write the feature cache entry '{path}': {what}") from None
            raise
        return path

    def __len__(self) -> int:
        """Number of entries (feature files)."""
        return sum(1 for p in self.directory.glob("*/*.npz") if p.is_file()) if self.directory.exists() else 0


def _checksum(key: str, names: list[str], values: np.ndarray) -> str:
    h = hashlib.sha256(key.encode())
    h.update("\x00".join(names).encode("utf-8"))
    h.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------ pipeline memory

#: Longest string taken for a path when stamping a table's cells.
_MAX_PATH_CHARS = 4096


def content_stamp(*objects) -> str:
    """Digest of the :func:`file_fingerprint` of every file ``objects`` name.

    Looked at: the string cells of DataFrames and Series (files and folders: image and mask
    paths, DICOM series folders), and the string or path-like parameters of estimators
    (``get_params(deep=True)``; files only, e.g. a pyradiomics parameter file or a weights
    file), also inside lists, tuples and dicts. Strings that name nothing on disk (column
    values such as ``"male"``) are ignored. Used by :class:`ContentMemory`.
    """
    found: dict[str, dict] = {}
    seen: set[int] = set()
    for obj in objects:
        _collect_files(obj, found, seen)
    return digest(sorted(found.items()))


def _collect_files(obj, found, seen, depth=0):
    if id(obj) in seen or depth > 20:
        return
    seen.add(id(obj))
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        for name in obj.columns[[not pd.api.types.is_numeric_dtype(t) for t in obj.dtypes]]:
            _collect_cells(obj[name], found, folders=True)
    elif isinstance(obj, pd.Series):
        if not pd.api.types.is_numeric_dtype(obj.dtype):
            _collect_cells(obj, found, folders=True)
    elif isinstance(obj, dict):
        for value in obj.values():
            _collect_files(value, found, seen, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _collect_files(value, found, seen, depth + 1)
    elif hasattr(obj, "get_params") and not isinstance(obj, type):
        try:
            params = obj.get_params(deep=True)
        except Exception:  # not a scikit-learn estimator after all
            return
        for value in params.values():
            if isinstance(value, str | os.PathLike):
                _add_file(os.fspath(value), found, folders=False)
            elif isinstance(value, list | tuple | dict):
                _collect_files(value, found, seen, depth + 1)


def _collect_cells(column, found, folders):
    for value in column.dropna().unique():
        if isinstance(value, str | os.PathLike):
            _add_file(os.fspath(value), found, folders=folders)


def _add_file(value, found, folders):
    if not isinstance(value, str) or value in found or not value or len(value) > _MAX_PATH_CHARS or "\0" in value:
        return
    try:
        mode = os.stat(value).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
        found[value] = file_fingerprint(value)


def _stamped_call(func, stamp, args, kwargs):
    """``func(*args, **kwargs)``; ``stamp`` (the content of the files the arguments name) is part of the cache key."""
    return func(*args, **kwargs)


class ContentMemory:
    """A :class:`joblib.Memory` whose cache keys include the content of every file the arguments name.

    joblib keys a cached call on the values of its arguments. A pipeline's input is a manifest of
    paths, so with a plain ``memory`` an image overwritten at the same path hits the entry computed
    from the old image, and the refitted model is the old one. This wrapper adds
    :func:`content_stamp` of the arguments (size, modification and change time of every file named
    by a DataFrame cell or an estimator parameter) to the key: an overwritten file misses.

    :class:`radhe.pipeline.RadhePipeline` wraps its ``memory`` in one when fitting, so
    ``make_pipeline(memory="cache")`` needs nothing more; give one to another pipeline's ``memory``
    (``imblearn.pipeline.Pipeline(steps, memory=ContentMemory("cache"))``) for the same behaviour.

    Parameters
    ----------
    memory : str, path-like, joblib.Memory or object with a ``cache`` method
        Where the entries go (a folder: ``<folder>/joblib``, as with scikit-learn's ``memory``).
        A folder that is a file, or lies in one, raises :class:`~radhe.errors.ConfigurationError`
        when the cache is used.

    Attributes
    ----------
    location : str or None
        The cache folder (None: no caching, calls go straight through).
    """

    def __init__(self, memory):
        self.memory = memory.memory if isinstance(memory, ContentMemory) else memory

    def __repr__(self) -> str:
        return f"ContentMemory({self.memory!r})"

    @property
    def location(self):
        memory = self.memory
        if memory is None or isinstance(memory, str | os.PathLike):
            return None if memory is None else os.fspath(memory)
        location = getattr(memory, "location", None)
        return None if location is None else os.fspath(location)

    def _inner(self):
        import joblib

        memory = self.memory
        if isinstance(memory, os.PathLike):
            memory = os.fspath(memory)
        if memory is None or isinstance(memory, str):
            if memory is not None:
                check_folder(memory, "memory folder")
                check_folder(Path(memory) / "joblib", "memory folder")
            return joblib.Memory(location=memory, verbose=0)
        if not callable(getattr(memory, "cache", None)):
            raise ConfigurationError(
                f"memory must be None, a folder or a joblib.Memory (an object with a cache method), got {memory!r}")
        location = getattr(memory, "location", None)
        if location is not None:
            check_folder(location, "memory folder")
        return memory

    def cache(self, func):
        """``func`` cached under a key that includes :func:`content_stamp` of its arguments."""
        inner = self._inner()
        if getattr(inner, "location", "") is None:
            return func  # joblib.Memory(location=None): no caching at all
        cached = inner.cache(_stamped_call)

        @functools.wraps(func)
        def stamped(*args, **kwargs):
            try:
                return cached(func, content_stamp(args, kwargs), args, kwargs)
            except (NotADirectoryError, FileExistsError, IsADirectoryError) as error:
                raise ConfigurationError(
                    f"memory folder '{self.location}' is damaged ({error.strerror or error}: "
                    f"'{error.filename}'); remove it or choose another folder") from None

        return stamped
