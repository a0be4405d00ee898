"""The paper's 18 NLP tasks in 6 categories, and how they are averaged (paper_notes.md section 2).

Aggregation as in the authors' ``get_results_group.py`` (verified against all 23 rows of Table 1):
each category = unweighted mean of its task scores (fractions, x100); "Mean" = unweighted mean of the
6 category means, not of the 18 tasks.

WMT: the score is TER/100, which is *lower* is better, yet the authors average it like an accuracy, so
a higher Multilinguality can mean worse translation.  We keep their arithmetic (to be comparable with
Table 1) and flag the tasks ``higher_is_better=False``.  The paper counts WMT14 and WMT16 as two tasks
(:data:`PAPER_TASKS`, the default); the authors' code has one pooled ``gpt3_translation_benchmarks``
entry (:data:`CODE_TASKS`), which weights the category differently.

A task without a score is never silently dropped: its category (and the Mean) become ``None`` and the
task is listed as missing, unless ``allow_partial=True``, in which case the summary says what was averaged.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from imrepro.core.atomic import atomic_open

CATEGORIES = {  # key -> name as printed in Table 1 (and in resources/paper/paper_results.csv)
    "understanding_knowledge": "Understanding & Knowledge",
    "multilinguality": "Multilinguality",
    "commonsense_reasoning": "Commonsense Reasoning",
    "math_code_reasoning": "Math&Code Reasoning",
    "bbh": "BBH",
    "safety_helpfulness": "Safety & Helpfulness",
}
MEAN_KEY, MEAN_NAME = "mean_18_nlp", "Mean (18 NLP tasks)"
TER_NOTE = ("WMT14/WMT16 score = TER/100, lower is better, averaged into Multilinguality as if higher were "
            "better (the authors' arithmetic): a higher category score can mean worse translation")


@dataclass(frozen=True)
class TaskSpec:
    key: str
    benchmark: str  # name in the paper
    category: str  # key of CATEGORIES
    lm_eval_task: str | None  # the authors' harness task/group name (None: HumanEval, scored separately)
    metric: str  # metric key in lm-eval results (METRIC_DCT)
    shots: int | None  # as stated in App. B; None = not stated
    subtasks: tuple[str, ...] = ()  # leaf tasks in lm-eval 0.4.13 where the name is only a tag there
    higher_is_better: bool = True
    scale: float = 1.0  # raw metric x scale = the fraction the authors average (TER: /100)
    note: str = ""


_WMT14 = ("wmt14-en-fr", "wmt14-fr-en")
_WMT16 = ("wmt16-en-de", "wmt16-de-en", "wmt16-en-ro", "wmt16-ro-en")
_TER = {"metric": "ter,none", "shots": None, "higher_is_better": False, "scale": 0.01, "note": TER_NOTE}

PAPER_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("mmlu", "MMLU", "understanding_knowledge", "mmlu", "acc,none", 5,
             note="shots: 'follow the Open LLM Leaderboard' (5-shot, not stated explicitly)"),
    TaskSpec("piqa", "PIQA", "understanding_knowledge", "piqa", "acc_norm,none", 10),
    TaskSpec("openbookqa", "OpenBookQA", "understanding_knowledge", "openbookqa", "acc_norm,none", None),
    TaskSpec("hellaswag", "HellaSwag", "understanding_knowledge", "hellaswag", "acc_norm,none", 10),
    TaskSpec("lambada", "LAMBADA", "understanding_knowledge", "lambada", "acc,none", None,
             subtasks=("lambada_openai", "lambada_standard")),
    TaskSpec("lambada_multilingual", "LAMBADA Multilingual", "multilinguality", "lambada_multilingual", "acc,none",
             None, subtasks=tuple(f"lambada_openai_mt_{x}" for x in ("de", "en", "es", "fr", "it"))),
    TaskSpec("wmt14", "WMT 2014", "multilinguality", "wmt14", subtasks=_WMT14, **_TER),
    TaskSpec("wmt16", "WMT 2016", "multilinguality", "wmt16", subtasks=_WMT16, **_TER),
    TaskSpec("wsc273", "WSC", "commonsense_reasoning", "wsc273", "acc,none", None),
    TaskSpec("winogrande", "WinoGrande", "commonsense_reasoning", "winogrande", "acc,none", 5),
    TaskSpec("arc", "ARC", "commonsense_reasoning", "ai2_arc", "acc_norm,none", 25,
             subtasks=("arc_easy", "arc_challenge")),
    TaskSpec("coqa", "CoQA", "commonsense_reasoning", "coqa", "f1,none", 0),
    TaskSpec("gsm8k", "GSM8K", "math_code_reasoning", "gsm8k_cot", "exact_match,strict-match", 8),
    TaskSpec("humaneval", "HumanEval", "math_code_reasoning", None, "pass@1", 0,
             note="n=20, top_p 0.95, better pass@1 of T=0.1 and T=0.7 (imrepro.eval.humaneval)"),
    TaskSpec("bbh", "BIG-Bench Hard", "bbh", "bbh_cot_fewshot", "exact_match,get-answer", 0,
             note="App. B: 'without few-shot examples'; lm-eval's cot_fewshot prompts carry 3 exemplars"),
    TaskSpec("truthfulqa_mc2", "TruthfulQA", "safety_helpfulness", "truthfulqa_mc2", "acc,none", 6,
             note="the fixed 6-QA preamble"),
    TaskSpec("toxigen", "ToxiGen", "safety_helpfulness", "toxigen", "acc,none", None),
    TaskSpec("hendrycks_ethics", "Hendrycks Ethics", "safety_helpfulness", "hendrycks_ethics", "acc,none", None,
             subtasks=("ethics_cm", "ethics_deontology", "ethics_justice", "ethics_utilitarianism", "ethics_virtue")),
)
CODE_TASKS: tuple[TaskSpec, ...] = tuple(
    replace(t, key="wmt", benchmark="WMT 2014 + WMT 2016", lm_eval_task="gpt3_translation_benchmarks",
            subtasks=_WMT14 + _WMT16) if t.key == "wmt14" else t
    for t in PAPER_TASKS if t.key != "wmt16"
)
assert len(PAPER_TASKS) == 18 and len(CODE_TASKS) == 17


def category_scores(task_scores: Mapping[str, float | None], *, tasks: Iterable[TaskSpec] = PAPER_TASKS,
                    allow_partial: bool = False) -> dict[str, float | None]:
    """Category key -> mean of its tasks' fractions x100; ``None`` if a task is missing (unless partial)."""
    out = {}
    for category, specs in _by_category(tasks).items():
        values = [task_scores[t.key] for t in specs if _present(task_scores.get(t.key))]
        complete = len(values) == len(specs)
        out[category] = 100.0 * sum(values) / len(values) if values and (complete or allow_partial) else None
    return out


