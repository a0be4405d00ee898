"""Converters from downloaded source files to the canonical ``messages`` JSONL.

Each converter is ``fn(inputs: list[Path], output: Path, **args) -> int`` (examples written)
and is registered by name in :data:`CONVERTERS`; config.yaml names one per dataset.
Every converter validates what it writes and writes atomically.
"""

from __future__ import annotations

import json
import random
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from imrepro.core.jsonl import read_jsonl, read_utf8
from imrepro.data.messages import (
    DataFormatError,
    Example,
    make_example,
    read_messages_jsonl,
    validate_example,
    write_messages_jsonl,
)
from imrepro.data.tulu_templates import encode_instruction_example

Converter = Callable[..., int]
CONVERTERS: dict[str, Converter] = {}


def converter(name: str):
    def register(fn: Converter) -> Converter:
        CONVERTERS[name] = fn
        return fn
    return register


def _single(inputs: list[Path], name: str) -> Path:
    if len(inputs) != 1:
        raise ValueError(f"converter '{name}' takes exactly one input file, got {len(inputs)}")
    return inputs[0]


def _load_json_list(path: Path, fields: tuple[str, ...]) -> list[dict]:
    try:
        records = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise DataFormatError(path, err.lineno, "<json>", f"invalid JSON: {err.msg}") from None
    if not isinstance(records, list):
        raise DataFormatError(path, 1, "<root>", "expected a JSON list of records")
    for i, record in enumerate(records):
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise DataFormatError(path, 0, f"[{i}].{missing[0]}", "missing in record")
    return records


@converter("messages")
def convert_messages(inputs: list[Path], output: Path, dataset: str | None = None) -> int:
    """Already canonical (the authors' processed files): validate, concatenate, optionally rename."""
    def examples() -> Iterator[Example]:
        for path in inputs:
            for example in read_messages_jsonl(path):
                if dataset is not None:
                    example["dataset"] = dataset
                yield example
    return write_messages_jsonl(examples(), output)


@converter("instruction_json")
def convert_instruction_json(
    inputs: list[Path], output: Path, *, dataset: str, id_prefix: str, seed: int = 42,
    skip_draws: int = 0, input_field: str = "input", output_field: str = "output",
    sample: int | None = None,
) -> int:
    """Alpaca-style ``[{instruction, input, output}]`` JSON with random Tulu-v1 templates.

    Port of the authors' ``reformat_alpagasus_data.py`` / open-instruct ``reformat_datasets.py``.
    They convert several files in one process from one ``random.seed(42)`` stream, so a file
    converted later starts after the draws of the earlier ones: ``skip_draws`` replays them
    (one draw per example: Alpagasus claude_t45 5305, then chatgpt_9k 9229, then dolly_3k).
    """
    path = _single(inputs, "instruction_json")
    if path.suffix == ".jsonl":
        records = read_jsonl(path)
    else:
        records = _load_json_list(path, ("instruction", input_field, output_field))
    rng = random.Random(seed)
    if sample is not None:
        records = rng.sample(records, k=sample)
    for _ in range(skip_draws):
        rng.random()

    def examples() -> Iterator[Example]:
        for idx, record in enumerate(records):
            prompt, completion = encode_instruction_example(
                rng, record["instruction"], record[input_field], record[output_field])
            yield make_example(dataset, f"{id_prefix}{idx}", prompt, completion)
    return write_messages_jsonl(examples(), output)


@converter("less_zip")
def convert_less_zip(inputs: list[Path], output: Path, *, member: str) -> int:
    """One LESS-selected subset out of ``less-data.zip`` (found by file name; rows are canonical)."""
    path = _single(inputs, "less_zip")
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n == member or n.endswith("/" + member)]
        if len(names) != 1:
            raise DataFormatError(path, 0, member, f"expected one zip member named like this, found {len(names)}")
        tmp = output.with_suffix(".member.tmp")
        try:
            tmp.write_bytes(archive.read(names[0]))
            return convert_messages([tmp], output)
        finally:
            tmp.unlink(missing_ok=True)


@converter("parquet_messages")
def convert_parquet_messages(inputs: list[Path], output: Path) -> int:
    """Parquet shards with ``dataset, id, messages`` columns (the Tulu V2 SFT mixture on the hub)."""
    import pyarrow.parquet as pq

    def examples() -> Iterator[Example]:
        for path in inputs:
            table = pq.read_table(path, columns=["dataset", "id", "messages"])
            for row, example in enumerate(table.to_pylist(), start=1):
                example["messages"] = [{"role": m["role"], "content": m["content"]}
                                       for m in example["messages"] or []]
                validate_example(example, path, row)
                yield example
    return write_messages_jsonl(examples(), output)


