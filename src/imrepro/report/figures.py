"""The paper's Figures 1, 2, 3, 4, 5, 6, 10 and 11 from our runs (matplotlib, no pyplot state).

One function per figure, each returning a :class:`matplotlib.figure.Figure`; :func:`save` writes it
as PNG and PDF. A figure whose runs are not in the inputs is still drawn, with a "not run in this
configuration: needs ..." message where the data would be. Inputs and run matching:
:mod:`imrepro.report.report_inputs`. IM in the figures is the arm "IM" (labels ``im_authors``: the authors' code,
behind the published numbers); our Eq.-4 IM ("IM (Eq. 4)") is drawn beside it where it ran. A plotted
NLP mean whose eval_long ``note`` starts with "partial" (averaged over only the scored tasks) makes its
panel title say so (Fig. 1, 4).

Run selection: ``model`` (default: the model with the most trained runs); Fig. 1, 2, 3, 6 use the main
epoch count (default: the most common one), Fig. 4/10/11 every epoch count of a dataset. Fig. 1 shows
the Table 1 datasets (see :mod:`imrepro.report.tables`); Fig. 2 left every dataset with IT and IM runs except
the size-study subsets (runs.csv's ``subset_family`` "size"; in a runs.csv without it, a dataset key
matching ``SIZE_PATTERN``, ``<source>_n<size>``), which make Fig. 2
right; Fig. 5 the Table 1 datasets of the runs whose paper model is LLaMA-2-13B or OPT-6.7B (whatever
``model`` says); Fig. 6 the datasets compared as Tulu V2 (10 %, 20 %, 50 %, 100 %).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from imrepro.catalogue import FIGURES
from imrepro.core.atomic import atomic_path
from imrepro.eval.aggregate import MEAN_NAME
from imrepro.report.forest_figure import forest  # noqa: F401 (a builder: BUILDERS)
from imrepro.report.report_inputs import (
    IM,
    IM_EQ4,
    IT,
    PAPER_MAIN_MODEL,
    is_partial,
    main_epochs,
    name_key,
    present,
    select_model,
)
from imrepro.report.sweep_figures import fig_sweep, fig_weight_grid  # noqa: F401 (builders: BUILDERS)
from imrepro.report.tables import TABLES, paper_row_keys, table_runs

METHODS = (IT, IM, IM_EQ4)
COLOURS = {IT: "#4C72B0", IM: "#DD8452", IM_EQ4: "#55A868"}
MARKERS = {IT: "o", IM: "s", IM_EQ4: "^"}  # distinct shapes: equal values stay visible where lines meet
PAPER_STYLE = {"color": "black", "marker": "D", "linestyle": "none", "markersize": 5}
SIZE_PATTERN = r"_n\d+$"
TULU_FRACTIONS = {"tuluv210pct": 10, "tuluv220pct": 20, "tuluv250pct": 50, "tuluv2": 100}
NOT_RUN = "not run in this configuration: needs "
NLP_AND_ALPACA_EVAL_1 = ((MEAN_NAME, "mean_of_6_categories", "Mean of 18 NLP tasks (%)"),
                         ("AlpacaEval 1.0", "win_rate", "AlpacaEval 1.0 win rate (%)"))  # (benchmark, metric, axis)
FIG5_MODELS = ("LLaMA-2-13B-base", "OPT-6.7B")  # paper model names, as in config.yaml's paper_name
PARTIAL_NOTE = "‡ partial: some means average only the tasks that were scored"


@dataclass
class Inputs:
    eval_long: pd.DataFrame
    runs: pd.DataFrame
    paper: pd.DataFrame
    losses: list[dict] = field(default_factory=list)  # parsed output_loss.json files
    label: str | None = None
    model: str | None = None
    epochs: float | None = None
    datasets: Sequence[str] = ()  # keep only these datasets (keys or paper names); empty: all
    size_pattern: str = SIZE_PATTERN
    comparisons: pd.DataFrame | None = None  # comparisons.csv (the forest plot, the sweep figures' intervals)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def method_values(inputs: Inputs, benchmark: str, metric: str, *, all_epochs: bool = False) -> pd.DataFrame:
    """Trained IT/IM runs of the chosen model with one benchmark value each (NaN if missing)."""
    runs = inputs.runs
    model = select_model(runs, inputs.model)
    chosen = runs[~runs["is_base"] & (runs["model"] == model) & runs["arm"].isin(METHODS)]
    if not all_epochs:
        epochs = main_epochs(runs, inputs.epochs)
        chosen = chosen[chosen["epochs"] == epochs] if epochs is not None else chosen
    chosen = _keep_datasets(chosen, inputs.datasets)
    rows = inputs.eval_long[(inputs.eval_long["benchmark"] == benchmark) & (inputs.eval_long["metric"] == metric)]
    lookup = dict(zip(rows["run"], rows["value"], strict=True))
    notes = dict(zip(rows["run"], rows["note"], strict=True)) if "note" in rows.columns else {}
    return chosen.assign(value=[lookup.get(r, math.nan) for r in chosen["run"]],
                         note=[notes.get(r, "") for r in chosen["run"]])


def _any_partial(frame: pd.DataFrame) -> bool:
    """Whether a plotted value (present, note 'partial: ...') is a mean over only the scored tasks."""
    return any(is_partial(n) and present(v) for n, v in zip(frame["note"], frame["value"], strict=True))


def _keep_datasets(runs: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    if not datasets:
        return runs
    wanted = {name_key(d) for d in datasets}
    keep = [any(name_key(x) in wanted for x in (r.dataset, r.dataset_paper_name, r.compare_dataset))
            for r in runs.itertuples()]
    return runs[np.array(keep, dtype=bool)]


def gain_points(inputs: Inputs, im_method: str = IM) -> tuple[pd.DataFrame, list[str]]:
    """Relative AlpacaEval 1.0 gain of IM over IT, 100 (IM - IT) / IT, per training set.

    Returns one row per dataset (dataset, label, ratio_instruction_output, n_examples, it, im, gain,
    size_study) and the datasets left out (a score missing, or an IT win rate of 0).
    """
    frame = method_values(inputs, "AlpacaEval 1.0", "win_rate")
    points, skipped = [], []
    for dataset, group in frame.groupby("dataset", sort=False):
        by_method = {r.arm: r for r in group.itertuples()}
        if IT not in by_method or im_method not in by_method:
            continue
        it, im = by_method[IT], by_method[im_method]
        label = it.dataset_label
        if not (present(it.value) and present(im.value)) or it.value <= 0:
            skipped.append(f"{label} (IT {it.value:g}, IM {im.value:g})")
            continue
        ratio = it.ratio_output_instruction
        points.append({
            "dataset": dataset, "label": label,
            "ratio_instruction_output": 1.0 / ratio if present(ratio) and ratio > 0 else math.nan,
            "n_examples": it.n_examples, "it": it.value, "im": im.value,
            "gain": 100.0 * (im.value - it.value) / it.value,
            "size_study": _size_study(it, inputs.size_pattern),
        })
    columns = ["dataset", "label", "ratio_instruction_output", "n_examples", "it", "im", "gain", "size_study"]
    types = {c: float for c in ("ratio_instruction_output", "n_examples", "it", "im", "gain")}
    return pd.DataFrame(points, columns=columns).astype({**types, "size_study": bool}), skipped


def _size_study(run, size_pattern: str) -> bool:
    """Whether ``run`` trained on a size-study subset: runs.csv's declared ``subset_family`` (the config's
    analysis_subsets family), or, in a runs.csv without it, a dataset key matching ``size_pattern``."""
    family = getattr(run, "subset_family", None)
    return family == "size" if family is not None else bool(re.search(size_pattern, run.dataset))


def fit_log_linear(x: Iterable[float], y: Iterable[float]) -> tuple[float, float] | None:
    """Least-squares ``y = slope * ln(x) + intercept`` (the paper's Fig. 2 fits); None under 2 distinct x."""
    x, y = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if len(np.unique(x[ok])) < 2:
        return None
    slope, intercept = np.polyfit(np.log(x[ok]), y[ok], 1)
    return float(slope), float(intercept)


def fit_equation(slope: float, intercept: float) -> str:
    """'y = 18.85 ln(x) + 25.83', the form the paper prints (x = the plotted quantity)."""
    sign = "-" if intercept < 0 else "+"
    return f"y = {slope:.2f} ln(x) {sign} {abs(intercept):.2f}"


def paper_fig2(paper: pd.DataFrame, side: str) -> tuple[pd.DataFrame, tuple[float, float] | None]:
    """The paper's digitised Fig. 2 points (x, y, label) and its printed fit (slope, intercept)."""
    rows = paper[paper["table"] == f"Figure 2 {side} (digitised)"]
    points = []
    if side == "left":
        for dataset, group in rows.groupby("train_dataset", sort=False):
            x = group.loc[group["metric"].str.endswith("(x)"), "value"]
            y = group.loc[group["metric"].str.endswith("(y)"), "value"]
            if len(x) == 1 and len(y) == 1:
                points.append((float(x.iloc[0]), float(y.iloc[0]), dataset))
    else:
        for item in rows.itertuples():
            match = re.search(r"N~(\d+)", item.train_dataset)
            if match:
                points.append((float(match.group(1)), item.value, item.train_dataset))
    fit_rows = paper[paper["table"] == f"Figure 2 {side}"]
    slope = fit_rows.loc[fit_rows["metric"].str.contains("slope"), "value"]
    intercept = fit_rows.loc[fit_rows["metric"].str.contains("intercept"), "value"]
    fit = (float(slope.iloc[0]), float(intercept.iloc[0])) if len(slope) and len(intercept) else None
    return pd.DataFrame(points, columns=["x", "y", "label"]), fit


def load_losses(paths: Iterable[str | Path]) -> list[dict]:
    """Parse output_loss.json files: {"run", "train": {"dataset", "losses"}, "heldout": {...}}."""
    out = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: loss file not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err})") from None
        if not isinstance(data, dict) or "run" not in data:
            raise ValueError(f"{path}: field 'run' missing")
        for part in ("train", "heldout"):  # a split may be null (not scored), else it needs its losses
            if data.get(part) is not None and not isinstance(data[part].get("losses"), list):
                raise ValueError(f"{path}: field {part}.losses (a list of per-example losses) missing")
            data[part] = data.get(part) or {"dataset": "", "losses": []}
        if not (data["train"]["losses"] or data["heldout"]["losses"]):
            raise ValueError(f"{path}: neither train.losses nor heldout.losses holds a loss")
        out.append(data)
    return out


