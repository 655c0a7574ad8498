"""Saving and loading fitted models: :func:`save_model`, :func:`load_model`.

Two formats:

* ``"skops"`` (the default, suffix ``.skops``): :mod:`skops.io`, a zip of JSON and ``.npy`` members
  that is read without :mod:`pickle`. :func:`load_model` first lists the types the file names
  (:func:`skops.io.get_untrusted_types`) and refuses the file, with an
  :class:`~radhe.errors.InputError` naming them, unless every one is a type radhe trusts (see
  :func:`is_trusted_type`). Loading a refused file is never attempted, so a crafted file cannot run code.
* ``"joblib"`` (suffix ``.joblib`` or ``.pkl``): :func:`joblib.dump`, i.e. pickle. Loading a pickle
  runs whatever code the file names: use it only for files you made yourself.

Both formats record the radhe version and the feature-engine version
(:data:`radhe.features.radiomics.ENGINE_VERSION`) of the run that saved the file (:func:`running_versions`): in
a skops file as a small JSON member (``radhe-metadata.json``) beside skops' own, in a joblib file
as a record pickled with the model (``joblib.load`` still returns the model itself).
:func:`load_model` issues a :class:`~radhe.errors.ModelVersionWarning` naming the file and both
versions when they differ from the running ones, and one saying the versions are unknown for a
file that records none (written by radhe before it recorded them, or by ``joblib.dump`` /
``skops.io.dump`` directly); such a file still loads. ``joblib.load`` of a file written by
:func:`save_model` warns the same way (without the file's name, which it does not know).

Either way a saved model carries no machine paths of run-time settings: cache locations are chosen
where the model runs, not stored in it. Every ``memory`` of a pipeline, ``cache`` of a
:class:`~radhe.features.RadiomicsFeatures` and ``cache_dir`` of a
:class:`~radhe.segmentation.HematomaSegmenter` is saved as None (on a copy: the model you pass is
not changed), and :func:`load_model` sets them to None again for files written otherwise (older
files, hand-made pickles); ``load_model(path, cache=folder)`` gives the loaded model's radiomics
steps a per-case feature cache.

skops cannot store pandas objects (their block managers refuse to be reduced) nor torch tensors;
:func:`save_model` stores those as radhe's own plain records (:class:`PackedFrame`,
:class:`PackedSeries`, :class:`PackedIndex`, :class:`PackedTensor`: numpy arrays and lists), and
:func:`load_model` turns them back into DataFrames and tensors, so a fitted pipeline, including
its networks' ``state_dict`` (``model_state_``) and a user's backbone module, round-trips with
identical predictions.
"""

from __future__ import annotations

import contextvars
import copy
import importlib
import json
import os
import re
import tempfile
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np

from radhe.errors import ConfigurationError, InputError, ModelVersionWarning

__all__ = [
    "save_model", "load_model", "model_format", "FORMATS", "SUFFIXES", "TRUSTED_PACKAGES", "is_trusted_type",
    "without_run_settings", "set_feature_cache", "running_versions", "METADATA_MEMBER", "PackedFrame", "PackedSeries", "PackedIndex", "PackedTensor",
]

#: Model file formats, the default first.
FORMATS = ("skops", "joblib")

#: File suffixes of each format (the first is the one to use).
SUFFIXES = {"skops": (".skops",), "joblib": (".joblib", ".pkl")}

#: Name of the zip member of a skops model file that records the versions it was saved with.
METADATA_MEMBER = "radhe-metadata.json"

#: The versions a model file records (see :func:`running_versions`), with their names in messages.
_VERSION_NAMES = {"radhe": "radhe", "feature_engine": "feature engine"}

#: Top-level packages whose types a skops model file may name (see :func:`is_trusted_type`).
TRUSTED_PACKAGES = ("radhe", "radhe_pipelines", "sklearn", "imblearn", "numpy", "scipy", "xgboost", "lightgbm",
                    "pandas", "torch")

