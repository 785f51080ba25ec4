"""Data policies end to end: over-length, skipping bad rows, the tokenised cache, templates,
masking options, validation split, packing through the CLI, and the data tools."""

import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.config.schema import DataConfig
from tunesmith.data import dataset
from tunesmith.data.dataset import build_set, build_splits
from tunesmith.data.formats import Conversation
from tunesmith.data.templates import SHIPPED, apply_template
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_conversation
from tunesmith.errors import ConfigError, DataError

LONG = {"instruction": "Repeat: " + "alpha beta gamma " * 40, "output": "No."}


def _rows(n=20):
    return [{"instruction": f"Question {i}?", "output": f"Answer {i}."} for i in range(n)]


def _config(tmp_path, tiny_model_dir, train, extra_data="", extra=""):
    out = tmp_path / "out"
    text = f"""\
stage: sft
method: lora
output_dir: {out}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {train}
  max_length: 64
{extra_data}
training:
  epochs: 2
  batch_size: 4
  learning_rate: 0.01
  logging_steps: 1
  mixed_precision: "no"
{extra}"""
    return write_config(tmp_path / "c.yaml", text), out


# --- over-length policy ----------------------------------------------------------------------


def test_overlength_error_names_the_row_and_its_length(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", _rows(3) + [LONG])
    with pytest.raises(DataError) as err:
        build_set(tokenizer, [str(path)], DataConfig(max_length=64, overlength="error"))
    message = str(err.value)
    assert message.startswith("1 invalid row(s); fix them and run again:")
    assert f"{path}:4:row: " in message and "tokens, longer than data.max_length=64 (data.overlength: error" in message


def test_overlength_drop_and_truncate(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", _rows(3) + [LONG])
    dropped = build_set(tokenizer, [str(path)], DataConfig(max_length=64, overlength="drop"))
    assert len(dropped.rows) == 3 and dropped.dropped == 1
    assert dropped.rejects.dropped[0]["where"] == f"{path}:4"
    assert "> data.max_length=64 (overlength: drop)" in dropped.rejects.dropped[0]["reason"]
    # truncation keeps the start: the long prompt fills all 64 tokens and leaves no reply -> an invalid row
    with pytest.raises(DataError, match=f"{path}:4:row: .* cuts the trained reply to nothing"):
        build_set(tokenizer, [str(path)], DataConfig(max_length=64, overlength="truncate"))
    truncated = build_set(tokenizer, [str(path)], DataConfig(max_length=64, on_error="skip", max_reject_fraction=0.5))
    assert len(truncated.rows) == 3 and truncated.rejects.entries[0]["where"] == f"{path}:4"
    # a row whose reply is only cut short is kept, truncated to max_length, still trained
    long_reply = write_jsonl(tmp_path / "b.jsonl", [{"instruction": "Count.", "output": "one two three " * 40}])
    (row,) = build_set(tokenizer, [str(long_reply)], DataConfig(max_length=64)).rows
    assert len(row.input_ids) == 64 and row.trained_tokens > 30


# --- on_error: skip --------------------------------------------------------------------------


@pytest.mark.trains
def test_skip_writes_rejects_and_trains_on_the_rest(tmp_path, tiny_model_dir):
    rows = _rows(20)
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, '{"instruction": "broken", ')  # line 6: bad JSON
    lines.insert(9, json.dumps({"instruction": "no answer"}))  # line 10: missing output
    path.write_text("\n".join(lines) + "\n")
    val = write_jsonl(tmp_path / "val.jsonl", _rows(8) + [{"instruction": "no answer either"}])
    config, out = _config(
        tmp_path,
        tiny_model_dir,
        path,
        f"  on_error: skip\n  max_reject_fraction: 0.2\n  validation: {val}\n",
        "eval:\n  compare_base: false\n",
    )
    assert main(["train", str(config)]) == 0
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert rejects == [  # the validation file's rows too: the warning points every skipped row here
        {
            "kind": "rejected",
            "where": f"{path}:6",
            "field": "row",
            "reason": "invalid JSON: Expecting property name enclosed in double quotes (column 27)",
        },
        {"kind": "rejected", "where": f"{path}:10", "field": "output", "reason": "missing required field"},
        {"kind": "rejected", "where": f"{val}:9", "field": "output", "reason": "missing required field"},
    ]
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["data"]["train_rows"] == 20 and manifest["data"]["train_rows_rejected"] == 2
    assert manifest["data"]["validation_rows"] == 8 and manifest["data"]["validation_rows_rejected"] == 1


def test_skip_still_fails_above_the_reject_fraction(tmp_path, tiny_model_dir, tokenizer, capsys):
    path = write_jsonl(tmp_path / "bad.jsonl", _rows(8) + [{"instruction": "x"}] * 2)
    config, out = _config(tmp_path, tiny_model_dir, path, "  on_error: skip\n  max_reject_fraction: 0.1\n")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "2 of 10 rows (20.0%) are invalid, more than data.max_reject_fraction=0.1" in err
    assert f"{path}:9:output: missing required field" in err
    assert not out.exists() and not out.with_name("out.partial").exists()
    nothing = write_jsonl(tmp_path / "none.jsonl", [{"instruction": "x"}])
    with pytest.raises(DataError, match="no valid rows left .* all 1 were rejected"):
        build_set(tokenizer, [str(nothing)], DataConfig(on_error="skip", max_reject_fraction=1.0))


# --- tokenised cache -------------------------------------------------------------------------


def test_cache_is_reused_and_invalidated(tmp_path, tokenizer, monkeypatch):
    path = write_jsonl(tmp_path / "a.jsonl", _rows(5))
    root = tmp_path / "cache"
    data = DataConfig(max_length=64)
    monkeypatch.setattr(dataset, "_MEMO", {})
    first = build_set(tokenizer, [str(path)], data, cache_root=root)
    assert not first.from_cache and len(list((root / "tokenized").iterdir())) == 1
    monkeypatch.setattr(dataset, "_MEMO", {})  # a new process: only the disk cache remains
    second = build_set(tokenizer, [str(path)], data, cache_root=root)
    assert second.from_cache
    assert [(r.input_ids, r.labels, r.where) for r in second.rows] == [
        (r.input_ids, r.labels, r.where) for r in first.rows
    ]
    # a changed file, a changed option or another template is a new entry, never a stale read
    monkeypatch.setattr(dataset, "_MEMO", {})
    assert not build_set(tokenizer, [str(path)], DataConfig(max_length=48), cache_root=root).from_cache
    write_jsonl(path, _rows(6))
    changed = build_set(tokenizer, [str(path)], data, cache_root=root)
    assert not changed.from_cache and len(changed.rows) == 6
    other = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    apply_template(other, "plain")
    assert not build_set(other, [str(path)], data, cache_root=root).from_cache
    assert len(list((root / "tokenized").iterdir())) == 4
    # a corrupt entry is ignored and rebuilt
    monkeypatch.setattr(dataset, "_MEMO", {})
    for entry in (root / "tokenized").iterdir():
        (entry / "rows.npz").write_bytes(b"garbage")
    rebuilt = build_set(tokenizer, [str(path)], data, cache_root=root)
    assert not rebuilt.from_cache and len(rebuilt.rows) == 6


# --- templates and masking -------------------------------------------------------------------

MULTI = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Teal."},
    {"role": "user", "content": "And another?"},
    {"role": "assistant", "content": "Ochre."},
]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_templates_train_what_apply_chat_template_renders(tokenizer, name):
    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tok.chat_template = None
    with pytest.raises(ConfigError, match="the tokenizer has no chat template; set `data.template: chatml`"):
        apply_template(tok, "auto")
    apply_template(tok, name)
    row = tokenize_conversation(tok, Conversation(MULTI), max_length=4096)
    assert row.input_ids == list(tok.apply_chat_template(MULTI, tokenize=True, return_dict=True)["input_ids"])
    trained = tok.decode([t for t, label in zip(row.input_ids, row.labels) if label != IGNORE_INDEX])
    # plain: the generation prompt ends with "Assistant:", so the reply's first token carries its space
    expected = "Teal.<|im_end|>Ochre.<|im_end|>" if name == "chatml" else f" Teal.{tok.eos_token} Ochre.{tok.eos_token}"
    assert trained == expected


