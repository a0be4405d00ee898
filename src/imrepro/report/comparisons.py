"""Paired comparisons of methods on the same items: ``results/tables/comparisons.csv`` and its words.

**Arms.** An arm is the set of trained runs of runs.csv that are equal in every column but ``run`` and
``seed`` (the training seeds of one configuration; a runs.csv without a ``seed`` column has one run per
arm). An arm's score of an item is the mean over its seeds; the seed spread (``seed_sd_a``/``_b``: the
standard deviation over seeds of the arm's value) is reported beside the interval.

**Comparisons** (config ``comparisons``): every method against ``against`` (default ``it``) on the arm that
is equal in everything but the method, plus the ``pairs`` named ``[baseline, method]`` (e.g. ``[im, im_seed]``).
Each is ``"<method> vs <baseline>"``; delta = method - baseline.

**Per benchmark** (every eval_long row with per-item scores in both arms, :mod:`imrepro.eval.item_scores`):
the items are paired by id (different item sets are an error); unparseable verdicts are left out on both
sides (``n_excluded``); MT-Bench resamples questions. Delta, a bootstrap interval and a sign-flip
permutation p-value: :mod:`imrepro.report.paired_stats`. The paper's composites (the six category means and
the Mean of the NLP tasks) get an interval from items resampled within each task.

**Families for Holm.** Per comparison: ``tasks`` (the NLP tasks one by one), ``table1`` (the columns of
Table 1: categories, Mean, MT-Bench, AlpacaEval 1.0/2.0; Table 4 shows a subset of them) and ``other``
(regeneration BLEU, output losses). ``p_holm`` is adjusted within its family; ``significant``:
``p_holm < alpha``.

**What the interval covers** (``interval_covers``): item sampling only, with the seeds fixed (the arm's
item scores averaged over its seeds); seed-to-seed variation is the separate ``seed_sd`` columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imrepro.core.atomic import atomic_open
from imrepro.eval.aggregate import CATEGORIES, MEAN_NAME, PAPER_TASKS
from imrepro.eval.item_scores import BenchmarkItems, read_items
from imrepro.eval.result_record import ItemScore
from imrepro.report.paired_stats import PairedResult, composite_difference, holm, pair_items, paired_difference
from imrepro.workflow_config import RUN_SETTING_KEYS

COLUMNS = ("comparison", "model", "dataset", "epochs", "method_a", "method_b", "method_a_name", "method_b_name",
           "benchmark", "metric", "family", "higher_is_better", "n_items", "n_units", "n_excluded", "value_a",
           "value_b", "delta", "ci_low", "ci_high", "p_value", "p_holm", "significant", "n_seeds", "n_seeds_a",
           "n_seeds_b", "seed_sd_a", "seed_sd_b", "stderr_lm_eval_a", "stderr_lm_eval_b", "interval_covers",
           "runs_a", "runs_b")
NUMBERS = ("n_items", "n_units", "n_excluded", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_value",
           "p_holm", "n_seeds", "n_seeds_a", "n_seeds_b", "seed_sd_a", "seed_sd_b", "stderr_lm_eval_a",
           "stderr_lm_eval_b")
# runs of one arm differ only here (a seed that redraws the data also changes the training set's statistics)
NOT_ARM_FACTS = ("run", "seed", "n_examples", "ratio_output_instruction")
# what differs between the two arms of a comparison: the method, its declared settings and swept values, and
# the paper arm derived from them (report_inputs.load_runs)
METHOD_FACTS = ("method", "method_paper_name", "arm", "swept", *(k for k in RUN_SETTING_KEYS if k != "seed"))
TASK_NAMES = {spec.benchmark: spec for spec in PAPER_TASKS}
TABLE1_ROWS = (*CATEGORIES.values(), MEAN_NAME, "MT-Bench", "AlpacaEval 1.0", "AlpacaEval 2.0")
COVERS = "items (seeds fixed: item scores averaged over the arm's seeds)"


@dataclass(frozen=True)
class Settings:
    against: str = "it"
    pairs: tuple[tuple[str, str], ...] = ()
    confidence: float = 0.95
    alpha: float = 0.05
    n_resamples: int = 9999
    seed: int = 0


@dataclass(frozen=True)
class Arm:
    runs: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]  # (column, value) of runs.csv, without run and seed

    @property
    def fact(self) -> dict[str, str]:
        return dict(self.facts)

    def others(self) -> tuple:
        return tuple((k, v) for k, v in self.facts if k not in METHOD_FACTS)


def arms_of(runs: pd.DataFrame) -> list[Arm]:
    """Trained runs grouped into arms (runs equal in everything but run and seed)."""
    trained = runs[~runs["is_base"].astype(str).str.lower().isin(("true", "1", "yes"))]
    columns = [c for c in trained.columns if c not in NOT_ARM_FACTS]
    groups: dict[tuple, list[str]] = {}
    for row in trained.itertuples(index=False):
        values = row._asdict()
        groups.setdefault(tuple((c, str(values[c])) for c in columns), []).append(values["run"])
    return [Arm(tuple(runs_), facts) for facts, runs_ in groups.items()]


def pairings(arms: Sequence[Arm], settings: Settings) -> list[tuple[str, Arm, Arm]]:
    """(name, baseline arm, method arm) for every configured comparison that both arms exist for."""
    wanted = [(settings.against, None)] + [(a, b) for a, b in settings.pairs]
    out = []
    for baseline, method in wanted:
        for arm_b in arms:
            name_b = arm_b.fact["method"]
            if name_b == baseline or (method is not None and name_b != method):
                continue
            for arm_a in arms:
                if arm_a.fact["method"] == baseline and arm_a.others() == arm_b.others():
                    out.append((f"{arm_label(arm_b)} vs {arm_label(arm_a)}", arm_a, arm_b))
    return list(dict.fromkeys(out))


def arm_label(arm: Arm) -> str:
    """The method id with the arm's swept values, e.g. ``plw prompt_weight=0.1`` (a sweep's points are arms of
    one method)."""
    fact = arm.fact
    return " ".join([fact["method"], *(f"{name}={fact[name]}" for name in fact.get("swept", "").split())])


# ---- one arm against another ------------------------------------------------------------------

@dataclass(frozen=True)
class ArmDifference:
    """One benchmark, arm b - arm a: the paired test and each arm's value per training seed."""
    result: PairedResult
    n_items: int
    n_units: int
    n_excluded: int
    differences: np.ndarray  # per unit, b - a (seed means)
    values_a: tuple[float, ...]  # the arm's value (mean over the paired items) per seed
    values_b: tuple[float, ...]

    @property
    def seed_sd_a(self) -> float:
        return _seed_sd(self.values_a)

    @property
    def seed_sd_b(self) -> float:
        return _seed_sd(self.values_b)


