"""Data: readers keep line numbers; every invalid row is reported as file:line:field."""

import json

import pytest

from tunesmith.cli import main
from tunesmith.data.formats import load_conversations
from tunesmith.data.readers import read_rows
from tunesmith.errors import DataError

from conftest import write_jsonl


def test_json_array_rows_know_their_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}], indent=1))
    rows = read_rows(path)
    assert [r.line for r in rows] == [2, 6]
    assert rows[1].data == {"instruction": "c", "output": "d"}


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n')
    with pytest.raises(DataError, match=r"a.jsonl:2: invalid JSON"):
        read_rows(path)
    arr = tmp_path / "b.json"
    arr.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "a" "output": "b"}\n]')
    with pytest.raises(DataError, match=r"b.json:3: invalid JSON"):
        read_rows(arr)


def test_invalid_utf8_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "b"}\n')
    with pytest.raises(DataError, match=r"a.jsonl:2: invalid UTF-8"):
        read_rows(path)


def test_every_bad_row_is_reported_with_file_line_field(tmp_path):
    rows = [
        {"instruction": "fine", "output": "fine"},
        {"instruction": "no output"},
        {"instruction": "", "output": "x"},
        {"instruction": "x", "output": 3},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        ["not", "an", "object"],
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_conversations([path])
    message = str(err.value)
    assert message.startswith("8 invalid row(s)")
    for expected in [
        f"{path}:2:output: missing required field",
        f"{path}:3:instruction: empty",
        f"{path}:4:output: expected a string, got int",
        f"{path}:5:messages[1]: expected a assistant turn here, got user",
        f"{path}:6:messages: the conversation must end with an assistant turn",
        f"{path}:7:messages[0].role: unknown role 'robot'",
        f"{path}:8:messages[1].content: empty",
        f"{path}:10:row: expected a JSON object, got list",
    ]:
        assert expected in message


def test_alpaca_with_system_input_and_history(tmp_path):
    row = {"system": "Be brief.", "instruction": "Translate", "input": "hola", "output": "hello",
           "history": [["hi", "hello there"]]}
    (conv,) = load_conversations([write_jsonl(tmp_path / "a.jsonl", [row])])
    assert conv.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "Translate\nhola"},
        {"role": "assistant", "content": "hello"},
    ]
    assert conv.where.endswith("a.jsonl:1")


def test_default_system_prompt_only_where_missing(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"system": "own", "instruction": "a", "output": "b"}]
    convs = load_conversations([write_jsonl(tmp_path / "a.jsonl", rows)], system="default one")
    assert [c.messages[0]["content"] for c in convs] == ["default one", "own"]


def test_data_check_cli(tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", [{"instruction": "a", "output": "b"}])
    assert main(["data", "check", str(good)]) == 0
    assert "OK: 1 rows" in capsys.readouterr().out
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "a"}])
    assert main(["data", "check", str(bad)]) == 2
    assert f"{bad}:1:output: missing required field" in capsys.readouterr().err


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_rows(tmp_path / "nope.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unsupported file type `.xml`"):
        read_rows(tmp_path / "x.xml")
