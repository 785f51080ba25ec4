"""Data: readers keep line numbers; every invalid row is reported as file:line:field."""

import json

import pytest

from helpers.files import write_jsonl
from tunesmith.cli import main
from tunesmith.data.formats import load_conversations
from tunesmith.data.readers import read_rows
from tunesmith.errors import DataError


def test_json_array_rows_know_their_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}], indent=1))
    rows = read_rows(path)
    assert [r.line for r in rows] == [2, 6]
    assert rows[1].data == {"instruction": "c", "output": "d"}


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n')
    with pytest.raises(
        DataError, match=r"1 invalid row\(s\).*\n  .*a.jsonl:2:row: invalid JSON: Expecting value \(column 32\)"
    ):
        load_conversations([path])
    arr = tmp_path / "b.json"
    arr.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "a" "output": "b"}\n]')
    with pytest.raises(DataError, match=r"b.json:3: invalid JSON"):
        read_rows(arr)


def test_invalid_utf8_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "b"}\n')
    with pytest.raises(DataError, match=r"a.jsonl:2:row: invalid UTF-8 \(invalid start byte at byte 17\)"):
        load_conversations([path])


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
    row = {
        "system": "Be brief.",
        "instruction": "Translate",
        "input": "hola",
        "output": "hello",
        "history": [["hi", "hello there"]],
    }
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


def test_data_check_cli(tmp_path, capsys, default_model_dir):
    good = write_jsonl(tmp_path / "good.jsonl", [{"instruction": "a", "output": "b"}])
    assert main(["data", "check", str(good), "--model", str(default_model_dir)]) == 0
    assert "train: 1 rows" in capsys.readouterr().out
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "a"}])
    assert main(["data", "check", str(bad), "--model", str(default_model_dir)]) == 2
    assert f"{bad}:1:output: missing required field" in capsys.readouterr().err


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_rows(tmp_path / "nope.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unsupported file type `.xml`"):
        read_rows(tmp_path / "x.xml")


# --- file types, folders, compression, column mapping ---------------------------------------


def test_csv_rows_know_the_line_they_start_on(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('instruction,output\nfirst,one\n"multi\nline",two\n,three\n', encoding="utf-8")
    rows = read_rows(path)
    assert [(r.line, r.data["instruction"]) for r in rows] == [(2, "first"), (3, "multi\nline"), (5, "")]
    with pytest.raises(DataError, match=rf"{path}:5:instruction: empty"):
        load_conversations([path])


def test_csv_with_too_many_fields_is_named(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("instruction,output\na,b,c\n")
    with pytest.raises(DataError, match=rf"{path}:2: more fields than the header"):
        read_rows(path)


def test_parquet_rows_are_numbered(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"instruction": ["q1", "q2"], "output": ["a1", None]}), path)
    rows = read_rows(path)
    assert [r.line for r in rows] == [1, 2]
    with pytest.raises(DataError, match=rf"{path}:2:output: missing required field"):
        load_conversations([path])


def test_gzip_and_folders(tmp_path):
    import gzip

    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(b'{"instruction": "q", "output": "a"}\n'))
    write_jsonl(
        folder / "sub" / "b.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}],
    )
    (folder / "notes.md").write_text("ignored: not a data file")
    (folder / ".hidden.jsonl").write_text("not json, ignored because hidden")
    convs = load_conversations([folder])
    assert [c.where for c in convs] == [f"{folder / 'a.jsonl.gz'}:1", f"{folder / 'sub' / 'b.jsonl'}:1"]
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_rows(tmp_path / "bad.jsonl.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="folder has no data files"):
        read_rows(empty)


def test_column_mapping(tmp_path, capsys, default_model_dir):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "q", "answer": "a", "extra": 1}])
    (conv,) = load_conversations([path], columns={"instruction": "question", "output": "answer"})
    assert conv.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert (
        main(
            [
                "data",
                "check",
                str(path),
                "--column",
                "instruction=question",
                "--column",
                "output=answer",
                "--model",
                str(default_model_dir),
            ]
        )
        == 0
    )
    assert main(["data", "check", str(path), "--column", "instruction"]) == 2
    assert "expected CANONICAL=NAME" in capsys.readouterr().err