# ----------------------------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------------------------

def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` wrapped (each of its lines) to fit ``width_in`` inches at ``fontsize`` points; an average
    character of the default font is taken as 0.6 em wide, so the estimate errs on the short side."""
    chars = max(int(width_in * 72 / (0.6 * fontsize)), 12)
    return "\n".join(part for line in text.split("\n")
                     for part in textwrap.wrap(line, chars, break_on_hyphens=False) or [""])


def _axes_width_in(ax) -> float:
    """Width of ``ax`` in inches (its subplot slot; constrained layout shrinks it a little)."""
    return ax.get_position().width * ax.get_figure().get_figwidth()


def _figure(title: str, label: str | None, size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    fig.suptitle(_wrap(title + (f"\n{label}" if label else ""), size[0] - 0.3, 11), fontsize=11)
    return fig


def _figure_legend(fig: Figure, axes) -> None:
    """One legend for the whole figure, below the panels, so it never covers data; entries by label,
    in first-seen order."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=len(entries), fontsize=9,
                   frameon=False)


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, _wrap(text, min(0.8 * _axes_width_in(ax), 6.5), 10), ha="center", va="center",
            transform=ax.transAxes, fontsize=10, color="firebrick",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "firebrick"})


def _message_only(ax, text: str) -> None:
    _message(ax, text)
    ax.set_xticks([])
    ax.set_yticks([])


def _methods_present(frame: pd.DataFrame) -> list[str]:
    return [m for m in METHODS if m in set(frame["arm"])]


def _grid(fig: Figure, n: int, ncols: int = 3):
    ncols = min(ncols, max(n, 1))
    nrows = math.ceil(max(n, 1) / ncols)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[max(n, 1):]:
        ax.set_visible(False)
    return axes[:max(n, 1)]


def _grouped_bars(ax, groups: list[str], methods: list[str], values: dict, paper: dict | None = None) -> None:
    """Bars per group (x) and method from ``values[(group, method)]``; ``paper[(group, method)]`` adds
    the paper's value as a marker."""
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(groups))
    paper_drawn = False
    for i, method in enumerate(methods):
        offsets = x - 0.4 + width * (i + 0.5)
        heights = [values.get((g, method), math.nan) for g in groups]
        ax.bar(offsets, [h if present(h) else 0 for h in heights], width, label=method, color=COLOURS[method])
        for xo, g, h in zip(offsets, groups, heights, strict=True):
            if not present(h):
                note = "missing" if (g, method) in values else "not run"
                ax.text(xo, 0, note, ha="center", va="bottom", fontsize=7, rotation=90, color="grey")
        pts = [(xo, paper[(g, method)]) for xo, g in zip(offsets, groups, strict=True)
               if paper and present(paper.get((g, method)))]
        if pts:
            ax.plot(*zip(*pts, strict=True), **PAPER_STYLE, label=None if paper_drawn else "paper")
            paper_drawn = True
    ax.set_xticks(x, groups, rotation=20, ha="right", rotation_mode="anchor", fontsize=8)


def _paper_table_value(paper: pd.DataFrame, table: str, dataset: str, method: str, benchmark: str) -> float:
    rows = paper[(paper["table"] == table) & (paper["benchmark"] == benchmark)]
    for item in rows.itertuples():
        if (name_key(item.model) == name_key(PAPER_MAIN_MODEL) and name_key(item.train_dataset) == name_key(dataset)
                and name_key(item.method) == name_key(method)):
            return item.value
    return math.nan


def _panel_title(ax, ylabel: str, frame: pd.DataFrame) -> bool:
    """Title a bar panel (with the partial-mean note where it applies); True if ``frame`` is empty."""
    title = ylabel + (f"\n{PARTIAL_NOTE}" if _any_partial(frame) else "")
    ax.set_title(_wrap(title, _axes_width_in(ax), 10), fontsize=10)
    return frame.empty


def _method_bars(ax, frame: pd.DataFrame, ylabel: str, paper: dict | None = None) -> None:
    """IT/IM bars per training set of ``frame`` (method_values rows); ``paper`` adds the paper's markers."""
    groups = list(dict.fromkeys(frame["dataset_label"]))
    values = {(r.dataset_label, r.arm): r.value for r in frame.itertuples()}
    _grouped_bars(ax, groups, _methods_present(frame), values, paper)
    ax.set_ylabel(ylabel)


def _annotate(ax, xs, ys, labels, fontsize: float = 7) -> None:
    """Label points (call once the axes limits are final): each label beside its point, on the first
    side/height where it stays inside the axes and clear of the labels placed before it (greedy, from the
    top point down; a label size is estimated from its length, in points)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    scale = np.log10 if ax.get_xscale() == "log" else (lambda v: v)
    x0, x1 = scale(x0), scale(x1)
    width = _axes_width_in(ax) * 72
    height = ax.get_position().height * ax.get_figure().get_figheight() * 72
    line = 1.25 * fontsize
    placed: list[tuple[float, float, float, float]] = []
    points = sorted(zip(xs, ys, labels, strict=True), key=lambda p: -p[1])
    for x, y, label in points:
        px, py = (scale(x) - x0) / (x1 - x0) * width, (y - y0) / (y1 - y0) * height
        size = 0.6 * fontsize * len(str(label))
        sides = ("left", "right") if px + 4 + size <= width else ("right", "left")  # ha: "left" = right of it
        candidates = [(ha, dy) for dy in (3, -3 - line, 3 + line, -3 - 2 * line, 3 + 2 * line) for ha in sides]
        for ha, dy in candidates:
            left = px + 4 if ha == "left" else px - 4 - size
            box = (left, py + dy, left + size, py + dy + line)
            inside = box[0] >= 0 and box[2] <= width and box[1] >= 0 and box[3] <= height
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                                  for b in placed):
                break
        else:  # crowded: the first choice
            (ha, dy), left = candidates[0], px + 4 if sides[0] == "left" else px - 4 - size
            box = (left, py + dy, left + size, py + dy + line)
        placed.append(box)
        ax.annotate(str(label), (x, y), fontsize=fontsize, xytext=(4 if ha == "left" else -4, dy),
                    textcoords="offset points", ha=ha, va="bottom")


def _fit_line(ax, xs, fit: tuple[float, float], colour: str, style: str) -> None:
    xs = np.asarray(list(xs), dtype=float)
    xs = xs[np.isfinite(xs) & (xs > 0)]
    if xs.size == 0:
        return
    grid = np.geomspace(xs.min(), xs.max(), 100) if xs.min() < xs.max() else xs
    ax.plot(grid, fit[0] * np.log(grid) + fit[1], style, color=colour, linewidth=1.2)


def _fig3_title(ax, first, part: str, what: str) -> str:
    """Two short lines, wrapped to the panel: the training set (and its paper name), then which split."""
    width = _axes_width_in(ax)
    vs = f"(vs paper {first['compare']})" if name_key(first["compare"]) != name_key(first["label"]) else ""
    head = f"{first['label']} {vs}".strip()
    if "\n" in _wrap(head, width, 10):  # too long for one line: the paper name on a line of its own
        head = f"{first['label']}\n{vs}".strip()
    held = first[part].get("dataset", "")
    if held and name_key(held) not in (name_key(first["dataset"]), name_key(first["label"])):
        what += f" ({held})"
    return _wrap(f"{head}\n{what}", width, 10)


def _paper_mean_line(ax, mean: float, ours, method: str) -> None:
    """The paper's mean loss as a dashed line; far outside our losses' range (a demo model's losses are
    an order of magnitude higher) it is listed in the legend only, so our histograms keep their detail."""
    label = f"paper {method} mean {mean:.2f}"
    if ours.size:
        low, high = float(ours.min()), float(ours.max())
        margin = max(high - low, 0.1 * max(abs(high), 1e-9))
        if not low - margin <= mean <= high + margin:
            ax.plot([], [], color=COLOURS[method], linestyle="--", label=label + " (off scale)")
            return
    ax.axvline(mean, color=COLOURS[method], linestyle="--", label=label)


def _legend_above_data(ax, fontsize: float) -> None:
    """A legend in the upper left with head room made for it above the data, so it covers none."""
    handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    height_pt = ax.get_position().height * ax.get_figure().get_figheight() * 72 * 0.8  # less title/labels
    share = min((len(handles) * 1.4 * fontsize + 10) / max(height_pt, 1.0), 0.6)
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, bottom + (top - bottom) / (1 - share))
    ax.legend(fontsize=fontsize, loc="upper left")


def _paper_loss(paper: pd.DataFrame, row: pd.Series, method: str, part: str) -> float:
    if name_key(row["compare_model"]) != name_key(PAPER_MAIN_MODEL) or method == IM_EQ4:
        return math.nan
    rows = paper[paper["table"].isin(["Figure 3", "Figure 8", "Figure 9"])]
    prefix = "train" if part == "train" else "test"
    for item in rows.itertuples():
        if (name_key(item.train_dataset) == name_key(row["compare"]) and item.method == method
                and item.benchmark.startswith(prefix)):
            return item.value
    return math.nan


def _epoch_figure(inputs: Inputs, title: str, benchmark: str, metrics: Sequence[str], ylabel: str,
                  needs: str) -> Figure:
    frame = pd.DataFrame()
    for metric in metrics:  # the first metric with any value
        frame = method_values(inputs, benchmark, metric, all_epochs=True)
        if frame["value"].notna().any():
            break
    swept = [d for d, g in frame.groupby("dataset", sort=False) if g["epochs"].nunique() >= 2]
    ncols = min(3, max(len(swept), 1))
    fig = _figure(title, inputs.label, (max(4.5 * ncols, 8), 3.6 * math.ceil(max(len(swept), 1) / 3) + 0.8))
    axes = _grid(fig, len(swept))
    if not swept:
        _message_only(axes[0], NOT_RUN + needs)
        return fig
    for ax, dataset in zip(axes, swept, strict=True):
        group = frame[frame["dataset"] == dataset]
        for method in _methods_present(group):
            line = group[group["arm"] == method].sort_values("epochs")
            ax.plot(line["epochs"], line["value"], "-", marker=MARKERS[method], color=COLOURS[method], label=method,
                    markersize=7, markerfacecolor="none" if method == IM_EQ4 else COLOURS[method], markeredgewidth=1.5)
        title = group.iloc[0]["dataset_label"] + (f"\n{PARTIAL_NOTE}" if _any_partial(group) else "")
        ax.set_title(_wrap(title, _axes_width_in(ax), 10), fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epochs")
        ax.set_ylabel(ylabel)
    _figure_legend(fig, axes)
    return fig


# ----------------------------------------------------------------------------------------------
# Figures, in the paper's order
# ----------------------------------------------------------------------------------------------

def fig1(inputs: Inputs) -> Figure:
    """Paper Fig. 1: IT vs IM per training set, NLP mean (18 tasks) and AlpacaEval 1.0 win rate."""
    fig = _figure("Fig. 1: IT vs IM per training set (LLaMA-2-7B in the paper; markers: paper values)",
                  inputs.label, (12, 4.8))
    axes = fig.subplots(1, 2)
    spec = TABLES["table1"]
    epochs = main_epochs(inputs.runs, inputs.epochs)
    table1 = set(table_runs(spec, inputs.runs, inputs.eval_long, paper_row_keys(spec, inputs.paper), epochs)["run"])
    for ax, (benchmark, metric, ylabel) in zip(axes, NLP_AND_ALPACA_EVAL_1, strict=True):
        frame = method_values(inputs, benchmark, metric)
        frame = frame[frame["run"].isin(table1)]
        if _panel_title(ax, ylabel, frame):
            _message_only(ax, NOT_RUN + "IT and IM runs on the Table 1 training sets (run group table1).")
            continue
        paper = {(r.dataset_label, r.arm): _paper_table_value(
            inputs.paper, "Table 1", r.compare_dataset, r.arm, benchmark)
            for r in frame.itertuples()
            if r.arm != IM_EQ4 and name_key(r.compare_model) == name_key(PAPER_MAIN_MODEL)}
        _method_bars(ax, frame, ylabel, paper)
    _figure_legend(fig, axes)
    return fig


def fig2(inputs: Inputs) -> Figure:
    """Paper Fig. 2: relative AlpacaEval 1.0 gain of IM over IT vs instruction/output ratio (left) and vs
    the number of training examples (right), log x, least-squares fit; paper's digitised points overlaid."""
    fig = _figure("Fig. 2: relative AlpacaEval 1.0 gain of IM over IT, (IM - IT) / IT", inputs.label, (13, 5.2))
    axes = fig.subplots(1, 2)
    points, skipped = gain_points(inputs)
    panels = (("left", points[~points["size_study"]], "ratio_instruction_output",
               "instruction / output length ratio (log scale)",
               "IT and IM runs on training sets of different instruction/output ratios (run group fig2_ratio)"),
              ("right", points[points["size_study"]], "n_examples", "number of training examples (log scale)",
               "IT and IM runs on the size-study subsets, analysis_subsets.size (run group fig2_size)"))
    for ax, (side, ours, xcol, xlabel, needs) in zip(axes, panels, strict=True):
        paper_points, paper_fit = paper_fig2(inputs.paper, side)
        texts = []
        if not paper_points.empty:
            ax.plot(paper_points["x"], paper_points["y"], "o", mfc="none", color="grey", label="paper (digitised)")
        if paper_fit:
            texts.append(("paper: " + fit_equation(*paper_fit), "grey"))
            _fit_line(ax, paper_points["x"] if not paper_points.empty else ours[xcol], paper_fit, "grey", "--")
        ours = ours[np.isfinite(ours[xcol].astype(float)) & (ours[xcol].astype(float) > 0)]
        ax.set_xscale("log")
        if ours.empty:
            _message(ax, NOT_RUN + needs + ".")
        else:
            ax.plot(ours[xcol], ours["gain"], "o", color=COLOURS[IM], label="ours")
            fit = fit_log_linear(ours[xcol], ours["gain"])
            if fit:
                _fit_line(ax, ours[xcol], fit, COLOURS[IM], "-")
                texts.append(("ours: " + fit_equation(*fit), COLOURS[IM]))
            else:
                texts.append(("ours: a fit needs two or more distinct x", COLOURS[IM]))
        if skipped and side == "left":
            texts.append((f"left out (IT win rate 0 or a score missing): {len(skipped)}", "firebrick"))
        for i, (text, colour) in enumerate(texts):
            ax.text(0.02, 0.97 - 0.07 * i, text, transform=ax.transAxes, va="top", fontsize=9, color=colour,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
        ax.axhline(0, color="lightgrey", linewidth=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("relative improvement of IM over IT (%)")
        ax.set_title("Left: gain vs instruction/output ratio" if side == "left"
                     else "Right: gain vs number of training examples", fontsize=10)
        # head room for the fit equations (upper left) and the legend (upper right): no data beneath them
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, bottom + (top - bottom) / (1 - 0.05 - max(0.07 * len(texts), 0.12)))
        ax.legend(fontsize=8, loc="upper right")
        if not ours.empty:
            _annotate(ax, ours[xcol], ours["gain"], ours["label"])
    return fig


def fig3(inputs: Inputs) -> Figure:
    """Paper Fig. 3 (and 8, 9): per-example output-token loss on the training set and on held-out data,
    IT vs IM, from the loss files; the paper's mean losses as dashed lines where it printed them."""
    runs = inputs.runs.set_index("run")
    frames = []
    for item in inputs.losses:
        if item["run"] not in runs.index:
            raise ValueError(f"loss file of run {item['run']!r}: run not in runs.csv")
        row = runs.loc[item["run"]]
        if row["is_base"] or row["arm"] not in METHODS:
            continue
        frames.append({"run": item["run"], "dataset": row["dataset"], "label": row["dataset_label"],
                       "compare": row["compare_dataset"], "compare_model": row["compare_model"],
                       "method": row["arm"], "train": item["train"], "heldout": item["heldout"]})
    data = pd.DataFrame(frames, columns=["run", "dataset", "label", "compare", "compare_model", "method",
                                         "train", "heldout"])
    if inputs.datasets:
        wanted = {name_key(d) for d in inputs.datasets}
        data = data[[any(name_key(x) in wanted for x in (r.dataset, r.label, r.compare)) for r in data.itertuples()]]
    data = data.groupby("dataset").filter(lambda g: IT in set(g["method"]) and bool(set(g["method"]) - {IT}))
    datasets = list(dict.fromkeys(data["dataset"]))
    fig = _figure("Fig. 3: per-example loss on output tokens, training set vs held-out set",
                  inputs.label, (11, 3.4 * max(len(datasets), 1) + 0.8))
    if not datasets:
        _message_only(fig.subplots(1, 1), NOT_RUN + "output-loss files (output_loss.json) of IT and IM runs on the "
                      "same training set, passed with --loss.")
        return fig
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    for (ax_train, ax_test), dataset in zip(axes, datasets, strict=True):
        group = data[data["dataset"] == dataset]
        for ax, part, what in ((ax_train, "train", "training set"), (ax_test, "heldout", "held-out set")):
            losses = {r.method: np.asarray(getattr(r, part)["losses"], dtype=float) for r in group.itertuples()}
            finite = np.concatenate([v[np.isfinite(v)] for v in losses.values()] + [np.zeros(0)])
            bins = np.linspace(finite.min(), finite.max(), 30) if finite.size and np.ptp(finite) > 0 else 10
            for method in METHODS:
                if method not in losses:
                    continue
                values = losses[method][np.isfinite(losses[method])]
                if values.size:
                    ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.25, color=COLOURS[method])
                    ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.4, color=COLOURS[method],
                            label=f"{method} (mean {values.mean():.2f}, n={values.size})")
                paper_mean = _paper_loss(inputs.paper, group.iloc[0], method, part)
                if present(paper_mean):
                    _paper_mean_line(ax, paper_mean, finite, method)
            if not finite.size:
                _message(ax, f"no per-example losses on the {what} in the loss files")
            ax.set_title(_fig3_title(ax, group.iloc[0], part, what), fontsize=10)
            ax.set_xlabel("mean loss per example (output tokens)")
            ax.set_ylabel("density")
            _legend_above_data(ax, fontsize=7)
    return fig


def fig4(inputs: Inputs) -> Figure:
    """Paper Fig. 4: mean of the 18 NLP tasks vs training epochs, IT vs IM per training set."""
    return _epoch_figure(inputs, "Fig. 4: mean of 18 NLP tasks vs epochs (the instruction-tuning tax)",
                         MEAN_NAME, ["mean_of_6_categories"], "Mean of 18 NLP tasks (%)",
                         "IT and IM runs of one training set at two or more epoch counts (run group epoch_sweep).")


def fig5(inputs: Inputs) -> Figure:
    """Paper Fig. 5: IT vs IM on the Table 1 training sets for LLaMA-2-13B (top) and OPT-6.7B (bottom),
    NLP mean (left) and AlpacaEval 1.0 (right). The paper prints these bars without numbers, so no paper
    markers; a model without runs says so. Runs are found by paper model name (``compare_model``), so
    ``Inputs.model`` does not apply."""
    fig = _figure("Fig. 5: IT vs IM on other base models (the paper prints no numbers for these bars)",
                  inputs.label, (12, 8.8))
    axes = fig.subplots(len(FIG5_MODELS), 2, squeeze=False)
    table1_sets = {name_key(d) for _, d, _ in paper_row_keys(TABLES["table1"], inputs.paper)}
    trained = inputs.runs[~inputs.runs["is_base"]]
    for row, paper_model in zip(axes, FIG5_MODELS, strict=True):
        keys = trained.loc[trained["compare_model"].map(name_key) == name_key(paper_model), "model"]
        for ax, (benchmark, metric, ylabel) in zip(row, NLP_AND_ALPACA_EVAL_1, strict=True):
            frame = pd.DataFrame(columns=["value", "note"])
            if len(keys):
                frame = method_values(replace(inputs, model=keys.iloc[0]), benchmark, metric)
                frame = frame[frame["compare_dataset"].map(name_key).isin(table1_sets)]
            if _panel_title(ax, f"{paper_model}: {ylabel}", frame):
                _message_only(ax, NOT_RUN + f"IT and IM runs of {paper_model} on the Table 1 training sets "
                              "(run group fig5_other_models).")
                continue
            _method_bars(ax, frame, ylabel)
    _figure_legend(fig, axes.ravel())
    return fig


def fig6(inputs: Inputs) -> Figure:
    """Paper Fig. 6: IT vs IM trained on Tulu V2 10/20/50/100 %: output length and AlpacaEval 1.0."""
    fig = _figure("Fig. 6: IT vs IM on Tulu V2 fractions", inputs.label, (12, 4.8))
    axes = fig.subplots(1, 2)
    panels = (("avg_length", "avg output length (AlpacaEval 1.0)"), ("win_rate", "AlpacaEval 1.0 win rate (%)"))
    for ax, (metric, ylabel) in zip(axes, panels, strict=True):
        frame = method_values(inputs, "AlpacaEval 1.0", metric)
        frame = frame[frame["compare_dataset"].map(name_key).isin(TULU_FRACTIONS)]
        ax.set_title(ylabel, fontsize=10)
        if frame.empty:
            _message_only(ax, NOT_RUN + "IT and IM runs on Tulu V2 10 %, 20 %, 50 % and 100 % "
                          "(run group fig6_tulu_fractions).")
            continue
        frame = frame.assign(fraction=frame["compare_dataset"].map(lambda d: TULU_FRACTIONS[name_key(d)]))
        groups = [f"{f} %" for f in sorted(TULU_FRACTIONS.values())]  # all four; a missing one says so
        values = {(f"{r.fraction} %", r.arm): r.value for r in frame.itertuples()}
        _grouped_bars(ax, groups, _methods_present(frame), values)
        ax.set_xlabel("share of Tulu V2 used for training")
        ax.set_ylabel(ylabel)
    _figure_legend(fig, axes)
    return fig


def fig10(inputs: Inputs) -> Figure:
    """Paper Fig. 10: AlpacaEval 1.0 win rate vs training epochs, IT vs IM per training set."""
    return _epoch_figure(inputs, "Fig. 10: AlpacaEval 1.0 win rate vs epochs", "AlpacaEval 1.0", ["win_rate"],
                         "AlpacaEval 1.0 win rate (%)",
                         "IT and IM runs of one training set at two or more epoch counts (run group epoch_sweep).")


def fig11(inputs: Inputs) -> Figure:
    """Paper Fig. 11: average AlpacaEval output length vs training epochs, IT vs IM per training set."""
    fig = _epoch_figure(inputs, "Fig. 11: AlpacaEval output length vs epochs", "AlpacaEval 1.0", ["avg_length"],
                        "avg output length (AlpacaEval)",
                        "IT and IM runs of one training set at two or more epoch counts (run group epoch_sweep).")
    return fig


# forest, fig_sweep and fig_weight_grid (after the paper, from comparisons.csv) are imported from their modules
BUILDERS = {name: globals()[name] for name in FIGURES}  # each figure's builder is the function of its name


def make_figure(name: str, inputs: Inputs) -> Figure:
    if name not in BUILDERS:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    return BUILDERS[name](inputs)


def save(fig: Figure, png: str | Path, pdf: str | Path) -> None:
    """PNG (150 dpi) and PDF, each written atomically; the PDF without a creation date (reproducible)."""
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
