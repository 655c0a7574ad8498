"""A self-contained HTML report of an :class:`~radhe.evaluation.EvaluationResult`.

:func:`write_html` writes one HTML file — figures embedded as base64 PNG, CSS inline, no script
and no external asset, so it can be e-mailed or archived as is — and ``metrics.json`` beside it.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from radhe import plots
from radhe._format import NOT_AVAILABLE, format_bound, format_estimate, format_number
from radhe._log import get_logger
from radhe.explain import IMPORTANCE_BOOTSTRAP

log = get_logger(__name__)

__all__ = ["write_html", "render_html", "REPORT_CSS"]

#: The report's style sheet (also used by the pipelines' own HTML pages).
REPORT_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 24px 32px 64px; color: #1b1b1b; background: #ffffff; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 3px solid #1f4e79; padding-bottom: 6px; }
h2 { font-size: 1.3em; color: #1f4e79; margin-top: 2em; border-bottom: 1px solid #ccd; padding-bottom: 3px; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccd; padding: 4px 9px; text-align: right; }
th { background: #eef2f7; }
td:first-child, th:first-child { text-align: left; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; }
.figs figure { margin: 0; }
figure img { max-width: 100%; width: 520px; border: 1px solid #e3e3e3; }
.figs figure.wide img { width: 680px; }
figcaption { font-size: 0.85em; color: #555; max-width: 560px; }
.headline { font-size: 1.15em; background: #eef2f7; padding: 10px 14px; border-left: 4px solid #1f4e79; }
.note { font-size: 0.85em; color: #555; }
.warning { background: #fdecea; border-left: 4px solid #c0392b; padding: 10px 14px; font-weight: 600; }
"""

_METRIC_LABELS = {
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV (precision)",
    "npv": "NPV",
    "f1": "F1",
    "accuracy": "Accuracy",
    "youden": "Youden index",
    "lr_pos": "LR+",
    "lr_neg": "LR−",
}


def _fmt(v, digits: int = 3) -> str:
    return html.escape(format_number(v, digits))


def _table(frame: pd.DataFrame, *, index_label: str | None = None) -> str:
    cols = list(frame.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [index_label or (frame.index.name or "")] + cols)
    rows = []
    for idx, row in frame.iterrows():
        cells = "".join(f"<td>{v if isinstance(v, str) and v.startswith('<') else html.escape(str(v))}</td>" for v in row)
        rows.append(f"<tr><td>{html.escape(str(idx))}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(fig, caption: str, alt: str, figure_dir: Path | None = None) -> str:
    """The figure inline (base64 PNG); with ``figure_dir``, also saved there as a 300 dpi PNG and an SVG
    (listed in ``figure_dir/.radhe-figures``)."""
    data = plots.to_base64_png(fig)
    links = ""
    if figure_dir is not None:
        saved = plots.save_for_print(fig, figure_dir / _slug(alt))
        with open(figure_dir / FIGURE_LISTING, "a", encoding="utf-8") as listing:
            listing.write("".join(f"{p.name}\n" for p in saved))
        links = " " + " · ".join(
            f'<a href="{html.escape(figure_dir.name)}/{html.escape(p.name)}">{label}</a>'
            for label, p in zip(("PNG 300 dpi", "SVG"), saved, strict=True))
    _close(fig)
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}{links}</figcaption></figure>"
    )


#: The file in a figures folder that lists the figures a report wrote there (what :func:`remove_figures` removes).
FIGURE_LISTING = ".radhe-figures"
#: The ``generator`` of the pages radhe writes (how an earlier report is told from a page of the user's).
GENERATOR = "radhe report"


def remove_figures(figure_dir) -> list[Path]:
    """Remove the figures an earlier report wrote in ``figure_dir`` (those its listing names); return them.

    Only the files listed in ``figure_dir/.radhe-figures`` are removed, so a user's own files in the folder
    stay; the folder goes only when nothing else is left in it.
    """
    figure_dir = Path(figure_dir)
    listing = figure_dir / FIGURE_LISTING
    if not listing.is_file():
        return []
    removed = []
    for name in listing.read_text(encoding="utf-8").splitlines():
        path = figure_dir / name
        if name and Path(name).name == name and path.is_file():
            path.unlink()
            removed.append(path)
    listing.unlink()
    if not any(figure_dir.iterdir()):
        figure_dir.rmdir()
    if removed:
        log.info("report: removed %d figures of an earlier report from %s", len(removed), figure_dir)
    return removed