def nlp_mean(scores: Mapping[str, float | None], *, allow_partial: bool = False) -> float | None:
    """Unweighted mean of the 6 category scores; ``None`` if one is missing (unless partial)."""
    values = [scores.get(c) for c in CATEGORIES]
    present = [v for v in values if _present(v)]
    if not present or (len(present) < len(values) and not allow_partial):
        return None
    return sum(present) / len(present)


def missing_tasks(task_scores: Mapping[str, float | None], *, tasks: Iterable[TaskSpec] = PAPER_TASKS) -> list[str]:
    return [t.key for t in tasks if not _present(task_scores.get(t.key))]


def summarize(run: str, task_scores: Mapping[str, float | None], *, tasks: Iterable[TaskSpec] = PAPER_TASKS,
              allow_partial: bool = False, extra: Iterable[tuple[str, str, float | None]] = ()) -> dict:
    """Everything summary.json holds for one run.

    ``task_scores``: task key -> fraction as the authors average it (TER already /100, see
    :func:`task_scores_from_lm_eval`).  ``extra``: other benchmarks' (benchmark, metric, value)
    triples, e.g. ``[("MT-Bench", "score", 4.8), ("AlpacaEval 1.0", "win_rate", 33.1)]``.
    """
    tasks = tuple(tasks)
    categories = category_scores(task_scores, tasks=tasks, allow_partial=allow_partial)
    missing = missing_tasks(task_scores, tasks=tasks)
    summary = {
        "run": run,
        "tasks": {t.key: {"benchmark": t.benchmark, "category": t.category, "metric": t.metric,
                          "value": task_scores[t.key] if _present(task_scores.get(t.key)) else None,
                          "higher_is_better": t.higher_is_better, "scale": t.scale} for t in tasks},
        "categories": {
            c: {"name": CATEGORIES[c], "score": categories[c],
                "tasks_averaged": [t.key for t in specs if t.key not in missing],
                "tasks_missing": [t.key for t in specs if t.key in missing]}
            for c, specs in _by_category(tasks).items()},
        MEAN_KEY: nlp_mean(categories, allow_partial=allow_partial),
        "n_tasks": len(tasks),
        "complete": not missing,
        "missing_tasks": missing,
        "partial": bool(missing) and allow_partial,
        "notes": [TER_NOTE] if any(not t.higher_is_better for t in tasks) else [],
        "extra": [{"benchmark": name, "metric": metric, "value": value} for name, metric, value in extra],
    }
    return summary


