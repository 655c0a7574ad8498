"""Figures for an evaluation (matplotlib, no display needed).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so nothing
depends on a GUI backend or global state); :func:`save_png` writes one, :func:`to_base64_png`
encodes one for embedding in HTML.

* :func:`plot_roc` — ROC curves with the bootstrap 95 % band of the first model and AUCs (DeLong CI).
* :func:`plot_pr` — precision-recall curves with average precision.
* :func:`plot_calibration` — reliability diagram with Wilson intervals and Brier score.
* :func:`plot_confusion_matrix`.
* :func:`plot_importance` — top-15 mean |SHAP| bar chart with SD across folds (Bo 2023, Fig 4D).
* :func:`plot_family_importance` — importance per feature family.
* :func:`plot_beeswarm` — SHAP value per case per feature, coloured by feature value.
* :func:`plot_waterfall` — one case's SHAP contributions from the base value to its output.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd

from radhe._format import format_number

__all__ = [
    "plot_roc",
    "plot_pr",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_importance",
    "plot_family_importance",
    "plot_beeswarm",
    "plot_waterfall",
    "new_figure",
    "feature_value_text",
    "plot_segmentation_overlay",
    "save_png",
    "save_for_print",
    "to_base64_png",
]

_COLOURS = ["#1f4e79", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#2c3e50", "#b7950b", "#e84393"]


def new_figure(width=6.0, height=5.0):
    """An empty matplotlib figure (Agg canvas, constrained layout) of ``width`` × ``height`` inches."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path, *, dpi: int = 100) -> Path:
    """Write a figure as PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def save_for_print(fig, stem) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (300 dpi) and ``<stem>.svg`` (text kept as text, no timestamp); returns both paths."""
    from matplotlib import rc_context

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, format="png", dpi=300)
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "radhe"}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return png, svg


def to_base64_png(fig, *, dpi: int = 100) -> str:
    """The figure as a base64 PNG string (for ``<img src="data:image/png;base64,...">``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _reports(reports):
    if isinstance(reports, dict):
        return list(reports.values())
    if isinstance(reports, (list, tuple)):
        return list(reports)
    return [reports]


def plot_roc(reports, *, band: bool = True, max_curves: int = 6, title: str = "ROC curve"):
    """ROC curves of one or more :class:`~radhe.evaluation.ModelReport` (first = main model, with band)."""
    from sklearn.metrics import roc_curve

    fig = new_figure(6, 5.5)
    ax = fig.add_subplot()
    reps = _reports(reports)[:max_curves]
    for i, r in enumerate(reps):
        colour = _COLOURS[i % len(_COLOURS)]
        if i == 0 and band and r.roc is not None and r.roc["tpr_low"].notna().all():
            ax.fill_between(r.roc["fpr"], r.roc["tpr_low"], r.roc["tpr_high"], color=colour, alpha=0.18, lw=0,
                            label="95% bootstrap band")
        fpr, tpr, _ = roc_curve(r.y, r.score)
        ax.plot(fpr, tpr, color=colour, lw=2.2 if i == 0 else 1.3, label=f"{r.name}: AUC {r.auc}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity (false-positive rate)", ylabel="Sensitivity", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def plot_pr(reports, *, max_curves: int = 6, title: str = "Precision-recall curve"):
    """Precision-recall curves with average precision; the dotted line is the prevalence."""
    fig = new_figure(6, 5.5)
    ax = fig.add_subplot()
    reps = _reports(reports)[:max_curves]
    for i, r in enumerate(reps):
        ax.step(r.pr["recall"], r.pr["precision"], where="post", color=_COLOURS[i % len(_COLOURS)],
                lw=2.2 if i == 0 else 1.3, label=f"{r.name}: AP {r.average_precision:.2f}")
    if reps:
        ax.axhline(reps[0].y.mean(), ls=":", color="grey", lw=0.8, label=f"prevalence {reps[0].y.mean():.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", title=title)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return fig


def plot_calibration(reports, *, title: str = "Calibration"):
    """Reliability diagram: observed expansion rate (Wilson 95 % CI) against mean predicted risk per bin."""
    fig = new_figure(6, 5.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    drawn = 0
    for i, r in enumerate(_reports(reports)):
        if r.calibration is None or r.calibration.empty:
            continue
        c = r.calibration
        colour = _COLOURS[i % len(_COLOURS)]
        yerr = np.clip(np.vstack([c["observed"] - c["observed_low"], c["observed_high"] - c["observed"]]), 0, None)
        ax.errorbar(c["mean_predicted"], c["observed"], yerr=yerr, fmt="o-", color=colour, ms=4, lw=1.2, capsize=2,
                    label=f"{r.name}: Brier {r.brier:.3f}, slope {format_number(r.calibration_fit['slope'], 2)}")
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no probabilistic model", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Predicted probability", ylabel="Observed proportion with expansion", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


def plot_confusion_matrix(report, *, title: str | None = None):
    """Confusion matrix of the thresholded predictions, counts and row percentages."""
    cm = report.confusion.to_numpy()
    fig = new_figure(4.6, 4.0)
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
    labels = ["no expansion", "expansion"]
    for i in range(2):
        row = max(cm[i].sum(), 1)
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]}\n({100 * cm[i, j] / row:.0f}%)", ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=12)
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="Predicted", ylabel="Actual", title=title or f"Confusion matrix: {report.name}")
    return fig


def _importance_frame(source) -> pd.DataFrame:
    return source.importance() if hasattr(source, "importance") else source


def plot_importance(source, *, top: int = 15, title: str | None = None):
    """Top features by mean |SHAP| (an explanation or an importance DataFrame).

    Error bars: the 95 % bootstrap interval of the mean over cases (``ci_low``/``ci_high``), which
    never goes below zero; none when the table has no interval.
    """
    from radhe.explain import FAMILIES, display_name

    imp = _importance_frame(source).head(top).iloc[::-1]
    fig = new_figure(7.5, 0.38 * len(imp) + 1.4)
    ax = fig.add_subplot()
    fam_colour = {f: _COLOURS[i % len(_COLOURS)] for i, f in enumerate(FAMILIES)}
    colours = [fam_colour.get(f, "grey") for f in imp.get("family", ["other"] * len(imp))]
    xerr = _interval_error(imp)
    ax.barh(range(len(imp)), imp["mean_abs_shap"], xerr=xerr, color=colours, ecolor="#555", capsize=2)
    ax.set_yticks(range(len(imp)), [display_name(n) for n in imp.index], fontsize=8)
    ax.set_xlabel("mean |SHAP value|" + (" (bars: 95% bootstrap interval over cases)" if xerr is not None else ""))
    ax.set_title(title or f"Top {min(top, len(imp))} features")
    from matplotlib.patches import Patch

    present = [f for f in FAMILIES if "family" in imp and f in set(imp["family"])]
    if present:
        ax.legend(handles=[Patch(color=fam_colour[f], label=f) for f in present], fontsize=8, loc="lower right", frameon=False)
    return fig


def _interval_error(table):
    """Asymmetric error bars ``(2, n)`` from a table's ``ci_low``/``ci_high`` around ``mean_abs_shap`` (None without)."""
    if not {"ci_low", "ci_high"} <= set(table.columns):
        return None
    mean = table["mean_abs_shap"].to_numpy(dtype=float)
    return np.vstack([np.clip(mean - table["ci_low"].to_numpy(dtype=float), 0, None),
                      np.clip(table["ci_high"].to_numpy(dtype=float) - mean, 0, None)])


