"""JSON Lines files: read with errors that name the file and line, written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from imrepro.core.atomic import atomic_open
from imrepro.core.errors import InputError


class NotUtf8Error(InputError, ValueError):
    """A text file with bytes that are not UTF-8 (Python's own UnicodeDecodeError names no file or line)."""

    def __init__(self, path: str | os.PathLike, line: int, err: UnicodeDecodeError, column: int):
        self.path, self.line = str(path), line
        self.problem = f"not UTF-8 (byte 0x{err.object[err.start]:02x} at column {column}); save the file as UTF-8"
        super().__init__(f"{path}:{line}: {self.problem}")


def utf8_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 file; :class:`NotUtf8Error` at the first bad line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise NotUtf8Error(path, number, err, err.start + 1) from None
            yield number, line


def read_utf8(path: str | os.PathLike) -> str:
    """A whole UTF-8 file as text; :class:`NotUtf8Error` names the line of the first bad byte."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        raise NotUtf8Error(path, raw.count(b"\n", 0, err.start) + 1, err, err.start - line_start + 1) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """``(line number, value)`` of each non-blank line; ValueError ``<path>:<line>: not JSON`` otherwise."""
    for number, line in utf8_lines(path):
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
