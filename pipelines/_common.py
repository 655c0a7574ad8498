"""Shared machinery of the published-method pipelines: settings, the command line, the report.

Every pipeline module defines ``build_pipeline(**overrides)``, ``param_grid()``, ``TITLE``,
``TINY`` (overrides of tiny networks trained for one epoch, for smoke tests) and ``main(argv=None)``, which
calls :func:`main` here. :func:`run_pipeline` is the same without argparse.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import logging
import sys
import time
from pathlib import Path

from radhe._log import get_logger

log = get_logger("radhe.pipelines")

__all__ = [
    "main",
    "run_pipeline",
    "load_or_make_cohort",
    "oracle_auc",
    "segmenter",
    "segment_step",
    "SEGMENTER_CHOICES",
    "roi_cnn",
    "split_overrides",
    "published_pipeline",
    "smoke_radiomics",
    "write_report",
    "html_table",
    "add_common_arguments",
    "add_cohort_arguments",
    "cohort_from_args",
    "run_command",
    "progress_console",
]

def split_overrides(overrides: dict) -> tuple[dict, dict, dict]:
    """Split ``build_pipeline`` overrides into (segmenter kwargs, CNN kwargs, the rest).

    ``epochs`` sets both networks' epochs (``seg_epochs`` / ``cnn_epochs`` one of them);
    ``base_channels``, ``levels``, ``input_size``, ``skull_strip`` and ``cache_dir`` go to the U-Net;
    ``crop_size`` and ``n_features`` to the ROI CNN; ``n_threads`` and ``batch_size`` to both.
    """
    rest = dict(overrides)
    seg, cnn = {}, {}
    if "epochs" in rest:
        seg["epochs"] = cnn["epochs"] = rest.pop("epochs")
    if "seg_epochs" in rest:
        seg["epochs"] = rest.pop("seg_epochs")
    if "cnn_epochs" in rest:
        cnn["epochs"] = rest.pop("cnn_epochs")
    for key in ("base_channels", "levels", "input_size", "cache_dir", "skull_strip"):
        if key in rest:
            seg[key] = rest.pop(key)
    for key in ("crop_size", "n_features"):
        if key in rest:
            cnn[key] = rest.pop(key)
    for key in ("n_threads", "batch_size"):
        if key in rest:
            seg[key] = cnn[key] = rest.pop(key)
    return seg, cnn, rest


def smoke_radiomics(image_types: dict) -> dict:
    """pyradiomics parameters for smoke tests: shape and first-order features of ``image_types`` only."""
    return {
        "setting": {"binWidth": 25, "label": 1, "resampledPixelSpacing": None, "normalize": False,
                    "minimumROIDimensions": 2},
        "imageType": dict(image_types),
        "featureClass": {"shape": None, "firstorder": None},
    }


def published_pipeline(overrides: dict, settings):
    """:func:`radhe.make_pipeline` of a published method, with a user's ``build_pipeline`` overrides.

    ``settings(random_state, seg_kw, cnn_kw, rest)`` returns the method's :func:`radhe.make_pipeline`
    arguments; ``seg_kw`` / ``cnn_kw`` are the network overrides (:func:`split_overrides`), and it may
    pop the method's own options from ``rest``. Whatever is left in ``rest`` overrides the result. The
    published methods pool every feature into one classifier (``fusion="concat"``) unless they say
    otherwise.
    """
    from radhe.pipeline import make_pipeline

    seg_kw, cnn_kw, rest = split_overrides(overrides)
    random_state = rest.pop("random_state", None)
    arguments = {"fusion": "concat", **settings(random_state, seg_kw, cnn_kw, rest), "random_state": random_state}
    arguments.update(rest)
    return make_pipeline(**arguments)


def segmenter(random_state=None, **params):
    """A :class:`~radhe.segmentation.HematomaSegmenter` with CPU-friendly defaults, updated by ``params``."""
    from radhe.segmentation import HematomaSegmenter

    settings = dict(base_channels=16, levels=4, epochs=20, input_size=128, patience=5)
    settings.update(params)
    return HematomaSegmenter(random_state=random_state, **settings)


#: Values of a pipeline's ``segmenter`` override (besides a transformer of your own).
SEGMENTER_CHOICES = ("pretrained", "fold")


def segment_step(kind, random_state, seg_kw: dict, **fold_defaults):
    """The ``"segment"`` step of a published pipeline that segments before extracting features.

    ``kind`` "pretrained": the segmenter shipped with radhe
    (:meth:`~radhe.segmentation.HematomaSegmenter.pretrained`, trained on synthetic CT only, never
    on the cohort at hand). With ``epochs=0`` (the default) it is the same model in every fold, so
    each case is segmented once in a cross-validation (its masks are reused) and nothing is fitted
    on the cohort; ``epochs > 0`` fine-tunes it on each training fold's masks. "fold": a U-Net
    trained from scratch in each training fold (:func:`segmenter`, with the method's
    ``fold_defaults``; slower: 20 epochs per fold). A transformer is used as given. ``seg_kw`` are
    the network overrides of :func:`split_overrides`; the shipped network's fixed settings
    (architecture, window, spacing) are refused by name with "pretrained".
    """
    from radhe.errors import ConfigurationError
    from radhe.segmentation import HematomaSegmenter

    if not isinstance(kind, str):
        if seg_kw:
            raise ConfigurationError(
                f"{', '.join(sorted(seg_kw))} would be ignored: the segmenter given is used as it is; "
                "set them on it instead (cnn_epochs= sets the CNN's epochs alone)")
        return kind
    if kind == "fold":
        return segmenter(random_state, **{**fold_defaults, **seg_kw})
    if kind != "pretrained":
        raise ConfigurationError(f"segmenter must be one of {SEGMENTER_CHOICES} or a transformer, got {kind!r}")
    from radhe.nn.segmenter import PRETRAINED_FIXED

    fixed = sorted(set(seg_kw) & set(PRETRAINED_FIXED))
    if fixed:
        raise ConfigurationError(
            f"{', '.join(fixed)} cannot be changed on the shipped segmenter (its network and input are fixed); "
            "pass segmenter='fold' to train a U-Net with them in each training fold")
    return HematomaSegmenter.pretrained(**{"epochs": 0, **seg_kw}, random_state=random_state)


def roi_cnn(random_state=None, **params):
    """A :class:`~radhe.features.CNNEmbedder` (``kind="roi_cnn"``) with the given settings."""
    from radhe.nn.embedder import CNNEmbedder

    settings = dict(kind="roi_cnn", epochs=20)
    settings.update(params)
    return CNNEmbedder(random_state=random_state, **settings)


# --------------------------------------------------------------------------------------- cohort
def load_or_make_cohort(manifest=None, out=None, *, n_cases: int = 120, shape=None, seed: int = 0):
    """The manifest at ``manifest``, or a synthetic cohort generated in ``out/cohort``.

    Returns ``(manifest DataFrame, path of its manifest.csv)``.
    """
    if manifest is not None:
        from radhe.io import load_manifest

        return load_manifest(manifest), Path(manifest)
    from radhe.datasets import make_ich_cohort

    folder = Path(out) / "cohort"
    kwargs = {"random_state": seed}
    if shape is not None:
        kwargs["shape"] = tuple(shape)
    start = time.perf_counter()
    log.info("generating a synthetic cohort of %d cases in %s", n_cases, folder)
    frame = make_ich_cohort(n_cases, folder, **kwargs)
    log.info("synthetic cohort of %d cases written in %.1f s", len(frame), time.perf_counter() - start)
    return frame, folder / "manifest.csv"


def oracle_auc(manifest, manifest_path, label: str = "he") -> float | None:
    """AUC of the cohort's true risk (``oracle.csv`` beside the manifest), or None when absent."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    path = Path(manifest_path).parent / "oracle.csv"
    if not path.is_file() or label != "he":
        return None
    oracle = pd.read_csv(path).set_index("case_id")["he_risk"]
    ids = manifest["case_id"].astype(str)
    if not ids.isin(oracle.index).all():
        return None
    return float(roc_auc_score(manifest[label].astype(int), oracle.loc[ids].to_numpy()))


