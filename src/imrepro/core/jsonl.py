"""JSON Lines files: read with errors that name the file and line, written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from imrepro.core.atomic import atomic_open


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """``(line number, value)`` of each non-blank line; ValueError ``<path>:<line>: not JSON`` otherwise."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
            yield number, value


def read_jsonl(path: str | os.PathLike) -> list:
    return [value for _, value in iter_jsonl(path)]


def write_jsonl(path: str | os.PathLike, rows: Iterable, ensure_ascii: bool = True) -> None:
    """One JSON value per line, written to a temporary file and renamed into place."""
    with atomic_open(path) as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
