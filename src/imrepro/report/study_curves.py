"""The real-model study's three curves (profiles/study, docs/STUDY.md), every point a paired comparison.

* Fig. 2 left: IM's gain over IT against the training set's instruction/output ratio (same size);
* Fig. 2 right: the same gain against the training-set size at one high ratio;
* the prompt-weight curve: the gain of a prompt weight over 0 (= IT) on a short- and a long-completion set.

Gain = IT's output loss minus the arm's, on the same examples (positive: the arm predicts the good outputs
better). Per example, each arm's losses are averaged over its seeds (each seed its own redrawn training set),
then the per-example differences give the mean, its paired bootstrap interval (BCa) and a sign-flip
permutation p-value, the statistics of every comparison (``paired_stats.paired_difference``): the interval
covers the sampling of evaluation examples with the seeds held fixed, not seed-to-seed variance (the seeds'
spread is reported beside it). The paper's fitted lines (y = a ln x + b, AlpacaEval 1.0 relative
improvement in %) are drawn on a second axis: another model, metric and scale, for the direction of the
trend only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from imrepro.report.figures import fit_equation
from imrepro.report.paired_stats import paired_difference

SPLITS = {"heldout": "held-out (Dolly)", "reference": "reference answers (AlpacaEval)"}
CURVE_COLUMNS = ["curve", "set", "dataset", "x", "arm", "label", "split", "n_items", "seeds_arm", "seeds_it",
                 "gain", "ci_low", "ci_high", "p_value", "seed_sd_gain"]


def item_losses(result_paths: Iterable[str | os.PathLike], targets: Mapping[str, dict]) -> pd.DataFrame:
    """Per-example output losses of every scored split: one row per (target, split, item)."""
    rows = []
    for path in map(Path, result_paths):
        result = json.loads(path.read_text())
        if result.get("benchmark") != "output_loss" or result.get("status") != "scored":
            continue
        info = targets[path.parent.name]
        for split in SPLITS:
            part = result.get(split)
            if not part:
                continue
            if len(part["ids"]) != len(part["losses"]):
                raise ValueError(f"{path}: {split}: {len(part['ids'])} ids but {len(part['losses'])} losses")
            for item, loss in zip(part["ids"], part["losses"], strict=True):
                if loss is not None:
                    rows.append({"dataset": info["dataset"], "arm": info["arm"], "label": info["label"],
                                 "seed": info["seed"], "split": split, "item": str(item), "loss": float(loss)})
    return pd.DataFrame(rows, columns=["dataset", "arm", "label", "seed", "split", "item", "loss"])


def paired_gain(items: pd.DataFrame, dataset: str, arm: str, reference: str, split: str,
                confidence: float = 0.95, n_resamples: int = 9999) -> dict | None:
    """IT's (``reference``) loss minus ``arm``'s on ``dataset``'s runs, paired over the ``split``'s examples
    (seeds averaged per example), with its bootstrap interval and p-value; None where either arm has no scored
    run."""
    part = items[(items["dataset"] == dataset) & (items["split"] == split)]
    a, r = part[part["arm"] == arm], part[part["arm"] == reference]
    if a.empty or r.empty:
        return None
    means = pd.concat({"arm": a.groupby("item")["loss"].mean(), "it": r.groupby("item")["loss"].mean()},
                      axis=1).dropna()
    paired = paired_difference(means["arm"].to_numpy(), means["it"].to_numpy(), confidence=confidence,
                               n_resamples=n_resamples)
    by_seed = {name: frame.groupby("seed")["loss"].mean() for name, frame in (("arm", a), ("it", r))}
    seed_gains = [by_seed["it"].mean() - v for v in by_seed["arm"]]  # each arm seed against IT's seed mean
    return {"n_items": paired.n_units, "seeds_arm": int(a["seed"].nunique()), "seeds_it": int(r["seed"].nunique()),
            "gain": paired.delta, "ci_low": paired.ci_low, "ci_high": paired.ci_high, "p_value": paired.p_value,
            "seed_sd_gain": float(np.std(seed_gains, ddof=1)) if len(seed_gains) > 1 else math.nan}


def curve_table(items: pd.DataFrame, curves: Mapping, ratios: Mapping[str, float],
                sizes: Mapping[str, int], arms: Mapping[str, dict], n_resamples: int = 9999) -> pd.DataFrame:
    """Every point of the three curves, each split: ``curves`` is the config's ``study.curves``; ``arms``:
    arm -> {label, prompt_weight} of the swept arms (their x on the prompt-weight curve)."""
    reference, im = curves["reference_arm"], curves["im_arm"]
    plan = [("ratio", "", d, ratios.get(d, math.nan), im) for d in curves["ratio_sets"]]
    plan += [("size", "", d, sizes.get(d, math.nan), im) for d in curves["size_sets"]]
    for name, dataset in curves["prompt_weight"]["sets"].items():
        plan.append(("prompt_weight", name, dataset, 1.0, im))
        plan += [("prompt_weight", name, dataset, info["prompt_weight"], arm) for arm, info in arms.items()]
    rows = []
    for curve, name, dataset, x, arm in plan:
        for split in SPLITS:
            found = paired_gain(items, dataset, arm, reference, split, n_resamples=n_resamples)
            if found is not None:
                label = arms.get(arm, {}).get("label") or items.loc[items["arm"] == arm, "label"].iloc[0]
                rows.append({"curve": curve, "set": name, "dataset": dataset, "x": x, "arm": arm, "label": label,
                             "split": split, **found})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def curves_markdown(table: pd.DataFrame) -> str:
    """The points as a Markdown table (gain and its 95 % interval, seed spread), one row per point and split."""
    if table.empty:
        return "No curve point was scored.\n"
    head = ("| curve | set | dataset | x | arm | split | examples | seeds (arm/IT) | gain (IT − arm) | 95 % interval "
            "| p | seed sd |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r.curve} | {r.set or '—'} | {r.dataset} | {r.x:.3g} | {r.label} | {SPLITS[r.split]} | {r.n_items} "
            f"| {r.seeds_arm}/{r.seeds_it} | {r.gain:+.3f} | [{r.ci_low:+.3f}, {r.ci_high:+.3f}] "
            f"| {r.p_value:.3g} | {r.seed_sd_gain:.3f} |" for r in table.itertuples()]
    return "\n".join([head, *body]) + "\n"


def trend_lines(table: pd.DataFrame, split: str = "heldout") -> list[str]:
    """One sentence per curve: the fitted slope of gain against ln x, and how many points' intervals exclude 0."""
    lines = []
    for curve, what in (("ratio", "instruction/output ratio"), ("size", "training-set size")):
        part = table[(table["curve"] == curve) & (table["split"] == split)].sort_values("x")
        if len(part) < 2:
            continue
        slope = float(np.polyfit(np.log(part["x"]), part["gain"], 1)[0])
        above = int((part["ci_low"] > 0).sum())
        below = int((part["ci_high"] < 0).sum())
        lines.append(f"{curve}: IM's gain over IT ({SPLITS[split]}) changes by {slope:+.3f} nats per unit of "
                     f"ln({what}) over {len(part)} points; {above} point(s) above 0 and {below} below 0 beyond "
                     f"their 95 % intervals.")
    pw = table[(table["curve"] == "prompt_weight") & (table["split"] == split)]
    for name, part in pw.groupby("set"):
        best = part.loc[part["gain"].idxmax()]
        lines.append(f"prompt weight, {name} ({best['dataset']}): the largest gain over weight 0 is at weight "
                     f"{best['x']:g}: {best['gain']:+.3f} [{best['ci_low']:+.3f}, {best['ci_high']:+.3f}].")
    return lines


