"""Per-item scores of every model-scored benchmark, one reader per source, in one record
(:class:`imrepro.eval.result_record.ItemScore`).

The stock tools' own per-item files stay as they are and are read here: HumanEval's sandboxed samples,
MT-Bench's judgments (FastChat), AlpacaEval's annotations, the regeneration BLEU generations, the output
losses. lm-eval keeps no per-item file by default; :func:`lm_eval_items` turns its ``log_samples``
records into items, which the lm-eval result file carries (``items``).

Scores are in the unit of the benchmark's ``eval_long.csv`` row, so a mean over items is that row's
value (lm-eval tasks and HumanEval in percent, AlpacaEval win rate in percent, MT-Bench 1-10, BLEU 0-100,
loss in nats). :func:`target_items` collects a target's items for the comparison stage
(``results/eval/<target>/items.json``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.jsonl import iter_jsonl
from imrepro.eval.aggregate import PAPER_TASKS
from imrepro.eval.catalogue import DISPLAY_NAMES
from imrepro.eval.result_record import ItemScore, load_result, result_items
from imrepro.eval.summary import LOSS_NAMES

SPECS = {spec.key: spec for spec in PAPER_TASKS}
ALPACA_TIE = 1.5  # alpaca_eval writes a tie as 0 or 1.5; both count half a win


@dataclass
class BenchmarkItems:
    """The items of one (benchmark, metric) row of eval_long.csv for one target."""
    benchmark: str  # eval_long's name, e.g. "MMLU", "MT-Bench", "Output loss (held-out)"
    metric: str  # eval_long's metric
    key: str  # the catalogue key of the result it came from (mmlu, mt_bench, output_loss, ...)
    higher_is_better: bool
    items: list[ItemScore]
    reported_stderr: float | None = None  # the tool's own standard error of the value (lm-eval), eval_long units

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "items"},
                "items": [asdict(item) for item in self.items]}

    @classmethod
    def from_dict(cls, row: Mapping, where: str) -> BenchmarkItems:
        try:
            items = [ItemScore.from_dict(item, f"{where}: {row['benchmark']}") for item in row["items"]]
            return cls(row["benchmark"], row["metric"], row["key"], bool(row["higher_is_better"]), items,
                       row.get("reported_stderr"))
        except (KeyError, TypeError) as err:
            raise ValueError(f"{where}: not a benchmark items record ({err!r})") from None


# ---- lm-eval ----------------------------------------------------------------------------------

def lm_eval_items(samples: Mapping[str, list[Mapping]], metric_key: str, scale: float) -> list[ItemScore] | None:
    """Items of one task from ``simple_evaluate(..., log_samples=True)["samples"]`` (every leaf task of the
    call): one per (doc, filter) record whose filter is the metric's; score = value x scale x 100.
    None when the metric has no per-document number (corpus metrics such as TER keep tuples per doc)."""
    name, _, filter_key = metric_key.partition(",")
    items = []
    for task, records in sorted(samples.items()):
        for record in records:
            if record.get("filter") != filter_key or name not in record:
                continue
            value = record[name]
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, int | float):
                return None
            items.append(ItemScore(f"{task}/{record['doc_id']}", _finite(100.0 * scale * value), "",
                                   filter_key, str(record.get("doc_hash", ""))))
    return items or None


def lm_eval_stderr(results: Mapping, task: str, metric_key: str) -> float | None:
    """lm-eval's own standard error of ``metric_key`` in its row of ``task`` (None where it has none)."""
    name, _, filter_key = metric_key.partition(",")
    value = results.get(task, {}).get(f"{name}_stderr,{filter_key}")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


# ---- the stock tools' files -------------------------------------------------------------------

