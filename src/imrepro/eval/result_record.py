"""The two records every benchmark writes, defined once: the result and the per-item score.

**Result** (:class:`BenchmarkResult`): ``results/eval/<target>/<benchmark>.json``, one JSON object.

==========  ==========================================================================================
field       meaning
==========  ==========================================================================================
benchmark   a name of :data:`imrepro.eval.catalogue.ALL_BENCHMARKS`
kind        ``lm_eval`` | ``generation`` | ``judge`` | ``loss`` (:data:`KINDS`)
status      ``scored`` | ``not_shipped`` (an lm-eval task with no local data offline, never scored)
value       the summary number (lm-eval and HumanEval: a fraction; judges, BLEU: as printed; loss: nats),
            or null (not shipped; every verdict unparseable)
metric      what ``value`` measures (lm-eval: its ``metric,filter`` key)
items       optional: the per-item scores, a list of :class:`ItemScore` objects (lm-eval writes them
            here; the other benchmarks' items are read from the stock tools' own files by
            :mod:`imrepro.eval.item_scores`)
...         anything else the writer records (sample counts, versions, the judge, lm-eval's rows)
==========  ==========================================================================================

Every writer builds a :class:`BenchmarkResult` and calls :meth:`BenchmarkResult.write`;
:func:`load_result` (the summary's reader) checks a file against the table above and names the file
and field that is wrong.

**Item** (:class:`ItemScore`): one scored item of a benchmark, what a paired comparison pairs on.
``item`` is stable across models (lm-eval: ``<leaf task>/<doc_id>``; MT-Bench ``<question>/<turn>``;
AlpacaEval the instruction; HumanEval the task id; BLEU and output loss the example id); ``score`` is in
the unit of the benchmark's ``eval_long.csv`` row (lm-eval and HumanEval: percent) or null for an item
that was judged but could not be scored (an unparseable verdict: counted, left out of pairs on both
sides); ``cluster`` is the unit a paired test resamples (MT-Bench: the question, so its two turns stay
together; otherwise the item itself); ``filter`` and ``doc_hash`` are lm-eval's (the filter a metric is
read under, e.g. GSM8K's ``strict-match``; the hash of the document text, which pairing checks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.eval.catalogue import ALL_BENCHMARKS

KINDS = ("lm_eval", "generation", "judge", "loss")
STATUSES = ("scored", "not_shipped")
CORE_FIELDS = ("benchmark", "kind", "status", "value", "metric")


@dataclass(frozen=True)
class ItemScore:
    item: str
    score: float | None
    cluster: str = ""  # empty: the item is its own cluster
    filter: str = ""
    doc_hash: str = ""

    @property
    def unit(self) -> str:
        """The resampling unit of a paired test."""
        return self.cluster or self.item

    @classmethod
    def from_dict(cls, row: Mapping, where: str) -> ItemScore:
        if not isinstance(row, Mapping) or "item" not in row or "score" not in row:
            raise ValueError(f"{where}: an item needs fields 'item' and 'score', got {row!r:.120}")
        score = row["score"]
        if score is not None and not (isinstance(score, int | float) and math.isfinite(score)):
            raise ValueError(f"{where}: item {row['item']!r}: field 'score' is {score!r}, not a finite number or null")
        return cls(str(row["item"]), None if score is None else float(score), str(row.get("cluster", "")),
                   str(row.get("filter", "")), str(row.get("doc_hash", "")))


@dataclass
class BenchmarkResult:
    benchmark: str
    kind: str
    value: float | None
    metric: str
    status: str = "scored"
    details: dict = field(default_factory=dict)  # every other field, written after the core ones
    items: list[ItemScore] | None = None

    def __post_init__(self) -> None:
        check_core(self.to_dict(), f"result of {self.benchmark!r}")

    def to_dict(self) -> dict:
        clash = set(self.details) & {*CORE_FIELDS, "items"}
        if clash:
            raise ValueError(f"result of {self.benchmark!r}: details repeat core field(s) {sorted(clash)}")
        out = {"benchmark": self.benchmark, "kind": self.kind, "status": self.status, "value": self.value,
               "metric": self.metric, **self.details}
        if self.items is not None:
            out["items"] = [asdict(item) for item in self.items]
        return out

    def write(self, path: str | Path, indent: int = 1) -> None:
        write_result(path, self.to_dict(), indent)


def write_result(path: str | Path, result: Mapping, indent: int = 1) -> None:
    """Check ``result`` (:func:`check_core`), then write it atomically as strict JSON (a NaN anywhere is an
    error, not a file other tools cannot read)."""
    check_core(result, str(path))
    with atomic_open(path) as handle:
        json.dump(result, handle, indent=indent, allow_nan=False)
        handle.write("\n")


def check_core(result: Mapping, where: str) -> None:
    """Raise ValueError naming ``where`` and the field if ``result`` breaks the record's table."""
    if not isinstance(result, Mapping):
        raise ValueError(f"{where}: a result is a JSON object, not {type(result).__name__}")
    expect = {"benchmark": ALL_BENCHMARKS, "kind": KINDS, "status": STATUSES}
    for name, allowed in expect.items():
        if result.get(name) not in allowed:
            raise ValueError(f"{where}: field {name!r} is {result.get(name)!r}, not one of {', '.join(allowed)}")
    if "value" not in result:
        raise ValueError(f"{where}: no field 'value'")
    value = result["value"]
    if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)
                                  and math.isfinite(value)):
        raise ValueError(f"{where}: field 'value' is {value!r}, not a finite number or null")
    if result["status"] == "scored" and not isinstance(result.get("metric"), str):
        raise ValueError(f"{where}: field 'metric' is {result.get('metric')!r}, not a string")


def load_result(path: str | Path) -> dict:
    """A result file, checked (:func:`check_core`; items too, when it has them)."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    check_core(result, str(path))
    if "items" in result:
        if not isinstance(result["items"], list):
            raise ValueError(f"{path}: field 'items' is not a list")
        for number, row in enumerate(result["items"]):
            ItemScore.from_dict(row, f"{path}: items[{number}]")
    return result


def result_items(result: Mapping, where: str) -> list[ItemScore] | None:
    """The items a result file carries (lm-eval), or None."""
    if "items" not in result:
        return None
    return [ItemScore.from_dict(row, f"{where}: items[{n}]") for n, row in enumerate(result["items"])]
