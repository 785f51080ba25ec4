"""data.streaming: rows read one at a time into memory-mapped arrays equal the in-memory rows
exactly (every file type), errors carry the same file:line:field messages, the cache is reused,
what cannot stream is refused, and a streamed SFT run trains through the CLI."""

import csv
import gzip
import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.config.schema import CleanConfig, DataConfig
from tunesmith.data import dataset
from tunesmith.data.dataset import build_set, build_splits
from tunesmith.data.readers import iter_rows, read_rows
from tunesmith.data.token_arrays import MemmapRows, RowArrays
from tunesmith.errors import DataError


def _alpaca(n, start=0):
    return [
        {"instruction": f"Question {i}?", "output": f"Answer number {i}." + " more" * (i % 7)}
        for i in range(start, start + n)
    ]


CHATS = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Colour?"},
            {"role": "assistant", "content": "Teal."},
        ],
        "task": "chat",
    },
    {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
    {"task": "route", "input": "My card was charged twice.", "output": "billing"},
]


def _as_tuples(rows):
    return [(r.input_ids, r.labels, r.where, r.task) for r in rows]


def _write(path, rows):
    kind = "".join(path.suffixes)
    if kind.startswith(".jsonl"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        path.write_bytes(gzip.compress(text) if kind.endswith(".gz") else text)
    elif kind == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["instruction", "output"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        path.write_bytes(gzip.compress(buffer.getvalue()) if kind.endswith(".gz") else buffer.getvalue())
    return path


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(dataset, "_MEMO", {})


# --- same rows as the in-memory pipeline --------------------------------------------------------


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz", "a.csv", "a.parquet", "a.parquet.gz"])
def test_streamed_rows_equal_in_memory_rows(tmp_path, tokenizer, name):
    rows = _alpaca(40)
    rows[3]["output"] = 'A reply\nwith a newline, a comma and "quotes".'  # csv quoting across lines
    path = _write(tmp_path / name, rows)
    assert [(r.where, r.data) for r in iter_rows(path)] == [(r.where, r.data) for r in read_rows(path)]
    data = DataConfig(max_length=40)  # long rows truncated; max_samples cuts the later rows
    memory = build_set(tokenizer, [str(path)], data, 30, cache_root=tmp_path / "cache")
    streamed = build_set(
        tokenizer, [str(path)], data.model_copy(update={"streaming": True}), 30, cache_root=tmp_path / "cache"
    )
    assert isinstance(streamed.rows, MemmapRows) and len(streamed.rows) == 30
    assert _as_tuples(streamed.rows) == _as_tuples(memory.rows)
    assert (streamed.tokens, streamed.trained_tokens) == (memory.tokens, memory.trained_tokens)
    assert streamed.rejects.dropped == memory.rejects.dropped


def test_streamed_chats_texts_splits_packs_and_folders_equal_in_memory(tmp_path, tokenizer):
    folder = tmp_path / "d"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", _alpaca(12) + CHATS)
    write_jsonl(folder / "b.jsonl", _alpaca(9, start=100))
    data = DataConfig(train=[str(folder), str(tmp_path / "c.jsonl")], val_split=0.25, max_length=64, system="Be kind.")
    write_jsonl(tmp_path / "c.jsonl", _alpaca(5, start=200))
    memory = build_splits(tokenizer, data, "chat", seed=3)
    streamed = build_splits(tokenizer, data.model_copy(update={"streaming": True}), "chat", seed=3)
    for m, s in zip(memory, streamed):
        assert isinstance(s.rows, RowArrays)
        assert (
            _as_tuples(s.rows) == _as_tuples(m.rows) and s.tokens == m.tokens and s.trained_tokens == m.trained_tokens
        )
    assert {r.task for r in streamed[0].rows} | {r.task for r in streamed[1].rows} == {None, "chat", "route"}
    # packing: the lazily built packs are the in-memory packs
    packed = streamed[0].as_features(packing=True, capacity=128, seed=1)
    assert [packed[k] for k in range(len(packed))] == memory[0].as_features(packing=True, capacity=128, seed=1)
    assert len(packed) < len(streamed[0].rows)
    unpacked = streamed[0].as_features()
    assert [unpacked[k] for k in range(len(unpacked))] == memory[0].as_features()
    # raw text for stage pt: .txt documents and `text` rows, cut into blocks
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "doc.txt").write_text("The Veltrano archive opens at nine. " * 30)
    write_jsonl(tmp_path / "t" / "rows.jsonl", [{"text": f"Document {i} about servers."} for i in range(5)])
    text = DataConfig(max_length=32)
    memory = build_set(tokenizer, [str(tmp_path / "t")], text, kind="text")
    streamed = build_set(tokenizer, [str(tmp_path / "t")], text.model_copy(update={"streaming": True}), kind="text")
    assert _as_tuples(streamed.rows) == _as_tuples(memory.rows) and len(streamed.rows) > 6


# --- errors and policies --------------------------------------------------------------------------


def _both(tokenizer, paths, data, kind="chat"):
    """The DataError message of each mode (or None)."""
    messages = []
    for streaming in (False, True):
        dataset._MEMO.clear()
        try:
            build_set(tokenizer, [str(p) for p in paths], data.model_copy(update={"streaming": streaming}), kind=kind)
            messages.append(None)
        except DataError as exc:
            messages.append(str(exc))
    return messages


def test_streamed_errors_carry_the_same_file_line_field_messages(tmp_path, tokenizer):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in _alpaca(10)]
    lines[2] = '{"instruction": "broken", '
    lines[5] = json.dumps({"instruction": "no answer"})
    lines[7] = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"instruction": "\xff", "output": "x"}\n')
    memory, streamed = _both(tokenizer, [path], DataConfig(max_length=64))
    assert memory == streamed
    assert f"{path}:3:row: invalid JSON" in streamed and f"{path}:6:output: missing required field" in streamed
    assert f"{path}:8:messages[1]: expected a assistant turn here, got user" in streamed
    assert f"{path}:11:row: invalid UTF-8" in streamed and streamed.startswith("4 invalid row(s)")
    # skip: the same rejects, in the same order; over the fraction: the same refusal
    skip = DataConfig(max_length=64, on_error="skip", max_reject_fraction=0.5)
    dataset._MEMO.clear()
    a = build_set(tokenizer, [str(path)], skip)
    b = build_set(tokenizer, [str(path)], skip.model_copy(update={"streaming": True}))
    assert b.rejects.entries == a.rejects.entries and len(a.rejects.entries) == 4
    assert _as_tuples(b.rows) == _as_tuples(a.rows)
    memory, streamed = _both(tokenizer, [path], skip.model_copy(update={"max_reject_fraction": 0.1}))
    assert memory == streamed and "4 of 11 rows (36.4%) are invalid" in streamed
    # over-length rows under each policy
    long = write_jsonl(tmp_path / "long.jsonl", _alpaca(3) + [{"instruction": "Repeat " * 80, "output": "No."}])
    memory, streamed = _both(tokenizer, [long], DataConfig(max_length=48, overlength="error"))
    assert memory == streamed and f"{long}:4:row: " in streamed and "longer than data.max_length=48" in streamed
    dataset._MEMO.clear()
    dropped = build_set(tokenizer, [str(long)], DataConfig(max_length=48, overlength="drop", streaming=True))
    assert len(dropped.rows) == 3 and dropped.rejects.dropped[0]["where"] == f"{long}:4"
    # csv errors are the reader's own, named by line
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("instruction,output\nq,a\nq,a,extra\n")
    memory, streamed = _both(tokenizer, [bad_csv], DataConfig(max_length=64))
    assert memory == streamed == f"{bad_csv}:3: more fields than the header has columns"
    # a text row without text
    texts = write_jsonl(tmp_path / "t.jsonl", [{"text": "fine"}, {"body": "no text"}])
    memory, streamed = _both(tokenizer, [texts], DataConfig(max_length=64), kind="text")
    assert memory == streamed and f"{texts}:2:text: missing or not a string" in streamed