# Parts of the trusted packages that read or write files, run code, spawn processes or reach the
# network when a type of theirs is built or a function of theirs is called: never trusted.
_UNTRUSTED_MODULES = re.compile(
    r"^(numpy\.(lib\.(format|npyio|_npyio_impl|_datasource)|ctypeslib|f2py|distutils|testing)"
    r"|scipy\.(io|datasets|_lib\._testutils)|pandas\.(io|_testing|testing|plotting)"
    r"|torch\.(serialization|hub|package|utils\.(data|cpp_extension|model_zoo|hipify)|multiprocessing|distributed"
    r"|jit|_jit_internal|_dynamo|_inductor|compiler|export|onnx|cuda|backends|testing|_C|library|ops|_ops"
    r"|fx|classes|_classes|storage|_utils|_tensor)"
    r"|sklearn\.(datasets|utils\._testing|externals|_build_utils)|xgboost\.(tracker|collective|dask|spark|testing)"
    r"|lightgbm\.(dask|basic\._LIB))(\.|$)"
)
#: Standard-library containers that build nothing but themselves (lightgbm's models hold one).
_TRUSTED_STDLIB = frozenset({"collections.OrderedDict"})
# Words (of names split at "_" and at capitals) of functions and classes that read or write files,
# run code or reach other processes: a name holding one is never trusted, whatever its package.
_UNTRUSTED_WORDS = frozenset({
    "load", "loads", "loader", "loadtxt", "save", "savez", "savetxt", "fromfile", "tofile", "genfromtxt", "fromregex",
    "read", "reader", "write", "writer", "dump", "dumps", "pickle", "pickler", "unpickle", "unpickler", "open",
    "opener", "file", "memmap", "eval", "exec", "execute", "compile", "system", "popen", "spawn", "subprocess",
    "shell", "import", "fetch", "download", "url", "urlopen", "request", "socket", "remove", "unlink", "rmtree",
    "makedirs", "hub", "script", "trace", "query",
})


# ----------------------------------------------------------------------------------- public API

def save_model(model, path, *, format: str | None = None, trusted=()) -> Path:
    """Save a fitted model (any estimator: a :func:`radhe.make_pipeline` pipeline, a step).

    Parameters
    ----------
    model : estimator
        Saved as a copy without run-time cache locations (``memory``, ``cache``, ``cache_dir``
        are None in the file); ``model`` itself is not changed.
    path : str or path-like
        The file; its folder is created; an existing file is replaced. Written atomically (a temporary file, then a rename), so
        an interrupted save never leaves a half-written model under ``path``.
    format : {"skops", "joblib"} or None, default None
        None: ``"joblib"`` when ``path`` ends in ``.joblib`` or ``.pkl``, else ``"skops"``.
    trusted : sequence of str, default ()
        skops: further type names of your own the model holds (e.g. ``"mylab.nets.Backbone"``); the
        same list must then be given to :func:`load_model`. Without it such a model is refused here,
        rather than written as a file that :func:`load_model` would refuse.

    Returns
    -------
    pathlib.Path
        ``path``. The file records the radhe and feature-engine versions of this run
        (:func:`running_versions`); :func:`load_model` warns when they differ from its own.

    Raises
    ------
    radhe.errors.ConfigurationError
        An unknown ``format``, one that contradicts the suffix (``format="joblib"`` for
        ``model.skops``), ``path`` a folder, or a model skops cannot store safely (the message names
        the part or the types and suggests ``format="joblib"``).
    """
    path = Path(path)
    format = model_format(path, format)
    portable = without_run_settings(model)
    versions = running_versions()
    if format == "skops":
        data = _with_metadata_member(_skops_bytes(portable, tuple(trusted)), versions)
    else:
        import io

        import joblib

        buffer = io.BytesIO()
        joblib.dump(_WithVersions(portable, versions), buffer)  # unpickles as the model itself
        data = buffer.getvalue()
    _write_atomically(path, data)
    return path


