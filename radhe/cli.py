"""The ``radhe`` command line: synth, validate, extract, fit, predict, evaluate, report, demo.

Every command prints ``radhe: error: ...`` and exits with status 1 on bad input (a missing column, an
unreadable file, an unknown pipeline name) and when an output cannot be written; argparse usage errors exit
with status 2; ``validate --skip`` exits with status 3 when it skipped cases (unless ``--allow-skipped``).

Outputs are checked before any work starts: an output that is one of the command's input files
(``--manifest``, ``--model``, ``--params``) is refused, always; an existing output file of ``extract``,
``segment`` and ``predict`` is replaced only with ``--force`` (as ``synth --force`` writes into a folder that
is not empty); an ``--out`` folder that is a file, or that cannot be created, is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

from radhe._log import get_logger
from radhe.errors import RadheError

log = get_logger("radhe.cli")

__all__ = ["main", "build_parser"]

DEFAULT_LABEL = "he"
_NO_HU_CHECK_HELP = "accept images whose intensities do not look like CT in HU (e.g. MR or a windowed export)"
#: Exit status of ``validate --skip`` when some cases were invalid (and skipped).
EXIT_SKIPPED = 3
#: Table formats written by ``--out``, by file suffix.
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
#: Files ``segment --out FOLDER`` writes in the folder (besides its mask cache, ``masks/``).
SEGMENT_FILES = ("manifest.csv", "segmentation.csv")
#: Files ``evaluate --out FOLDER`` writes in the folder; ``report`` adds :data:`REPORT_FILE`.
EVALUATE_FILES = ("metrics.json", "predictions.csv", "checklist.md")
REPORT_FILE = "report.html"
#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130
_FORCE_HELP = "replace output files that exist (never an input file)"


def _n_jobs(text: str) -> int:
    """``-j``: a whole number of processes; -1 every core, -2 all but one (joblib's); 0 means nothing."""
    value = _whole(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more processes, or -1 for every core")
    return value


def _count(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 0")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _probability(text: str, *, above_zero: bool = False) -> float:
    """A probability threshold: finite, in [0, 1] (``above_zero``: in (0, 1])."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and (0 < value <= 1 if above_zero else 0 <= value <= 1)):
        raise argparse.ArgumentTypeError(f"{text!r}: a probability threshold lies in {'(0, 1]' if above_zero else '[0, 1]'}")
    return value


def _mask_threshold(text: str) -> float:
    return _probability(text, above_zero=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radhe",
        description="Predict haematoma expansion after ICH from admission NCCT.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="show warnings and errors only (no progress messages)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    synth = commands.add_parser("synth", help="write a synthetic ICH cohort (CT, masks, manifest.csv, oracle.csv)")
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("-n", "--n-cases", type=int, default=100, help="number of cases (default 100)")
    synth.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                       help="volume size in voxels (default 256 256 28; the head stays life-size)")
    synth.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    synth.add_argument("--compress", action="store_true", help="write .nii.gz instead of .nii")
    synth.add_argument("-j", "--n-jobs", type=_n_jobs, default=1, help="parallel processes")
    synth.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    synth.set_defaults(run=_cmd_synth)

    validate = commands.add_parser("validate", help="check every case's image and mask (and the outcome)")
    _add_manifest(validate)
    validate.add_argument("--skip", action="store_true", help="record invalid cases instead of stopping")
    validate.add_argument("--allow-skipped", action="store_true",
                          help=f"with --skip: exit 0 even when cases were skipped (default: exit {EXIT_SKIPPED})")
    validate.add_argument("--label", default=None, help="also check this outcome column (0/1, no missing value)")
    validate.add_argument("--no-hu-check", action="store_true", help=_NO_HU_CHECK_HELP)
    validate.set_defaults(run=_cmd_validate)

    extract = commands.add_parser("extract", help="extract pyradiomics features to a table")
    _add_manifest(extract)
    extract.add_argument("--out", required=True, type=Path, help="features table (.csv, .tsv or .parquet)")
    extract.add_argument("--label", default=None, help="outcome column copied into the table beside case_id")
    extract.add_argument("--params", default=None, help="pyradiomics YAML file or preset name")
    extract.add_argument("--cache", type=Path, default=None, help="per-case feature cache folder")
    extract.add_argument("--mask-column", default="mask", help="manifest column of mask paths")
    extract.add_argument("-j", "--n-jobs", type=_n_jobs, default=1, help="parallel processes")
    extract.add_argument("--skip", action="store_true", help="NaN rows + failure table instead of stopping")
    extract.add_argument("--no-hu-check", action="store_true", help=_NO_HU_CHECK_HELP)
    extract.add_argument("--force", action="store_true", help=_FORCE_HELP)
    extract.set_defaults(run=_cmd_extract)

    segment = commands.add_parser("segment", help="predict haematoma masks with the shipped segmenter (no masks "
                                                  "or training needed); write them and a manifest that lists them")
    _add_manifest(segment)
    segment.add_argument("--out", required=True, type=Path,
                         help="output folder: masks/<model fingerprint>/ (a mask and a JSON record per case), "
                              "manifest.csv (the input's rows plus the mask column, absolute paths) and "
                              "segmentation.csv (volume, peak probability and status of every case)")
    segment.add_argument("--column", default="mask", help="manifest column of the predicted masks (default 'mask')")
    segment.add_argument("--threshold", type=_mask_threshold, default=0.5, help="probability threshold (default 0.5)")
    segment.add_argument("--on-empty", choices=("warn", "fallback", "raise"), default="warn",
                         help="a case where no haematoma is found: 'warn' writes an empty mask (default), "
                              "'fallback' the most probable region, 'raise' stops; each is named and recorded")
    segment.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all available)")
    segment.add_argument("--no-hu-check", action="store_true", help=_NO_HU_CHECK_HELP)
    segment.add_argument("--force", action="store_true",
                         help="replace manifest.csv and segmentation.csv of an earlier run in --out (never the "
                              "input manifest)")
    segment.set_defaults(run=_cmd_segment)

    fit = commands.add_parser("fit", help="fit a pipeline on a whole cohort and save it (skops format)")
    _add_manifest(fit)
    _add_pipeline(fit)
    fit.add_argument("--out", required=True, type=Path,
                     help="model file: *.skops (safe to load; the default for any other name) or *.joblib / "
                          "*.pkl (a pickle: loading it runs code; only for files you trust)")
    fit.set_defaults(run=_cmd_fit)

    predict = commands.add_parser("predict", help="apply a fitted model (from `radhe fit`) to new cases")
    predict.add_argument("--model", required=True, type=Path,
                         help="model file written by `radhe fit` (skops; or *.joblib / *.pkl, a pickle)")
    _add_manifest(predict)
    predict.add_argument("--cache", type=Path, default=None,
                         help="per-case feature cache folder for the model's radiomics step (default: none)")
    predict.add_argument("--out", required=True, type=Path, help="predictions table (.csv, .tsv or .parquet)")
    predict.add_argument("--threshold", type=_probability, default=0.5,
                         help="probability from which a case is called expanding (default 0.5)")
    predict.add_argument("--force", action="store_true", help=_FORCE_HELP)
    predict.set_defaults(run=_cmd_predict)

    # evaluate and report cross-validate the same way; report adds baselines, SHAP and report.html
    for name, help_text, html in (
        ("evaluate", "cross-validate a pipeline; write metrics.json", False),
        ("report", "cross-validate with baselines and SHAP; write report.html", True),
    ):
        command = commands.add_parser(name, help=help_text)
        _add_manifest(command)
        _add_pipeline(command)
        _add_cv(command)
        command.add_argument("--out", required=True, type=Path, help="output folder")
        command.add_argument("--bootstrap", type=_count, default=1000,
                             help="bootstrap replicates of the CIs and the ROC band (default 1000)")
        command.add_argument("--threshold-cv", type=int, default=3,
                             help="inner folds choosing each fold's threshold; 0: the training fold's own "
                                  "scores (default 3)")
        if html:
            command.add_argument("--no-explain", action="store_true", help="leave out the SHAP sections")
        from radhe.tracking import add_arguments as add_tracking_arguments

        add_tracking_arguments(command)  # --mlflow [URI], --mlflow-experiment NAME
        command.set_defaults(run=_cmd_evaluate, html=html)

    demo = commands.add_parser("demo", help="synthetic cohort → validation → features → grouped CV → report")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    demo.add_argument("-n", "--n-cases", type=int, default=120, help="number of synthetic cases (default 120)")
    demo.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    demo.add_argument("-j", "--n-jobs", type=_n_jobs, default=2, help="parallel processes (default 2)")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    from radhe._log import command_line_warnings, console

    args = build_parser().parse_args(argv)
    with console(logging.WARNING if args.quiet else logging.INFO), command_line_warnings():
        try:
            return int(args.run(args) or 0)
        except (RadheError, ValueError, FileNotFoundError) as exc:
            print(f"radhe: error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # e.g. an output that cannot be written: a full disk, no permission
            print(f"radhe: error: {os_error_message(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # Ctrl-C: one line, and the shell's status of a SIGINT
            print("radhe: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


# ----------------------------------------------------------------------------- commands

def _cmd_synth(args) -> int:
    from radhe.datasets import make_ich_cohort

    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise RadheErrorForCli(f"output folder '{args.out}' is not empty; choose another or pass --force")
    kwargs = {"random_state": args.seed, "compress": args.compress, "n_jobs": args.n_jobs, "verbose": True}
    if args.shape:
        kwargs["shape"] = tuple(args.shape)
    start = time.perf_counter()
    manifest = make_ich_cohort(args.n_cases, args.out, **kwargs)
    print(f"wrote {len(manifest)} cases to {args.out} in {time.perf_counter() - start:.1f} s "
          f"(HE prevalence {manifest['he'].mean():.0%}); manifest: {args.out / 'manifest.csv'}")
    return 0


def _cmd_validate(args) -> int:
    from radhe.io import load_manifest, validate_manifest

    manifest = load_manifest(args.manifest)
    if args.label is not None:
        _manifest_and_label(args, manifest)
        print(f"outcome '{args.label}': {int(manifest[args.label].sum())} of {len(manifest)} positive")
    report = validate_manifest(manifest, on_error="skip" if args.skip else "raise", hu_check=not args.no_hu_check)
    print(report.summary())
    if len(report.skipped) and not args.allow_skipped:
        print(f"radhe: {len(report.skipped)} case(s) skipped (exit status {EXIT_SKIPPED}; --allow-skipped "
              "to exit 0)", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


def _cmd_extract(args) -> int:
    from radhe.features.radiomics import RadiomicsFeatures
    from radhe.io import load_manifest

    _check_table_suffix(args.out)
    params = Path(args.params) if args.params is not None and Path(args.params).is_file() else None
    _check_output_files([args.out], inputs={"manifest": args.manifest, "--params file": params}, force=args.force)
    manifest = load_manifest(args.manifest)
    if args.label is not None:
        _, label = _manifest_and_label(args, manifest)
    if args.mask_column not in manifest.columns:
        raise RadheErrorForCli(f"manifest '{args.manifest}' has no mask column '{args.mask_column}'")
    extractor = RadiomicsFeatures(
        params=args.params, mask_column=args.mask_column, n_jobs=args.n_jobs, cache=args.cache,
        on_error="skip" if args.skip else "raise", hu_check=not args.no_hu_check, verbose=not args.quiet,
    )
    start = time.perf_counter()
    features = extractor.fit_transform(manifest)
    features.insert(0, "case_id", manifest["case_id"].to_numpy())
    if args.label is not None:
        features.insert(1, args.label, label.to_numpy())
    write_table(features, args.out)
    failures = getattr(extractor, "failures_", None)
    n_features = features.shape[1] - 1 - (args.label is not None)  # not case_id nor the outcome
    print(f"{len(features)} cases x {n_features} features in {time.perf_counter() - start:.1f} s "
          f"-> {args.out}")
    if failures is not None and len(failures):
        print(f"{len(failures)} case(s) failed (NaN rows kept):")
        print(failures.to_string(index=False))
    return 0


def _cmd_segment(args) -> int:
    from radhe.io import load_manifest
    from radhe.segmentation import HematomaSegmenter

    _check_output_folder(args.out)
    _check_output_files([args.out / name for name in SEGMENT_FILES], inputs={"manifest": args.manifest},
                        force=args.force)
    manifest = load_manifest(args.manifest)
    if args.column in manifest.columns:
        raise RadheErrorForCli(f"manifest '{args.manifest}' already has a column '{args.column}'; pass --column "
                               "with another name for the predicted masks")
    segmenter = HematomaSegmenter.pretrained(threshold=args.threshold, n_threads=args.threads,
                                             hu_check=not args.no_hu_check, output_column=args.column,
                                             on_empty=args.on_empty, cache_dir=args.out / "masks")
    start = time.perf_counter()
    predicted = segmenter.transform(manifest)
    records = segmenter.prediction_records(manifest)
    with _writing(args.out):
        args.out.mkdir(parents=True, exist_ok=True)
        predicted.to_csv(args.out / "manifest.csv", index=False)
        records.to_csv(args.out / "segmentation.csv", index=False)
    flagged = records[records["status"] != "ok"]
    found = records.loc[records["status"] == "ok", "volume_ml"]
    median = f"median volume {found.median():.1f} mL" if len(found) else "no haematoma found"
    print(f"segmented {len(records)} cases in {time.perf_counter() - start:.1f} s -> {args.out / 'manifest.csv'} "
          f"(column '{args.column}'); {median} over the {len(found)} case(s) with a haematoma found")
    if len(flagged):
        print(f"{len(flagged)} case(s) with no haematoma found (status in segmentation.csv):")
        print(flagged[["case_id", "status", "max_probability"]].to_string(index=False))
    print("review the masks before using them: the shipped network was trained on synthetic scans only "
          "(docs: model card)")
    return 0


def _cmd_fit(args) -> int:
    from radhe.persistence import model_format, save_model

    model_format(args.out)  # a bad --out fails now, not after the fit
    # an existing model file is replaced (a refit), but never the input manifest
    _check_output_files([args.out], inputs={"manifest": args.manifest}, force=True)
    manifest, y = _manifest_and_label(args)
    start = time.perf_counter()
    with _cache_folder(args.cache) as cache:
        pipeline = _build_pipeline(args.pipeline, args.seed, n_jobs=args.n_jobs, cache=cache)
        pipeline.fit(manifest, y)
    # saved without the cache folder (a run-time setting; the temporary one is gone after this run)
    save_model(pipeline, args.out)
    print(f"fitted pipeline '{args.pipeline}' on {len(manifest)} cases in {time.perf_counter() - start:.1f} s "
          f"-> {args.out}")
    return 0


def _cmd_predict(args) -> int:
    import numpy as np
    import pandas as pd

    from radhe.evaluation import positive_score
    from radhe.io import load_manifest
    from radhe.persistence import load_model

    _check_table_suffix(args.out)
    _check_output_files([args.out], inputs={"manifest": args.manifest, "model file": args.model}, force=args.force)
    if not args.model.exists():
        raise RadheErrorForCli(f"model file '{args.model}' not found (write one with `radhe fit`)")
    model = load_model(args.model, cache=args.cache)
    manifest = load_manifest(args.manifest)
    score, kind = positive_score(model, manifest)
    table = pd.DataFrame({"case_id": manifest["case_id"].astype(str).to_numpy()})
    if "patient_id" in manifest.columns:
        table["patient_id"] = manifest["patient_id"].astype(str).to_numpy()
    table["probability" if kind == "probability" else "score"] = np.asarray(score, dtype=float)
    table["predicted_class"] = (np.asarray(score) >= args.threshold).astype(int)
    write_table(table, args.out)
    print(f"predicted {len(table)} cases with '{args.model}' -> {args.out} "
          f"({int(table['predicted_class'].sum())} at or above {args.threshold:g})")
    return 0


def _check_table_suffix(path: Path) -> None:
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise RadheErrorForCli(f"--out '{path}': name a table file ending in {', '.join(TABLE_SUFFIXES)}")


def write_table(frame, path: Path) -> Path:
    """Write ``frame`` in the format ``path``'s suffix names (.csv, .tsv, .parquet); refuse any other."""
    _check_table_suffix(path)
    suffix = path.suffix.lower()
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (the same inode, or the same resolved path when one is missing)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # an unreadable parent, a symlink loop
        return os.path.abspath(a) == os.path.abspath(b)


def _check_output_files(outputs, *, inputs: dict, force: bool) -> None:
    """Refuse, before any work, output files that are inputs, folders, or (without ``force``) existing files.

    ``inputs`` maps a description (``"manifest"``) to the input path (None: not given). An output
    that is an input is refused even with ``force``: the command would destroy what it reads.
    """
    for out in outputs:
        out = Path(out)
        for what, source in inputs.items():
            if source is not None and _same_file(out, Path(source)):
                raise RadheErrorForCli(f"output file '{out}' is the input {what} '{source}': writing it would "
                                       "replace the input; choose another --out")
        if out.is_dir():
            raise RadheErrorForCli(f"output file '{out}' is a folder; choose another --out")
        if out.exists() and not force:
            raise RadheErrorForCli(f"output file '{out}' exists; choose another --out or pass --force to "
                                   "replace it")
        _check_output_folder(out.parent)


def _check_output_folder(folder: Path) -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be created or written in.

    Nothing is created here (a command that fails later leaves no empty folder behind).
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise RadheErrorForCli(f"output folder '{folder}' is a file; choose another --out")
    if not existing.is_dir():
        raise RadheErrorForCli(f"cannot create the output folder '{folder}': '{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write in the output folder" if existing == folder else "create the output folder"
        raise RadheErrorForCli(f"cannot {what} '{folder}': no permission to write in '{existing}'")


@contextlib.contextmanager
def _writing(target: Path):
    """A context in which an OSError (a full disk, no permission) becomes "cannot write '<target>': ..."."""
    try:
        yield
    except OSError as exc:
        raise RadheErrorForCli(f"cannot write '{target}': {os_error_message(exc)}") from exc


def os_error_message(exc: OSError) -> str:
    """``"<reason>: '<file>'"`` of an OSError (its ``[Errno n]`` prefix left out)."""
    if exc.filename is None:
        return exc.strerror or str(exc) or type(exc).__name__
    files = f"'{exc.filename}'" + (f" -> '{exc.filename2}'" if exc.filename2 is not None else "")
    return f"{exc.strerror or type(exc).__name__}: {files}"


def _cmd_evaluate(args) -> int:
    from radhe.evaluation import evaluate
    from radhe.model_selection import PatientStratifiedKFold
    from radhe.tracking import settings_from_args

    # checked now, not after the cross-validation; the results of an earlier run in --out are replaced
    _check_output_folder(args.out)
    files = EVALUATE_FILES + ((REPORT_FILE,) if args.html else ())
    _check_output_files([args.out / name for name in files], inputs={"manifest": args.manifest}, force=True)
    manifest, y = _manifest_and_label(args)
    cv = PatientStratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    with _cache_folder(args.cache) as cache:
        pipeline = _build_pipeline(args.pipeline, args.seed, n_jobs=args.n_jobs, cache=cache)
        if not (hasattr(pipeline, "predict_proba") or hasattr(pipeline, "decision_function")):
            raise RadheErrorForCli(
                f"pipeline '{args.pipeline}' is not a classifier and has no expansion score to evaluate; "
                f"run `python -m {_pipeline_entry(args.pipeline).module}` for its own report"
            )
        result = evaluate(pipeline, manifest, y, cv=cv, baselines=args.html,
                          explain=args.html and not getattr(args, "no_explain", False), n_bootstrap=args.bootstrap,
                          threshold_cv=args.threshold_cv or None, name=f"{args.pipeline} pipeline",
                          mlflow=settings_from_args(args))
    _write_outputs(result, args.out, html=args.html)
    return 0


def _cmd_demo(args) -> int:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from radhe.datasets import make_ich_cohort
    from radhe.evaluation import evaluate
    from radhe.io import validate_manifest
    from radhe.model_selection import PatientStratifiedKFold

    out = args.out
    _check_output_folder(out)
    t0 = time.perf_counter()
    print(f"[1/4] generating {args.n_cases} synthetic cases in {out / 'cohort'}")
    manifest = make_ich_cohort(args.n_cases, out / "cohort", random_state=args.seed, n_jobs=args.n_jobs)
    print(f"[2/4] validating ({time.perf_counter() - t0:.0f} s)")
    print("      " + validate_manifest(manifest).summary().replace("\n", "\n      "))
    print(f"[3/4] extracting features and cross-validating the default pipeline ({time.perf_counter() - t0:.0f} s)")
    pipeline = _build_pipeline("default", args.seed, n_jobs=args.n_jobs, cache=out / "feature_cache")
    cv = PatientStratifiedKFold(n_splits=5, shuffle=True, random_state=args.seed)
    result = evaluate(pipeline, manifest, manifest["he"], cv=cv, baselines=True, explain=True,
                      name="default pipeline")
    oracle = pd.read_csv(out / "cohort" / "oracle.csv").set_index("case_id").loc[manifest["case_id"], "he_risk"]
    oracle_auc = roc_auc_score(manifest["he"], oracle)
    print(f"[4/4] writing the report ({time.perf_counter() - t0:.0f} s)")
    paths = _write_outputs(result, out / "report", html=True)
    print(f"\ncross-validated AUC of the default pipeline {result.main.auc} (DeLong 95% CI); "
          f"oracle AUC, the best possible on this cohort, {oracle_auc:.3f}")
    print(f"report: {paths['html']}")
    return 0


# ----------------------------------------------------------------------------- helpers

class RadheErrorForCli(RadheError):
    """A command-line usage problem found after parsing (e.g. a missing manifest column)."""


def _add_manifest(parser) -> None:
    parser.add_argument("--manifest", required=True, type=Path, help="manifest (.csv, .tsv or .parquet)")


def _add_pipeline(parser) -> None:
    parser.add_argument("--pipeline", default="default",
                        help=f"pipeline: {', '.join(available_pipelines())} (default: 'default')")
    parser.add_argument("--cache", type=Path, default=None,
                        help="per-case feature cache folder (default: a temporary one for this run)")
    parser.add_argument("-j", "--n-jobs", type=_n_jobs, default=1, help="parallel processes for extraction")
    parser.add_argument("--label", default=DEFAULT_LABEL, help=f"outcome column (default '{DEFAULT_LABEL}')")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default 0)")


def _add_cv(parser) -> None:
    parser.add_argument("--folds", type=int, default=5, help="patient-grouped CV folds (default 5)")


def _cache_folder(cache: Path | None):
    """The user's cache folder, or a temporary one that lives for this command (folds share it)."""
    import tempfile

    if cache is not None:
        return contextlib.nullcontext(cache)
    return tempfile.TemporaryDirectory(prefix="radhe-cache-")


def _manifest_and_label(args, manifest=None):
    """(manifest without a non-standard outcome column, 0/1 labels); refuses a missing or non-binary outcome."""
    from radhe._checks import manifest_outcome
    from radhe.io import load_manifest

    manifest = load_manifest(args.manifest) if manifest is None else manifest
    return manifest_outcome(manifest, args.label, where=f"manifest '{args.manifest}'")


#: Entry-point group through which installed packages register pipelines for ``--pipeline``.
PIPELINE_ENTRY_POINT_GROUP = "radhe.pipelines"


def _pipeline_entry_points() -> dict:
    """``{name: [entry points]}`` of the ``radhe.pipelines`` group ("default" is radhe's own, not registrable)."""
    from importlib.metadata import entry_points

    found: dict = {}
    for ep in entry_points(group=PIPELINE_ENTRY_POINT_GROUP):
        if ep.name != "default":
            found.setdefault(ep.name, [])
            if ep.value not in [e.value for e in found[ep.name]]:
                found[ep.name].append(ep)
    return found


def available_pipelines() -> list[str]:
    """Names accepted by ``--pipeline``.

    ``"default"`` (:func:`radhe.make_pipeline`; the name is reserved) and every pipeline registered
    by an installed package in the ``radhe.pipelines`` entry-point group. An entry point names a module (or object) with a
    ``build_pipeline(random_state=...)`` function; radhe's own published-method pipelines register
    themselves this way, and so can a lab's package::

        [project.entry-points."radhe.pipelines"]
        mymethod = "mylab.mymethod"
    """
    return sorted({"default", *_pipeline_entry_points()})


def _pipeline_entry(name: str):
    entries = _pipeline_entry_points().get(name)
    if not entries:
        raise RadheErrorForCli(f"unknown pipeline '{name}'; available: {', '.join(available_pipelines())}")
    if len(entries) > 1:
        raise RadheErrorForCli(f"pipeline '{name}' is registered by more than one installed package "
                               f"({', '.join(sorted(e.value for e in entries))}); uninstall one of them")
    return entries[0]


def load_pipeline_module(name: str):
    """The object registered under ``name`` in the ``radhe.pipelines`` entry-point group."""
    entry = _pipeline_entry(name)
    try:
        module = entry.load()
    except Exception as error:  # a broken third-party registration must not look like a radhe bug
        raise RadheErrorForCli(f"pipeline '{name}' is registered as '{entry.value}' but cannot be loaded: "
                               f"{type(error).__name__}: {error}") from error
    if not callable(getattr(module, "build_pipeline", None)):
        raise RadheErrorForCli(f"pipeline '{name}' ('{entry.value}') has no build_pipeline() function")
    return module


def _build_pipeline(name: str, seed: int, **radiomics_options):
    if name == "default":
        import radhe

        pipeline = radhe.make_pipeline(random_state=seed)
    else:
        pipeline = load_pipeline_module(name).build_pipeline(random_state=seed)
    settable = {f"features__radiomics__{k}": v for k, v in radiomics_options.items()}
    params = pipeline.get_params()
    pipeline.set_params(**{k: v for k, v in settable.items() if k in params})
    return pipeline


def _write_outputs(result, out: Path, *, html: bool) -> dict:
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        if not html:
            # an earlier `radhe report` into this folder: its page and figures would describe another run
            # (a page or figures of the user's own are kept)
            from radhe.report import is_report_page, remove_figures

            if is_report_page(out / REPORT_FILE):
                (out / REPORT_FILE).unlink()
                log.info("removed the earlier report %s (it described another run)", out / REPORT_FILE)
            remove_figures(out / "figures")
        paths = {"metrics": result.write_json(out / "metrics.json"),
                 "predictions": result.write_predictions(out / "predictions.csv"),
                 "checklist": result.write_checklist(out / "checklist.md")}
        if html:
            from radhe.report import write_html

            paths["html"] = write_html(result, out / "report.html")
    print(result.summary())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return paths


def _version() -> str:
    from radhe import __version__

    return f"radhe {__version__}"


if __name__ == "__main__":
    sys.exit(main())