def test_last_turn_only(tokenizer):
    row = tokenize_conversation(tokenizer, Conversation(MULTI), max_length=4096, last_turn_only=True)
    trained = tokenizer.decode([t for t, label in zip(row.input_ids, row.labels) if label != IGNORE_INDEX])
    assert trained == "Ochre.<|im_end|>"


def test_val_split_is_seeded_and_disjoint(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", _rows(40))
    data = DataConfig(train=[str(path)], max_length=64, val_split=0.1)
    train, val = build_splits(tokenizer, data, "chat", seed=1)
    assert len(train.rows) == 36 and len(val.rows) == 4
    assert {r.where for r in train.rows}.isdisjoint({r.where for r in val.rows})
    again = build_splits(tokenizer, data, "chat", seed=1)[1]
    assert [r.where for r in again.rows] == [r.where for r in val.rows]
    assert [r.where for r in build_splits(tokenizer, data, "chat", seed=2)[1].rows] != [r.where for r in val.rows]


# --- packing and the data tools through the CLI ----------------------------------------------


@pytest.mark.trains
def test_packed_training_through_the_cli(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "a.jsonl", _rows(24))
    config, out = _config(
        tmp_path, tiny_model_dir, path, "  packing: true\n  val_split: 0.25\n", "eval:\n  compare_base: true\n"
    )
    assert main(["train", str(config), "training.epochs=6", "data.max_length=128"]) == 0
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["data"]["train_rows"] == 18 and manifest["data"]["packed_sequences"] < 18
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < 0.6 * losses[0], losses
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["val_loss"] < results["base"]["val_loss"]


def test_packing_is_refused_for_preference_stages(tmp_path, tiny_model_dir, capsys):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    config, _ = _config(tmp_path, tiny_model_dir, path)
    assert main(["train", str(config), "stage=dpo", "data.packing=true"]) == 2
    assert "data.packing: stage `dpo` does not support it (packing joins tokenised rows" in capsys.readouterr().err


def test_stats_and_preview(tmp_path, default_model_dir, capsys):
    path = write_jsonl(tmp_path / "a.jsonl", _rows(10))
    png = tmp_path / "stats.png"
    assert main(["data", "stats", str(path), "--model", str(default_model_dir), "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "train: 10 rows" in printed and "tokens per row: min" in printed
    assert png.stat().st_size > 1000
    numbers = json.loads(png.with_suffix(".json").read_text())
    assert numbers["train"]["rows"] == 10 and numbers["train"]["sources"][str(path)]["rows"] == 10
    assert numbers["train"]["length"]["p50"] <= numbers["train"]["length"]["max"]
    assert main(["data", "preview", str(path), "--model", str(default_model_dir), "-n", "1", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"--- {path}:" in printed and "⟦Answer " in printed and ".<|im_end|>⟧" in printed


# --- registry and mixing -----------------------------------------------------------------------


def test_registry_names_with_their_own_columns_and_weighted_mixing(tmp_path, tokenizer):
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "faq.jsonl", [{"q": f"Faq {i}?", "a": f"Faq answer {i}."} for i in range(10)])
    write_jsonl(
        tmp_path / "d" / "chat.jsonl",
        [
            {"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": f"Hello {i}"}]}
            for i in range(40)
        ],
    )
    registry = tmp_path / "d" / "datasets.yaml"
    registry.write_text(
        "faq:\n  path: faq.jsonl\n  format: alpaca\n  columns: {instruction: q, output: a}\nchat: chat.jsonl\n"
    )
    data = DataConfig(train=["faq", "chat"], registry=str(registry), weights=[1, 1], max_length=64)
    train, _ = build_splits(tokenizer, data, "chat", seed=0)
    sources = [r.where.split("/")[-1].split(":")[0] for r in train.rows]
    assert len(train.rows) == 50 and sources.count("faq.jsonl") == 25 and sources.count("chat.jsonl") == 25
    assert len({r.where for r in train.rows if "faq" in r.where}) == 10  # all 10 used, then repeated
    again, _ = build_splits(tokenizer, data, "chat", seed=0)
    assert [r.where for r in again.rows] == [r.where for r in train.rows]
    plain, _ = build_splits(tokenizer, data.model_copy(update={"weights": None}), "chat", seed=0)
    assert len(plain.rows) == 50
    with pytest.raises(
        ConfigError,
        match=r"data.train\[1\]: `nope` is neither a file nor a dataset of .*datasets.yaml \(its datasets: chat, faq\)",
    ):
        build_splits(tokenizer, data.model_copy(update={"train": ["faq", "nope"]}), "chat", seed=0)
    registry.write_text("faq:\n  path: faq.jsonl\n  colums: {}\n")
    with pytest.raises(ConfigError, match=r"dataset `faq`: unknown key\(s\) colums"):
        build_splits(tokenizer, data.model_copy(update={"train": ["faq"], "weights": None}), "chat", seed=0)


def test_a_val_split_of_weighted_sources_holds_out_rows_that_never_train(tmp_path, tokenizer):
    """data.weights repeat a small source's rows; a val_split taken from the mix holds each row out once
    and none of its repeats trains (chat rows and the rows stages' preference pairs alike)."""
    from tunesmith.data.rows import PAIRS, load_row_splits

    small = write_jsonl(tmp_path / "small.jsonl", _rows(5))
    big = write_jsonl(
        tmp_path / "big.jsonl", [{"instruction": f"Other {i}?", "output": f"Reply {i}."} for i in range(20)]
    )
    data = DataConfig(train=[str(big), str(small)], weights=[1, 1], val_split=0.2, max_length=64, cache=False)
    for seed in range(4):
        train, val = build_splits(tokenizer, data, "chat", seed=seed)
        held = [r.where for r in val.rows]
        assert len(held) == len(set(held)) >= 3 and not set(held) & {r.where for r in train.rows}
        assert len(train.rows) + len(val.rows) < 25  # the held-out rows' repeats left training too

    def pair(i, kind):
        return {"prompt": f"{kind} {i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."}

    small = write_jsonl(tmp_path / "psmall.jsonl", [pair(i, "Small") for i in range(5)])
    big = write_jsonl(tmp_path / "pbig.jsonl", [pair(i, "Big") for i in range(20)])
    pairs = data.model_copy(update={"train": [str(big), str(small)]})
    for seed in range(4):
        train, val = load_row_splits(tokenizer, pairs, PAIRS, seed, trainer_truncates=True)
        held = [repr(r) for r in val.rows]
        assert len(held) == len(set(held)) and not set(held) & {repr(r) for r in train.rows}


def test_weights_must_match_train_entries(tmp_path, tiny_model_dir, capsys):
    path = write_jsonl(tmp_path / "a.jsonl", _rows(4))
    config, _ = _config(tmp_path, tiny_model_dir, path, "  weights: [1, 2]\n")
    assert main(["train", str(config)]) == 2
    assert "data.weights has 2 values for 1 data.train entries" in capsys.readouterr().err


# --- cleaning ----------------------------------------------------------------------------------


def test_clean_normalises_dedups_and_filters(tmp_path, default_model_dir, capsys):
    base = "The archive of the Veltrano lab is in room seven, next to the old server hall and the library"
    rows = [
        {"instruction": "Where is the archive?", "output": base + "."},  # 1 kept
        {"instruction": "Where is the archive?", "output": base + "."},  # 2 exact duplicate
        {"instruction": "where is THE archive?", "output": base + ".  "},  # 3 exact after normalising + casefold
        {"instruction": "Where is the archive?", "output": base + ", on floor two."},  # 4 near duplicate
        {
            "instruction": "Ｆｕｌｌｗｉｄｔｈ\u200b text?",
            "output": "Tabs\t\tand   spaces here, fine.",
        },  # 5 kept, normalised
        {"instruction": "Short?", "output": "No"},  # 6 too short
        {"instruction": "Привет?", "output": "Здравствуйте, как дела у вас сегодня?"},  # 7 other script
        {"instruction": "维特拉诺的咖啡角叫什么？", "output": "它叫青梧坊，在三楼东侧。"},  # 8 kept (zh)
    ]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    out = tmp_path / "clean.jsonl"
    args = [
        "data",
        "clean",
        str(path),
        "--out",
        str(out),
        "--model",
        str(default_model_dir),
        "--set",
        "data.clean.min_chars=5",
        "--set",
        "data.clean.near_dup_threshold=0.5",
        "--set",
        "data.clean.languages=[en, zh]",
    ]
    assert main(args) == 0
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]  # rows in their own format
    assert [r["output"] for r in kept] == [base + ".", "Tabs and spaces here, fine.", "它叫青梧坊，在三楼东侧。"]
    assert kept[1]["instruction"] == "Fullwidth text?"
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["removed"] == {"exact duplicate": 2, "near duplicate": 1, "too short": 1, "other language": 1}
    assert report["rows"]["exact duplicate"] == [f"{path}:2: same as {path}:1", f"{path}:3: same as {path}:1"]
    assert report["rows"]["too short"] == [f"{path}:6: 2 chars < clean.min_chars=5"]


def test_clean_section_applies_before_training_and_lists_removed_rows(tmp_path, tokenizer):
    rows = _rows(6) + _rows(2)
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    data = DataConfig(max_length=64, clean={"near_dup_threshold": None})
    built = build_set(tokenizer, [str(path)], data)
    assert len(built.rows) == 6
    assert built.rejects.dropped == [
        {"where": f"{path}:7", "reason": f"clean: exact duplicate (same as {path}:1)"},
        {"where": f"{path}:8", "reason": f"clean: exact duplicate (same as {path}:2)"},
    ]
