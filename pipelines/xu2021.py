"""Xu et al. 2021: automatic haematoma segmentation and volume quantification, against ABC/2.

Xu J, Zhang R, Zhou Z, Wu C, Gong Q, Zhang H, Wu S, Wu G, Deng Y, Xia C, Ma J. Deep network for the
automatic segmentation and quantification of intracranial hemorrhage on CT. Front Neurosci
14:541817. doi: 10.3389/fnins.2020.541817.

This pipeline is a *volumetry* study, not a classifier: ``main`` cross-validates a segmentation
network and writes a volumetry report (``report.html`` + ``metrics.json`` + ``cases.csv``), not
the expansion report of the other pipelines. ``build_pipeline`` returns the segmenter
(:class:`radhe.segmentation.HematomaSegmenter`), so ``radhe fit --pipeline xu2021`` trains and
saves it; ``radhe evaluate --pipeline xu2021`` does not apply (it has no ``predict_proba``).

Mapping of the paper's methods section to this pipeline
-------------------------------------------------------
* *"Dense U-Net ... The input into the model was one CT scan, and the output was the segmented
  masks for all slices"* → :class:`~radhe.segmentation.HematomaSegmenter`, a 2-D U-Net applied
  slice by slice, trained on the reference masks of the training patients of each fold.
* *"binary cross-entropy loss ... No image augmentation was applied ... finished after 20 epochs
  when the validation loss had no improvement"* → ``augment=False``, at most 20 epochs with early
  stopping on the Dice of held-out training patients.
* *"The hemorrhage volume was calculated by accumulating all the volumes of pixels in the
  hemorrhage region"* → :func:`radhe.volumetry.mask_volume_ml` of the predicted and reference masks.
* *ABC/2* → :func:`radhe.volumetry.abc2_volume_ml` (Kothari's method with slice weighting) on
  the reference masks, i.e. ABC/2 as a reader applying it perfectly to the true haematoma.
* *"Dice coefficient against the ground truth ... scatter plots, ICC, and PCC ... Wilcoxon
  signed-rank test ... systematical volume bias"; mean, SD and absolute mean of the differences*
  → per-case Dice and IoU (:func:`radhe.segmentation.segmentation_metrics`), and for the model
  and for ABC/2 against the reference volume :func:`radhe.volumetry.compare_volumes`: Pearson r,
  ICC(2,1), mean / SD / mean absolute difference, Bland–Altman limits, Wilcoxon p; scatter and
  Bland–Altman plots.

Where this differs from the paper
---------------------------------
* A plain U-Net with dilated encoder convolutions (radhe's) instead of the Dense U-Net (DenseNet
  encoder, 4 dense blocks), BCE + soft-Dice loss and AdamW instead of BCE and SGD.
* Patient-grouped K-fold cross-validation instead of fixed training / internal / external sets;
  ICH only (the synthetic cohort has no epidural or subdural haematomas).
* ABC/2 is computed from the reference mask, not measured by readers on the images, so it shows
  the geometric error of the formula without inter-reader error.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

from radhe._log import get_logger

log = get_logger("radhe.pipelines")

NAME = "xu2021"
TITLE = "Xu et al. 2021: automatic segmentation and volume quantification against ground truth and ABC/2"
TINY = dict(epochs=1, base_channels=4, levels=3, input_size=64, n_threads=1)


def build_pipeline(**overrides):
    """The segmentation network: a :class:`~radhe.segmentation.HematomaSegmenter` with Xu's training choices.

    ``overrides`` are HematomaSegmenter parameters (e.g. ``epochs``, ``base_channels``,
    ``input_size``, ``n_threads``, ``cache_dir``, ``random_state``).
    """
    from ._common import segmenter

    settings = dict(augment=False, epochs=20, patience=5, window=(0.0, 80.0), dilation=2)
    settings.update(overrides)
    random_state = settings.pop("random_state", None)
    return segmenter(random_state, **settings)


def param_grid() -> dict:
    """Network width and learning rate of the segmenter (score: mean Dice, its ``score`` method)."""
    return {"base_channels": [8, 16], "learning_rate": [1e-3, 5e-3]}


def cross_validated_volumetry(manifest, *, folds: int = 5, seed: int = 0, overrides=None, out=None,
                              verbose: bool = False) -> dict:
    """Segment every case with a network trained without its patient, and compare volumes.

    Parameters
    ----------
    manifest : pandas.DataFrame
        With ``case_id``, ``patient_id``, ``image`` and the reference ``mask``.
    folds : int
        Patient-grouped folds.
    seed : int
        Seed of the folds and the networks.
    overrides : dict, optional
        :func:`build_pipeline` overrides.
    out : path, optional
        Folder for the predicted masks (``out/masks``); default: the segmenter's temporary folder.
    verbose : bool
        Show the per-fold progress lines (logger ``radhe.pipelines``, INFO) on stderr even when the
        program configured no logging.

    Returns
    -------
    dict
        ``cases`` (DataFrame: per case ``dice``, ``iou``, ``volume_true_ml``, ``volume_pred_ml``,
        ``volume_abc2_ml``, ``fold``), ``model`` and ``abc2`` (:func:`radhe.volumetry.compare_volumes`
        of each against the reference volume), ``dice`` (mean, SD, median of per-case Dice),
        ``seconds``.
    """
    import numpy as np
    import pandas as pd
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    from radhe.segmentation import segmentation_metrics
    from radhe.volumetry import abc2_volume_ml, compare_volumes

    start = time.perf_counter()
    overrides = dict(overrides or {})
    if out is not None and "cache_dir" not in overrides:
        overrides["cache_dir"] = str(Path(out) / "masks")
    template = build_pipeline(random_state=seed, **overrides)
    groups = manifest["patient_id"].astype(str) if "patient_id" in manifest.columns else manifest["case_id"]
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    parts = []
    from radhe._log import console_if_unconfigured

    with console_if_unconfigured(verbose):
        for k, (train, test) in enumerate(splitter.split(manifest, groups=groups)):
            seg = clone(template).fit(manifest.iloc[train])
            fold_start = time.perf_counter()
            predicted = seg.transform(manifest.iloc[test])
            predicted["fold"] = k
            parts.append(predicted)
            log.info("xu2021: fold %d/%d: trained on %d cases in %.1f s (best epoch %s), %d held-out cases "
                     "segmented in %.1f s", k + 1, folds, len(train), seg.fit_time_, seg.best_epoch_, len(test),
                     time.perf_counter() - fold_start)
    predicted = pd.concat(parts).loc[manifest.index]
    cases = segmentation_metrics(predicted, pred_column="mask_pred", true_column="mask")
    cases.index = manifest.index
    # the haematoma's label, as segmentation_metrics measures it (a label map's other blood is not ABC/2's)
    cases["volume_abc2_ml"] = [abc2_volume_ml(path, label=1) for path in manifest["mask"]]
    cases["fold"] = predicted["fold"].to_numpy()
    dice = cases["dice"].to_numpy()
    return {
        "cases": cases,
        "model": compare_volumes(cases["volume_true_ml"], cases["volume_pred_ml"]),
        "abc2": compare_volumes(cases["volume_true_ml"], cases["volume_abc2_ml"]),
        "dice": {"mean": float(np.mean(dice)), "sd": float(np.std(dice, ddof=1)) if dice.size > 1 else 0.0,
                 "median": float(np.median(dice)), "iou_mean": float(cases["iou"].mean())},
        "seconds": time.perf_counter() - start,
    }


def _plots(cases):
    """Scatter (estimate vs reference) and Bland–Altman figures for the model and ABC/2."""
    from radhe.plots import new_figure

    truth = cases["volume_true_ml"].to_numpy()
    series = {"U-Net": cases["volume_pred_ml"].to_numpy(), "ABC/2": cases["volume_abc2_ml"].to_numpy()}
    scatter = new_figure(5.2, 4.8)
    ax = scatter.subplots()
    top = float(max(truth.max(), *(v.max() for v in series.values()))) * 1.05
    ax.plot([0, top], [0, top], color="0.6", lw=1, ls="--", label="identity")
    for (label, est), colour in zip(series.items(), ("#1f4e79", "#c0504d"), strict=True):
        ax.scatter(truth, est, s=14, alpha=0.7, color=colour, label=label)
    ax.set_xlabel("Reference volume (mL)")
    ax.set_ylabel("Estimated volume (mL)")
    ax.legend(frameon=False)
    ax.set_title("Volume estimates against the reference")
    bland = new_figure(9.5, 4.2)
    axes = bland.subplots(1, 2, sharey=True)
    for ax, (label, est), colour in zip(axes, series.items(), ("#1f4e79", "#c0504d"), strict=True):
        mean, diff = (truth + est) / 2, est - truth
        bias, sd = diff.mean(), diff.std(ddof=1)
        ax.scatter(mean, diff, s=14, alpha=0.7, color=colour)
        for value, style in ((bias, "-"), (bias - 1.96 * sd, "--"), (bias + 1.96 * sd, "--")):
            ax.axhline(value, color="0.3", lw=1, ls=style)
        ax.set_title(f"{label}: bias {bias:.2f} mL, LoA ±{1.96 * sd:.2f} mL")
        ax.set_xlabel("Mean of the two volumes (mL)")
    axes[0].set_ylabel("Estimate − reference (mL)")
    return scatter, bland


def write_volumetry_report(study: dict, out, *, summary: dict | None = None) -> dict:
    """Write ``report.html``, ``metrics.json`` and ``cases.csv`` of :func:`cross_validated_volumetry`."""
    import pandas as pd

    from radhe import plots
    from radhe.report import REPORT_CSS

    from ._common import _jsonable, html_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = study["cases"]
    rows = {}
    for key, label in (("model", "U-Net (cross-validated)"), ("abc2", "ABC/2 (reference mask)")):
        s = study[key]
        rows[label] = {"n": s["n"], "Pearson r": s["pearson_r"], "ICC(2,1)": s["icc"],
                       "mean diff (mL)": s["mean_difference"], "SD diff (mL)": s["sd_difference"],
                       "mean |diff| (mL)": s["mean_absolute_difference"],
                       "LoA low (mL)": s["loa_lower"], "LoA high (mL)": s["loa_upper"], "Wilcoxon p": s["wilcoxon_p"]}
    agreement = pd.DataFrame.from_dict(rows, orient="index")
    agreement["n"] = agreement["n"].astype(int)
    agreement["Wilcoxon p"] = ["<0.001" if p < 0.001 else f"{p:.3f}" for p in agreement["Wilcoxon p"]]
    d = study["dice"]
    scatter, bland = _plots(cases)
    figures = "".join(
        f'<figure class="{cls}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{plots.to_base64_png(fig)}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
        for fig, alt, cls in ((scatter, "Estimated against reference volume", ""),
                              (bland, "Bland–Altman plots: difference against mean, bias and 95% limits of agreement",
                               "wide"))
    )
    meta = summary or {}
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(TITLE)}</title>",
        f"<style>{REPORT_CSS}</style></head><body>", f"<h1>{html.escape(TITLE)}</h1>",
        f'<p class="headline">Dice {d["mean"]:.3f} ± {d["sd"]:.3f} (median {d["median"]:.3f}) over {len(cases)} cases; '
        f'volume ICC {study["model"]["icc"]:.3f} for the U-Net vs {study["abc2"]["icc"]:.3f} for ABC/2.</p>',
        '<p class="note">Each case is segmented by a network trained on the other patients (patient-grouped '
        f'{meta.get("folds", "K")}-fold cross-validation). Reference: the planimetric volume of the manifest\'s mask. '
        "ABC/2 (Kothari, slice-weighted) is computed on the reference mask.</p>",
        "<h2>Volume agreement with the reference</h2>", html_table(agreement, index_label="Method"),
        '<p class="note">ICC: ' + html.escape(study["model"]["icc_form"]) + ". Differences are estimate − reference; "
        "Wilcoxon: two-sided signed-rank test of the paired differences (systematic bias).</p>",
        f'<div class="figs">{figures}</div>',
        "<h2>Segmentation</h2>",
        html_table(pd.DataFrame({"mean": [d["mean"], d["iou_mean"]], "SD": [d["sd"], cases["iou"].std(ddof=1)],
                                 "median": [d["median"], cases["iou"].median()]}, index=["Dice", "IoU"]),
                   index_label="Per case"),
        "<h2>Run</h2>",
        html_table(pd.DataFrame({"Value": [str(v) for v in meta.values()]}, index=list(meta)), index_label="Item"),
        "</body></html>",
    ])
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    metrics = {"dice": d, "model_vs_reference": study["model"], "abc2_vs_reference": study["abc2"],
               "n_cases": int(len(cases)), "pipeline": meta}
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(_jsonable(metrics), indent=2, allow_nan=False))
    cases_path = out / "cases.csv"
    cases.to_csv(cases_path, index=False)
    return {"html": html_path, "metrics": metrics_path, "cases": cases_path}


def run(manifest, *, out, folds: int = 5, seed: int = 0, overrides=None, verbose: bool = True, mlflow=None) -> dict:
    """:func:`cross_validated_volumetry` + :func:`write_volumetry_report`; returns the study and paths.

    ``mlflow``: track the study with MLflow (as :func:`radhe.evaluation.evaluate`'s ``mlflow=``): the
    segmenter's parameters, Dice / IoU and the volume agreement of the U-Net and of ABC/2
    (``model.*``, ``abc2.*``), the per-fold mean Dice as steps (``fold_dice``), and the report's files.
    """
    from radhe import tracking

    tracker = tracking.prepare(mlflow)  # before training: a missing mlflow or an unusable store stops here
    study = cross_validated_volumetry(manifest, folds=folds, seed=seed, overrides=overrides, out=out, verbose=verbose)
    summary = {"name": NAME, "folds": folds, "seed": seed, "seconds": study["seconds"],
               "overrides": {k: repr(v) for k, v in dict(overrides or {}).items()}}
    paths = write_volumetry_report(study, out, summary=summary)
    log.info("xu2021: report: wrote %s", paths["html"])
    if tracker is not None:
        _track(tracker, study, paths, seed=seed, folds=folds, overrides=overrides)
    if verbose:
        d, m, a = study["dice"], study["model"], study["abc2"]
        print(f"Dice {d['mean']:.3f} ± {d['sd']:.3f}; ICC U-Net {m['icc']:.3f} (r {m['pearson_r']:.3f}, bias "
              f"{m['mean_difference']:+.2f} mL, Wilcoxon p {m['wilcoxon_p']:.3g}); ICC ABC/2 {a['icc']:.3f} "
              f"(r {a['pearson_r']:.3f}, bias {a['mean_difference']:+.2f} mL)")
        print(f"{NAME}: {study['seconds']:.1f} s; report: {paths['html']}; metrics: {paths['metrics']}")
    return {"study": study, "paths": paths}


def _track(tracker, study, paths, *, seed, folds, overrides):
    """Log a volumetry study to the MLflow run ``tracker`` prepared."""
    from radhe.tracking import flatten_params, log_run

    cases = study["cases"]
    metrics = {f"dice_{k}": v for k, v in study["dice"].items() if k != "iou_mean"}
    metrics["iou_mean"] = study["dice"]["iou_mean"]
    for key in ("model", "abc2"):
        metrics.update({f"{key}.{name}": value for name, value in study[key].items() if not isinstance(value, str)})
    metrics["seconds"] = study["seconds"]
    fold_dice = cases.groupby("fold")["dice"].mean().sort_index().tolist()
    params = {"pipeline": "HematomaSegmenter", "evaluation.folds": folds, "evaluation.random_state": seed,
              "data.n_cases": len(cases),
              **flatten_params(build_pipeline(random_state=seed, **dict(overrides or {})).get_params(), prefix="pipeline.")}
    log_run(tracker, run_name=NAME, params=params, metrics=metrics, steps={"fold_dice": fold_dice},
            tags={"radhe.pipeline": NAME}, files=list(paths.values()))


def main(argv=None) -> int:
    from ._common import add_cohort_arguments, add_common_arguments, cohort_from_args, run_command

    parser = argparse.ArgumentParser(prog=f"python -m radhe_pipelines.{NAME}", description=TITLE)
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest with reference masks; default: a synthetic cohort generated in OUT/cohort")
    parser.add_argument("--out", type=Path, default=Path(f"{NAME}_out"), help=f"output folder (default {NAME}_out)")
    parser.add_argument("--folds", type=int, default=5, help="patient-grouped CV folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    add_cohort_arguments(parser)
    parser.add_argument("--tiny", action="store_true", help="tiny network, one epoch: a smoke test")
    add_common_arguments(parser)
    args = parser.parse_args(argv)

    def work(mlflow):
        manifest, _ = cohort_from_args(args)
        run(manifest, out=args.out, folds=args.folds, seed=args.seed, overrides=TINY if args.tiny else None,
            mlflow=mlflow)

    return run_command(parser.prog, args, work)


if __name__ == "__main__":
    sys.exit(main())