def seed_means(seeds: Sequence[Sequence[ItemScore]], what: str) -> dict[str, tuple[float | None, str, str]]:
    """item id -> (mean score over the seeds, None if any seed has none; cluster; doc_hash). Every seed must
    have scored the same items."""
    if not seeds:
        raise ValueError(f"{what}: an arm without runs")
    scores = [{i.item: i.score for i in items} for items in seeds]
    for number, seed in enumerate(scores[1:], 2):
        if set(seed) != set(scores[0]):
            raise ValueError(f"{what}: seed 1 and seed {number} of one arm scored different items")
    merged = {}
    for item in seeds[0]:
        values = [s[item.item] for s in scores]
        merged[item.item] = (None if any(v is None for v in values) else float(np.mean(values)), item.cluster,
                             item.doc_hash)
    return merged


def arm_difference(seeds_a: Sequence[Sequence[ItemScore]], seeds_b: Sequence[Sequence[ItemScore]], what: str, *,
                   confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> ArmDifference:
    """Arm b - arm a on one benchmark, paired over items, seeds averaged per item.

    ``seeds_a``/``seeds_b``: one item list per training seed of the arm (any number of seeds each). Items are
    paired by id (:func:`imrepro.report.paired_stats.pair_items`: different item sets are an error naming
    ``what``); the interval and p-value (:func:`imrepro.report.paired_stats.paired_difference`) cover item
    sampling with the seeds fixed; ``values_a``/``values_b`` give the seed spread. The study's verdicts and
    every row of comparisons.csv come from here."""
    merged_a, merged_b = seed_means(seeds_a, what), seed_means(seeds_b, what)
    paired = pair_items(merged_a, merged_b, what)
    if not paired.n_items:
        raise ValueError(f"{what}: no item has a score in both arms")
    result = paired_difference(paired.a, paired.b, confidence=confidence, n_resamples=n_resamples, seed=seed)
    kept = [i for i in merged_a if merged_a[i][0] is not None and merged_b[i][0] is not None]

    def per_seed(seeds):
        return tuple(float(np.mean([scores[i] for i in kept])) for scores in
                     ({i.item: i.score for i in items} for items in seeds))

    return ArmDifference(result, paired.n_items, len(paired.units), paired.n_excluded, paired.b - paired.a,
                         per_seed(seeds_a), per_seed(seeds_b))


def _seed_sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


# ---- the table --------------------------------------------------------------------------------

def compare(runs: pd.DataFrame, items: Mapping[str, Mapping[tuple[str, str], BenchmarkItems]],
            settings: Settings) -> pd.DataFrame:
    """comparisons.csv as a frame (:data:`COLUMNS`); ``items``: run id -> (benchmark, metric) -> items."""
    rows = []
    for name, arm_a, arm_b in pairings(arms_of(runs), settings):
        rows += _compare_arms(name, arm_a, arm_b, items, settings)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if not frame.empty:
        for _, group in frame.groupby(["comparison", "runs_a", "runs_b", "family"], sort=False):
            frame.loc[group.index, "p_holm"] = holm(group["p_value"].tolist())
        frame["significant"] = frame["p_holm"] < settings.alpha
    return frame


def _compare_arms(name: str, arm_a: Arm, arm_b: Arm, items, settings: Settings) -> list[dict]:
    keys = list(dict.fromkeys(k for run in arm_a.runs + arm_b.runs for k in items.get(run, {})))
    common = {"comparison": name, "model": arm_b.fact["model"], "dataset": arm_b.fact["dataset"],
              "epochs": arm_b.fact.get("epochs", ""), "method_a": arm_a.fact["method"],
              "method_b": arm_b.fact["method"], "method_a_name": arm_a.fact.get("method_paper_name", ""),
              "method_b_name": arm_b.fact.get("method_paper_name", ""), "n_seeds_a": len(arm_a.runs),
              "n_seeds_b": len(arm_b.runs), "n_seeds": min(len(arm_a.runs), len(arm_b.runs)),
              "interval_covers": COVERS, "runs_a": " ".join(arm_a.runs), "runs_b": " ".join(arm_b.runs)}
    rows, task_diffs, task_values = [], {}, {}
    for key in keys:
        records_a = [items.get(run, {}).get(key) for run in arm_a.runs]
        records_b = [items.get(run, {}).get(key) for run in arm_b.runs]
        if None in records_a or None in records_b:
            continue
        what = f"{name}, {arm_b.fact['dataset']}, {key[0]}"
        if not any(i.score is not None for r in records_a for i in r.items):
            continue
        diff = arm_difference([r.items for r in records_a], [r.items for r in records_b], what,
                              confidence=settings.confidence, n_resamples=settings.n_resamples, seed=settings.seed)
        if key[0] in TASK_NAMES:
            task_diffs[key[0]] = diff.differences
            task_values[key[0]] = (diff.values_a, diff.values_b)
        result = diff.result
        rows.append({**common, "benchmark": key[0], "metric": key[1],
                     "family": "tasks" if key[0] in TASK_NAMES else "table1" if key[0] in TABLE1_ROWS else "other",
                     "higher_is_better": records_b[0].higher_is_better, "n_items": diff.n_items,
                     "n_units": diff.n_units, "n_excluded": diff.n_excluded, "value_a": float(np.mean(diff.values_a)),
                     "value_b": float(np.mean(diff.values_b)), "delta": result.delta, "ci_low": result.ci_low,
                     "ci_high": result.ci_high, "p_value": result.p_value, "p_holm": math.nan,
                     "seed_sd_a": diff.seed_sd_a, "seed_sd_b": diff.seed_sd_b,
                     "stderr_lm_eval_a": records_a[0].reported_stderr,
                     "stderr_lm_eval_b": records_b[0].reported_stderr})
    rows += _composites(common, task_diffs, task_values, settings)
    return rows


def _composites(common: dict, diffs: Mapping[str, np.ndarray], values: Mapping[str, tuple], settings) -> list[dict]:
    """The category means and the Mean of categories over the tasks both arms have items for."""
    tasks = list(diffs)
    categories = {c: [i for i, t in enumerate(tasks) if TASK_NAMES[t].category == c] for c in CATEGORIES}
    categories = {c: idx for c, idx in categories.items() if idx}
    rows = []

    def row(benchmark: str, metric: str, combine) -> dict:
        result = composite_difference([diffs[t] for t in tasks], combine, confidence=settings.confidence,
                                      n_resamples=settings.n_resamples, seed=settings.seed)
        per_seed = [np.array(v) for v in zip(*[values[t][0] for t in tasks], strict=True)]
        per_seed_b = [np.array(v) for v in zip(*[values[t][1] for t in tasks], strict=True)]
        seeds_a = [float(combine(v)) for v in per_seed]
        seeds_b = [float(combine(v)) for v in per_seed_b]
        return {**common, "benchmark": benchmark, "metric": metric, "family": "table1", "higher_is_better": True,
                "n_items": result.n_units, "n_units": result.n_units, "n_excluded": 0,
                "value_a": float(np.mean(seeds_a)), "value_b": float(np.mean(seeds_b)), "delta": result.delta,
                "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value, "p_holm": math.nan,
                "seed_sd_a": _seed_sd(seeds_a), "seed_sd_b": _seed_sd(seeds_b), "stderr_lm_eval_a": None,
                "stderr_lm_eval_b": None}

    if not categories:
        return rows
    for category, idx in categories.items():
        rows.append(row(CATEGORIES[category], "category_mean", lambda m, idx=idx: np.mean(m[..., idx], axis=-1)))
    groups = list(categories.values())

    def mean_of_categories(m):
        return np.mean(np.stack([np.mean(m[..., idx], axis=-1) for idx in groups], axis=-1), axis=-1)

    rows.append(row(MEAN_NAME, "mean_of_6_categories", mean_of_categories))
    return rows


# ---- files ------------------------------------------------------------------------------------

def load_items(paths: Iterable[str | Path]) -> dict[str, dict[tuple[str, str], BenchmarkItems]]:
    out = {}
    for path in paths:
        target, benchmarks = read_items(path)
        out[target] = {(b.benchmark, b.metric): b for b in benchmarks}
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_open(path) as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")


def load_comparisons(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: comparisons table not found")
    frame = pd.read_csv(path, keep_default_na=False, dtype={"epochs": str, "runs_a": str, "runs_b": str})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: comparisons table lacks column(s) {', '.join(missing)}")
    for column in NUMBERS:
        text = frame[column].astype(str).str.strip()
        frame[column] = pd.to_numeric(text.where(~text.isin(("", "None", "nan")), None), errors="raise")
    frame["significant"] = frame["significant"].astype(str).str.lower() == "true"
    return frame


def _fmt(x: float, decimals: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{decimals}f}"


def interval_text(row) -> str:
    """'+1.60 [-0.30, +3.50]' (delta and its interval)."""
    return f"{_fmt(row['delta'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


def to_markdown(frame: pd.DataFrame, settings: Settings, label: str | None = None) -> str:
    """The report's section: in words, which differences are significant after Holm's correction."""
    pct = round(settings.confidence * 100)
    lines = [f"> **{label}**", ""] if label else []
    lines += ["### Paired comparisons", "",
              f"Each difference is method − baseline on the items both scored, with a {pct} % paired bootstrap "
              f"interval and a sign-flip permutation p-value ({settings.n_resamples} resamples, seed "
              f"{settings.seed}); MT-Bench resamples questions; category means and the Mean resample items within "
              f"each task. p-values are Holm-adjusted within a comparison's family (the NLP tasks; the columns of "
              f"Table 1; the rest); *significant* means adjusted p < {settings.alpha}. The intervals cover item "
              f"sampling with the training seeds fixed; `seed_sd` in comparisons.csv is the spread over seeds.", ""]
    if frame.empty:
        return "\n".join(lines + ["No comparison could be made: no two arms with per-item scores.", ""])
    for (name, dataset, epochs), group in frame.groupby(["comparison", "dataset", "epochs"], sort=False):
        seeds = f"{group['n_seeds_a'].iloc[0]} vs {group['n_seeds_b'].iloc[0]} seed(s)"
        lines.append(f"**{name}** on {dataset}, {epochs} epoch(s) ({group['model'].iloc[0]}, {seeds}):")
        hits = group[group["significant"]]
        if hits.empty:
            lines.append(f"no significant difference on any of {len(group)} benchmark rows.")
        else:
            said = "; ".join(f"{r['benchmark']} {interval_text(r)} (p_holm {r['p_holm']:.3g}, "
                             f"{'better' if (r['delta'] > 0) == bool(r['higher_is_better']) else 'worse'})"
                             for _, r in hits.iterrows())
            lines.append(f"significant on {len(hits)} of {len(group)} rows: {said}.")
        lines.append("")
    lines += ["| comparison | dataset | benchmark | n | Δ [CI] | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        mark = "*" if r["significant"] else ""
        lines.append(f"| {r['comparison']} | {r['dataset']} | {r['benchmark']} | {r['n_units']} | "
                     f"{interval_text(r)}{mark} | {r['p_value']:.3g} | {r['p_holm']:.3g} |")
    return "\n".join(lines) + "\n"


def write_markdown(text: str, path: str | Path) -> None:
    with atomic_open(path) as handle:
        handle.write(text)