def load_model(path, *, format: str | None = None, cache=None, trusted=()):
    """Load a model written by :func:`save_model` (or ``radhe fit --out``).

    Parameters
    ----------
    path : str or path-like
        A skops file (any suffix; recognised by its content) or a joblib/pickle file (suffix
        ``.joblib`` or ``.pkl``, or ``format="joblib"``).
    format : {"skops", "joblib"} or None, default None
        None: skops when the file is a skops archive; joblib when it is not and ``path`` ends in
        ``.joblib`` or ``.pkl``; any other file is refused (a pickle named ``model.skops`` is not
        loaded). ``"joblib"`` loads a pickle whatever its name: **this runs the code the file
        names**; only for files you trust.
    cache : None, str or path-like, default None
        Per-case feature cache folder given to every radiomics step of the loaded model (its
        ``cache``). None: no cache (cache locations are never read from the file).
    trusted : sequence of str, default ()
        Further type names (``"mylab.nets.Backbone"``, as in the refusal message) you vouch for, for
        skops files naming types of your own (e.g. a torch backbone module class).

    Returns
    -------
    estimator
        The fitted model, with ``memory``, ``cache`` and ``cache_dir`` None (``cache`` as given).

    Raises
    ------
    radhe.errors.InputError
        The file is missing, a folder, damaged, of another format than its name or ``format`` says,
        or names types radhe does not trust (listed in the message).
    radhe.errors.ConfigurationError
        An unknown ``format``.

    Warns
    -----
    radhe.errors.ModelVersionWarning
        The radhe or feature-engine version recorded in the file differs from the running one (the
        message names the file and both versions), or the file records none (a file written before
        radhe recorded them, or by ``joblib.dump`` / ``skops.io.dump`` directly). The model is
        loaded either way; features computed by another engine may differ from those it was
        fitted on, so refit it with the running radhe.
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ConfigurationError(f"format must be one of {FORMATS} or None, got {format!r}")
    if not path.exists():
        raise InputError("model file not found", path=path)
    if not path.is_file():
        raise InputError("model path is not a file", path=path)
    is_skops = zipfile.is_zipfile(path)
    if format is None:
        if is_skops:
            format = "skops"
        elif path.suffix.lower() in SUFFIXES["joblib"]:
            format = "joblib"
        else:
            raise InputError(
                "not a skops model file (no zip archive: truncated, damaged or another format); if it is a "
                "joblib/pickle model you made yourself, "
                "name it *.joblib or pass format='joblib' (loading a pickle runs the code it names)", path=path)
    if format == "skops":
        if not is_skops:
            raise InputError("not a skops model file (no zip archive: truncated, damaged or another format)", path=path)
        model, saved = _load_skops(path, tuple(trusted))
    else:
        model, saved = _load_joblib(path)
    _check_versions(saved, path=path)
    model = without_run_settings(model, copy_model=False)
    if cache is not None:
        set_feature_cache(model, cache)
    return model


def is_trusted_type(name: str) -> bool:
    """Whether a skops model file may name the type or function ``name`` (``"module.Qualname"``).

    Trusted: classes and functions of :data:`TRUSTED_PACKAGES` (radhe, scikit-learn,
    imbalanced-learn, numpy, scipy, xgboost, lightgbm, pandas, torch), except those of their
    modules that do input/output, run or compile code, spawn processes or reach the network
    (``numpy.lib.npyio``, ``pandas.io``, ``torch.serialization``, ``torch.hub``, ...), and except
    functions and classes whose names say they read, write, load, dump, open, evaluate or import
    (``numpy.load``, ``pandas.read_pickle``, ``numpy.memmap``, ``torch.compile``, ...).
    A function is trusted only as a plain function or ufunc (it is stored by name, never called by
    loading); a class is built by skops without its ``__init__``. Everything else
    (``builtins.eval``, ``os.system``, a user's own class) is refused. The name must resolve to
    an object of that module; nothing outside the trusted packages is imported to check it.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        return False
    if name in _TRUSTED_STDLIB:
        return True
    top = name.split(".", 1)[0]
    if top not in TRUSTED_PACKAGES:
        return False
    obj, module = _resolve(name)
    if obj is None:
        return False
    qualname = name[len(module) + 1:]
    real_module = getattr(obj, "__module__", None) or module
    for mod in {module, real_module}:
        if _UNTRUSTED_MODULES.match(mod):
            return False
    if str(real_module).split(".", 1)[0] not in TRUSTED_PACKAGES:
        return False  # e.g. a trusted package re-exporting builtins.open
    if _words(qualname) & _UNTRUSTED_WORDS or _words(getattr(obj, "__name__", "")) & _UNTRUSTED_WORDS:
        return False
    if isinstance(obj, type):
        return not (issubclass(obj, np.memmap) or _is_io_class(obj))
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, np.ufunc, type(np.mean)))