# --------------------------------------------------------------------------------------- report
def html_table(frame, *, digits: int = 3, index_label: str = "") -> str:
    """A pandas DataFrame as a plain HTML table (numbers rounded), in the report's style."""
    import numpy as np

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "–" if not np.isfinite(v) else f"{v:.{digits}f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [index_label or (frame.index.name or ""), *frame.columns])
    rows = "".join(
        f"<tr><td>{html.escape(str(i))}</td>{''.join(f'<td>{cell(v)}</td>' for v in row)}</tr>"
        for i, row in zip(frame.index, frame.itertuples(index=False), strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _jsonable(obj):
    from radhe.evaluation.result import to_jsonable as to_json

    return to_json(obj, infinity_as_null=True)


def write_report(result, out: Path, *, title: str, about: str = "", extras=None, summary: dict | None = None) -> dict:
    """Write ``report.html``, ``metrics.json`` and ``predictions.csv`` of an evaluation, with extra sections appended.

    Parameters
    ----------
    result : radhe.evaluation.EvaluationResult
    out : path
        Output folder.
    title : str
        Report title.
    about : str
        HTML paragraph placed under the title (the method and how this implementation differs).
    extras : list of (heading, html, json-able) tuples, optional
        Sections appended to the report; their data go under ``metrics.json["extras"][heading]``.
    summary : dict, optional
        Stored as ``metrics.json["pipeline"]`` (name, runtime, oracle AUC, ...).

    When ``result`` was tracked (``run_pipeline(..., mlflow=...)``), the files written here and the
    summary's ``oracle_auc`` and ``seconds`` (metrics ``oracle_auc``, ``pipeline_seconds``) go to its
    MLflow run.

    Returns
    -------
    dict
        ``{"html": path, "metrics": path, "predictions": path, "checklist": path}``.
    """
    from radhe.report import render_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = render_html(result, title=title, figure_dir=out / "figures", checklist_link="checklist.md")
    blocks = []
    for heading, body, _ in extras or ():
        blocks.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    if about:
        page = page.replace("</h1>", f"</h1>\n<p class=\"note\">{about}</p>", 1)
    page = page.replace("</body></html>", "\n".join(blocks) + "\n</body></html>")
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    metrics = result.to_dict()
    if extras:
        metrics["extras"] = {heading: _jsonable(data) for heading, _, data in extras}
    if summary:
        metrics["pipeline"] = _jsonable(summary)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2, allow_nan=False))
    paths = {"html": html_path, "metrics": metrics_path, "predictions": result.write_predictions(out / "predictions.csv"),
             "checklist": result.write_checklist(out / "checklist.md")}
    log.info("report: wrote %s", html_path)
    if getattr(result, "tracking", None) is not None:
        from radhe.tracking import log_report_files

        extra = {"oracle_auc": (summary or {}).get("oracle_auc"), "pipeline_seconds": (summary or {}).get("seconds")}
        log_report_files(result, paths.values(), figures=out / "figures",
                         metrics={k: v for k, v in extra.items() if v is not None})
    return paths


