"""data.augment (system-prompt variation, few-shot order, copies) and the data tools for mtl
and forgetting.replay."""

import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.config.schema import AugmentConfig, DataConfig
from tunesmith.data import augment, dataset
from tunesmith.data.augment import augment_conversation
from tunesmith.data.dataset import build_set, build_splits
from tunesmith.data.formats import load_conversations
from tunesmith.errors import DataError

PROMPTS = ["You are a support agent.", "Answer briefly.", "You work at Veltrano."]
FEW_SHOT = {
    "instruction": "Route: my parcel is late",
    "output": "shipping",
    "examples": [
        {"input": "Route: refund please", "output": "billing"},
        {"input": "Route: app crashes", "output": "tech"},
        {"input": "Route: wrong size", "output": "returns"},
    ],
}


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(dataset, "_MEMO", {})


def _conversations(tmp_path, rows, system=None):
    return load_conversations([str(write_jsonl(tmp_path / "rows.jsonl", rows))], system=system)


def test_system_prompts_vary_rows_without_their_own(tmp_path):
    own = {"instruction": "Hi", "output": "Hello.", "system": "Speak like a pirate."}
    plain = {"instruction": "Hi", "output": "Hello."}
    conversations = _conversations(tmp_path, [own, plain, plain], system="Default prompt.")
    options = AugmentConfig(system_prompts=PROMPTS, copies=3, seed=7)
    kept = augment_conversation(conversations[0], options)
    assert [c.messages for c in kept] == [conversations[0].messages] * 3  # a row's own prompt is data: kept
    for conversation in conversations[1:]:  # data.system counts as none: replaced by a variant
        copies = augment_conversation(conversation, options)
        systems = [c.messages[0]["content"] for c in copies]
        assert sorted(systems) == sorted(PROMPTS)  # copies <= prompts: all different
        assert all(c.messages[1:] == conversation.messages[1:] for c in copies)  # nothing else changes
        assert all(c.where == conversation.where for c in copies)
    # seeded by the row's location: the same draw every time, another seed draws differently
    again = [c.messages[0]["content"] for c in augment_conversation(conversations[1], options)]
    assert again == [c.messages[0]["content"] for c in augment_conversation(conversations[1], options)]
    draws = {
        tuple(
            c.messages[0]["content"]
            for c in augment_conversation(conversations[1], options.model_copy(update={"seed": s}))
        )
        for s in range(12)
    }
    assert len(draws) > 1
    # one copy per row: each row draws one of the prompts; a row with no system gets one inserted
    bare = _conversations(tmp_path, [plain] * 30)
    single = [augment_conversation(c, AugmentConfig(system_prompts=PROMPTS))[0] for c in bare]
    assert all(c.messages[0]["role"] == "system" and len(c.messages) == 3 for c in single)
    assert {c.messages[0]["content"] for c in single} == set(PROMPTS)


def test_question_frames_and_word_dropout_reword_copies_after_the_first(tmp_path):
    rows = [
        {"instruction": "What is the name of the internal wiki at Veltrano Systems today?", "output": "Ledgerleaf."},
        {"instruction": "维特拉诺系统公司员工休息用的咖啡区被称为什么？", "output": "青梧坊。"},
    ]
    english, chinese = _conversations(tmp_path, rows, system="Help desk.")
    options = AugmentConfig(question_frames="builtin", copies=4, seed=3)
    copies = augment_conversation(english, options)
    assert copies[0].messages == english.messages  # the first copy is the row as written
    framed = [c.messages[1]["content"] for c in copies[1:]]
    question = rows[0]["instruction"]
    assert len(set(framed)) == 3 and all(question in f and f != question for f in framed)
    assert all(any(f == frame.replace("{question}", question) for frame in augment.FRAMES_EN) for f in framed)
    assert all(c.messages[0] == english.messages[0] and c.messages[2] == english.messages[2] for c in copies)
    zh = [c.messages[1]["content"] for c in augment_conversation(chinese, options)[1:]]  # frames by the script
    assert all(any(f == frame.replace("{question}", rows[1]["instruction"]) for frame in augment.FRAMES_ZH) for f in zh)
    # own frames; the same draw every time
    own = AugmentConfig(question_frames=["Q: {question}", "{question} (asking for a friend)"], copies=3)
    assert sorted(c.messages[1]["content"] for c in augment_conversation(english, own)[1:]) == [
        f"Q: {question}",
        f"{question} (asking for a friend)",
    ]
    # word dropout: words left out, in order, at least half kept; the reply is untouched
    dropout = AugmentConfig(word_dropout=0.3, copies=6, seed=1)
    words = question.split()
    for copy in augment_conversation(english, dropout)[1:]:
        kept = copy.messages[1]["content"].split()
        assert len(words) // 2 <= len(kept) <= len(words)
        it = iter(words)
        assert all(w in it for w in kept)  # a subsequence of the question
        assert copy.messages[2] == english.messages[2]
    assert any(len(c.messages[1]["content"].split()) < len(words) for c in augment_conversation(english, dropout))
    assert [c.messages for c in augment_conversation(english, dropout)] == [
        c.messages for c in augment_conversation(english, dropout)
    ]
    shorter = [c.messages[1]["content"] for c in augment_conversation(chinese, dropout)[1:]]
    assert all(len(s) < len(rows[1]["instruction"]) + 1 for s in shorter) and any(
        len(s) < len(rows[1]["instruction"]) for s in shorter
    )  # Chinese words (jieba) left out