def plot_family_importance(source, *, title: str = "Importance by feature family"):
    """Summed mean |SHAP| per family (radiomics shape / first-order / texture / filtered, CNN, clinical)."""
    fam = source.family_importance() if hasattr(source, "family_importance") else source
    fam = fam.iloc[::-1]
    fig = new_figure(6.5, 0.45 * len(fam) + 1.4)
    ax = fig.add_subplot()
    xerr = _interval_error(fam)
    ax.barh(range(len(fam)), fam["mean_abs_shap"], xerr=xerr, color="#1f4e79", ecolor="#555", capsize=2)
    ax.set_yticks(range(len(fam)), [f"{f} ({n})" for f, n in zip(fam.index, fam["n_features"], strict=True)], fontsize=9)
    ax.set_xlabel("sum of mean |SHAP value| (n features)" + ("; bars: 95% bootstrap interval" if xerr is not None else ""))
    ax.set_title(title)
    return fig


def plot_beeswarm(explanation, *, top: int = 15, random_state: int = 0, title: str | None = None):
    """SHAP value of each case for the top features; colour = feature value (low blue → high red)."""
    from radhe.explain import display_name

    imp = _importance_frame(explanation).head(top)
    values, data = explanation.values, explanation.data
    fig = new_figure(7.5, 0.42 * len(imp) + 1.6)
    ax = fig.add_subplot()
    rng = np.random.default_rng(random_state)
    import matplotlib as mpl

    cmap = mpl.colormaps["coolwarm"]
    for row, feat in enumerate(imp.index[::-1]):
        v = values[feat].to_numpy(dtype=float)
        d = data[feat].to_numpy(dtype=float)
        ok = np.isfinite(v)
        v, d = v[ok], d[ok]
        if v.size == 0:
            continue
        lo, hi = np.nanpercentile(d, [5, 95]) if np.isfinite(d).any() else (0, 1)
        colour = cmap(np.clip((d - lo) / (hi - lo if hi > lo else 1), 0, 1))
        # jitter scaled by local density so dense regions spread more
        hist, edges = np.histogram(v, bins=30)
        dens = hist[np.clip(np.searchsorted(edges, v) - 1, 0, 29)] / max(hist.max(), 1)
        jitter = rng.uniform(-0.4, 0.4, v.size) * dens
        ax.scatter(v, row + jitter, c=colour, s=10, lw=0)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(imp)), [display_name(n) for n in imp.index[::-1]], fontsize=8)
    output = getattr(explanation, "output", "")
    ax.set_xlabel(f"SHAP value (impact on model output, {output})")
    ax.set_title(title or "SHAP values per case")
    sm = mpl.cm.ScalarMappable(cmap=cmap)
    cb = fig.colorbar(sm, ax=ax, ticks=[0, 1], aspect=40, pad=0.01)
    cb.ax.set_yticklabels(["low", "high"])
    cb.set_label("feature value", fontsize=8)
    return fig


