"""Optional experiment tracking with MLflow: an evaluation's parameters, metrics and report files.

``radhe.evaluate(..., mlflow=...)``, ``radhe evaluate --mlflow`` / ``radhe report --mlflow`` and the
published-method pipelines' ``--mlflow`` record one MLflow *run* per evaluation:

* **parameters**: the pipeline's ``get_params(deep=True)``, flattened (``pipeline.<step>__<param>``,
  dictionaries one key per entry, an estimator as its class name), and the evaluation's settings
  (``evaluation.*``) and cohort size (``data.*``); keys and values are cut to MLflow's limits
  (250 / 6,000 characters), a cut one listed in the tag ``radhe.truncated_params``;
* **metrics**: the out-of-fold AUC with its DeLong CI (``auc``, ``auc_ci_low``, ``auc_ci_high``),
  every threshold metric with its bootstrap CI, average precision, Brier score, calibration
  intercept and slope, the confusion counts, the per-fold AUC and threshold as steps (``fold_auc``,
  ``fold_threshold``; step = the fold, 0-based as in ``predictions.csv``), each baseline's AUC, CI,
  sensitivity, specificity and DeLong p (``baseline.<name>.*``), conformal coverage and segmentation
  quality when computed; an undefined value (an LR+ without false positives) is not logged and is
  listed in the tag ``radhe.undefined_metrics``;
* **artifacts**: ``metrics.json``, ``predictions.csv`` and ``checklist.md`` of the evaluation, and
  ``report.html`` with ``figures/`` when :func:`radhe.report.write_html` writes the report.

The ``mlflow`` argument
-----------------------
``None`` / ``False``
    No tracking (the default).
``True``
    mlflow's current settings: its tracking URI (``MLFLOW_TRACKING_URI``, or
    :func:`mlflow.set_tracking_uri`), the active run if one is open (``with mlflow.start_run():``; it
    is left open), else a new run in the current experiment (:func:`mlflow.set_experiment`,
    ``MLFLOW_EXPERIMENT_NAME`` / ``MLFLOW_EXPERIMENT_ID``, else mlflow's ``Default``).
a string
    A tracking URI: a server (``"http://mlflow.example:5000"``), a local folder
    (``"file:///data/mlruns"``; mlflow ≥ 3.7 requires ``MLFLOW_ALLOW_FILE_STORE=true`` for it) or a
    database (``"sqlite:///mlflow.db"``; needs the full ``mlflow`` package). A new run.
a mapping or :class:`TrackingSettings`
    ``tracking_uri``, ``experiment`` (a name; created when missing), ``run_name`` (default: the
    evaluated model's name) and ``tags``, each optional.

mlflow is optional: ``pip install "radhe[mlflow]"`` installs ``mlflow-skinny`` (the tracking client);
radhe imports it only when tracking is asked for, and raises :class:`~radhe.errors.ConfigurationError`
without it, as for a tracking store it cannot open — before any model is fitted. A failure to log at
the end of a long evaluation (a server gone) warns (:class:`TrackingWarning`) and keeps the result.
radhe never changes mlflow's global state (tracking URI, active experiment or run).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from radhe._format import defined_number
from radhe._log import get_logger
from radhe.errors import ConfigurationError

__all__ = [
    "INSTALL_HINT",
    "TrackingSettings",
    "TrackingWarning",
    "TrackedRun",
    "Tracker",
    "tracking_settings",
    "prepare",
    "flatten_params",
    "evaluation_metrics",
    "log_run",
    "log_evaluation",
    "log_report_files",
    "add_arguments",
    "settings_from_args",
]

log = get_logger(__name__)

#: What to install for tracking (the ``mlflow`` extra: mlflow-skinny, the tracking client).
INSTALL_HINT = 'pip install "radhe[mlflow]"'

_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_TRUNCATED = "... [truncated by radhe]"


class TrackingWarning(UserWarning):
    """Logging to MLflow failed after the evaluation ran; the result is kept, the run may be incomplete."""


@dataclass(frozen=True)
class TrackingSettings:
    """Where an evaluation is tracked (see the module's documentation for ``mlflow=``).

    Parameters
    ----------
    tracking_uri : str, optional
        MLflow tracking URI; default mlflow's current one.
    experiment : str, optional
        Experiment name (created when missing); default mlflow's current experiment.
    run_name : str, optional
        Name of a new run; default the evaluated model's ``name``.
    tags : dict, optional
        Tags of a new run (and of the active run when that one is used).
    """

    tracking_uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    tags: dict = field(default_factory=dict)


def tracking_settings(mlflow) -> TrackingSettings | None:
    """The :class:`TrackingSettings` an ``mlflow=`` argument asks for, or None for no tracking."""
    if mlflow is None or mlflow is False:
        return None
    if mlflow is True:
        return TrackingSettings()
    if isinstance(mlflow, TrackingSettings):
        return mlflow
    if isinstance(mlflow, (str, os.PathLike)):
        uri = os.fspath(mlflow).strip()
        if not uri:
            raise ConfigurationError("mlflow= is an empty string; pass True for mlflow's tracking URI, or a URI")
        return TrackingSettings(tracking_uri=uri)
    if isinstance(mlflow, Mapping):
        known = {"tracking_uri", "experiment", "run_name", "tags"}
        unknown = sorted(set(map(str, mlflow)) - known)
        if unknown:
            raise ConfigurationError(f"mlflow= settings {unknown} are not known; use {sorted(known)}")
        tags = mlflow.get("tags") or {}
        if not isinstance(tags, Mapping):
            raise ConfigurationError(f"mlflow= tags must be a mapping of name -> value; got {type(tags).__name__}")
        for key in ("tracking_uri", "experiment", "run_name"):
            value = mlflow.get(key)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigurationError(f"mlflow= {key} must be a string; got {type(value).__name__}")
        uri = mlflow.get("tracking_uri")
        return TrackingSettings(tracking_uri=None if uri is None else os.fspath(uri), experiment=mlflow.get("experiment"),
                                run_name=mlflow.get("run_name"), tags={str(k): str(v) for k, v in tags.items()})
    raise ConfigurationError(
        f"mlflow= must be None, True, a tracking URI, or a mapping with tracking_uri / experiment / run_name / tags; "
        f"got {type(mlflow).__name__}"
    )


def _import_mlflow():
    try:
        import mlflow
        from mlflow.tracking import MlflowClient  # noqa: F401  (part of what radhe needs)
    except ImportError as error:
        raise ConfigurationError(
            f"experiment tracking (mlflow=...) needs MLflow, which is not installed: {INSTALL_HINT}"
        ) from error
    return mlflow


def _limits() -> dict:
    """MLflow's size limits, from the installed client (older clients allow shorter parameter values)."""
    try:
        from mlflow.utils import validation as v
    except ImportError:  # pragma: no cover - every supported mlflow has it
        v = None
    return {
        "key": getattr(v, "MAX_ENTITY_KEY_LENGTH", 250),
        "param": getattr(v, "MAX_PARAM_VAL_LENGTH", 500),
        "tag": getattr(v, "MAX_TAG_VAL_LENGTH", 5000),
        "params_per_batch": getattr(v, "MAX_PARAMS_TAGS_PER_BATCH", 100),
        "metrics_per_batch": getattr(v, "MAX_METRICS_PER_BATCH", 1000),
    }


def _store_hint(uri: str) -> str:
    import importlib.util

    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme in _DATABASE_SCHEMES and importlib.util.find_spec("sqlalchemy") is None:
        return (f"; a database tracking URI ({scheme}://) needs the full mlflow package (pip install mlflow): "
                f"{INSTALL_HINT} installs mlflow-skinny, which logs to a tracking server (http://...) or a "
                "local folder (file:...)")
    if scheme == "file" or scheme == "" or (len(scheme) == 1 and scheme.isalpha()):
        return "; a local folder store needs MLFLOW_ALLOW_FILE_STORE=true with mlflow >= 3.7"
    return ""


@dataclass
class TrackedRun:
    """The MLflow run an evaluation was logged to.

    Attributes
    ----------
    tracking_uri, experiment_id, run_id : str
    owned : bool
        radhe created the run (and ended it); False for the caller's active run, left open.
    """

    tracking_uri: str
    experiment_id: str
    run_id: str
    owned: bool = True

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def log_params(self, params: Mapping) -> list[str]:
        """Log ``params`` (str values), cut to MLflow's limits; returns the keys whose value was cut."""
        from mlflow.entities import Param

        limits = _limits()
        items, truncated = {}, []
        for key, value in params.items():
            key, value = _safe_key(key, limits["key"]), str(value)
            if len(value) > limits["param"]:
                value = value[: limits["param"] - len(_TRUNCATED)] + _TRUNCATED
                truncated.append(key)
            items[key] = value
        entities = [Param(k, v) for k, v in items.items()]
        client = self.client()
        for i in range(0, len(entities), limits["params_per_batch"]):
            client.log_batch(self.run_id, params=entities[i : i + limits["params_per_batch"]])
        return truncated

    def log_metrics(self, metrics: Mapping, steps: Mapping | None = None) -> list[str]:
        """Log ``{key: value}`` and ``{key: [value per step]}``; returns the keys left out as undefined."""
        from mlflow.entities import Metric

        limits = _limits()
        now = int(time.time() * 1000)
        entities, undefined = [], []
        series = {key: [(0, value)] for key, value in metrics.items()}
        for key, values in (steps or {}).items():
            series[key] = list(enumerate(values))
        for key, values in series.items():
            for step, value in values:
                number = defined_number(value)
                if number is None:
                    undefined.append(key if len(values) == 1 else f"{key}[{step}]")
                    continue
                entities.append(Metric(_safe_key(key, limits["key"]), number, now, int(step)))
        client = self.client()
        for i in range(0, len(entities), limits["metrics_per_batch"]):
            client.log_batch(self.run_id, metrics=entities[i : i + limits["metrics_per_batch"]])
        return undefined

    def set_tags(self, tags: Mapping) -> None:
        from mlflow.entities import RunTag

        limits = _limits()
        entities = []
        for key, value in tags.items():
            value = str(value)
            if len(value) > limits["tag"]:
                value = value[: limits["tag"] - len(_TRUNCATED)] + _TRUNCATED
            entities.append(RunTag(_safe_key(key, limits["key"]), value))
        client = self.client()
        for i in range(0, len(entities), limits["params_per_batch"]):
            client.log_batch(self.run_id, tags=entities[i : i + limits["params_per_batch"]])

    def log_files(self, files=(), folders: Mapping | None = None) -> None:
        """Upload ``files`` to the run's artifact root and each ``{artifact folder: local folder}``."""
        client = self.client()
        for path in files:
            client.log_artifact(self.run_id, str(path))
        for artifact_path, folder in (folders or {}).items():
            if Path(folder).is_dir():
                client.log_artifacts(self.run_id, str(folder), artifact_path=str(artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        """End the run when radhe created it (an active run of the caller stays open)."""
        if self.owned:
            self.client().set_terminated(self.run_id, status=status)


class Tracker:
    """A tracking store opened and an experiment chosen before an evaluation starts (see :func:`prepare`)."""

    def __init__(self, settings: TrackingSettings, tracking_uri: str, experiment_id: str, active_run_id: str | None):
        self.settings = settings
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.active_run_id = active_run_id
        self.start_ms = int(time.time() * 1000)

    def start_run(self, run_name: str | None = None) -> TrackedRun:
        """The caller's active run (True with an open run), else a new run started at :func:`prepare`'s time."""
        import radhe

        tags = {"radhe.version": radhe.__version__, **self.settings.tags}
        if self.active_run_id is not None:
            run = TrackedRun(self.tracking_uri, self.experiment_id, self.active_run_id, owned=False)
            run.set_tags(tags)
            return run
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        created = client.create_run(self.experiment_id, start_time=self.start_ms, tags=tags,
                                    run_name=self.settings.run_name or run_name)
        return TrackedRun(self.tracking_uri, self.experiment_id, created.info.run_id, owned=True)


def prepare(mlflow) -> Tracker | None:
    """Open the tracking store that ``mlflow=`` names and choose its experiment; None for no tracking.

    Called before an evaluation fits anything, so a missing mlflow, a store it cannot open or a
    deleted experiment stop it at once.

    Raises
    ------
    ConfigurationError
        mlflow not installed (``pip install "radhe[mlflow]"``), an invalid ``mlflow=`` value, or a
        store / experiment that cannot be used.
    """
    settings = tracking_settings(mlflow)
    if settings is None:
        return None
    mlflow_module = _import_mlflow()
    from mlflow.tracking import MlflowClient

    current_uri = mlflow_module.get_tracking_uri()
    uri = settings.tracking_uri or current_uri
    try:
        client = MlflowClient(tracking_uri=uri)
        uri = client.tracking_uri
        global_store = settings.tracking_uri is None or uri == current_uri
        active = mlflow_module.active_run() if global_store else None
        if settings.experiment is not None:
            experiment = client.get_experiment_by_name(settings.experiment)
            if experiment is None:
                experiment_id = client.create_experiment(settings.experiment)
                log.info("mlflow: created experiment '%s' at %s", settings.experiment, _display_uri(uri))
            else:
                experiment_id = experiment.experiment_id
        elif active is not None:
            experiment_id = active.info.experiment_id
        else:
            experiment_id = _current_experiment_id(client, mlflow_module if global_store else None)
        experiment = client.get_experiment(experiment_id)  # also checks that the store answers
    except ConfigurationError:
        raise
    except Exception as error:  # mlflow's store errors come in many types (MlflowException, OSError, ...)
        raise ConfigurationError(
            f"cannot use the MLflow tracking store '{_display_uri(uri)}': {type(error).__name__}: {error}"
            f"{_store_hint(uri)}") from error
    if experiment is None or getattr(experiment, "lifecycle_stage", "active") != "active":
        raise ConfigurationError(f"MLflow experiment {settings.experiment or experiment_id!r} at "
                                 f"'{_display_uri(uri)}' is deleted; restore it or choose another")
    if active is not None and active.info.experiment_id != experiment_id:
        active = None  # another experiment was asked for: a new run there
    return Tracker(settings, uri, str(experiment_id), None if active is None else active.info.run_id)


def _current_experiment_id(client, mlflow_module) -> str:
    """mlflow's current experiment: ``mlflow.set_experiment``'s, else the environment's, else Default ("0")."""
    if mlflow_module is not None:
        from mlflow.tracking import fluent

        chosen = getattr(fluent, "_active_experiment_id", None)
        if chosen:
            return str(chosen)
    name, experiment_id = os.environ.get("MLFLOW_EXPERIMENT_NAME"), os.environ.get("MLFLOW_EXPERIMENT_ID")
    if name:
        experiment = client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else client.create_experiment(name)
    if experiment_id:
        return experiment_id
    return "0"


def _display_uri(uri: str) -> str:
    """The URI without user name or password (``https://user:token@host`` → ``https://host``)."""
    return re.sub(r"(//)[^/@]*@", r"\1", str(uri))


def _safe_key(key: str, limit: int) -> str:
    """An MLflow key: characters MLflow refuses become "_", and a key over ``limit`` is cut, with a hash of it."""
    safe = re.sub(r"[^A-Za-z0-9_.\- ]", "_", str(key)).strip() or "_"
    if len(safe) > limit:
        digest = hashlib.sha1(safe.encode()).hexdigest()[:8]
        safe = f"{safe[: limit - 9]}-{digest}"
    return safe


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "model"


# ------------------------------------------------------------------------------ what is logged
def _describe(value) -> str:
    """A parameter value as text: an estimator by its class name (its own parameters are logged apart)."""
    import numpy as np

    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if hasattr(value, "get_params") and callable(value.get_params):
        return type(value).__name__
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, tuple) and len(v) >= 2 and isinstance(v[0], str) for v in value):
            return ", ".join(f"{v[0]}: {_describe(v[1])}" for v in value)  # pipeline steps, transformer lists
        inner = ", ".join(_describe(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    return repr(value) if isinstance(value, float) else str(value)


def flatten_params(params: Mapping, prefix: str = "") -> dict[str, str]:
    """``{key: text}`` of (nested) parameters: a dictionary's entries become ``key.entry``.

    Examples
    --------
    >>> flatten_params({"C": 0.1, "params": {"setting": {"binWidth": 25}}}, prefix="pipeline.")
    {'pipeline.C': '0.1', 'pipeline.params.setting.binWidth': '25'}
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = _describe(value)
    return out


def _pipeline_params(pipeline) -> dict[str, str]:
    get_params = getattr(pipeline, "get_params", None)
    if not callable(get_params):
        return {"pipeline": type(pipeline).__name__}
    return {"pipeline": type(pipeline).__name__, **flatten_params(get_params(deep=True), prefix="pipeline.")}


def evaluation_metrics(result) -> tuple[dict, dict]:
    """The metrics of an :class:`~radhe.evaluation.EvaluationResult`: ``({key: value}, {key: [per fold]})``.

    Keys as in the module's documentation; values are those of ``result.to_dict()`` (``metrics.json``).
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    main = result.main
    metrics = {"auc": main.auc.auc, "auc_ci_low": main.auc.ci_low, "auc_ci_high": main.auc.ci_high,
               "auc_se": main.auc.se, "average_precision": main.average_precision,
               "n_cases": main.n, "n_positive": main.n_positive}
    if main.brier is not None:
        metrics["brier"] = main.brier
    for key, value in (main.calibration_fit or {}).items():
        metrics[f"calibration_{key}"] = value
    for name, row in main.metrics.iterrows():
        metrics[str(name)] = row["estimate"]
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = row["ci_low"], row["ci_high"]
    cm = main.confusion.to_numpy()
    metrics.update(confusion_tn=cm[0, 0], confusion_fp=cm[0, 1], confusion_fn=cm[1, 0], confusion_tp=cm[1, 1])

    steps: dict = {}
    if main.predictions is not None:
        frame = main.predictions.frame
        fold_auc, fold_threshold = [], []
        for k in range(main.predictions.n_splits):
            part = frame[frame["fold"] == k]
            y = part["y"].to_numpy(dtype=int)
            fold_auc.append(float(roc_auc_score(y, part["score"])) if np.unique(y).size == 2 else float("nan"))
            fold_threshold.append(float(part["threshold"].iloc[0]) if len(part) else float("nan"))
        steps = {"fold_auc": fold_auc, "fold_threshold": fold_threshold}

    comparison = result.comparison
    for name, report in result.baselines.items():
        key = f"baseline.{_slug(name)}"
        metrics.update({f"{key}.auc": report.auc.auc, f"{key}.auc_ci_low": report.auc.ci_low,
                        f"{key}.auc_ci_high": report.auc.ci_high})
        for metric in ("sensitivity", "specificity"):
            metrics[f"{key}.{metric}"] = report.metrics.loc[metric, "estimate"]
        if comparison is not None and name in comparison.index:
            metrics[f"{key}.delta_auc"] = comparison.loc[name, "delta_auc"]
            metrics[f"{key}.delong_p"] = comparison.loc[name, "delong_p"]

    conformal = result.conformal_summary()
    if conformal is not None:
        for row, label in (("all", "conformal"), ("no expansion (0)", "conformal.y0"), ("expansion (1)", "conformal.y1")):
            if row in conformal.index:
                for column in ("coverage", "mean_set_size", "singletons", "empty"):
                    metrics[f"{label}.{column}"] = conformal.loc[row, column]
        metrics["conformal.target"] = conformal["target"].iloc[0]

    if getattr(result, "segmentation", None) is not None:
        quality = result.segmentation.to_dict()
        for key in ("dice_mean", "dice_median", "iou_mean", "fallback_share", "n_empty", "n_fallback"):
            if key in quality:
                metrics[f"segmentation.{key}"] = quality[key]
        for key, value in (quality.get("volume_agreement") or {}).items():
            if defined_number(value) is not None:
                metrics[f"segmentation.volume_{key}"] = value
    return metrics, steps


def _evaluation_params(result, settings: Mapping) -> dict:
    meta = result.metadata or {}
    params = {f"evaluation.{k}": _describe(v) for k, v in settings.items()}
    params.update({
        "evaluation.model": result.main.name,
        "evaluation.cv": meta.get("cv"),
        "evaluation.threshold_method": result.main.threshold_method,
        "evaluation.baselines": ", ".join(result.baselines) or "none",
        "data.n_cases": result.main.n,
        "data.n_positive": result.main.n_positive,
        "data.n_patients": meta.get("n_patients"),
    })
    return {k: v for k, v in params.items() if v is not None}


def log_run(tracker: Tracker, *, run_name: str | None = None, params: Mapping | None = None,
            metrics: Mapping | None = None, steps: Mapping | None = None, tags: Mapping | None = None,
            files=(), folders: Mapping | None = None) -> TrackedRun | None:
    """Start the run :func:`prepare` chose and log to it; end it when radhe created it.

    Parameters
    ----------
    tracker : Tracker
    run_name : str, optional
        Name of a new run (``TrackingSettings.run_name`` wins).
    params, metrics, steps, tags : dict, optional
        See :meth:`TrackedRun.log_params`, :meth:`TrackedRun.log_metrics` (``steps``: ``{key: [value
        per step]}``) and :meth:`TrackedRun.set_tags`.
    files : list of path, or callable
        Files uploaded to the artifact root; a callable is given the run and returns them (for files
        that record the run's id).
    folders : dict, optional
        ``{artifact folder: local folder}`` uploaded as they are.

    Returns
    -------
    TrackedRun or None
        None when logging failed: a :class:`TrackingWarning` says why (whatever was computed is kept).
    """
    run = None
    try:
        run = tracker.start_run(run_name=run_name)
        paths = list(files(run) if callable(files) else files)
        truncated = run.log_params(params or {})
        undefined = run.log_metrics(metrics or {}, steps)
        tags = {**dict(tags or {}), "radhe.logged": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        if truncated:
            tags["radhe.truncated_params"] = ", ".join(truncated)
        if undefined:
            tags["radhe.undefined_metrics"] = ", ".join(undefined)
        run.set_tags(tags)
        run.log_files(paths, folders)
        run.end("FINISHED")
        n_metrics = len(metrics or {}) + sum(len(v) for v in (steps or {}).values()) - len(undefined)
        log.info("mlflow: logged %d parameters, %d metric values and %d file(s) to run %s (experiment %s) at %s",
                 len(params or {}), n_metrics, len(paths), run.run_id, run.experiment_id, _display_uri(run.tracking_uri))
        return run
    except Exception as error:  # noqa: BLE001 - what was computed must survive a tracking failure
        where = f"run {run.run_id} (marked FAILED)" if run is not None else "no run was created"
        warnings.warn(f"logging to MLflow at '{_display_uri(tracker.tracking_uri)}' failed ({type(error).__name__}: "
                      f"{error}); the results are complete on disk, {where}", TrackingWarning, stacklevel=3)
        if run is not None:
            try:
                run.end("FAILED")
            except Exception:  # noqa: BLE001 - the store is gone; the warning above says so
                pass
        return None


def log_evaluation(tracker: Tracker, result, *, pipeline=None, settings: Mapping | None = None,
                   seconds: float | None = None) -> TrackedRun | None:
    """Log an evaluation to MLflow: parameters, metrics and its ``metrics.json`` / ``predictions.csv`` /
    ``checklist.md``; the run is recorded in ``result.tracking`` and ``result.metadata["mlflow"]``.

    Parameters
    ----------
    tracker : Tracker
        From :func:`prepare`, called before the evaluation.
    result : EvaluationResult
    pipeline : estimator, optional
        The evaluated (unfitted) pipeline: its parameters.
    settings : dict, optional
        The evaluation's own settings (``evaluation.<key>`` parameters).
    seconds : float, optional
        The evaluation's duration in seconds (metric ``evaluation_seconds``).

    Returns
    -------
    TrackedRun or None
        None when logging failed (a :class:`TrackingWarning` says why; the result is complete).
    """
    params = {**_evaluation_params(result, settings or {}), **(_pipeline_params(pipeline) if pipeline is not None else {})}
    metrics, steps = evaluation_metrics(result)
    if seconds is not None:
        metrics["evaluation_seconds"] = seconds
    with tempfile.TemporaryDirectory(prefix="radhe-mlflow-") as folder:
        folder = Path(folder)

        def files(run):
            result.tracking = run
            result.metadata["mlflow"] = {"run_id": run.run_id, "experiment_id": run.experiment_id}
            written = [result.write_json(folder / "metrics.json")]  # after the run id: it records it
            if result.main.predictions is not None:
                written += [result.write_predictions(folder / "predictions.csv"),
                            result.write_checklist(folder / "checklist.md")]
            return written

        run = log_run(tracker, run_name=result.main.name, params=params, metrics=metrics, steps=steps,
                      tags={"radhe.pipeline": str((result.metadata or {}).get("pipeline", ""))}, files=files)
    if run is None:
        result.tracking = None
        result.metadata.pop("mlflow", None)
    return run


def log_report_files(result, files, *, figures=None, metrics: Mapping | None = None) -> bool:
    """Upload a written report's files (and extra metrics) to the MLflow run of ``result``, if it was tracked.

    Parameters
    ----------
    result : EvaluationResult
        Its ``tracking`` names the run (set by ``evaluate(..., mlflow=...)``).
    files : iterable of path
        Files uploaded to the run's artifact root (existing ones overwritten).
    figures : path, optional
        A folder uploaded as ``figures/``.
    metrics : dict, optional
        Further metrics of the run (e.g. a pipeline's oracle AUC); undefined values are left out.

    Returns
    -------
    bool
        Whether the files were uploaded (False: the result was not tracked, or uploading failed with a
        :class:`TrackingWarning`).
    """
    run = getattr(result, "tracking", None)
    if run is None:
        return False
    files = [Path(f) for f in files if f is not None and Path(f).is_file()]
    try:
        run.log_files(files, {"figures": figures} if figures is not None else None)
        if metrics:
            run.log_metrics(metrics)
    except Exception as error:  # noqa: BLE001 - the report is written; only its upload failed
        warnings.warn(f"uploading the report to MLflow run {run.run_id} at '{_display_uri(run.tracking_uri)}' failed "
                      f"({type(error).__name__}: {error}); the files are on disk", TrackingWarning, stacklevel=3)
        return False
    n_figures = len(list(Path(figures).iterdir())) if figures is not None and Path(figures).is_dir() else 0
    log.info("mlflow: uploaded %d report file(s)%s to run %s", len(files),
             f" and {n_figures} figure file(s)" if n_figures else "", run.run_id)
    return True


# ------------------------------------------------------------------------------ command line
def add_arguments(parser) -> None:
    """Add ``--mlflow [URI]`` and ``--mlflow-experiment NAME`` to an argparse (sub)parser."""
    parser.add_argument(
        "--mlflow", nargs="?", const=True, default=None, metavar="URI",
        help="log parameters, metrics and the report files to MLflow (needs radhe[mlflow]); URI: a tracking "
             "server (http://host:5000), a folder (file:///path/mlruns) or a database; without URI mlflow's "
             "current one (MLFLOW_TRACKING_URI)")
    parser.add_argument("--mlflow-experiment", default=None, metavar="NAME",
                        help="MLflow experiment (created when missing; implies --mlflow); default: "
                             "MLFLOW_EXPERIMENT_NAME, else mlflow's Default")


def settings_from_args(args) -> TrackingSettings | None:
    """The ``mlflow=`` setting of parsed ``--mlflow`` / ``--mlflow-experiment`` arguments (None: no tracking)."""
    uri, experiment = getattr(args, "mlflow", None), getattr(args, "mlflow_experiment", None)
    if uri is None and experiment is None:
        return None
    return TrackingSettings(tracking_uri=None if uri in (None, True) else str(uri), experiment=experiment)