def write_summary(path: str | os.PathLike, summary: Mapping) -> None:
    with atomic_open(path) as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")


def to_long_rows(run: str, summary: Mapping) -> list[tuple[str, str, str, float | None]]:
    """(run, benchmark, metric, value) rows: tasks and categories in % (as printed), then the Mean, then extras.

    Lower-is-better metrics carry ``[lower is better]`` in the metric column.
    """
    rows = []
    for task in summary["tasks"].values():
        metric = task["metric"] + ("" if task["higher_is_better"] else " [lower is better]")
        value = None if task["value"] is None else 100.0 * task["value"]
        rows.append((run, task["benchmark"], metric, value))
    for category in summary["categories"].values():
        rows.append((run, category["name"], "category_mean", category["score"]))
    rows.append((run, MEAN_NAME, "mean_of_6_categories", summary[MEAN_KEY]))
    for item in summary.get("extra", []):
        rows.append((run, item["benchmark"], item["metric"], item["value"]))
    return rows


def write_long_csv(path: str | os.PathLike, rows: Iterable[tuple],
                   columns: tuple[str, ...] = ("run", "benchmark", "metric", "value")) -> None:
    """Write results/tables/eval_long.csv (header ``columns``; empty value = missing)."""
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])


def task_scores_from_lm_eval(output: Mapping, *, humaneval_pass1: float | None = None,
                             tasks: Iterable[TaskSpec] = PAPER_TASKS, subtask_weighting: str = "size") -> dict:
    """Task key -> fraction from an lm-eval results JSON (the whole output, or just its "results").

    A task's own (group) row is used when present; otherwise, for names that are only tags in lm-eval
    0.4.13, its subtasks are combined, weighted by their sample counts (``"size"``: what the harness'
    groups did in the authors' time, to our knowledge; needs ``n-samples``) or plainly (``"mean"``).
    A task with any subtask missing is left out, hence reported missing downstream.
    """
    if subtask_weighting not in ("size", "mean"):
        raise ValueError(f"subtask_weighting must be 'size' or 'mean', not {subtask_weighting!r}")
    results = output.get("results", output)
    sizes = output.get("n-samples", {})
    scores = {}
    for spec in tasks:
        if spec.lm_eval_task is None:
            if spec.key == "humaneval" and humaneval_pass1 is not None:
                scores[spec.key] = humaneval_pass1
            continue
        row = results.get(spec.lm_eval_task, {})
        if _present(row.get(spec.metric)):
            scores[spec.key] = row[spec.metric] * spec.scale
            continue
        values = [results.get(sub, {}).get(spec.metric) for sub in spec.subtasks]
        if not spec.subtasks or not all(_present(v) for v in values):
            continue
        if subtask_weighting == "size":
            if not all(sub in sizes for sub in spec.subtasks):
                raise ValueError(f"size weighting of {spec.key} needs n-samples for {spec.subtasks}")
            weights = [sizes[sub].get("effective", sizes[sub].get("original")) for sub in spec.subtasks]
        else:
            weights = [1] * len(values)
        scores[spec.key] = sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights) * spec.scale
    return scores


def _by_category(tasks: Iterable[TaskSpec]) -> dict[str, list[TaskSpec]]:
    grouped = {c: [] for c in CATEGORIES}
    for spec in tasks:
        grouped[spec.category].append(spec)
    return grouped


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
