"""`tunesmith data clean` keeps every field of a row: only the text it cleans changes."""

import json

from helpers.files import write_jsonl
from tunesmith.cli import main
from tunesmith.data.formats import load_conversations


def test_clean_keeps_every_field_in_the_rows_own_format(tmp_path, default_model_dir):
    rows = [
        {"task": "qa", "input": "Where  is the   archive?", "output": "Room 7B.", "id": 17, "source": {"page": 3}},
        {"task": "qa", "input": "Where is the archive?", "output": "Room 7B.", "id": 18},  # duplicate of row 1
        {
            "task": "tr",
            "input": "Ｈｅｌｌｏ",
            "output": "Bonjour\u200b",
            "examples": [{"input": "Yes ", "output": "Oui"}],
        },
        {"instruction": "Say hi", "output": "Hi!", "task": "chat", "history": [["a  b", "c"]], "lang": "en"},
        {
            "messages": [{"role": "user", "content": "x\ty"}, {"role": "assistant", "content": "z", "weight": 0}],
            "task": "chat",
            "meta": [1, 2],
        },
        {"conversations": [{"from": "human", "value": "q  q"}, {"from": "gpt", "value": "r"}], "task": "chat"},
    ]
    path = write_jsonl(tmp_path / "mtl.jsonl", rows)
    out = tmp_path / "clean.jsonl"
    assert main(["data", "clean", str(path), "--out", str(out), "--model", str(default_model_dir)]) == 0
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert kept == [
        {"task": "qa", "input": "Where is the archive?", "output": "Room 7B.", "id": 17, "source": {"page": 3}},
        {"task": "tr", "input": "Hello", "output": "Bonjour", "examples": [{"input": "Yes", "output": "Oui"}]},
        {"instruction": "Say hi", "output": "Hi!", "task": "chat", "history": [["a b", "c"]], "lang": "en"},
        {
            "messages": [{"role": "user", "content": "x y"}, {"role": "assistant", "content": "z", "weight": 0}],
            "task": "chat",
            "meta": [1, 2],
        },
        {"conversations": [{"from": "human", "value": "q q"}, {"from": "gpt", "value": "r"}], "task": "chat"},
    ]
    # the cleaned file still trains stage mtl: every row has its task
    assert [c.meta["task"] for c in load_conversations([out])] == ["qa", "tr", "chat", "chat", "chat"]


def test_clean_keeps_the_files_own_column_names(tmp_path, default_model_dir):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Why  so?", "answer": "Because.", "score": 0.5}])
    out = tmp_path / "clean.jsonl"
    assert (
        main(
            [
                "data",
                "clean",
                str(path),
                "--out",
                str(out),
                "--model",
                str(default_model_dir),
                "--column",
                "instruction=question",
                "--column",
                "output=answer",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text()) == {"question": "Why so?", "answer": "Because.", "score": 0.5}
