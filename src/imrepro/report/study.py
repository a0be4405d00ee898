"""Tables and the figure of the real-model study (profiles/study, docs/STUDY.md).

The study trains seed replicates of each arm (a method: a label policy; the run group's ``seeds`` give
the replicates) on small slices and evaluates output loss on the training
set and a held-out set (paper Fig. 3), regeneration BLEU (Table 2) and a few lm-eval slices. Here
the per-run results (``results/eval/<target>/<benchmark>.json``) become:

* a long table, one row per (target, dataset, arm, seed, metric); arms are method ids, compared by
  their labels policy (``it`` against ``im_authors`` and ``im``), shown by their ``paper_name`` (``label``);
* the study table: mean +- spread (sample standard deviation) over seeds per dataset and arm, the
  base model beside them, and one plain sentence per dataset saying whether IM's held-out output
  loss is below IT's: :func:`paired_verdict_lines` (paired over held-out examples, across seeds, the
  comparison stage's test) where the per-example losses are there, else :func:`verdict_lines` (the two
  mean +- spread intervals do not overlap);
* the figure: train vs held-out output loss per arm and dataset (one point per seed), and the
  held-out loss difference IM - IT against the dataset's instruction/output length ratio.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from imrepro.core.atomic import atomic_open, atomic_path
from imrepro.eval.item_scores import output_loss_items
from imrepro.report.comparisons import arm_difference
from imrepro.train.label_policies import DEPRECATED_POLICIES

BASE = "base"
IT_POLICY = "it"
IM_POLICIES = ("im_authors", "im")  # the authors' masking (published numbers) and Eq. 4


def _policy(labels):
    """A labels policy by its current name (``im_seed``: ``im_authors``); None (the base model) as it is."""
    return DEPRECATED_POLICIES.get(labels, labels)
COLUMNS = ["target", "dataset", "arm", "labels", "label", "seed", "metric", "value"]
LOSS_METRICS = ("train_output_loss", "heldout_output_loss")
REFERENCE_METRIC = "reference_output_loss"  # output loss of good answers (AlpacaEval's reference), where configured


def _metrics(result: dict) -> dict[str, float]:
    """The study's numbers in one evaluation result file (empty when it was not scored)."""
    if result.get("status") != "scored":
        return {}
    if result["benchmark"] == "output_loss":
        out = {}
        for part, name in (("train", "train_output_loss"), ("heldout", "heldout_output_loss"),
                           ("reference", REFERENCE_METRIC)):
            if (result.get(part) or {}).get("mean") is not None:
                out[name] = float(result[part]["mean"])
        return out
    if result["benchmark"] == "regen_bleu":
        return {"regen_bleu": float(result["value"])}
    if result.get("kind") == "lm_eval" and result.get("value") is not None:
        return {result["benchmark"]: float(result["value"])}
    return {}