@converter("alpaca_eval_outputs")
def convert_alpaca_eval_outputs(inputs: list[Path], output: Path, *, count: int, seed: int = 42,
                                max_instruction_words: int | None = None) -> int:
    """A seeded sample of ``count`` records of an AlpacaEval ``model_outputs.json`` (``[{dataset,
    instruction, output, generator}]``, e.g. the GPT-4-turbo reference of AlpacaEval 2.0) as
    single-turn examples, the instruction as the user turn (no template: AlpacaEval sends it as is),
    the output as the answer; in the file's order, so that output loss can score good answers.
    ``max_instruction_words``: sample only instructions that short (answers left to score at a short max length)."""
    from imrepro.data.subsets import fitting

    path = _single(inputs, "alpaca_eval_outputs")
    records = _load_json_list(path, ("dataset", "instruction", "output", "generator"))
    examples = [make_example(f"alpaca_eval/{r['generator']}", f"alpaca_eval_{i}", r["instruction"], r["output"])
                for i, r in enumerate(records)]
    examples = fitting(examples, max_instruction_words=max_instruction_words)
    if count > len(examples):
        which = f" with at most {max_instruction_words} instruction words" if max_instruction_words else ""
        raise ValueError(f"alpaca_eval_outputs: asked for {count} records, {path} has {len(examples)}{which}")
    chosen = sorted(random.Random(seed).sample(range(len(examples)), k=count))
    return write_messages_jsonl((examples[i] for i in chosen), output)


# ---- derived datasets: inputs are canonical JSONL files ----------------------------------


@converter("stratified_fraction")
def convert_stratified_fraction(inputs: list[Path], output: Path, *, fraction: float) -> int:
    """The authors' ``reformat_tulu_dataset.py``: a fraction of the data, proportional per source.

    Deterministic, as theirs: in file order, the first ``int(count_s / N * n)`` examples of each
    source ``s``; the rounding deficit is filled by the next examples in file order.
    """
    examples = list(read_messages_jsonl(_single(inputs, "stratified_fraction")))
    per_source: dict[str, int] = defaultdict(int)
    for example in examples:
        per_source[example["dataset"]] += 1
    total, target = len(examples), int(fraction * len(examples))
    quota = {s: int(c / total * target) for s, c in per_source.items()}
    discrepancy = target - sum(quota.values())
    kept = []
    for example in examples:
        if quota[example["dataset"]] > 0:
            quota[example["dataset"]] -= 1
            kept.append(example)
        elif discrepancy > 0:
            discrepancy -= 1
            kept.append(example)
    return write_messages_jsonl(kept, output)


@converter("source_filter")
def convert_source_filter(
    inputs: list[Path], output: Path, *, sources: list[str], sample: int | None = None, seed: int = 42,
) -> int:
    """Examples whose ``dataset`` field matches one of ``sources`` (a trailing ``*`` is a prefix)."""
    def matches(name: str) -> bool:
        return any(name.startswith(s[:-1]) if s.endswith("*") else name == s for s in sources)
    kept = [ex for ex in read_messages_jsonl(_single(inputs, "source_filter")) if matches(ex["dataset"])]
    if not kept:
        raise ValueError(f"source_filter: no example has a dataset field in {sources}")
    if sample is not None:
        if sample > len(kept):
            raise ValueError(f"source_filter: asked for {sample} examples, only {len(kept)} match")
        kept = random.Random(seed).sample(kept, k=sample)
    return write_messages_jsonl(kept, output)


@converter("ratio_subset")
def convert_ratio_subset(inputs: list[Path], output: Path, *, target_ratio: float, count: int,
                         seed: int = 42) -> int:
    from imrepro.data.subsets import ratio_subset
    examples = list(read_messages_jsonl(_single(inputs, "ratio_subset")))
    return write_messages_jsonl(ratio_subset(examples, target_ratio, count, seed), output)


@converter("size_subset")
def convert_size_subset(inputs: list[Path], output: Path, *, size: int, target_ratio: float,
                        pool: int, seed: int = 42, max_words: int | None = None) -> int:
    from imrepro.data.subsets import size_subset
    examples = list(read_messages_jsonl(_single(inputs, "size_subset")))
    return write_messages_jsonl(size_subset(examples, size, target_ratio, pool, seed, max_words), output)


@converter("head")
def convert_head(inputs: list[Path], output: Path, *, count: int, skip: int = 0,
                 max_instruction_words: int | None = None) -> int:
    """The examples ``skip .. skip+count`` in file order (demo slices, held-out slices); with
    ``max_instruction_words``, of those whose instruction is that short (answers left to score)."""
    from imrepro.data.subsets import fitting

    path = _single(inputs, "head")
    examples = fitting(list(read_messages_jsonl(path)), max_instruction_words=max_instruction_words)
    if skip + count > len(examples):
        which = f" with at most {max_instruction_words} instruction words" if max_instruction_words else ""
        raise ValueError(f"head: asked for examples {skip}..{skip + count}, {path} has {len(examples)}{which}")
    return write_messages_jsonl(examples[skip : skip + count], output)


def run_converter(name: str, inputs: list[Path], output: Path, args: dict | None = None) -> int:
    """Run converter ``name``; the number of examples written. An empty input file, or a conversion that yields
    no example, is an error naming the file(s) (and leaves no output behind)."""
    if name not in CONVERTERS:
        raise ValueError(f"unknown converter {name!r}; known: {', '.join(sorted(CONVERTERS))}")
    inputs = [Path(p) for p in inputs]
    for path in inputs:
        if path.is_file() and not _has_content(path):
            raise ValueError(f"{path}: empty file (no examples to convert with {name!r})")
    n = CONVERTERS[name](inputs, Path(output), **(args or {}))
    if n == 0:
        Path(output).unlink(missing_ok=True)
        raise ValueError(f"{', '.join(map(str, inputs))}: converter {name!r} found no examples")
    return n


def _has_content(path: Path) -> bool:
    """Anything but whitespace in the file (read in blocks: sources can be large)."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            if block.strip():
                return True
    return False
