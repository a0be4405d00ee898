"""imrepro.core.jsonl: blank lines skipped, a bad line named with its file and number, atomic writes."""

from __future__ import annotations

import pytest

from imrepro.core.jsonl import iter_jsonl, read_jsonl, write_jsonl


def test_round_trip_and_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}, {"b": "é"}])
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "\\u00e9"}\n'
    path.write_text('{"a": 1}\n\n{"b": 2\n', encoding="utf-8")
    rows = iter_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(ValueError, match=r"rows\.jsonl:3: invalid JSON"):
        next(rows)
    write_jsonl(path, [{"b": "é"}], ensure_ascii=False)
    assert read_jsonl(path) == [{"b": "é"}] and path.read_text(encoding="utf-8") == '{"b": "é"}\n'


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [1, 2])

    def rows():
        yield 3
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [1, 2] and [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
