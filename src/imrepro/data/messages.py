"""The canonical training-data format: open-instruct ``messages`` JSONL.

One JSON object per line::

    {"dataset": "lima", "id": "lima_0",
     "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

Every reader goes through :func:`read_messages_jsonl`, which validates each line and
raises :class:`DataFormatError` naming the file, the line and the field at fault.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from imrepro.core.atomic import atomic_open
from imrepro.core.errors import InputError
from imrepro.core.jsonl import LineError, iter_jsonl

ROLES = ("system", "user", "assistant")

Example = dict[str, Any]


class DataFormatError(InputError, ValueError):
    """A line of a data file does not follow the canonical ``messages`` format."""

    def __init__(self, path: str | os.PathLike, line: int, field: str, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        super().__init__(f"{path}:{line}: field '{field}': {problem}")


def validate_example(example: Any, path: str | os.PathLike = "<memory>", line: int = 0) -> None:
    """Check one decoded line; raise :class:`DataFormatError` on the first problem found."""

    def fail(field: str, problem: str) -> None:
        raise DataFormatError(path, line, field, problem)

    if not isinstance(example, dict):
        fail("<root>", f"expected a JSON object, got {type(example).__name__}")
    if "messages" not in example:
        fail("messages", "missing")
    messages = example["messages"]
    if not isinstance(messages, list):
        fail("messages", f"expected a list, got {type(messages).__name__}")
    if not messages:
        fail("messages", "empty list")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            fail(where, f"expected an object, got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            fail(f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}")
        if "content" not in message:
            fail(f"{where}.content", "missing")
        if not isinstance(message["content"], str):
            fail(f"{where}.content", f"expected a string, got {type(message['content']).__name__}")
    if not any(m["role"] == "assistant" for m in messages):
        fail("messages", "no assistant turn")
    for key in ("dataset", "id"):
        if key in example and not isinstance(example[key], str | int):
            fail(key, f"expected a string, got {type(example[key]).__name__}")


def read_messages_jsonl(path: str | os.PathLike) -> Iterator[Example]:
    """Yield the validated examples of a ``messages`` JSONL file (blank lines are skipped)."""
    try:
        for line_no, example in iter_jsonl(path):
            validate_example(example, path, line_no)
            yield example
    except LineError as err:  # not UTF-8, not JSON: the same file:line: field: what
        raise DataFormatError(path, err.line, err.field, err.problem) from None


def load_messages_jsonl(path: str | os.PathLike) -> list[Example]:
    return list(read_messages_jsonl(path))


def write_messages_jsonl(examples: Iterable[Example], path: str | os.PathLike) -> int:
    """Validate and write examples atomically; return how many were written."""
    count = 0
    with atomic_open(path) as out:
        for count, example in enumerate(examples, start=1):
            validate_example(example, Path(path).name + " (being written)", count)
            out.write(json.dumps(example) + "\n")  # ensure_ascii, as the authors wrote theirs
    return count


def make_example(dataset: str, example_id: str, prompt: str, completion: str) -> Example:
    """A single-turn example, as the authors' reformatting scripts build them."""
    return {
        "dataset": dataset,
        "id": example_id,
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": completion},
        ],
    }