def _ends(part: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """The lowest-x and highest-x points and how their 95 % intervals separate: "up", "down" or "" (overlap)."""
    part = part.sort_values("x")
    first, last = part.iloc[0], part.iloc[-1]
    return first, last, ("up" if first["ci_high"] < last["ci_low"] else "down" if last["ci_high"] < first["ci_low"]
                         else "")


def _gain(point: pd.Series) -> str:
    return f"{point['gain']:+.3f} [{point['ci_low']:+.3f}, {point['ci_high']:+.3f}]"


def reading_lines(table: pd.DataFrame, split: str = "heldout") -> list[str]:
    """Each trend against the literature's, in words: agrees, disagrees or inconclusive, decided by whether the
    end points' 95 % intervals separate in the expected direction (a rule, stated in each line)."""
    lines = []
    ratio = table[(table["curve"] == "ratio") & (table["split"] == split)]
    if len(ratio) >= 2:
        low, high, moved = _ends(ratio)
        verdict = {"up": "agrees", "down": "disagrees", "": "is inconclusive"}[moved]
        lines.append(f"Fig. 2 left (the paper: IM's gain grows with ln ratio): ours {verdict}: gain "
                     f"{_gain(low)} at ratio {low['x']:.2g} vs {_gain(high)} at {high['x']:.2g} "
                     f"(agrees: the intervals separate upwards; disagrees: downwards).")
    size = table[(table["curve"] == "size") & (table["split"] == split)]
    if len(size) >= 2:
        small, large, moved = _ends(size)
        verdict = {"down": "agrees", "up": "disagrees", "": "is inconclusive"}[moved]
        lines.append(f"Fig. 2 right (the paper: the gain shrinks with ln size): ours {verdict}: gain "
                     f"{_gain(small)} with {small['x']:g} examples vs {_gain(large)} with "
                     f"{large['x']:g} (agrees: the intervals separate downwards; disagrees: upwards).")
    pw = table[(table["curve"] == "prompt_weight") & (table["split"] == split)]
    for name, part in pw.groupby("set"):
        inner, one = part[part["x"] < 1], part[part["x"] == 1]
        if inner.empty or one.empty:
            continue
        best, im = inner.loc[inner["gain"].idxmax()], one.iloc[0]
        beats_both = best["ci_low"] > 0 and best["ci_low"] > im["ci_high"]
        end_wins = inner["ci_high"].max() < 0 or im["ci_low"] > inner["ci_high"].max()
        any_effect = bool(((part["ci_low"] > 0) | (part["ci_high"] < 0)).any())
        if name.startswith("short"):
            verdict = "agrees" if beats_both else "disagrees" if end_wins else "is inconclusive"
            rule = ("Huerta-Enochian & Ko 2024: on short completions a weight between 0 and 1 beats both ends; "
                    "agrees: the best inner weight's interval is above 0 and above weight 1's; disagrees: an end "
                    "beats every inner weight beyond the intervals")
        else:
            verdict = "agrees" if not any_effect else "disagrees"
            rule = ("Huerta-Enochian & Ko 2024: on long completions the weight has no effect; agrees: every "
                    "interval contains 0")
        lines.append(f"Prompt weight, {name} ({rule}): ours {verdict}: best inner weight {best['x']:g} "
                     f"{best['gain']:+.3f} [{best['ci_low']:+.3f}, {best['ci_high']:+.3f}], weight 1 "
                     f"{im['gain']:+.3f} [{im['ci_low']:+.3f}, {im['ci_high']:+.3f}].")
    return lines


def curves_figure(table: pd.DataFrame, paper_fits: Mapping[str, tuple[float, float] | None],
                  label: str = "") -> Figure:
    """Three panels: gain vs ratio, gain vs size (log x, our log-linear fit dashed, the paper's fit on a
    second axis), gain vs prompt weight (symlog x); every point with its paired 95 % interval."""
    fig = Figure(figsize=(14, 4.3), layout="constrained")
    axes = fig.subplots(1, 3)
    markers = {"heldout": "o", "reference": "s"}
    for ax, curve, xlabel, side in ((axes[0], "ratio", "instruction/output length ratio (words)", "left"),
                                    (axes[1], "size", "training examples", "right")):
        part = table[table["curve"] == curve]
        if part.empty:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
        for i, (split, rows) in enumerate(part.groupby("split")):
            rows = rows.sort_values("x")
            ax.errorbar(rows["x"].to_numpy(), rows["gain"].to_numpy(),
                        yerr=[(rows["gain"] - rows["ci_low"]).to_numpy(), (rows["ci_high"] - rows["gain"]).to_numpy()],
                        fmt=markers.get(split, "o"), color=f"C{i}", capsize=3, label=f"IM − IT, {SPLITS[split]}")
            if rows["x"].nunique() > 1:
                slope, intercept = np.polyfit(np.log(rows["x"]), rows["gain"], 1)
                xs = np.geomspace(rows["x"].min(), rows["x"].max(), 50)
                ax.plot(xs, slope * np.log(xs) + intercept, ls="--", color=f"C{i}", lw=1)
        fit = paper_fits.get(side)
        if fit is not None and not part.empty:
            twin = ax.twinx()
            xs = np.geomspace(part["x"].min(), part["x"].max(), 50)
            twin.plot(xs, fit[0] * np.log(xs) + fit[1], color="grey", lw=1,
                      label=f"paper Fig. 2 {side}: {fit_equation(*fit)} (its slope only)")
            twin.set_ylabel("paper: AlpacaEval 1.0 relative improvement (%)", fontsize=8, color="grey")
            twin.legend(fontsize=7, loc="lower right")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        if not part.empty:  # ticks at the measured x values, in plain numbers
            ticks = sorted(part["x"].unique())
            ax.set_xticks(ticks, [f"{x:.2g}" for x in ticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("output-loss gain of IM over IT (nats)")
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[2]
    part = table[table["curve"] == "prompt_weight"]
    for i, ((name, split), rows) in enumerate(part.groupby(["set", "split"])):
        rows = rows.sort_values("x")
        xs = np.concatenate([[0.0], rows["x"]])
        ys = np.concatenate([[0.0], rows["gain"]])  # weight 0 is IT itself
        ax.plot(xs, ys, color=f"C{i}", lw=0.8)
        ax.errorbar(rows["x"].to_numpy(), rows["gain"].to_numpy(),
                    yerr=[(rows["gain"] - rows["ci_low"]).to_numpy(), (rows["ci_high"] - rows["gain"]).to_numpy()],
                    fmt=markers.get(split, "o"), color=f"C{i}", capsize=3, label=f"{name}, {SPLITS[split]}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(0, 1.5)  # room for the points at weight 1
    ax.set_xlabel("prompt loss weight λp (0 = IT, 1 = IM)")
    ax.set_ylabel("output-loss gain over λp = 0 (nats)")
    ax.legend(fontsize=7)
    if label:
        fig.suptitle(label, fontsize=9)
    return fig