def plot_segmentation_overlay(image, predicted, reference=None, *, window=(0.0, 80.0), title: str | None = None,
                              case_id=None):
    """The CT slice with the largest haematoma, windowed, with the predicted (and reference) mask contours.

    Parameters
    ----------
    image, predicted, reference : path-like
        The CT (HU), the predicted mask and, optionally, the reference mask (same grid).
    window : (float, float)
        HU window of the grey levels.
    """
    import SimpleITK as sitk

    from radhe.io import read_image

    ct_image = read_image(image, case_id=case_id)
    ct = sitk.GetArrayFromImage(ct_image).astype(float)
    pred = sitk.GetArrayFromImage(read_image(predicted, case_id=case_id)) > 0
    ref = None if reference is None else sitk.GetArrayFromImage(read_image(reference, case_id=case_id)) > 0
    shown = ref if ref is not None and ref.any() else pred
    z = int(np.argmax(shown.reshape(len(shown), -1).sum(axis=1)))
    spacing_x, spacing_y = ct_image.GetSpacing()[:2]
    fig = new_figure(4.2, 4.6)
    ax = fig.add_subplot()
    ax.imshow(np.clip((ct[z] - window[0]) / (window[1] - window[0]), 0, 1), cmap="gray", aspect=spacing_y / spacing_x)
    handles = []
    from matplotlib.lines import Line2D

    if ref is not None and ref[z].any():
        ax.contour(ref[z].astype(float), levels=[0.5], colors="#27ae60", linewidths=1.4)
        handles.append(Line2D([], [], color="#27ae60", label="reference"))
    if pred[z].any():
        ax.contour(pred[z].astype(float), levels=[0.5], colors="#c0392b", linewidths=1.2, linestyles="--")
        handles.append(Line2D([], [], color="#c0392b", ls="--", label="predicted"))
    ax.set_axis_off()
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, frameon=True)
    ax.set_title(title or f"slice {z}", fontsize=10)
    return fig


def feature_value_text(value) -> str:
    """A feature value as a label: integers without decimals, others to 3 significant digits; "missing" for NaN."""
    value = float(value)
    if not np.isfinite(value):
        return "missing"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def plot_waterfall(explanation, case, *, top: int = 10, title: str | None = None):
    """One case's contributions, from the base value to the model output (largest |SHAP| first).

    ``explanation`` is a :class:`~radhe.explain.ShapExplanation` (``case`` = row label or position)
    or an :class:`~radhe.explain.OOFShap` (``case`` = row label or ``case_id``; the fold's model is used).
    """
    from radhe.explain import display_name

    if hasattr(explanation, "explanation_for"):
        explanation, case = explanation.explanation_for(case)
    values = explanation.values
    if case not in values.index and isinstance(case, (int, np.integer)):
        case = values.index[case]
    v = values.loc[case].astype(float)
    raw = getattr(explanation, "raw_data", None)
    order = v.abs().sort_values(ascending=False).index
    shown, rest = order[:top], order[top:]
    if raw is not None:  # the value as the user's data gave it
        contrib = [(f"{display_name(f)} = {feature_value_text(raw.loc[case, f])}", v[f]) for f in shown]
    else:  # only the model's (scaled) input is known: say so
        contrib = [(f"{display_name(f)} = {feature_value_text(explanation.data.loc[case, f])} (model scale)", v[f])
                   for f in shown]
    if len(rest):
        contrib.append((f"{len(rest)} other features", float(v[rest].sum())))
    contrib = contrib[::-1]
    base = explanation.base_value
    fig = new_figure(7.5, 0.42 * len(contrib) + 1.8)
    ax = fig.add_subplot()
    start = base + sum(c for _, c in contrib)  # output; walk back so the top bar ends at the output
    pos = start
    for row in range(len(contrib) - 1, -1, -1):
        label, c = contrib[row]
        left = pos - c
        ax.barh(row, c, left=left, color="#c0392b" if c > 0 else "#1f4e79", height=0.7)
        ax.text(max(left, pos) + 0.005 * max(abs(start - base), 1e-9), row, f"{c:+.3f}", va="center", fontsize=8)
        pos = left
    ax.axvline(base, color="grey", ls="--", lw=0.8)
    ax.axvline(start, color="black", ls=":", lw=0.8)
    ax.set_yticks(range(len(contrib)), [lbl for lbl, _ in contrib], fontsize=8)
    ax.set_xlabel(f"model output ({explanation.output}); base {base:.3f} → {start:.3f}")
    ax.set_title(title or f"Contributions for case {case}")
    return fig