# -------------------------------------------------------------------------------------- running
def run_pipeline(module, manifest, *, manifest_path=None, out, folds: int = 5, seed: int = 0, label: str = "he",
                 overrides=None, threshold_cv: int | None = 3, n_bootstrap: int = 1000, grid: bool = False,
                 explain: bool | None = None, verbose: bool = True, mlflow=None, cache=None) -> dict:
    """Cross-validate ``module``'s pipeline on ``manifest`` and write its report to ``out``.

    The pipeline is ``module.build_pipeline(random_state=seed, **overrides)``, evaluated with
    :func:`radhe.evaluation.evaluate` (patient-grouped stratified ``folds``-fold CV, the NCCT-marker,
    volume and BAT baselines on the same folds, out-of-fold SHAP unless ``module.EXPLAIN`` is False),
    and written by :func:`write_report` with the sections of ``module.extra_sections`` if defined.
    ``grid=True`` wraps the pipeline in a patient-grouped ``GridSearchCV`` over ``module.param_grid()``
    (nested CV: slow). Predicted masks and radiomics features are cached per case in the folder
    ``cache`` (default ``out/cache``; where the pipeline has no cache of its own), so a case whose
    mask is the same in every fold is segmented and extracted once. ``explain=False`` skips SHAP
    (None: the module's ``EXPLAIN``, default True).
    ``mlflow``: track the run with MLflow, as :func:`radhe.evaluation.evaluate`'s ``mlflow=``
    (parameters, metrics, the report's files). Progress goes to the ``radhe`` logger (INFO);
    ``verbose`` prints the results' summary on stdout.

    Returns
    -------
    dict
        ``result`` (EvaluationResult), ``paths``, ``auc``, ``oracle_auc``, ``seconds``.
    """
    from radhe.evaluation import evaluate
    from radhe.model_selection import PatientStratifiedKFold

    out = Path(out)
    start = time.perf_counter()
    from radhe._checks import manifest_outcome

    # the labels checked as 0/1 (never cast), and an outcome column of another name than the known
    # ones left out of the table, so that it cannot predict itself
    manifest, y = manifest_outcome(manifest, label, where=f"manifest '{manifest_path}'" if manifest_path else "manifest")
    log.info("%s: %s", module.NAME, module.TITLE)
    from radhe.cache import check_folder

    cache = check_folder(out / "cache" if cache is None else cache, "run_pipeline cache")
    pipeline = _with_run_caches(module.build_pipeline(random_state=seed, **dict(overrides or {})), cache)
    if grid:
        from sklearn.model_selection import GridSearchCV

        pipeline = GridSearchCV(pipeline, module.param_grid(), scoring="roc_auc", refit=True,
                                cv=PatientStratifiedKFold(n_splits=3, shuffle=True, random_state=seed))
    cv = PatientStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    result = evaluate(pipeline, manifest, y, cv=cv, baselines=getattr(module, "BASELINES", True),
                      explain=bool(getattr(module, "EXPLAIN", True) if explain is None else explain) and not grid,
                      threshold_cv=threshold_cv,
                      n_bootstrap=n_bootstrap, name=module.NAME, random_state=seed, mlflow=mlflow)
    extras = []
    if hasattr(module, "extra_sections"):
        from radhe._progress import timed

        with timed(log, "%s: the report's extra sections", module.NAME,
                   start="%s: computing the report's extra sections"):
            extras = module.extra_sections(manifest, y, result, seed=seed, folds=folds, overrides=dict(overrides or {}))
    seconds = time.perf_counter() - start
    oracle = oracle_auc(manifest, manifest_path, label) if manifest_path is not None else None
    summary = {"name": module.NAME, "title": module.TITLE, "seconds": seconds, "folds": folds, "seed": seed,
               "overrides": {k: repr(v) for k, v in dict(overrides or {}).items()}, "grid_search": grid,
               "oracle_auc": oracle}
    paths = write_report(result, out, title=module.TITLE, about=getattr(module, "ABOUT", ""), extras=extras,
                         summary=summary)
    if verbose:
        print(result.summary())
        if oracle is not None:
            print(f"oracle AUC (the cohort's true risk) {oracle:.3f}")
        print(f"{module.NAME}: {seconds:.1f} s; report: {paths['html']}; metrics: {paths['metrics']}")
    return {"result": result, "paths": paths, "auc": result.main.auc.auc, "oracle_auc": oracle, "seconds": seconds}