def is_report_page(path) -> bool:
    """Whether the file at ``path`` is a page radhe's report wrote (its ``generator`` meta tag)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(2000)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}' in head


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "figure"


def _close(fig) -> None:
    fig.clear()


def _ci_text(estimate, low, high) -> str:
    """``"0.281 – 0.437"``; an unbounded side (an LR+ interval reaching no false positives) as ∞;
    n/a for an undefined estimate or bound."""
    lo, hi = format_bound(low), format_bound(high)
    if format_bound(estimate) is None or lo is None or hi is None:
        return NOT_AVAILABLE
    return html.escape(f"{lo} – {hi}")


def _metrics_table(report) -> str:
    m = report.metrics
    frame = pd.DataFrame(
        {
            "Estimate": [html.escape(format_estimate(m.loc[k, "estimate"])) for k in m.index],
            "95% CI": [_ci_text(m.loc[k, "estimate"], m.loc[k, "ci_low"], m.loc[k, "ci_high"]) for k in m.index],
        },
        index=[_METRIC_LABELS.get(k, k) for k in m.index],
    )
    return _table(frame, index_label="Metric")


def render_html(result, *, title: str | None = None, waterfall_cases=None, top: int = 15,
                figure_dir=None, checklist_link: str | None = None) -> str:
    """The report as an HTML string (see :func:`write_html`); ``figure_dir``: also save the figures there.

    The PNG and SVG files already in ``figure_dir`` (an earlier report's figures, some of which this
    report may not draw) are removed first, so that the folder holds this report's figures only:
    those listed in its ``.radhe-figures`` file (:func:`remove_figures`); other files stay.
    """
    figure_dir = None if figure_dir is None else Path(figure_dir)
    if figure_dir is not None:
        remove_figures(figure_dir)
    clock = {"since": time.perf_counter(), "n": 0, "began": time.perf_counter()}

    def figure(fig, caption, alt):
        # a figure is drawn just before this call: the time since the previous one is its drawing and saving
        out = _figure(fig, caption, alt, figure_dir)
        clock["n"] += 1
        now = time.perf_counter()
        log.info("report: figure %d '%s' in %.1f s", clock["n"], alt, now - clock["since"])
        clock["since"] = now
        return out

    main = result.main
    meta = result.metadata or {}
    title = title or f"Haematoma expansion model report: {main.name}"
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="headline">Cross-validated ROC AUC <b>{_fmt(main.auc.auc)}</b> '
        f"(95% CI {_fmt(main.auc.ci_low)}–{_fmt(main.auc.ci_high)}, DeLong); "
        f"sensitivity {_fmt(main.metrics.loc['sensitivity', 'estimate'], 2)}, "
        f"specificity {_fmt(main.metrics.loc['specificity', 'estimate'], 2)}; "
        f"{main.n} cases, {main.n_positive} with expansion.</p>",
    ]
    if main.auc.ci_low == main.auc.ci_high:
        # DeLong's variance is 0 when every case with expansion outranks every case without (or the
        # reverse): an interval of zero width, not certainty
        parts.append('<p class="warning">Warning: the out-of-fold scores separate the classes completely, so '
                     "DeLong's interval has zero width; it understates the uncertainty of the AUC (on "
                     f"{main.n_positive} cases with expansion and {main.n - main.n_positive} without).</p>")
    segmentation = getattr(result, "segmentation", None)
    if segmentation is not None and segmentation.warning:
        parts.append(f'<p class="warning">Warning: {html.escape(segmentation.warning)}</p>')

    # ---- cohort and method
    parts.append("<h2>Cohort and validation</h2>")
    rows = {
        "Cases": main.n,
        "With expansion": f"{main.n_positive} ({100 * main.n_positive / max(main.n, 1):.1f}%)",
        "Patients (CV groups)": meta.get("n_patients", NOT_AVAILABLE),
        "Cross-validation": meta.get("cv", NOT_AVAILABLE),
        "Decision threshold": main.threshold_method,
        "Fold thresholds": ", ".join(_fmt(t, 3) for t in main.thresholds) or NOT_AVAILABLE,
        "Pipeline": meta.get("pipeline", NOT_AVAILABLE),
        "Features computed (fold 1)": meta.get("features") or NOT_AVAILABLE,
        "Bootstrap replicates (ROC band, F1, Youden)": meta.get("n_bootstrap", NOT_AVAILABLE),
        "radhe version": meta.get("radhe_version", NOT_AVAILABLE),
        "Created": meta.get("created", NOT_AVAILABLE),
    }
    if meta.get("mlflow"):
        rows["MLflow run (experiment)"] = f"{meta['mlflow'].get('run_id')} ({meta['mlflow'].get('experiment_id')})"
    parts.append(_table(pd.DataFrame({"Value": [str(v) for v in rows.values()]}, index=list(rows)), index_label="Item"))
    if checklist_link:
        parts.append(f'<p>Reporting checklist of this run (TRIPOD+AI items software can fill): '
                     f'<a href="{html.escape(checklist_link)}">{html.escape(checklist_link)}</a>; every case\'s '
                     'out-of-fold prediction: <a href="predictions.csv">predictions.csv</a>.</p>')
    parts.append(
        '<p class="note">All predictions are out-of-fold: each case is scored by a model fitted without it '
        "(and without other scans of the same patient). Feature selection, scaling and resampling happen "
        "inside each training fold; each fold's decision threshold is chosen on its training cases only.</p>"
    )

    if segmentation is not None:
        parts.extend(_segmentation_section(segmentation, result, figure))

    # ---- discrimination
    all_reports = [main, *result.baselines.values()]
    parts.append("<h2>Discrimination</h2>")
    parts.append('<div class="figs">')
    parts.append(figure(plots.plot_roc(all_reports), "ROC curves (out-of-fold); shaded: 95% bootstrap band of the main model.", "ROC curve"))
    parts.append(figure(plots.plot_pr(all_reports), "Precision-recall curves with average precision (AP).", "Precision-recall curve"))
    parts.append("</div>")

    # ---- threshold metrics
    parts.append("<h2>Threshold metrics</h2>")
    parts.append('<div class="figs"><div>')
    parts.append(_metrics_table(main))
    parts.append('<p class="note">95% CIs with the thresholds fixed: exact (Clopper-Pearson) for sensitivity, '
                 'specificity, PPV, NPV and accuracy; log method (Simel 1991) for the likelihood ratios; percentile '
                 'bootstrap of the cases for F1, within each class for the Youden index (exact intervals of both '
                 'rates where one is 0 or 1).</p>')
    conformal = result.conformal_summary() if hasattr(result, "conformal_summary") else None
    if conformal is not None:
        confidence = float(conformal["target"].iloc[0])
        parts.append(f"<h3>Per-patient uncertainty: conformal prediction sets at {confidence:.0%}</h3>")
        shown = pd.DataFrame({
            "Cases": conformal["n"].astype(int),
            "Coverage (target)": [f"{_fmt(c, 2)} ({_fmt(t, 2)})" for c, t in zip(conformal["coverage"],
                                                                             conformal["target"], strict=True)],
            "Mean set size": [_fmt(v, 2) for v in conformal["mean_set_size"]],
            "Decisive ({0} or {1})": [f"{100 * v:.0f}%" for v in conformal["singletons"]],
            "Empty": [f"{100 * v:.0f}%" for v in conformal["empty"]],
        }, index=conformal.index)
        parts.append(_table(shown, index_label="Outcome"))
        parts.append('<p class="note">Each case\'s set holds the outcomes that cannot be ruled out at this '
                     "confidence ({0, 1}: the model cannot tell). Label-conditional conformal prediction (crepes), "
                     "calibrated in each training fold on its inner cross-validation's out-of-fold scores; "
                     "coverage is measured out of fold. Sets per case: predictions.csv.</p>")
    parts.append("</div>")
    parts.append(figure(plots.plot_confusion_matrix(main), "Confusion matrix at the per-fold thresholds.", "Confusion matrix"))
    parts.append("</div>")

    # ---- calibration
    parts.append("<h2>Calibration</h2>")
    if main.calibration is not None:
        parts.append(
            f"<p>Brier score {_fmt(main.brier)}; calibration intercept {_fmt(main.calibration_fit['intercept'], 2)} "
            f"(ideal 0), slope {_fmt(main.calibration_fit['slope'], 2)} (ideal 1).</p>"
        )
    else:
        parts.append('<p class="note">The main model outputs decision values, not probabilities: no calibration.</p>')
    if main.calibration is not None:
        parts.append(figure(plots.plot_calibration(main), "Observed vs predicted risk by decile of predicted risk (Wilson 95% CI); baselines' calibration is in metrics.json.", "Calibration plot"))

    # ---- baselines
    if result.comparison is not None:
        parts.append("<h2>Comparison with baselines</h2>")
        parts.append(
            _table(result.comparison.attrs.get("formatted", result.comparison), index_label="Model")
        )
        parts.append(
            f'<p class="note">Baselines run on the same folds. DeLong p: paired two-sided DeLong test of each '
            f"model's AUC against {html.escape(str(result.comparison.attrs.get('reference', main.name)))}. "
            "BAT score: blend sign 1 + hypodensity 2 + onset-to-CT &lt; 2.5 h 2 (Morotti 2018). "
            "Sensitivity, specificity and likelihood ratios at thresholds chosen in the training folds; the "
            "single NCCT markers (present = expansion) and the BAT score (≥ 3) are fixed rules, applied as they are.</p>"
        )

    # ---- explanation
    ex = result.explanation
    if ex is not None:
        parts.append("<h2>Feature importance</h2>")
        imp = ex.importance()
        parts.append('<div class="figs">')
        parts.append(figure(plots.plot_importance(ex, top=top), f"Top {top} features by mean |SHAP| over out-of-fold cases; bars: 95% bootstrap interval of the mean over cases ({IMPORTANCE_BOOTSTRAP} replicates); colour: family.", "Top features"))
        parts.append(figure(plots.plot_family_importance(ex), "Importance summed per feature family.", "Family importance"))
        stacked = ex.meta.get("family_contributions")
        if stacked is not None:
            parts.append("</div><h3>Feature families of the stacked model</h3>")
            parts.append(
                "<p>Out-of-fold terms of the log-odds: each family's meta weight × its sub-model's score "
                "(the terms and the intercept sum to each case's log-odds). A family with weight 0 in a fold "
                "was dropped there by the non-negative meta-model.</p>"
            )
            shown = pd.DataFrame({
                "Mean |weight × score| (log-odds)": [_fmt(v) for v in stacked["mean_abs_contribution"]],
                "SD": [_fmt(v) for v in stacked["sd_contribution"]],
                "Meta weight, mean (SD over folds)": [
                    f"{_fmt(m)} ({_fmt(sd)})" for m, sd in zip(stacked["weight_mean"], stacked["weight_sd"], strict=True)],
                "Folds using it": stacked["n_folds_used"].astype(str),
            }, index=stacked.index)
            parts.append(_table(shown, index_label="Family"))
            parts.append('<div class="figs">')
        parts.append(figure(plots.plot_beeswarm(ex, top=top), "SHAP value of every case (each by its own fold's model) for the top features.", "SHAP beeswarm"))
        score = pd.Series(main.score, index=ex.values.index)

        def score_of(case):
            return score.get(case, float("nan"))

        cases = waterfall_cases
        if cases is None:
            cases = [score.idxmax(), score.idxmin()]
        else:  # accept case ids as well as row labels
            cid = ex.meta.get("case_id")
            cases = [c if c in score.index or cid is None or c not in set(cid) else cid.index[cid == c][0] for c in cases]
        for case in cases:
            label = case
            if ex.meta.get("case_id") is not None and case in ex.meta["case_id"].index:
                label = ex.meta["case_id"].loc[case]
            parts.append(figure(plots.plot_waterfall(ex, case, title=f"Contributions for case {label}"),
                                 f"SHAP contributions for case {label} (predicted risk {_fmt(score_of(case), 2)}), "
                                 "explained by the model of the fold that held it out.", f"Waterfall {label}"))
        parts.append("</div>")
        table = imp.head(top).copy()
        table = pd.DataFrame(
            {
                "Family": table["family"],
                "Mean |SHAP|": [_fmt(v) for v in table["mean_abs_shap"]],
                "95% interval": [f"{_fmt(lo)}–{_fmt(hi)}" if np.isfinite(lo) and np.isfinite(hi) else NOT_AVAILABLE
                                 for lo, hi in zip(table.get("ci_low", pd.Series(np.nan, index=table.index)),
                                                   table.get("ci_high", pd.Series(np.nan, index=table.index)),
                                                   strict=True)],
                "SD across folds": [_fmt(v) for v in table.get("fold_sd", pd.Series(np.nan, index=table.index))],
                "Folds selecting": table.get("n_folds", pd.Series(NOT_AVAILABLE, index=table.index)).astype(str),
            },
            index=table.index,
        )
        parts.append(f"<h3>Top {top} features</h3>")
        parts.append(_table(table, index_label="Feature"))
        parts.append(f'<p class="note">SHAP values on the {html.escape(ex.output)} scale; explainer: '
                     f"{html.escape(', '.join(sorted({f.explainer for f in ex.folds})))}.</p>")
    parts.append("</body></html>")
    log.info("report: %d figures%s rendered in %.1f s", clock["n"],
             f" (also saved for print in {figure_dir})" if figure_dir is not None else "",
             time.perf_counter() - clock["began"])
    return "\n".join(parts)


def _segmentation_section(quality, result, figure) -> list[str]:
    """The "Segmentation quality" section: failures, Dice / IoU per fold, volume agreement, overlays."""
    cases = quality.cases
    parts = ["<h2>Segmentation quality</h2>"]
    rows = {
        "Held-out cases segmented": len(cases),
        "Fell back to the most probable region": f"{quality.n_fallback} ({quality.n_fallback / max(len(cases), 1):.0%})",
        "Empty predictions": quality.n_empty,
        "Predicted volume, median (IQR), mL": (
            f"{_fmt(cases['volume_pred_ml'].median(), 1)} ({_fmt(cases['volume_pred_ml'].quantile(0.25), 1)}–"
            f"{_fmt(cases['volume_pred_ml'].quantile(0.75), 1)})"),
    }
    if "dice" in cases:
        rows["Dice, mean / median (min)"] = (f"{_fmt(cases['dice'].mean())} / {_fmt(cases['dice'].median())} "
                                              f"({_fmt(cases['dice'].min())})")
        rows["IoU, mean / median"] = f"{_fmt(cases['iou'].mean())} / {_fmt(cases['iou'].median())}"
    agreement = quality.volume_agreement
    if agreement:
        rows[f"Volume ICC ({agreement.get('icc_form', 'ICC')})"] = _fmt(agreement["icc"])
        rows["Bland–Altman bias (95% limits), mL"] = (
            f"{_fmt(agreement['mean_difference'], 2)} ({_fmt(agreement['loa_lower'], 2)} to "
            f"{_fmt(agreement['loa_upper'], 2)})")
    parts.append(_table(pd.DataFrame({"Value": [str(v) for v in rows.values()]}, index=list(rows)), index_label="Item"))
    per_fold = quality.per_fold.copy()
    per_fold.index = [f"fold {k + 1}" for k in per_fold.index]
    shown = pd.DataFrame({"Cases": per_fold["n_cases"], "Fell back": per_fold["n_fallback"],
                          "Empty": per_fold["n_empty"]}, index=per_fold.index)
    if "dice_mean" in per_fold:
        shown["Dice mean"] = [_fmt(v) for v in per_fold["dice_mean"]]
        shown["Dice median"] = [_fmt(v) for v in per_fold["dice_median"]]
        shown["IoU mean"] = [_fmt(v) for v in per_fold["iou_mean"]]
    parts.append(_table(shown, index_label="Fold"))
    if quality.reference_column is None:
        parts.append('<p class="note">The manifest has no reference masks: Dice, IoU and volume agreement are '
                     "not computed.</p>")
    else:
        parts.append(f'<p class="note">Out of fold: every mask comes from the segmenter of the fold that held the '
                     f"case out; reference masks: manifest column '{html.escape(quality.reference_column)}'.</p>")
    extremes = quality.extremes()
    images = _case_images(result)
    if extremes and images:
        parts.append('<div class="figs">')
        by_id = cases.set_index("case_id")
        for label, case_id in extremes.items():
            row = by_id.loc[case_id]
            fig = plots.plot_segmentation_overlay(images[case_id], row["path"], row["reference"], case_id=case_id,
                                                  title=f"{label}: case {case_id}, Dice {_fmt(row['dice'], 2)}")
            parts.append(figure(fig, f"{label.capitalize()} segmentation by Dice (case {case_id}): reference "
                                     "(solid green) and predicted (dashed red) contours on the slice with the most "
                                     "haematoma, CT window 0–80 HU.", f"Segmentation {label}"))
        parts.append("</div>")
    return parts


def _case_images(result) -> dict:
    return dict(result.metadata.get("case_images", {}))


def write_html(result, path, *, title: str | None = None, write_json: bool = True, waterfall_cases=None, top: int = 15,
               figures: bool = True, mlflow: bool = True) -> Path:
    """Write the report of an :class:`~radhe.evaluation.EvaluationResult`.

    Parameters
    ----------
    result : EvaluationResult
        From :func:`radhe.evaluation.evaluate`.
    path : str or path-like
        An ``.html`` file, or a folder (the file is then ``report.html`` inside it).
    write_json : bool
        Also write ``metrics.json`` (``result.to_dict()``), ``predictions.csv`` (every case's
        out-of-fold prediction, :meth:`~radhe.evaluation.EvaluationResult.predictions_table`) and
        ``checklist.md`` (the TRIPOD+AI reporting checklist of the run, linked from the report) beside
        the HTML file.
    waterfall_cases : list, optional
        Row labels (or case ids) of the cases given a waterfall plot; default the highest- and
        lowest-risk cases.
    top : int
        Features shown in the importance plots (15 as in Bo 2023).
    figures : bool
        Also write every figure for print beside the HTML file, in ``figures/`` (300 dpi PNG and an SVG
        whose text stays text), linked from the captions. The HTML stays self-contained. The figures
        an earlier report wrote there (listed in ``figures/.radhe-figures``) are replaced; other files
        in the folder are kept.
    mlflow : bool
        When ``result`` was tracked (``evaluate(..., mlflow=...)``), upload every file written here
        (the HTML, ``metrics.json``, ``predictions.csv``, ``checklist.md``, ``figures/``) to its MLflow
        run (:func:`radhe.tracking.log_report_files`); False: do not. Without a tracked run: nothing.

    Returns
    -------
    pathlib.Path
        The HTML file.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure_dir = path.parent / "figures" if figures else None
    files = write_json and result.main.predictions is not None
    page = render_html(result, title=title, waterfall_cases=waterfall_cases, top=top, figure_dir=figure_dir,
                       checklist_link="checklist.md" if files else None)
    path.write_text(page, encoding="utf-8")
    if write_json:
        result.write_json(path.parent / "metrics.json")
    written = [path]
    if write_json:
        written.append(path.parent / "metrics.json")
    if files:
        written += [result.write_predictions(path.parent / "predictions.csv"),
                    result.write_checklist(path.parent / "checklist.md")]
    log.info("report: wrote %s", path)
    if mlflow and getattr(result, "tracking", None) is not None:
        from radhe.tracking import log_report_files

        log_report_files(result, written, figures=figure_dir)
    return path