def long_table(result_paths: Iterable[str | os.PathLike], targets: Mapping[str, dict]) -> pd.DataFrame:
    """One row per (target, metric). ``targets``: target id -> {dataset, arm, labels, seed, label} (arm: the
    method id; the base model: dataset None, arm ``base``); the target of a file is its directory name."""
    rows = []
    for path in map(Path, result_paths):
        target = path.parent.name
        if target not in targets:
            raise ValueError(f"{path}: target {target!r} is not a study target")
        info = targets[target]
        for metric, value in _metrics(json.loads(path.read_text())).items():
            rows.append({"target": target, "dataset": info["dataset"], "arm": info["arm"],
                         "labels": _policy(info["labels"]), "label": info["label"], "seed": info["seed"],
                         "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=COLUMNS)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, spread (sample std; 0 for one seed) and seed count per dataset, arm and metric.
    Base-model rows (no dataset) are repeated for every dataset, as the common starting point."""
    runs = long[long["arm"] != BASE]
    base = long[long["arm"] == BASE]
    frames = [runs]
    for dataset in sorted(runs["dataset"].dropna().unique()):
        frames.append(base.assign(dataset=dataset))
    data = pd.concat(frames, ignore_index=True)
    grouped = data.groupby(["dataset", "arm", "metric"])["value"]
    out = grouped.agg(mean="mean", n="count").reset_index()
    out["spread"] = grouped.std(ddof=1).fillna(0.0).to_numpy()
    arms = long.drop_duplicates("arm").set_index("arm")
    out["labels"] = out["arm"].map(arms["labels"])
    out["label"] = out["arm"].map(arms["label"])
    return out[["dataset", "arm", "labels", "label", "metric", "n", "mean", "spread"]]


def reference_arm(summary: pd.DataFrame) -> str | None:
    """The arm every other is compared with: the one method whose labels policy is ``it`` (None: not one)."""
    arms = summary.loc[summary["labels"] == IT_POLICY, "arm"].unique()
    return arms[0] if len(arms) == 1 else None


def below_beyond_spread(summary: pd.DataFrame, dataset: str, arm: str,
                        metric: str = "heldout_output_loss") -> tuple[str, dict] | None:
    """``(verdict, numbers)`` comparing ``arm`` (a method id) with the ``it`` arm on ``metric``: "below",
    "above" (beyond the spread: the mean +- spread intervals do not overlap) or "not distinguishable"."""
    rows = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)].set_index("arm")
    reference = reference_arm(summary)
    if arm not in rows.index or reference not in rows.index:
        return None
    a, it = rows.loc[arm], rows.loc[reference]
    if a["mean"] + a["spread"] < it["mean"] - it["spread"]:
        verdict = "below"
    elif a["mean"] - a["spread"] > it["mean"] + it["spread"]:
        verdict = "above"
    else:
        verdict = "not distinguishable"
    return verdict, {"arm_mean": a["mean"], "arm_spread": a["spread"], "arm_n": int(a["n"]), "arm_label": a["label"],
                     "it_mean": it["mean"], "it_spread": it["spread"], "it_n": int(it["n"]), "it_label": it["label"]}


def verdict_lines(summary: pd.DataFrame) -> list[str]:
    """One sentence per dataset and IM arm (labels ``im_authors``, then ``im``) about held-out output loss vs
    the ``it`` arm, each arm named by its label."""
    arms = summary.drop_duplicates("arm")
    im_arms = [arm for policy in IM_POLICIES for arm in arms.loc[arms["labels"] == policy, "arm"]]
    lines = []
    for dataset in sorted(summary["dataset"].unique()):
        for arm in im_arms:
            found = below_beyond_spread(summary, dataset, arm)
            if found is None:
                continue
            verdict, v = found
            name, it = v["arm_label"], v["it_label"]
            numbers = (f"{name} {v['arm_mean']:.3f} +- {v['arm_spread']:.3f} (n={v['arm_n']}) vs "
                       f"{it} {v['it_mean']:.3f} +- {v['it_spread']:.3f} (n={v['it_n']})")
            text = {"below": f"is below {it}'s beyond the spread",
                    "above": f"is above {it}'s beyond the spread",
                    "not distinguishable": f"is not distinguishable from {it}'s within the spread"}[verdict]
            lines.append(f"{dataset}: {name}'s held-out output loss {text}: {numbers}.")
    return lines


def paired_verdict_lines(result_paths: Iterable[str | os.PathLike], targets: Mapping[str, dict], *,
                         confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> list[str]:
    """One sentence per dataset and IM arm about held-out output loss vs IT, from the comparison stage's
    machinery (:func:`imrepro.report.comparisons.arm_difference`): paired over the held-out examples, each
    example's loss averaged over the arm's seeds; the interval covers example sampling, the seed spread is
    given beside it."""
    seeds: dict[tuple[str, str], list] = {}
    labels_of: dict[str, str] = {}  # arm (method id) -> its labels policy
    for path in map(Path, result_paths):
        info = targets.get(path.parent.name)
        if path.stem != "output_loss" or info is None or info["arm"] == BASE:
            continue
        items = output_loss_items(json.loads(path.read_text()), "heldout", str(path))
        if items:
            seeds.setdefault((info["dataset"], info["arm"]), []).append(items)
            labels_of[info["arm"]] = _policy(info["labels"])
    references = [arm for arm, labels in labels_of.items() if labels == IT_POLICY]
    if len(references) != 1:  # no IT arm, or several: nothing to compare with
        return []
    it_arm = references[0]
    im_arms = [arm for policy in IM_POLICIES for arm, labels in labels_of.items() if labels == policy]
    lines = []
    for dataset in sorted({d for d, _ in seeds}):
        for arm in im_arms:
            if (dataset, arm) not in seeds or (dataset, it_arm) not in seeds:
                continue
            a, b = seeds[(dataset, it_arm)], seeds[(dataset, arm)]
            diff = arm_difference(a, b, f"{dataset}: {arm} vs {it_arm}, held-out output loss",
                                  confidence=confidence, n_resamples=n_resamples, seed=seed)
            r = diff.result
            word = ("below" if r.ci_high < 0 else "above" if r.ci_low > 0 else "not distinguishable from")
            lines.append(f"{dataset}: {arm}'s held-out output loss is {word} {it_arm}'s: {r.delta:+.3f} nats "
                         f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] ({round(confidence * 100)} % paired bootstrap over "
                         f"{diff.n_units} held-out examples, p = {r.p_value:.3g}; each example averaged over "
                         f"{len(b)} vs {len(a)} seeds, seed sd {diff.seed_sd_b:.3f} vs {diff.seed_sd_a:.3f}).")
    return lines


def _cell(row) -> str:
    if row is None:
        return "—"
    if row["n"] > 1:
        return f"{row['mean']:.3f} ± {row['spread']:.3f}"
    return f"{row['mean']:.3f}"


def study_table(summary: pd.DataFrame, ratios: Mapping[str, float] | None = None,
                arm_order: Iterable[str] = ()) -> pd.DataFrame:
    """Wide table: one row per (dataset, arm), one column per metric (``mean ± spread``); ``arm_order``: method
    ids; the ``arm`` column shows each arm's label."""
    metrics = [m for m in (*LOSS_METRICS, REFERENCE_METRIC, "regen_bleu") if m in set(summary["metric"])]
    metrics += sorted(set(summary["metric"]) - set(metrics))
    order = list(dict.fromkeys([BASE, *arm_order, *sorted(summary["arm"].unique())]))
    rows = []
    for dataset in sorted(summary["dataset"].unique()):
        part = summary[summary["dataset"] == dataset]
        for arm in order:
            cells = part[part["arm"] == arm].set_index("metric")
            if cells.empty:
                continue
            row = {"dataset": dataset, "instruction/output": (ratios or {}).get(dataset, math.nan),
                   "arm": cells["label"].iloc[0], "seeds": int(cells["n"].max())}
            for metric in metrics:
                row[metric] = _cell(cells.loc[metric] if metric in cells.index else None)
            rows.append(row)
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    def fmt(value):
        if isinstance(value, float):
            return "—" if math.isnan(value) else f"{value:.3g}"
        return str(value)

    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def shares_table(shares: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: trained-token share per dataset and policy (``{dataset: {policy: share}}``)."""
    policies = list(dict.fromkeys(p for row in shares.values() for p in row))
    frame = pd.DataFrame([{"dataset": d, **{f"`{p}`": f"{v[p]:.3f}" for p in policies}}
                          for d, v in shares.items()])
    return _markdown(frame)


def write_tables(summary: pd.DataFrame, long: pd.DataFrame, paths: Mapping[str, str | os.PathLike],
                 ratios: Mapping[str, float], arm_order: Iterable[str], label: str,
                 verdicts: list[str] | None = None) -> None:
    """The long and summary CSVs and the study table (CSV and Markdown) at ``paths["long"]``,
    ``paths["summary"]``, ``paths["csv"]`` and ``paths["table"]`` (the rule names the files); ``verdicts``:
    the sentences under the table (default: :func:`verdict_lines`, the seed spread only)."""
    table = study_table(summary, ratios, arm_order)
    for name, frame in (("long", long), ("summary", summary), ("csv", table)):
        with atomic_open(paths[name]) as handle:
            frame.to_csv(handle, index=False)
    text = [f"_{label}_" if label else "", "",
            "Mean ± spread (sample standard deviation) over seeds; one value where one seed ran. "
            "Output losses are per-example mean losses on output tokens (nats); regen_bleu is mean "
            "sentence BLEU-4 (0-100) of greedy answers to the training instructions vs the "
            "training outputs; lm-eval columns are accuracies on the shipped slices.", "",
            _markdown(table), "", *[f"* {line}" for line in (verdict_lines(summary) if verdicts is None
                                                             else verdicts)], ""]
    with atomic_open(paths["table"]) as handle:
        handle.write("\n".join(text))


def figure(summary: pd.DataFrame, long: pd.DataFrame, ratios: Mapping[str, float],
           arm_order: Iterable[str], label: str = "") -> Figure:
    """Left: held-out vs train output loss per dataset (points = seeds, crosses = means).
    Right: held-out loss of each IM arm minus IT's vs instruction/output ratio (error bar:
    the two spreads added in quadrature)."""
    datasets = sorted(d for d in long["dataset"].dropna().unique())
    arms = [a for a in dict.fromkeys([*arm_order, *sorted(long["arm"].unique())]) if a != BASE]
    colours = {arm: f"C{i}" for i, arm in enumerate(arms)}
    names = long.drop_duplicates("arm").set_index("arm")["label"]
    reference = reference_arm(summary)
    panels = len(datasets) + 1
    columns = min(panels, 4)  # wrapped, so that seven panels are not one 3,900-pixel row
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(4.4 * columns, 4.0 * rows), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False).ravel()
    for unused in grid[panels:]:
        unused.set_visible(False)
    axes = grid[:panels]
    wide = long[long["metric"].isin(LOSS_METRICS)].pivot_table(
        index=["target", "dataset", "arm", "seed"], columns="metric", values="value").reset_index()
    base = long[(long["arm"] == BASE)].set_index("metric")["value"]
    for ax, dataset in zip(axes, datasets, strict=False):
        part = wide[wide["dataset"] == dataset]
        for arm in arms:
            rows = part[part["arm"] == arm]
            if rows.empty or not set(LOSS_METRICS) <= set(rows.columns):
                continue
            ax.scatter(rows["train_output_loss"], rows["heldout_output_loss"], color=colours[arm],
                       alpha=0.6, s=22, label=names[arm])
            ax.scatter([rows["train_output_loss"].mean()], [rows["heldout_output_loss"].mean()],
                       color=colours[arm], marker="x", s=70)
        if "heldout_output_loss" in base.index:
            ax.axhline(base["heldout_output_loss"], color="grey", ls=":", lw=1, label="base (held-out)")
        ax.set_title(f"{dataset} (instr/output {ratios.get(dataset, math.nan):.2g})", fontsize=9)
        ax.set_xlabel("train output loss")
        ax.set_ylabel("held-out output loss")
        ax.legend(fontsize=7)
    ax = axes[-1]
    stats = summary[summary["metric"] == "heldout_output_loss"].set_index(["dataset", "arm"])
    for arm in arms:
        if arm == reference:
            continue
        xs, ys, errs = [], [], []
        for dataset in datasets:
            if (dataset, arm) in stats.index and (dataset, reference) in stats.index:
                a, it = stats.loc[(dataset, arm)], stats.loc[(dataset, reference)]
                xs.append(ratios.get(dataset, math.nan))
                ys.append(a["mean"] - it["mean"])
                errs.append(math.hypot(a["spread"], it["spread"]))
        if xs:
            ax.errorbar(xs, ys, yerr=errs, color=colours[arm], marker="o", capsize=3,
                        label=f"{names[arm]} − {names[reference]}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("instruction/output length ratio (words)")
    ax.set_ylabel("held-out output loss difference vs IT")
    ax.set_title("below 0: lower held-out loss than IT", fontsize=9)
    ax.legend(fontsize=7)
    if label:
        fig.suptitle(label, fontsize=9)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=130)


def instruction_output_ratio(stats: dict) -> float:
    """Mean instruction words / mean output words of a Table 5 statistics row."""
    return stats["avg_instruction"] / stats["avg_output"] if stats["avg_output"] else math.nan


def trained_token_shares(records: Mapping[str, object], policies: Mapping[str, tuple[str, float | None]]
                         ) -> dict[str, dict[str, float]]:
    """``{dataset: {column: share}}`` of trained label positions; ``policies``: column ->
    (label policy, prompt weight)."""
    from imrepro.train.label_policies import trained_share

    return {name: {column: trained_share(record, policy, weight)
                   for column, (policy, weight) in policies.items()}
            for name, record in records.items()}