def without_run_settings(model, *, copy_model: bool = True):
    """``model`` (a deep copy unless ``copy_model=False``) with every cache location set to None.

    Cache locations are run-time settings: each pipeline's ``memory``, and ``cache`` and
    ``cache_dir`` of radhe's steps (:class:`~radhe.features.RadiomicsFeatures`,
    :class:`~radhe.segmentation.HematomaSegmenter`), wherever they sit in the model (fitted
    branches, nested pipelines, stacking sub-models).
    """
    if copy_model:
        model = copy.deepcopy(model)
    _rebuild(model, _strip_run_settings, {})
    return model


def set_feature_cache(model, cache) -> int:
    """Give every radiomics step of ``model`` the per-case feature cache folder ``cache`` (or None).

    Returns the number of steps changed. Changes ``model`` in place (its fitted state is kept).
    """
    folder = None if cache is None else os.fspath(cache)
    count = 0

    def visit(obj):
        nonlocal count
        if _is_radhe(obj) and _has_param(obj, "cache"):
            obj.cache = folder
            count += 1
        return obj

    _rebuild(model, visit, {})
    return count


def running_versions() -> dict:
    """The versions a model file saved now records: ``{"radhe": ..., "feature_engine": ...}``.

    ``"radhe"`` is ``radhe.__version__``; ``"feature_engine"`` is
    :data:`radhe.features.radiomics.ENGINE_VERSION`, bumped whenever the radiomics values or the
    checks a case passes could change. :func:`load_model` compares a file's record with these.
    """
    import radhe
    from radhe.features import radiomics

    return {"radhe": str(radhe.__version__), "feature_engine": str(radiomics.ENGINE_VERSION)}


# ------------------------------------------------------------------------ plain records for skops

class PackedIndex:
    """A :class:`pandas.Index` as plain data (values, dtype, name; a RangeIndex by its range)."""

    def __init__(self, index):
        import pandas as pd

        self.names = [_plain_label(n) for n in index.names]
        if isinstance(index, pd.RangeIndex):
            self.kind, self.range = "range", [int(index.start), int(index.stop), int(index.step)]
            self.levels = None
        elif isinstance(index, pd.MultiIndex):
            self.kind, self.range = "multi", None
            self.levels = [_pack_values(index.get_level_values(i)) for i in range(index.nlevels)]
        else:
            self.kind, self.range = "index", None
            self.levels = [_pack_values(index)]

    def unpack(self):
        import pandas as pd

        if self.kind == "range":
            return pd.RangeIndex(*self.range, name=self.names[0])
        levels = [_unpack_values(v) for v in self.levels]
        if self.kind == "multi":
            return pd.MultiIndex.from_arrays(levels, names=self.names)
        return pd.Index(levels[0], name=self.names[0], tupleize_cols=False)


class PackedSeries:
    """A :class:`pandas.Series` as plain data."""

    def __init__(self, series):
        self.values = _pack_values(series)
        self.index = PackedIndex(series.index)
        self.name = _plain_label(series.name)
        self.attrs = dict(series.attrs)

    def unpack(self):
        import pandas as pd

        series = pd.Series(_unpack_values(self.values), index=self.index.unpack(), name=self.name, copy=False)
        series.attrs.update(self.attrs)
        return series


class PackedFrame:
    """A :class:`pandas.DataFrame` as plain data: one packed array per column, the index, the labels."""

    def __init__(self, frame):
        self.columns = PackedIndex(frame.columns)
        self.index = PackedIndex(frame.index)
        self.data = [_pack_values(frame.iloc[:, i]) for i in range(frame.shape[1])]
        self.attrs = dict(frame.attrs)

    def unpack(self):
        import pandas as pd

        index = self.index.unpack()
        columns = self.columns.unpack()
        frame = pd.DataFrame({i: pd.Series(_unpack_values(v), index=index, copy=False)
                              for i, v in enumerate(self.data)}, index=index)
        frame.columns = columns
        frame.attrs.update(self.attrs)
        return frame


