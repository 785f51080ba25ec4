"""Rows left out (Rejects) and the one way every loader reports invalid rows: `file:line:field: reason`,
the first 20 listed, then `... and N more`."""

import pytest

from helpers.files import write_jsonl
from tunesmith.data.formats import load_conversations
from tunesmith.data.rejects import Rejects, parse_rows
from tunesmith.errors import DataError
from tunesmith.eval.mcq import load_mcq
from tunesmith.eval.qa import load_qa


def test_merge_is_the_union_of_rejected_and_dropped_rows():
    train = Rejects(True, 0.2)
    train.add("a.jsonl:1", "output", "empty")
    train.drop("a.jsonl:2", "over-length")
    train.truncate("a.jsonl:3", 64, True)
    val = Rejects()
    val.add("b.jsonl:4", "row", "invalid JSON")
    val.drop("b.jsonl:5", "over-length")
    merged = train.merge(val)
    assert [e["where"] for e in merged.entries] == ["a.jsonl:1", "b.jsonl:4"]
    assert [d["where"] for d in merged.dropped] == ["a.jsonl:2", "b.jsonl:5"]
    assert (merged.skip, merged.max_fraction, merged.truncated) == (True, 0.2, train.truncated)
    assert len(train.entries) == 1 and len(val.entries) == 1  # neither side changed
    alone = train.merge(None)
    assert (alone.entries, alone.dropped) == (train.entries, train.dropped) and alone is not train
    alone.add("c.jsonl:1", "row", "x")
    assert len(train.entries) == 1


def test_merged_rejects_are_written_together(tmp_path):
    train, val = Rejects(True), Rejects(True)
    train.add("a.jsonl:1", "output", "empty")
    val.drop("b.jsonl:2", "over-length")
    train.merge(val).write(tmp_path / "rejects.jsonl")
    lines = (tmp_path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines == [
        '{"kind": "rejected", "where": "a.jsonl:1", "field": "output", "reason": "empty"}',
        '{"kind": "dropped", "where": "b.jsonl:2", "reason": "over-length"}',
    ]


def _many_bad(tmp_path, name, row, n=25):
    return write_jsonl(tmp_path / name, [row] * n)


def _listed(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines()[1:]]


@pytest.mark.parametrize(
    "load, row, kind, line_one",
    [
        (lambda p: load_conversations([p]), {"instruction": "Q"}, "row", "output: missing required field"),
        (load_qa, {"question": ""}, "QA row", "question: missing or empty"),
        (
            lambda p: parse_rows(p, lambda row, where: "prompt: missing", "judge prompt", "eval.judge.prompts"),
            {"prompt": ""},
            "judge prompt",
            "prompt: missing",
        ),
    ],
)
def test_every_loader_lists_the_first_20_then_and_n_more(tmp_path, load, row, kind, line_one):
    path = _many_bad(tmp_path, "bad.jsonl", row)
    with pytest.raises(DataError) as info:
        load(str(path))
    message = str(info.value)
    assert message.startswith(f"25 invalid {kind}(s)") and "; fix them and run again:\n" in message
    listed = _listed(message)
    assert listed[0] == f"{path}:1:{line_one}" and listed[19] == f"{path}:20:{line_one}"
    assert listed[20:] == ["... and 5 more"]


def test_unreadable_rows_read_the_same_way(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        '{"question": "Q", "answers": ["A"]}\n{not json\n{"question": "Q2", "answers": 3}\n', encoding="utf-8"
    )
    with pytest.raises(DataError) as info:
        load_qa(str(path))
    assert _listed(str(info.value)) == [
        f"{path}:2:row: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:3:answers: expected a non-empty list of non-empty strings",
    ]


def test_a_file_without_rows_is_named(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"no questions found in {empty}"):
        load_qa(str(empty))
    with pytest.raises(DataError, match=rf"no judge prompts found in {empty} \(eval.judge.prompts\)"):
        parse_rows(str(empty), lambda row, where: row, "judge prompt", "eval.judge.prompts")


def test_mcq_rows_read_the_same_way(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,A,B,C,D,answer\n" + "Q,a,b,c,d,E\n" * 22, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_mcq(str(bad))
    message = str(info.value)
    assert message.startswith("22 invalid multiple-choice row(s) in eval.mcq; fix them and run again:\n")
    assert _listed(message)[0] == f"{bad}:2:answer: `E` is not one of A, B, C, D"
    assert _listed(message)[20:] == ["... and 2 more"]


def test_skipping_too_many_lists_them_the_same_way(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Q"}] * 22 + [{"instruction": "Q", "output": "A"}])
    with pytest.raises(DataError) as info:
        load_conversations([str(path)], rejects=Rejects(skip=True))
    listed = _listed(str(info.value))
    assert listed[0] == f"{path}:1:output: missing required field" and listed[20:] == ["... and 2 more"]