def _with_run_caches(pipeline, folder: Path):
    """The pipeline with its per-case caches in ``folder`` where it has none of its own.

    Radiomics features go to ``folder/radiomics`` (:class:`radhe.cache.FeatureCache`, keyed on the
    content of image and mask), and the masks of a segmenter that is the same in every fold (the
    shipped one with ``epochs=0``) to ``folder/masks``. Where a case's mask is the same in every
    fold (that segmenter, or the reference masks), it is then segmented and its features extracted
    once for the whole cross-validation. A segmenter trained in each fold predicts new masks per
    fold (thousands in a long run): they stay in its own default folder, as without this cache,
    and their features are extracted anew.
    """
    params = pipeline.get_params()
    updates = {}
    if "segment__cache_dir" in params and params["segment__cache_dir"] is None and params.get("segment__epochs") == 0:
        updates["segment__cache_dir"] = str(folder / "masks")
    if "features__radiomics__cache" in params and params["features__radiomics__cache"] is None:
        updates["features__radiomics__cache"] = str(folder / "radiomics")
    return pipeline.set_params(**updates) if updates else pipeline


def build_parser(name: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m radhe_pipelines.{name}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest (.csv/.tsv/.parquet); default: a synthetic cohort generated in OUT/cohort")
    parser.add_argument("--out", type=Path, default=Path(f"{name}_out"), help=f"output folder (default {name}_out)")
    parser.add_argument("--label", default="he", help="outcome column (default 'he')")
    parser.add_argument("--folds", type=int, default=5, help="patient-grouped CV folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    add_cohort_arguments(parser)
    parser.add_argument("--threshold-cv", type=int, default=3,
                        help="inner folds choosing each fold's threshold; 0 = training-fold scores (default 3)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for CIs (default 1000)")
    parser.add_argument("--grid", action="store_true", help="nested grid search over param_grid() (slow)")
    parser.add_argument("--no-explain", action="store_true", help="skip the out-of-fold SHAP explanation")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny networks, one epoch: a smoke test of the whole run (minutes on 256 x 256 scans)")
    add_common_arguments(parser)
    return parser


def add_cohort_arguments(parser) -> None:
    """``-n/--n-cases`` and ``--shape`` of the synthetic cohort a pipeline runs on without ``--manifest``."""
    parser.add_argument("-n", "--n-cases", type=int, default=None,
                        help="synthetic cohort size (default 120; not with --manifest)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="synthetic volume size in voxels (default 256 256 28; not with --manifest)")


def add_common_arguments(parser) -> None:
    """``-q/--quiet`` and ``--mlflow [URI]`` / ``--mlflow-experiment NAME`` of every pipeline's command line."""
    from radhe.tracking import add_arguments

    parser.add_argument("-q", "--quiet", action="store_true",
                        help="show warnings and errors only (no progress messages on stderr)")
    add_arguments(parser)


def progress_console(args):
    """Progress messages (logger ``radhe``) on stderr for the command's duration; warnings only with ``--quiet``.

    Warnings are shown as a command-line user reads them, without the library line that raised them.
    """
    from radhe._log import command_line_warnings, console

    stack = contextlib.ExitStack()
    stack.enter_context(console(logging.WARNING if args.quiet else logging.INFO))
    stack.enter_context(command_line_warnings())
    return stack


def cohort_from_args(args):
    """(manifest, manifest path) of ``--manifest``, or the synthetic cohort of ``-n`` / ``--shape`` / ``--seed``.

    ``-n`` or ``--shape`` beside ``--manifest`` is refused: they would be ignored.
    """
    from radhe.errors import ConfigurationError

    if args.manifest is not None and (args.n_cases is not None or args.shape is not None):
        raise ConfigurationError("-n/--n-cases and --shape set the synthetic cohort made without --manifest; with "
                                 f"--manifest '{args.manifest}' they would be ignored: leave them out")
    return load_or_make_cohort(args.manifest, args.out, n_cases=120 if args.n_cases is None else args.n_cases,
                               shape=args.shape, seed=args.seed)


def run_command(prog: str, args, work) -> int:
    """Run ``work(mlflow settings)`` as a command: progress on stderr, one-line errors, exit status.

    MLflow is prepared first (a missing mlflow or an unusable store stops the command before any
    work). Errors print ``"<prog>: error: ..."`` and give status 1; Ctrl-C prints
    ``"<prog>: interrupted"`` and gives 130 (:data:`radhe.cli.EXIT_INTERRUPTED`).
    """
    from radhe.cli import EXIT_INTERRUPTED, os_error_message
    from radhe.errors import RadheError
    from radhe.tracking import prepare, settings_from_args

    try:
        with progress_console(args):
            mlflow = settings_from_args(args)
            prepare(mlflow)
            work(mlflow)
    except (RadheError, ValueError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. an output that cannot be written: a full disk, no permission
        print(f"{prog}: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def main(module, argv=None) -> int:
    """The ``python -m radhe_pipelines.<name>`` entry point of a pipeline module."""
    doc = (module.__doc__ or "").strip().splitlines()
    parser = build_parser(module.NAME, doc[0] if doc else module.TITLE)
    args = parser.parse_args(argv)

    def work(mlflow):
        manifest, path = cohort_from_args(args)
        run_pipeline(module, manifest, manifest_path=path, out=args.out, folds=args.folds, seed=args.seed,
                     label=args.label, overrides=module.TINY if args.tiny else None,
                     threshold_cv=args.threshold_cv or None, n_bootstrap=args.bootstrap, grid=args.grid,
                     explain=False if args.no_explain else None, mlflow=mlflow)

    return run_command(parser.prog, args, work)