class PackedTensor:
    """A torch tensor (or ``nn.Parameter``) as a numpy array, its torch dtype and gradient flag."""

    def __init__(self, tensor):
        import torch

        if tensor.layout != torch.strided or tensor.is_quantized:
            raise ConfigurationError(f"skops format: cannot store a {tensor.layout} / quantized torch tensor; "
                                     "use format='joblib'")
        data = tensor.detach().cpu()
        self.dtype = str(data.dtype).removeprefix("torch.")
        if data.dtype == torch.bfloat16:  # no numpy bfloat16; float32 holds it exactly
            data = data.float()
        self.array = data.contiguous().numpy().copy()
        self.requires_grad = bool(tensor.requires_grad)
        self.parameter = isinstance(tensor, torch.nn.Parameter)

    def unpack(self):
        import torch

        tensor = torch.from_numpy(np.array(self.array, copy=True)).to(getattr(torch, self.dtype))
        if self.parameter:
            return torch.nn.Parameter(tensor, requires_grad=self.requires_grad)
        return tensor.requires_grad_(self.requires_grad) if self.requires_grad else tensor


_PACKED = (PackedFrame, PackedSeries, PackedIndex, PackedTensor)


# ----------------------------------------------------------------------------------- internals

def model_format(path, format: str | None = None) -> str:
    """The format :func:`save_model` writes ``path`` in (checked before a long fit, e.g. by ``radhe fit``).

    Raises
    ------
    radhe.errors.ConfigurationError
        An unknown ``format``, one contradicting the suffix, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigurationError(f"cannot save the model to '{path}': it is a folder; name a file")
    return _format_for(path, format)


def _format_for(path: Path, format):
    if format is not None and format not in FORMATS:
        raise ConfigurationError(f"format must be one of {FORMATS} or None, got {format!r}")
    suffix = path.suffix.lower()
    by_suffix = next((name for name, suffixes in SUFFIXES.items() if suffix in suffixes), None)
    if format is None:
        return by_suffix or "skops"
    if by_suffix is not None and by_suffix != format:
        raise ConfigurationError(f"format={format!r} but '{path}' has the suffix of a {by_suffix} file; "
                                 f"name it *{SUFFIXES[format][0]}")
    return format


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise ConfigurationError(f"cannot write the model file '{path}': {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _skops_bytes(model, extra_trusted: tuple) -> bytes:
    import skops.io as sio

    packed = _rebuild(model, _pack, {})
    try:
        data = sio.dumps(packed)
    except Exception as error:  # skops' UnsupportedTypeException, TypeError of an unreducible object
        raise ConfigurationError(
            f"the skops format cannot store a part of this model ({type(error).__name__}: {error}); "
            "save it with format='joblib' (a pickle: load only files you made yourself)") from None
    refused = [name for name in sio.get_untrusted_types(data=data)
               if name not in extra_trusted and not is_trusted_type(name)]
    if refused:
        raise ConfigurationError(
            f"the model holds types radhe does not trust in skops files: {refused}; name the ones you "
            "vouch for in save_model(..., trusted=[...]) and load_model(..., trusted=[...]), or save with "
            "format='joblib'")
    return data


def _load_skops(path: Path, extra_trusted: tuple):
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as error:  # a damaged archive or schema
        raise InputError(f"damaged skops model file ({type(error).__name__}: {error})", path=path) from None
    refused = [name for name in untrusted if name not in extra_trusted and not is_trusted_type(name)]
    if refused:
        raise InputError(
            f"refusing to load the model: it names types radhe does not trust: {refused} (pass "
            "load_model(..., trusted=[...]) only for types you know)", path=path)
    try:
        model = sio.load(path, trusted=list(untrusted))
    except Exception as error:
        raise InputError(f"damaged skops model file ({type(error).__name__}: {error})", path=path) from None
    return _rebuild(model, _unpack, {}), _read_metadata_member(path)


def _load_joblib(path: Path):
    import joblib

    records = []
    token = _LOADED_VERSIONS.set(records)
    try:
        model = joblib.load(path)
    except Exception as error:  # EOFError, UnpicklingError, a missing class, ...
        raise InputError(f"cannot load the joblib model file ({type(error).__name__}: {error})",
                         path=path) from None
    finally:
        _LOADED_VERSIONS.reset(token)
    saved = records[0] if records else None
    if saved is not None and not _is_version_record(saved):
        raise InputError("damaged joblib model file (its record of the radhe version is not a mapping of "
                         "version strings)", path=path)
    return model, saved


# --------------------------------------------------------------------------- recorded versions

# Set by load_model while it unpickles: the records of _restore_with_versions go there instead of
# warning (load_model warns itself, naming the file).
_LOADED_VERSIONS: contextvars.ContextVar = contextvars.ContextVar("radhe_loaded_versions", default=None)


class _WithVersions:
    """Pickled in place of a model by :func:`save_model` (joblib): unpickles as the model itself.

    Its pickle calls :func:`_restore_with_versions` with the versions and the model, so
    ``joblib.load`` returns the model as before and the versions travel inside the same pickle.
    """

    def __init__(self, model, versions: dict):
        self.model = model
        self.versions = dict(versions)

    def __reduce__(self):
        return _restore_with_versions, (self.versions, self.model)


def _restore_with_versions(versions, model):
    """Unpickling a joblib model file of :func:`save_model`: the model, its versions checked.

    Named in every such file: keep this name and signature.
    """
    records = _LOADED_VERSIONS.get()
    if records is not None:  # load_model: it checks (and names the file)
        records.append(versions)
    elif _is_version_record(versions):  # a plain joblib.load
        _check_versions(versions, path=None)
    return model


def _is_version_record(record) -> bool:
    return isinstance(record, dict) and all(isinstance(record.get(k), str) for k in _VERSION_NAMES)


def _with_metadata_member(data: bytes, versions: dict) -> bytes:
    """A skops archive ``data`` with :data:`METADATA_MEMBER` added (skops reads only its own members)."""
    import io

    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_MEMBER, json.dumps(versions, sort_keys=True))
    return buffer.getvalue()


def _read_metadata_member(path: Path):
    """The versions recorded in a skops model file, or None when it records none."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_MEMBER not in archive.namelist():
                return None
            record = json.loads(archive.read(METADATA_MEMBER).decode("utf-8"))
    except Exception as error:  # a damaged member: BadZipFile, a CRC error, invalid JSON or UTF-8
        raise InputError(f"damaged skops model file (its member '{METADATA_MEMBER}': "
                         f"{type(error).__name__}: {error})", path=path) from None
    if not _is_version_record(record):
        raise InputError(f"damaged skops model file (its member '{METADATA_MEMBER}' does not record "
                         f"{' and '.join(_VERSION_NAMES)} versions)", path=path)
    return {k: record[k] for k in _VERSION_NAMES}


