import json

import pytest

from imrepro.data.messages import DataFormatError, read_messages_jsonl, validate_example, write_messages_jsonl

GOOD = {"dataset": "t", "id": "t_0",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("line, field, problem", [
    ("{not json", "<json>", "invalid JSON"),
    ('["a list"]', "<root>", "expected a JSON object"),
    ('{"id": "x"}', "messages", "missing"),
    ('{"messages": "text"}', "messages", "expected a list"),
    ('{"messages": []}', "messages", "empty list"),
    ('{"messages": ["hi"]}', "messages[0]", "expected an object"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', "messages[0].role", "'bot' is not one of"),
    ('{"messages": [{"role": "user"}]}', "messages[0].content", "missing"),
    ('{"messages": [{"role": "user", "content": 3}]}', "messages[0].content", "expected a string"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "messages", "no assistant turn"),
])
def test_bad_line_names_file_line_and_field(tmp_path, line, field, problem):
    path = write_lines(tmp_path / "data.jsonl", [json.dumps(GOOD), "", json.dumps(GOOD), line])
    with pytest.raises(DataFormatError) as err:
        list(read_messages_jsonl(path))
    assert err.value.line == 4  # blank lines still count
    assert err.value.field == field
    assert problem in err.value.problem
    assert str(err.value).startswith(f"{path}:4: field '{field}'")


def test_valid_file_round_trips(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", [json.dumps(GOOD)] * 3)
    out = tmp_path / "out.jsonl"
    assert write_messages_jsonl(read_messages_jsonl(path), out) == 3
    assert out.read_text() == path.read_text()


def test_failed_write_leaves_previous_file_intact(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    bad = dict(GOOD, messages=[{"role": "user", "content": "no answer"}])
    with pytest.raises(DataFormatError):
        write_messages_jsonl([GOOD, GOOD, bad], out)
    assert out.read_text() == "previous\n"
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_validate_accepts_system_and_multi_turn():
    validate_example({"messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"}]})


def test_bytes_that_are_not_utf8_name_file_line_and_column(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"messages": "\xff\xfe"}\n')
    with pytest.raises(DataFormatError) as err:
        list(read_messages_jsonl(path))
    assert str(err.value) == (f"{path}:2: field '<encoding>': not UTF-8 (byte 0xff at column 15); "
                              "save the file as UTF-8")