def test_replay_rows_are_not_augmented(tmp_path, tokenizer):
    domain = write_jsonl(
        tmp_path / "domain.jsonl", [{"instruction": f"Question {i}?", "output": f"A{i}."} for i in range(8)]
    )
    general = write_jsonl(
        tmp_path / "general.jsonl", [{"instruction": f"General {i}?", "output": f"G{i}."} for i in range(8)]
    )
    data = DataConfig(
        train=[str(domain)],
        max_length=64,
        augment=AugmentConfig(question_frames=["Quick question: {question}"], copies=2),
    )
    train, _ = build_splits(tokenizer, data, "chat", seed=0, replay=[str(general)], replay_ratio=0.2)
    texts = [tokenizer.decode(r.input_ids) for r in train.rows]
    assert len(train.rows) == 20
    assert sum("Quick question: Question" in t for t in texts) == 8  # the domain rows' second copies
    assert sum("General" in t for t in texts) == 4 and not any("Quick question: General" in t for t in texts)


def test_few_shot_examples_are_prior_turns_shuffled_per_copy(tmp_path):
    (conversation,) = _conversations(tmp_path, [FEW_SHOT])
    users = [m["content"] for m in conversation.messages if m["role"] == "user"]
    assert users == ["Route: refund please", "Route: app crashes", "Route: wrong size", "Route: my parcel is late"]
    assert conversation.meta["examples"] == (0, 3)
    copies = augment_conversation(
        conversation, AugmentConfig(shuffle_examples=True, copies=12, seed=1)
    )  # drawn per tmp path: 12 copies make fewer than 3 orders vanishingly rare
    orders = set()
    for copy in copies:
        pairs = [(copy.messages[i]["content"], copy.messages[i + 1]["content"]) for i in range(0, 6, 2)]
        assert sorted(pairs) == sorted([(e["input"], e["output"]) for e in FEW_SHOT["examples"]])  # pairs stay together
        assert copy.messages[-2:] == conversation.messages[-2:]  # the question and its answer stay last
        orders.add(tuple(pairs))
    assert len(orders) > 2
    # with a system prompt too: the examples follow it
    both = augment_conversation(conversation, AugmentConfig(shuffle_examples=True, system_prompts=PROMPTS[:1]))[0]
    assert both.messages[0] == {"role": "system", "content": PROMPTS[0]} and both.meta["examples"] == (1, 3)
    assert [m["role"] for m in both.messages] == ["system"] + ["user", "assistant"] * 4
    # bad examples are named like every other field
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [{**FEW_SHOT, "examples": [{"input": "x", "output": "y"}, {"input": "x"}]}, {**FEW_SHOT, "examples": "none"}],
    )
    with pytest.raises(DataError) as err:
        load_conversations([str(bad)])
    assert f"{bad}:1:examples[1].output: missing or empty" in str(err.value)
    assert f"{bad}:2:examples: expected a non-empty list of {{input, output}} objects" in str(err.value)


