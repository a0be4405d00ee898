"""Figures of the run groups' sweeps (``run_groups.<g>.sweep``): any metric against a swept parameter,
and a lambda_p x lambda_r heat map of a two-weight grid.

Runs are found by id and declared attributes, never by display names: runs.csv's ``swept`` column (the
parameters the run's group swept) and its parameter columns (``prompt_weight``, ``response_weight``, ...).
A point is the runs equal in everything but ``run`` and ``seed``; its value is the mean over those seeds.

Intervals come from the comparison stage (``results/tables/comparisons.csv``, read where it exists): a
point whose runs are a comparison's ``runs_b`` for the same benchmark and metric gets that comparison's
interval of the difference (method - baseline) drawn around it; other points are drawn without one.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from imrepro.eval.aggregate import MEAN_NAME
from imrepro.workflow_config import SWEEPABLE

WEIGHTS = ("prompt_weight", "response_weight")
AXIS = {"prompt_weight": "prompt weight λp", "response_weight": "response weight λr",
        "neftune_alpha": "NEFTune alpha", "kl_lambda": "KL lambda", "learning_rate": "learning rate"}
MAX_PANELS = 6
# the heat map's metric: the first of these that the grid's runs have, else their first in eval_long order
HEATMAP_PREFERENCE = ((MEAN_NAME, "mean_of_6_categories"), ("AlpacaEval 1.0", "win_rate"))
NOT_RUN = "not run in this configuration: needs "
POINT_KEYS = ("model", "dataset", "dataset_label", "method", "epochs", "swept", *SWEEPABLE)


def _run_set(text: str) -> frozenset[str]:
    return frozenset(t for t in re.split(r"[\s,;|]+", str(text)) if t)


def sweep_points(runs: pd.DataFrame, eval_long: pd.DataFrame, comparisons: pd.DataFrame | None = None
                 ) -> pd.DataFrame:
    """One row per (point, benchmark, metric) of the swept runs: the swept parameters' values, the mean
    over seeds (``value``), ``n_seeds``, the point's ``runs`` and, where the comparison stage has it, the
    interval of the difference (``delta``, ``ci_low``, ``ci_high``)."""
    columns = [*POINT_KEYS, "benchmark", "metric", "value", "n_seeds", "runs", "delta", "ci_low", "ci_high"]
    if "swept" not in runs.columns:  # a runs.csv from before the axes
        return pd.DataFrame(columns=columns)
    swept = runs[~runs["is_base"] & (runs["swept"].fillna("") != "")].copy()
    for name in SWEEPABLE:
        swept[name] = pd.to_numeric(swept[name], errors="coerce")
    data = swept.merge(eval_long[["run", "benchmark", "metric", "value"]], on="run")
    data = data[data["value"].notna()]
    if data.empty:
        return pd.DataFrame(columns=columns)
    grouped = data.groupby([*POINT_KEYS, "benchmark", "metric"], dropna=False, sort=False)
    out = grouped.agg(value=("value", "mean"), n_seeds=("run", "count"),
                      runs=("run", lambda r: " ".join(sorted(r)))).reset_index()
    intervals = {}
    for row in (comparisons.itertuples() if comparisons is not None else ()):
        try:
            intervals[(_run_set(row.runs_b), row.benchmark, row.metric)] = tuple(
                float(v) for v in (row.delta, row.ci_low, row.ci_high))
        except ValueError:  # an empty interval (too few items): no bar
            continue
    found = [intervals.get((_run_set(r.runs), r.benchmark, r.metric), (math.nan,) * 3) for r in out.itertuples()]
    out[["delta", "ci_low", "ci_high"]] = pd.DataFrame(found, index=out.index, columns=["delta", "ci_low", "ci_high"])
    return out[columns]


def _figure(title: str, label: str | None, size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    fig.suptitle(title + (f"\n{label}" if label else ""), fontsize=11)
    return fig


def _message(fig: Figure, text: str) -> Figure:
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=10,
            color="firebrick", bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "firebrick"})
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _panels(fig: Figure, n: int, ncols: int = 3):
    ncols = min(ncols, n)
    axes = fig.subplots(math.ceil(n / ncols), ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


def _line_label(row, several: dict[str, bool]) -> str:
    parts = [row.dataset_label]
    parts += [row.method] if several["method"] else []
    parts += [row.model] if several["model"] else []
    return " / ".join(parts)


def _x_scale(ax, xs: np.ndarray) -> None:
    """Linear, or symmetric-log when the positive values span more than a decade (the PLW paper's weights)."""
    positive = xs[xs > 0]
    if len(positive) and positive.max() / positive.min() > 10:
        ax.set_xscale("symlog", linthresh=float(positive.min()))


def fig_sweep(inputs) -> Figure:
    """Each metric of the one-parameter sweeps against the swept value, one line per dataset (and method or
    model where several); error bars: the comparison stage's interval of the difference vs its baseline."""
    points = sweep_points(inputs.runs, inputs.eval_long, getattr(inputs, "comparisons", None))
    points = points[points["swept"].isin(list(SWEEPABLE))]  # one parameter (two-weight grids: fig_weight_grid)
    panels = list(dict.fromkeys(zip(points["swept"], points["benchmark"], points["metric"], strict=True)))
    if not panels:
        fig = _figure("Sweeps: a metric against a swept parameter", inputs.label, (8, 4))
        return _message(fig, NOT_RUN + "a run group with a one-parameter `sweep:` (e.g. prompt_weight), evaluated")
    shown = panels[:MAX_PANELS]
    title = "Sweeps: each metric against the swept parameter (points: mean over seeds)"
    if len(panels) > len(shown):
        title += f"; first {len(shown)} of {len(panels)} panels"
    fig = _figure(title, inputs.label, (4.6 * min(len(shown), 3), 3.8 * math.ceil(len(shown) / 3) + 0.8))
    with_intervals = False
    for ax, (parameter, benchmark, metric) in zip(_panels(fig, len(shown)), shown, strict=True):
        part = points[(points["swept"] == parameter) & (points["benchmark"] == benchmark)
                      & (points["metric"] == metric)]
        several = {key: part[key].nunique() > 1 for key in ("method", "model")}
        for _, line in part.groupby(["model", "dataset", "method", "epochs"], sort=False, dropna=False):
            line = line.sort_values(parameter)
            xs, ys = line[parameter].to_numpy(float), line["value"].to_numpy(float)
            handle = ax.plot(xs, ys, marker="o", label=_line_label(line.iloc[0], several))[0]
            has = line["delta"].notna().to_numpy()
            if has.any():
                low = (line["delta"] - line["ci_low"]).to_numpy(float)[has]
                high = (line["ci_high"] - line["delta"]).to_numpy(float)[has]
                ax.errorbar(xs[has], ys[has], yerr=[low, high], fmt="none", capsize=3, color=handle.get_color())
                with_intervals = True
        _x_scale(ax, part[parameter].to_numpy(float))
        ax.ticklabel_format(axis="y", useOffset=False)  # small differences: the values themselves
        ax.set_xlabel(AXIS[parameter])
        ax.set_ylabel(metric, fontsize=8)
        ax.set_title(benchmark, fontsize=9)
        ax.legend(fontsize=7)
    if with_intervals:
        fig.supxlabel("bars: interval of the difference vs the comparison's baseline (comparisons.csv)", fontsize=8)
    return fig


def _heatmap_metric(points: pd.DataFrame) -> tuple[str, str]:
    available = list(dict.fromkeys(zip(points["benchmark"], points["metric"], strict=True)))
    return next((pair for pair in HEATMAP_PREFERENCE if pair in available), available[0])


def fig_weight_grid(inputs) -> Figure:
    """The (lambda_p, lambda_r) grid: one heat map per dataset of one metric (the NLP mean, else AlpacaEval
    1.0, else the grid's first), mean over seeds in each cell; empty cells: not run or not scored."""
    points = sweep_points(inputs.runs, inputs.eval_long, getattr(inputs, "comparisons", None))
    grid = points[points["swept"].map(lambda s: set(str(s).split()) == set(WEIGHTS))]
    if grid.empty:
        fig = _figure("Loss-weight grid: λp x λr", inputs.label, (8, 4))
        return _message(fig, NOT_RUN + "a run group sweeping prompt_weight and response_weight (e.g. wit_grid), "
                        "evaluated")
    benchmark, metric = _heatmap_metric(grid)
    grid = grid[(grid["benchmark"] == benchmark) & (grid["metric"] == metric)]
    maps = list(grid.groupby(["model", "dataset_label", "method", "epochs"], sort=False, dropna=False))
    fig = _figure(f"Loss-weight grid: {benchmark} ({metric}) over λp x λr (mean over seeds)", inputs.label,
                  (4.8 * min(len(maps), 3), 4.2 * math.ceil(len(maps) / 3) + 0.8))
    for ax, ((model, dataset, method, _), cells) in zip(_panels(fig, len(maps)), maps, strict=True):
        table = cells.pivot_table(index="response_weight", columns="prompt_weight", values="value")
        image = ax.imshow(table.to_numpy(float), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(table.columns)), [f"{v:g}" for v in table.columns], fontsize=8)
        ax.set_yticks(range(len(table.index)), [f"{v:g}" for v in table.index], fontsize=8)
        for (i, j), value in np.ndenumerate(table.to_numpy(float)):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xlabel(AXIS["prompt_weight"])
        ax.set_ylabel(AXIS["response_weight"])
        ax.set_title(f"{dataset} ({method}, {model})", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig

