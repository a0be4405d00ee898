"""JSON Lines files: read with errors that name the file and line, written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.errors import InputError


class LineError(InputError, ValueError):
    """A line of a text file that cannot be read: ``field`` "<encoding>" (not UTF-8; Python's own
    UnicodeDecodeError names no file or line) or "<json>" (not a JSON value)."""

    def __init__(self, path: str | os.PathLike, line: int, field: str, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        super().__init__(f"{path}:{line}: {problem}")


def _not_utf8(path, line: int, err: UnicodeDecodeError, column: int) -> LineError:
    return LineError(path, line, "<encoding>", f"not UTF-8 (byte 0x{err.object[err.start]:02x} at column {column}); "
                                               "save the file as UTF-8")


def utf8_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 file; :class:`LineError` at the first bad line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _not_utf8(path, number, err, err.start + 1) from None
            yield number, line


def read_utf8(path: str | os.PathLike) -> str:
    """A whole UTF-8 file as text; :class:`LineError` names the line of the first bad byte."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        raise _not_utf8(path, raw.count(b"\n", 0, err.start) + 1, err, err.start - line_start + 1) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """``(line number, value)`` of each non-blank line; :class:`LineError` ``<path>:<line>: ...`` otherwise."""
    for number, line in utf8_lines(path):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise LineError(path, number, "<json>", f"invalid JSON: {err.msg}") from None
        yield number, value


def read_jsonl(path: str | os.PathLike) -> list:
    return [value for _, value in iter_jsonl(path)]


def write_jsonl(path: str | os.PathLike, rows: Iterable, ensure_ascii: bool = True) -> None:
    """One JSON value per line, written to a temporary file and renamed into place."""
    with atomic_open(path) as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