def humaneval_items(samples_path: str | Path, temperature: float) -> list[ItemScore]:
    """Per problem, the unbiased pass@1 of its n samples at ``temperature`` (the reported one): c / n, in %."""
    passed: dict[str, list[bool]] = defaultdict(list)
    for number, row in iter_jsonl(samples_path):
        try:
            if float(row["temperature"]) == float(temperature):
                passed[str(row["task_id"])].append(bool(row["passed"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{samples_path}:{number}: expected {{task_id, temperature, passed}} ({err!r})") from None
    if not passed:
        raise ValueError(f"{samples_path}: no samples at temperature {temperature}")
    return [ItemScore(task, 100.0 * sum(flags) / len(flags)) for task, flags in passed.items()]


def mt_bench_items(judgments_path: str | Path) -> list[ItemScore]:
    """Per (question, turn); the question is the cluster. An unparseable verdict (score null or -1) stays an
    item with score None."""
    items = []
    for number, row in iter_jsonl(judgments_path):
        try:
            question, turn, score = row["question_id"], int(row["turn"]), row["score"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{judgments_path}:{number}: expected {{question_id, turn, score}} ({err!r})") from None
        score = None if score is None or score == -1 else float(score)
        items.append(ItemScore(f"{question}/{turn}", score, str(question)))
    return items


def alpaca_eval_items(annotations_path: str | Path) -> list[ItemScore]:
    """Per instruction: (preference - 1) x 100, the model's share of the win (2.0: continuous); a missing
    preference (unparseable verdict) stays an item with score None."""
    try:
        rows = json.loads(Path(annotations_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{annotations_path}: not a readable annotations JSON ({err})") from None
    items = []
    for number, row in enumerate(rows):
        try:
            instruction, preference = row["instruction"], row["preference"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{annotations_path}: record {number}: expected {{instruction, preference}} "
                             f"({err!r})") from None
        preference = None if preference is None else float(preference)
        if preference is not None and math.isnan(preference):
            preference = None
        if preference == 0:
            preference = ALPACA_TIE
        items.append(ItemScore(str(instruction), None if preference is None else 100.0 * (preference - 1.0)))
    return items


def regen_bleu_items(generations_path: str | Path) -> list[ItemScore]:
    items = []
    for number, row in iter_jsonl(generations_path):
        if not isinstance(row, dict) or "sentence_bleu" not in row or row.get("id") is None:
            raise ValueError(f"{generations_path}:{number}: expected {{id, sentence_bleu}}")
        items.append(ItemScore(str(row["id"]), float(row["sentence_bleu"])))
    return items


def output_loss_items(result: Mapping, split: str, where: str) -> list[ItemScore] | None:
    part = result.get(split)
    if not part:
        return None
    if len(part.get("ids", [])) != len(part.get("losses", [])):
        raise ValueError(f"{where}: {split}: 'ids' and 'losses' differ in length")
    return [ItemScore(str(i), _finite(loss)) for i, loss in zip(part["ids"], part["losses"], strict=True)]


# ---- one target -------------------------------------------------------------------------------

def target_items(results: Iterable[str | Path], raw: Mapping[str, str | Path]) -> list[BenchmarkItems]:
    """Every benchmark row of one target that has per-item scores.

    ``results``: the target's result files; ``raw``: benchmark key -> the stock tool's per-item file
    (``humaneval``: samples, ``mt_bench``: judgments, ``alpaca_eval_N``: annotations, ``regen_bleu``:
    generations). A scored result whose per-item file is not given is an error."""
    out = []
    for path in results:
        result = load_result(path)
        key = result["benchmark"]
        if result["status"] != "scored":
            continue
        if key in SPECS and key != "humaneval":
            spec = SPECS[key]
            items = result_items(result, str(path))
            if items:
                metric = spec.metric + ("" if spec.higher_is_better else " [lower is better]")
                stderr = result.get("lm_eval_stderr")
                out.append(BenchmarkItems(spec.benchmark, metric, key, spec.higher_is_better, items,
                                          None if stderr is None else 100.0 * stderr))
            continue
        if key == "output_loss":
            for split, name in LOSS_NAMES.items():
                items = output_loss_items(result, split, str(path))
                if items:
                    out.append(BenchmarkItems(name, "mean_per_example_loss", key, False, items))
            continue
        if key not in raw:
            raise ValueError(f"{path}: no per-item file given for {key}")
        if key == "humaneval":
            items = humaneval_items(raw[key], result["best_temperature"])
            out.append(BenchmarkItems(SPECS[key].benchmark, SPECS[key].metric, key, True, items))
        elif key == "mt_bench":
            out.append(BenchmarkItems(DISPLAY_NAMES[key], "score", key, True, mt_bench_items(raw[key])))
        elif key.startswith("alpaca_eval_"):
            out.append(BenchmarkItems(DISPLAY_NAMES[key], "win_rate", key, True, alpaca_eval_items(raw[key])))
        elif key == "regen_bleu":
            # lower = less overfitting (Table 2); the comparison reports the plain difference either way
            out.append(BenchmarkItems(DISPLAY_NAMES[key], "bleu", key, False, regen_bleu_items(raw[key])))
    return out


def write_items(path: str | Path, target: str, benchmarks: Iterable[BenchmarkItems]) -> None:
    with atomic_open(path) as handle:
        json.dump({"target": target, "benchmarks": [b.to_dict() for b in benchmarks]}, handle, allow_nan=False)
        handle.write("\n")


def read_items(path: str | Path) -> tuple[str, list[BenchmarkItems]]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        target, rows = data["target"], data["benchmarks"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not an items file {{target, benchmarks}} ({err!r})") from None
    return target, [BenchmarkItems.from_dict(row, str(path)) for row in rows]


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)
