"""The forest plot of the paired comparisons (not a figure of the paper): one panel per comparison, one
line per (training set, benchmark) row of ``comparisons.csv`` except the single NLP tasks: the difference,
method − baseline, and its interval; a filled marker is significant after Holm's correction. Benchmarks keep
their own units (percent points, MT-Bench points, BLEU, nats), so the panels compare signs and intervals, not
magnitudes across rows.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

NOT_RUN = "not run in this configuration: needs two arms with per-item scores (results/tables/comparisons.csv)"
ROW_INCHES = 0.22


def forest(inputs) -> Figure:
    """``inputs``: :class:`imrepro.report.figures.Inputs` (its ``comparisons`` frame and ``label``)."""
    frame = inputs.comparisons if inputs.comparisons is not None else pd.DataFrame()
    if not frame.empty:  # the tasks one by one stay in the CSV: the panels show Table 1's columns and the rest
        frame = frame[frame["family"] != "tasks"]
    names = list(dict.fromkeys(frame["comparison"])) if not frame.empty else []
    heights = [max(2, len(frame[frame["comparison"] == n])) for n in names] or [2]
    fig = Figure(figsize=(8.0, 1.2 + ROW_INCHES * sum(heights) + 0.6 * len(heights)), layout="constrained")
    title = "Paired differences, method − baseline (95 % interval; filled: significant after Holm)"
    fig.suptitle(title + (f"\n{inputs.label}" if inputs.label else ""), fontsize=9)
    axes = fig.subplots(len(heights), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    if not names:
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, NOT_RUN, ha="center", va="center", wrap=True, fontsize=8)
        return fig
    several_epochs = frame["epochs"].astype(str).nunique() > 1
    for ax, name in zip(axes, names, strict=True):
        rows = frame[frame["comparison"] == name].reset_index(drop=True)
        ys = list(range(len(rows)))[::-1]
        for y, row in zip(ys, rows.itertuples(), strict=True):
            low, high = row.ci_low, row.ci_high
            if not (math.isnan(low) or math.isnan(high)):
                ax.plot([low, high], [y, y], color="#4C72B0", linewidth=1.2)
            ax.plot([row.delta], [y], marker="o", markersize=4, color="#4C72B0",
                    markerfacecolor="#4C72B0" if row.significant else "white")
        labels = [f"{r.dataset} · {r.benchmark}" + (f" · ep{r.epochs}" if several_epochs else "")
                  for r in rows.itertuples()]
        ax.set_yticks(ys, labels, fontsize=6)
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(name, fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    axes[-1].set_xlabel("difference (benchmark units)", fontsize=8)
    return fig