def _describe(versions: dict) -> str:
    """``"radhe 0.1.0 (feature engine 2)"``."""
    return f"radhe {versions['radhe']} (feature engine {versions['feature_engine']})"


def _check_versions(saved, *, path, stacklevel: int = 2) -> None:
    """A :class:`~radhe.errors.ModelVersionWarning` when ``saved`` (a file's record) is None or differs.

    ``stacklevel`` counts from the caller of this function (2: the caller's caller is named).
    """
    running = running_versions()
    where = "a model file" if path is None else f"model file '{path}'"
    if saved is None:
        message = (f"{where} records no radhe or feature-engine version (saved before radhe recorded them, or by "
                   f"joblib.dump / skops.io.dump directly); if it was fitted with another version than the running "
                   f"one ({_describe(running)}), its features may be computed differently from those it was "
                   f"fitted on: refit it and save it with radhe.save_model")
    else:
        saved = {k: saved[k] for k in _VERSION_NAMES}
        if saved == running:
            return
        message = (f"{where} was saved by {_describe(saved)} and is loaded by {_describe(running)}: its features "
                   f"may be computed differently from those it was fitted on, and its predictions may not hold; "
                   f"refit it with the running radhe")
    warnings.warn(ModelVersionWarning(message, path=path, saved=saved, running=running), stacklevel=stacklevel + 1)


def _resolve(name: str):
    """(object, module name) of ``"pkg.mod.Qual.name"``, importing only modules of trusted packages."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        if _UNTRUSTED_MODULES.match(module_name):
            return None, module_name
        try:
            obj = importlib.import_module(module_name)
        except Exception:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return obj, module_name
    return None, name


def _words(name: str) -> set[str]:
    """Lower-case words of a dotted, snake_case or CamelCase name (``"read_csv"`` → {"read", "csv"})."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name))
    return {w for w in re.split(r"[\s._]+", spaced.lower()) if w}


def _is_io_class(cls) -> bool:
    import io

    return issubclass(cls, (io.IOBase, zipfile.ZipFile))


def _is_radhe(obj) -> bool:
    return str(type(obj).__module__).split(".", 1)[0] in ("radhe", "radhe_pipelines")


def _has_param(obj, name: str) -> bool:
    get_params = getattr(obj, "get_params", None)
    if not callable(get_params) or isinstance(obj, type):
        return False
    try:
        return name in get_params(deep=False)
    except Exception:
        return False


def _strip_run_settings(obj):
    if _has_param(obj, "memory") and getattr(obj, "memory", None) is not None:
        obj.memory = None
    if _is_radhe(obj):
        for name in ("cache", "cache_dir"):
            if _has_param(obj, name) and getattr(obj, name, None) is not None:
                setattr(obj, name, None)
    return obj


def _pack(obj):
    kind = _pandas_kind(obj)
    if kind == "frame":
        return PackedFrame(obj)
    if kind == "series":
        return PackedSeries(obj)
    if kind == "index":
        return PackedIndex(obj)
    if _is_tensor(obj):
        return PackedTensor(obj)
    return obj


def _unpack(obj):
    return obj.unpack() if isinstance(obj, _PACKED) else obj


def _pandas_kind(obj):
    module = type(obj).__module__
    if not module.startswith("pandas"):
        return None
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return "frame"
    if isinstance(obj, pd.Series):
        return "series"
    if isinstance(obj, pd.Index):
        return "index"
    return None


def _is_tensor(obj) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _pack_values(values):
    """A pandas column as ``{"array", "dtype"}`` (extension dtypes as an object array + their name)."""
    import pandas as pd

    dtype = values.dtype
    record = {"dtype": str(dtype)}
    if isinstance(dtype, pd.CategoricalDtype):
        record["categories"] = _pack_values(pd.Series(dtype.categories))
        record["ordered"] = bool(dtype.ordered)
        record["codes"] = np.asarray(values.cat.codes if isinstance(values, pd.Series) else values.codes)
        return record
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        record["array"] = np.asarray(values.to_numpy())
    else:
        array = np.empty(len(values), dtype=object)
        array[:] = [None if v is pd.NA or (v is pd.NaT) else v for v in values.tolist()]
        record["array"] = array
    return record


def _unpack_values(record):
    import pandas as pd

    if "codes" in record:
        categories = _unpack_values(record["categories"])
        return pd.Categorical.from_codes(record["codes"], categories=categories, ordered=record["ordered"])
    array = record["array"]
    dtype = record["dtype"]
    if dtype == "object" or (isinstance(array, np.ndarray) and array.dtype != object):
        return array
    return pd.array(array, dtype=dtype)


def _plain_label(label):
    return label.item() if isinstance(label, np.generic) else label


_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), np.generic, type, types.FunctionType,
           types.BuiltinFunctionType, types.ModuleType, types.MethodType, np.dtype, range, slice)


def _rebuild(obj, fn, memo):
    """``fn`` applied to ``obj`` and to everything reachable from it; containers updated in place.

    ``fn(x)`` returns ``x`` to descend into it, or a replacement (not descended into). Lists,
    dicts and object attributes are replaced in place; tuples are rebuilt when a member changes.
    Shared objects are visited once (and stay shared).
    """
    key = id(obj)
    if key in memo:
        return memo[key][1]
    new = fn(obj)
    memo[key] = (obj, new)
    if new is not obj or isinstance(obj, _LEAVES):
        return new
    if isinstance(obj, dict):  # also OrderedDict, defaultdict, sklearn's Bunch
        for k in list(obj):
            obj[k] = _rebuild(obj[k], fn, memo)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            obj[i] = _rebuild(item, fn, memo)
    elif type(obj) is tuple:
        items = tuple(_rebuild(item, fn, memo) for item in obj)
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            new = items
            memo[key] = (obj, new)
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for idx, item in np.ndenumerate(obj):
                obj[idx] = _rebuild(item, fn, memo)
    elif _pandas_kind(obj) is not None or isinstance(obj, (set, frozenset)):
        pass
    elif hasattr(obj, "__dict__") and not _is_tensor(obj):
        attrs = vars(obj)
        for k in list(attrs):
            value = attrs[k]
            replaced = _rebuild(value, fn, memo)
            if replaced is not value:
                attrs[k] = replaced
    return new