def test_a_json_array_cannot_be_streamed(tmp_path, tokenizer):
    path = tmp_path / "rows.json"
    path.write_text("\n  " + json.dumps(_alpaca(3)))
    with pytest.raises(DataError) as err:
        build_set(tokenizer, [str(path)], DataConfig(max_length=64, streaming=True))
    assert str(err.value) == (
        f"{path}: a JSON array cannot be streamed (it is parsed as a whole); convert it to .jsonl "
        "(one object per line) or set data.streaming: false"
    )
    lines = tmp_path / "lines.json"  # a .json file of one object per line streams
    lines.write_text("".join(json.dumps(r) + "\n" for r in _alpaca(3)))
    assert len(build_set(tokenizer, [str(lines)], DataConfig(max_length=64, streaming=True)).rows) == 3


# --- the cache ------------------------------------------------------------------------------------


def test_second_streamed_build_reuses_the_cache_and_a_broken_entry_is_rebuilt(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", _alpaca(20))
    root = tmp_path / "cache"
    data = DataConfig(max_length=64, streaming=True)
    first = build_set(tokenizer, [str(path)], data, cache_root=root)
    (entry,) = (root / "tokenized").iterdir()  # one entry, no temporary folder left behind
    assert not first.from_cache and sorted(p.name for p in entry.iterdir()) == [
        "ids.bin",
        "index.bin",
        "labels.bin",
        "meta.json",
    ]
    dataset._MEMO.clear()  # a new process: only the disk remains
    second = build_set(tokenizer, [str(path)], data, cache_root=root)
    assert second.from_cache and _as_tuples(second.rows) == _as_tuples(first.rows)
    # a changed file is a new entry; a truncated array is noticed and rebuilt
    write_jsonl(path, _alpaca(21))
    assert len(build_set(tokenizer, [str(path)], data, cache_root=root).rows) == 21
    dataset._MEMO.clear()
    for entry in (root / "tokenized").iterdir():
        (entry / "ids.bin").write_bytes(b"\0" * 8)
    rebuilt = build_set(tokenizer, [str(path)], data, cache_root=root)
    assert not rebuilt.from_cache and len(rebuilt.rows) == 21 and rebuilt.rows[20].where == f"{path}:21"
    # without the cache the arrays live in a temporary folder that goes with the rows
    dataset._MEMO.clear()
    off = build_set(tokenizer, [str(path)], data.model_copy(update={"cache": False}), cache_root=root)
    folder = off.rows.folder
    assert folder.is_dir() and not str(folder).startswith(str(root))
    dataset._MEMO.clear()
    del off
    import gc

    gc.collect()
    assert not folder.exists()


# --- refused combinations and a streamed run through the CLI ---------------------------------------


def _config(tmp_path, model, train, extra_data="", stage="sft", extra=""):
    out = tmp_path / "out"
    return write_config(
        tmp_path / "c.yaml",
        f"""\
stage: {stage}
method: lora
output_dir: {out}
model:
  name_or_path: {model}
data:
  train: {train}
  max_length: 64
  streaming: true
{extra_data}
training:
  epochs: 4
  batch_size: 4
  learning_rate: 0.01
  logging_steps: 1
  mixed_precision: "no"
{extra}""",
    ), out


def test_what_needs_the_whole_set_in_memory_is_refused_at_config_time(tmp_path, tiny_model_dir, capsys):
    path = write_jsonl(tmp_path / "a.jsonl", _alpaca(4))
    cases = {
        ("", "dpo", ""): "data.streaming: stage `dpo` does not support it (streaming trains from memory-mapped token",
        ("", "mtl", ""): "data.streaming: stage `mtl` does not support it",
        ("  weights: [1]\n", "sft", ""): "data.weights: mixing draws rows from every source at random",
        ("  clean: {}\n", "sft", ""): "data.clean: dedup and near-dedup compare each row with every earlier one",
        (
            "",
            "sft",
            "forgetting:\n  replay: [x.jsonl]\n",
        ): "forgetting.replay: mixing general rows in draws from the whole set",
    }
    for (extra_data, stage, extra), message in cases.items():
        config, out = _config(tmp_path, tiny_model_dir, path, extra_data, stage, extra)
        assert main(["train", str(config)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    # normalisation and filters without dedup do stream
    assert DataConfig(streaming=True, clean=CleanConfig(dedup=False, near_dup_threshold=None)).clean is not None


@pytest.mark.trains
@pytest.mark.parametrize("packing", [False, True])
def test_streamed_sft_trains_through_the_cli(tmp_path, tiny_model_dir, model_cache, packing):
    path = write_jsonl(tmp_path / "a.jsonl", _alpaca(24))
    config, out = _config(
        tmp_path,
        tiny_model_dir,
        path,
        f"  val_split: 0.25\n  packing: {str(packing).lower()}\n",
        extra=f"eval:\n  compare_base: {str(not packing).lower()}\n",
    )
    assert main(["train", str(config), *(["data.max_length=128", "training.epochs=8"] if packing else [])]) == 0
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["data"]["train_rows"] == 18 and manifest["data"]["train_tokens"] > 18 * 20
    if packing:
        assert manifest["data"]["packed_sequences"] < 18
    else:  # the before/after evaluation reads the held-out rows from the same memory-mapped arrays
        results = json.loads((out / "eval_results.json").read_text())
        assert results["fine_tuned"]["val_loss"] < results["base"]["val_loss"]
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < 0.6 * losses[0], losses
    assert any('"eval_loss"' in line for line in (out / "metrics.jsonl").read_text().splitlines())
    # it trained from the memory-mapped arrays of the tokenised cache
    entries = [e for e in (model_cache / "tokenized").iterdir() if (e / "ids.bin").is_file()]
    assert any(json.loads((e / "meta.json").read_text())["files"] == [str(path)] for e in entries)
