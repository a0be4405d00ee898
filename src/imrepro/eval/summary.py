"""From per-benchmark result files to one summary per evaluated model, and the long table.

Each ``results/eval/<target>/<benchmark>.json`` is a :class:`imrepro.eval.result_record.BenchmarkResult`,
checked by :func:`load_result` (status "not_shipped": an lm-eval task with no local data in offline mode,
listed in the summary and never scored). The summary is :func:`imrepro.eval.aggregate.summarize`
plus the judged benchmarks, BLEU and output losses as extra (benchmark, metric, value) rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from imrepro.eval import aggregate
from imrepro.eval.catalogue import DISPLAY_NAMES, LM_EVAL_TASKS
from imrepro.eval.result_record import load_result

__all__ = ["LONG_COLUMNS", "LOSS_NAMES", "load_result", "long_rows", "partial_notes", "summarize_target"]

LOSS_NAMES = {"train": "Output loss (train)", "heldout": "Output loss (held-out)",
              "reference": "Output loss (reference answers)"}


def _extra_rows(name: str, result: Mapping) -> list[tuple[str, str, float | None]]:
    if name == "mt_bench":
        return [("MT-Bench", "score", result["value"])]
    if name.startswith("alpaca_eval_"):
        display = DISPLAY_NAMES[name]
        return [(display, metric, result.get(key)) for metric, key in
                (("win_rate", "value"), ("lc_win_rate", "lc_win_rate"), ("avg_length", "avg_length"))]
    if name == "regen_bleu":
        return [("Regeneration BLEU", "bleu", result["value"])]
    if name == "output_loss":
        # train and held-out always (empty where not scored); the reference answers where configured
        return [(LOSS_NAMES[split], "mean_per_example_loss", (result.get(split) or {}).get("mean"))
                for split in LOSS_NAMES if split != "reference" or result.get(split)]
    return []


def summarize_target(target: str, results: Iterable[Mapping], *, allow_partial: bool, judge_label: str,
                     not_shipped: Iterable[str] = ()) -> dict:
    """``not_shipped``: configured lm-eval tasks that had no job (no local slice offline)."""
    task_scores, extra, evaluated, unparseable = {}, [], [], {}
    not_shipped = list(not_shipped)
    for result in results:
        name = result["benchmark"]
        evaluated.append(name)
        if name in LM_EVAL_TASKS or name == "humaneval":
            if result["status"] == "not_shipped":
                not_shipped.append(name)
            else:
                task_scores[name] = result["value"]
        else:
            extra += _extra_rows(name, result)
        if "n_unparseable" in result:
            unparseable[name] = result["n_unparseable"]
    summary = aggregate.summarize(target, task_scores, allow_partial=allow_partial, extra=extra)
    summary.update(
        benchmarks_evaluated=evaluated,
        benchmarks_not_evaluated=[t.key for t in aggregate.PAPER_TASKS if t.key not in evaluated + not_shipped],
        not_shipped=not_shipped,
        judge_label=judge_label,
        unparseable_verdicts=unparseable,
    )
    if not_shipped:
        summary["notes"].append(f"not shipped locally, so not scored: {', '.join(not_shipped)}")
    return summary


LONG_COLUMNS = ("run", "benchmark", "metric", "value", "note", "seed")


def partial_notes(summary: Mapping) -> dict[str, str]:
    """Benchmark name -> note for category means (and their Mean) averaged over fewer items than the paper."""
    notes = {}
    for category in summary["categories"].values():
        averaged, missing = category["tasks_averaged"], category["tasks_missing"]
        if category["score"] is not None and missing:
            notes[category["name"]] = (f"partial: {len(averaged)} of {len(averaged) + len(missing)} tasks "
                                       f"({', '.join(averaged)})")
    scored = [c for c in summary["categories"].values() if c["score"] is not None]
    if summary.get(aggregate.MEAN_KEY) is not None and (len(scored) < len(summary["categories"]) or notes):
        notes[aggregate.MEAN_NAME] = (f"partial: {len(scored)} of {len(summary['categories'])} categories"
                                      + (", some of them partial" if notes else ""))
    return notes


def long_rows(summaries: Iterable[Mapping], seeds: Mapping[str, int | None]) -> list[tuple]:
    """(run, benchmark, metric, value, note, seed) rows of eval_long.csv; NaN values become missing;
    ``seeds``: run -> its training seed (None for a base model)."""
    rows = []
    for summary in summaries:
        notes = partial_notes(summary)
        if summary["run"] not in seeds:
            raise ValueError(f"summary of {summary['run']!r}: no seed given for this run")
        seed = seeds[summary["run"]]
        rows += [(r, b, m, None if v is None or (isinstance(v, float) and math.isnan(v)) else v, notes.get(b, ""),
                  seed) for r, b, m, v in aggregate.to_long_rows(summary["run"], summary)]
    return rows