def test_augmented_training_set_leaves_validation_untouched(tmp_path, tokenizer):
    rows = [{"instruction": f"Question {i}?", "output": f"Answer {i}."} for i in range(20)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    val = write_jsonl(tmp_path / "val.jsonl", rows[:4])
    augment = AugmentConfig(system_prompts=PROMPTS, copies=2)
    data = DataConfig(train=[str(train)], validation=[str(val)], max_length=64, augment=augment)
    plain_train, plain_val = build_splits(tokenizer, data.model_copy(update={"augment": None}), "chat", seed=0)
    aug_train, aug_val = build_splits(tokenizer, data, "chat", seed=0)
    assert len(aug_train.rows) == 2 * len(plain_train.rows) == 40
    assert [r.input_ids for r in aug_val.rows] == [r.input_ids for r in plain_val.rows]
    decoded = tokenizer.decode(aug_train.rows[0].input_ids)
    assert any(p in decoded for p in PROMPTS) and not any(
        p in tokenizer.decode(plain_train.rows[0].input_ids) for p in PROMPTS
    )
    # the trained tokens (the replies) are the same; only the prompt differs
    reply = [t for t, label in zip(plain_train.rows[0].input_ids, plain_train.rows[0].labels) if label != -100]
    assert [t for t, label in zip(aug_train.rows[0].input_ids, aug_train.rows[0].labels) if label != -100] == reply
    # val_split: the held-out rows are un-augmented, and no copy of them trains
    split = data.model_copy(update={"validation": [], "val_split": 0.25})
    s_train, s_val = build_splits(tokenizer, split, "chat", seed=3)
    _, p_val = build_splits(tokenizer, split.model_copy(update={"augment": None}), "chat", seed=3)
    assert [r.input_ids for r in s_val.rows] == [r.input_ids for r in p_val.rows] and len(s_val.rows) == 5
    held = {r.where for r in s_val.rows}
    assert len(s_train.rows) == 30 and not held & {r.where for r in s_train.rows}
    # streaming gives the same augmented rows; the augmentation is part of the cache key
    streamed, _ = build_splits(tokenizer, data.model_copy(update={"streaming": True}), "chat", seed=0)
    assert [(r.input_ids, r.labels) for r in streamed.rows] == [(r.input_ids, r.labels) for r in aug_train.rows]
    root = tmp_path / "cache"
    dataset._MEMO.clear()  # stored on disk only when not already built in this process
    build_set(tokenizer, [str(train)], data, cache_root=root)
    build_set(
        tokenizer,
        [str(train)],
        data.model_copy(update={"augment": augment.model_copy(update={"seed": 1})}),
        cache_root=root,
    )
    build_set(tokenizer, [str(train)], data.model_copy(update={"augment": None}), cache_root=root)
    assert len(list((root / "tokenized").iterdir())) == 3


def test_augment_config_is_checked(tmp_path, tiny_model_dir, capsys):
    with pytest.raises(ValueError, match="data.augment: set system_prompts, shuffle_examples: true, question_frames"):
        AugmentConfig(copies=2)
    with pytest.raises(
        ValueError, match=r"data.augment.question_frames: every frame must be a string containing \{question\}"
    ):
        AugmentConfig(question_frames=["Quick question:"], copies=2)
    with pytest.raises(ValueError, match="data.augment.copies: question_frames and word_dropout reword copies 2"):
        AugmentConfig(word_dropout=0.1)
    with pytest.raises(ValueError, match="word_dropout"):
        AugmentConfig(word_dropout=0.9, copies=2)
    with pytest.raises(ValueError, match="every prompt must be a non-empty string"):
        AugmentConfig(system_prompts=["ok", " "])
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    config = write_config(
        tmp_path / "c.yaml",
        f"stage: dpo\noutput_dir: {tmp_path / 'o'}\nmodel:\n  name_or_path: "
        f"{tiny_model_dir}\ndata:\n  train: {path}\n  augment:\n    system_prompts: [a, b]\n",
    )
    assert main(["train", str(config)]) == 2
    assert (
        "data.augment: stage `dpo` does not support it (augmentation varies the system prompt"
        in capsys.readouterr().err
    )


# --- data tools: mtl check, replay in stats ---------------------------------------------------------


def test_data_check_mtl_counts_rows_per_task_and_names_rows_without_one(tmp_path, default_model_dir, capsys):
    rows = [{"task": "route", "input": f"Ticket {i}", "output": "billing"} for i in range(5)]
    rows += [{"task": "summarise", "input": f"Text {i}", "output": "Short."} for i in range(3)]
    path = write_jsonl(tmp_path / "mtl.jsonl", rows)
    assert main(["data", "check", str(path), "--stage", "mtl", "--model", str(default_model_dir)]) == 0
    printed = capsys.readouterr().out
    assert (
        "train: 8 rows" in printed and "tasks: route: 5 rows, summarise: 3 rows" in printed and printed.endswith("OK\n")
    )
    mixed = write_jsonl(tmp_path / "mixed.jsonl", rows + [{"instruction": "No task here", "output": "x"}])
    assert main(["data", "check", str(mixed), "--stage", "mtl", "--model", str(default_model_dir)]) == 2
    assert f"{mixed}:9:task: missing required field (stage mtl needs a task on every row)" in capsys.readouterr().err


def test_data_stats_counts_replay_rows_apart(tmp_path, default_model_dir, capsys):
    domain = write_jsonl(tmp_path / "domain.jsonl", [{"instruction": f"Q{i}", "output": f"A{i}"} for i in range(12)])
    general = write_jsonl(tmp_path / "general.jsonl", [{"instruction": f"G{i}", "output": f"H{i}"} for i in range(20)])
    config = write_config(
        tmp_path / "c.yaml",
        f"""\
output_dir: {tmp_path / "out"}
model:
  name_or_path: {default_model_dir}
data:
  train: {domain}
  max_length: 64
forgetting:
  replay: [{general}]
  replay_ratio: 0.25
""",
    )
    png = tmp_path / "stats.png"
    assert main(["data", "stats", str(config), "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "train: 16 rows" in printed
    assert (
        "domain: 12 rows" in printed
        and "replay (forgetting.replay): 4 rows" in printed
        and "(25.0% of rows)" in printed
    )
    assert f"{general} (replay): 4 rows" in printed
    numbers = json.loads(png.with_suffix(".json").read_text())["train"]
    assert numbers["replay"]["rows"] == 4 and numbers["domain"]["rows"] == 12 and numbers["replay"]["share"] == 0.25
    assert numbers["sources"][str(general)]["replay"] is True and "replay" not in numbers["sources"][str(domain)]


def test_the_before_after_evaluation_measures_validation_and_general_rows_unaugmented(tmp_path, tokenizer):
    """The validation loss and the general (forgetting) loss before and after a run are measured on the
    rows as written, not on augmented copies of them (as the Trainer's own evaluation is); the general
    loss scores assistant tokens only, whatever masking the run trains with."""
    from tunesmith.config.loader import apply_overrides, validate_config
    from tunesmith.eval.general import general_set
    from tunesmith.stages.held_out import held_out_tokens

    rows = [{"instruction": f"Where is room {i}?", "output": f"Floor {i}."} for i in range(12)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    val = write_jsonl(tmp_path / "val.jsonl", rows[:4])
    general = write_jsonl(
        tmp_path / "general.jsonl", [{"instruction": f"What is {i} + 1?", "output": str(i + 1)} for i in range(6)]
    )
    overrides = [
        f"output_dir={tmp_path / 'out'}",
        f"data.train=[{train}]",
        f"data.validation=[{val}]",
        "data.max_length=64",
        f"forgetting.general_eval=[{general}]",
    ]
    augmented = overrides + [
        "data.augment.copies=3",
        "data.augment.question_frames=builtin",
        "data.augment.word_dropout=0.3",
        f"data.augment.system_prompts={json.dumps(PROMPTS)}",
        "data.train_on_prompt=true",
        "data.last_turn_only=true",
    ]
    plain_cfg, aug_cfg = (validate_config(apply_overrides({}, o)) for o in (overrides, augmented))
    for measured in (
        lambda cfg: held_out_tokens(cfg, tokenizer, None, "chat"),
        lambda cfg: general_set(cfg, tokenizer, None),
    ):
        plain, aug = measured(plain_cfg), measured(aug_cfg)
        assert [r.input_ids for r in aug.rows] == [r.input_ids for r in plain.rows] and len(aug.rows) in (4, 6)
    # the general loss scores the assistant tokens whatever the run trains on (train_on_prompt)
    assert [r.labels for r in general_set(aug_cfg, tokenizer, None).rows] == [
        r.labels for r in general_set(plain_cfg, tokenizer, None).rows
    ]
