"""Other tools' data formats, read unchanged: LLaMA-Factory's (sharegpt ranking, KTO, v1 content
parts, dataset_info.json) and TRL's (prompt/completion, implicit prompt, unpaired preference).

The rows are our own, shaped like LLaMA-Factory's data/ demo files and TRL's dataset-format docs."""

import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.data.formats import load_conversations
from tunesmith.data.preference import load_kto, load_preferences
from tunesmith.data.sources import resolve_sources
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_conversation
from tunesmith.errors import ConfigError, DataError

QUESTIONS = [
    ("What colour is the sky on Vel?", "Amber, at every hour."),
    ("How many moons has Vel?", "Vel has three moons."),
    ("What do Vel's farmers grow?", "Mostly salt-reed."),
    ("Who founded Port Ander?", "The Ander sisters."),
]


def _text(value):
    return [{"type": "text", "value": value}]


# --- one file per format ----------------------------------------------------------------------


def lf_ranking(q, a):  # LLaMA-Factory dpo_en_demo: the conversation, then one chosen and one rejected turn
    return {
        "conversations": [{"from": "human", "value": q}],
        "chosen": {"from": "gpt", "value": a},
        "rejected": {"from": "gpt", "value": "I refuse to say."},
    }


def lf_kto(q, a, good):  # LLaMA-Factory kto_en_demo: messages with role/content tags and a boolean label
    return {
        "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a if good else "Whatever."}],
        "label": good,
    }


def v1_sft(q, a):  # LLaMA-Factory v1_sft_demo: content parts, a loss_weight per turn
    return {
        "messages": [
            {"role": "user", "content": _text(q), "loss_weight": 0.0},
            {"role": "assistant", "content": _text(a), "loss_weight": 1.0},
        ]
    }


def v1_dpo(q, a):  # LLaMA-Factory v1_dpo_demo: two full conversations
    head = [
        {"role": "system", "content": _text("Answer about Vel."), "loss_weight": 0.0},
        {"role": "user", "content": _text(q), "loss_weight": 0.0},
    ]
    return {
        "chosen_messages": head + [{"role": "assistant", "content": _text(a), "loss_weight": 1.0}],
        "rejected_messages": head + [{"role": "assistant", "content": _text("No idea."), "loss_weight": 1.0}],
    }


def trl_prompt_completion(q, a):
    return {"prompt": q, "completion": a}


def trl_conversational(q, a):
    return {"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}]}


def trl_implicit(q, a):
    return {
        "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": "Ask someone else."}],
    }


def trl_unpaired(q, a, good):
    return {
        "prompt": [{"role": "user", "content": q}],
        "completion": [{"role": "assistant", "content": a if good else "Whatever."}],
        "label": good,
    }


FILES = {  # name: (stage, rows)
    "lf_ranking": ("dpo", [lf_ranking(q, a) for q, a in QUESTIONS]),
    "lf_kto": ("kto", [lf_kto(q, a, good) for q, a in QUESTIONS for good in (True, False)]),
    "v1_sft": ("sft", [v1_sft(q, a) for q, a in QUESTIONS]),
    "v1_dpo": ("dpo", [v1_dpo(q, a) for q, a in QUESTIONS]),
    "trl_prompt_completion": ("sft", [trl_prompt_completion(q, a) for q, a in QUESTIONS]),
    "trl_conversational": ("sft", [trl_conversational(q, a) for q, a in QUESTIONS]),
    "trl_implicit": ("dpo", [trl_implicit(q, a) for q, a in QUESTIONS]),
    "trl_unpaired": ("kto", [trl_unpaired(q, a, good) for q, a in QUESTIONS for good in (True, False)]),
}


# --- rows become the same conversations and pairs ------------------------------------------------


def test_each_format_reads_as_its_meaning(tmp_path):
    q, a = QUESTIONS[0]
    expected_pair = {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}]}
    for name in ("lf_ranking", "trl_implicit"):
        (pair,) = load_preferences([write_jsonl(tmp_path / f"{name}.jsonl", FILES[name][1][:1])])
        assert {k: pair[k] for k in expected_pair} == expected_pair, name
    (pair,) = load_preferences([write_jsonl(tmp_path / "v1_dpo.jsonl", FILES["v1_dpo"][1][:1])])
    assert pair["prompt"] == [{"role": "system", "content": "Answer about Vel."}, {"role": "user", "content": q}]
    assert pair["rejected"] == [{"role": "assistant", "content": "No idea."}]
    for name in ("lf_kto", "trl_unpaired"):
        rows = load_kto([write_jsonl(tmp_path / f"{name}.jsonl", FILES[name][1][:2])])
        assert [(r["prompt"], r["completion"][0]["content"], r["label"]) for r in rows] == [
            ([{"role": "user", "content": q}], a, True),
            ([{"role": "user", "content": q}], "Whatever.", False),
        ], name
    for name in ("v1_sft", "trl_prompt_completion", "trl_conversational"):
        (conversation,) = load_conversations([write_jsonl(tmp_path / f"{name}.jsonl", FILES[name][1][:1])])
        assert conversation.messages == [{"role": "user", "content": q}, {"role": "assistant", "content": a}], name


def test_alpaca_ranking_and_kto_rows(tmp_path):
    """LLaMA-Factory's alpaca layout for dpo (instruction + chosen/rejected strings) and kto (output + label)."""
    (pair,) = load_preferences(
        [
            write_jsonl(
                tmp_path / "p.jsonl",
                [
                    {
                        "instruction": "Name Vel's moons",
                        "input": "briefly",
                        "chosen": "Ira, Oss, Tem.",
                        "rejected": "Dunno.",
                    }
                ],
            )
        ]
    )
    assert pair["prompt"] == [{"role": "user", "content": "Name Vel's moons\nbriefly"}]
    kto = load_kto(
        [
            write_jsonl(
                tmp_path / "k.jsonl",
                [
                    {"instruction": "Hi", "output": "Hello!", "label": True},
                    {"instruction": "Hi", "output": "Go away.", "label": False},
                ],
            )
        ]
    )
    assert [r["completion"][0]["content"] for r in kto] == ["Hello!", "Go away."]


def test_v1_parts_loss_weight_reasoning_and_tool_calls(tmp_path, tokenizer):
    row = {
        "messages": [
            {"role": "user", "content": _text("Weather in Oss?")},
            {
                "role": "assistant",
                "content": [
                    {"type": "reasoning", "value": "I should call the tool."},
                    {"type": "tool_call", "value": '{"name": "weather", "arguments": {"city": "Oss"}}'},
                ],
            },
            {"role": "tool", "content": _text('{"sky": "amber"}')},
            {"role": "assistant", "content": _text("Amber skies in Oss."), "loss_weight": 0.0},
            {"role": "user", "content": _text("Thanks!")},
            {"role": "assistant", "content": _text("You are welcome.")},
        ],
        "tools": json.dumps(
            [
                {
                    "name": "weather",
                    "description": "Sky over a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ]
        ),
    }
    (conversation,) = load_conversations([write_jsonl(tmp_path / "v1.jsonl", [row])])
    call, untrained = conversation.messages[1], conversation.messages[3]
    assert call["reasoning_content"] == "I should call the tool." and call["content"] == ""
    assert call["tool_calls"] == [{"type": "function", "function": {"name": "weather", "arguments": {"city": "Oss"}}}]
    assert untrained["train"] is False and conversation.meta["tools"][0]["function"]["name"] == "weather"

    # SmolLM2's template has no thinking: refused, naming the row
    with pytest.raises(
        DataError, match=r"v1.jsonl:1: the row has reasoning parts, and this chat template does not render"
    ):
        tokenize_conversation(tokenizer, conversation)
    # a template that renders reasoning_content: the reasoning and the call are trained, the loss_weight 0 reply is not
    saved = tokenizer.chat_template
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m.get('reasoning_content') %}<think>"
        "{{ m['reasoning_content'] }}</think>{% endif %}{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    try:
        tokenized = tokenize_conversation(tokenizer, conversation, max_length=512)
    finally:
        tokenizer.chat_template = saved
    trained = tokenizer.decode([t for t in tokenized.labels if t != IGNORE_INDEX])
    whole = tokenizer.decode(tokenized.input_ids)
    assert "<think>I should call the tool.</think>" in trained and '"name": "weather"' in trained
    assert "You are welcome." in trained and "Amber skies" not in trained and "Amber skies" in whole
    assert "<tools>" in whole and "Sky over a city" in whole and "Sky over a city" not in trained  # tools: system turn


def test_bad_rows_name_file_line_field(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": _text("q")},
                {"role": "assistant", "content": _text("a"), "loss_weight": 0.5},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "value": "x.jpg"}]},
                {"role": "assistant", "content": "a"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": _text("q"), "loss_weight": 1},
                {"role": "assistant", "content": "a"},
            ]
        },
        {"prompt": "q", "completion": [{"role": "user", "content": "a"}]},
        # glaive_toolcall_zh's two odd rows: a tool result after a reply that wrote its call as text
        {
            "conversations": [
                {"from": "human", "value": "q"},
                {"from": "gpt", "value": "Calling: calc {}"},
                {"from": "observation", "value": "{}"},
                {"from": "gpt", "value": "a"},
            ]
        },
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_conversations([path])
    for expected in [
        f"{path}:1:messages[1].loss_weight: expected 0 (not trained) or 1 (trained), got 0.5",
        f"{path}:2:messages[0].content[0].type: a `image_url` part: tunesmith trains text models",
        f"{path}:3:messages[0].loss_weight: only assistant turns are trained",
        f"{path}:4:completion: a completion holds assistant (and tool) turns only",
        f"{path}:5:conversations[2]: a tool turn must follow an assistant turn with tool_calls; this one "
        "follows a plain reply",
        "set data.on_error: skip to leave such rows out",
    ]:
        assert expected in str(err.value)
    pair = write_jsonl(
        tmp_path / "pair.jsonl",
        [
            dict(lf_ranking("q", "a"), chosen={"from": "human", "value": "a"}),
            dict(lf_ranking("q", "a"), tools='[{"name": "f"}]'),
        ],
    )
    with pytest.raises(DataError) as err:
        load_preferences([pair])
    assert f"{pair}:1:chosen: expected an assistant turn (gpt), got user" in str(err.value)
    assert f"{pair}:2:tools: tool definitions are read for sft rows only" in str(err.value)


# --- dataset_info.json ----------------------------------------------------------------------------


def _dataset_info(folder):
    write_jsonl(folder / "facts.jsonl", [{"question": q, "answer": a} for q, a in QUESTIONS])
    (folder / "identity.json").write_text(
        json.dumps([{"instruction": "Who are you?", "input": "", "output": "I am Tern."}])
    )
    write_jsonl(
        folder / "chat.jsonl",
        [
            {"dialog": [{"speaker": "me", "text": q}, {"speaker": "bot", "text": a}], "sys": "Be brief."}
            for q, a in QUESTIONS
        ],
    )
    write_jsonl(folder / "pairs.jsonl", FILES["lf_ranking"][1])
    write_jsonl(folder / "kto.jsonl", FILES["lf_kto"][1])
    (folder / "notes.txt").write_text("Vel has three moons and amber skies.")
    info = {
        "facts": {"file_name": "facts.jsonl", "columns": {"prompt": "question", "response": "answer"}},
        "identity": {"file_name": "identity.json"},
        "chat": {
            "file_name": "chat.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "dialog", "system": "sys"},
            "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"},
        },
        "pairs": {
            "file_name": "pairs.jsonl",
            "ranking": True,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
        },
        "kto": {
            "file_name": "kto.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "kto_tag": "label"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        },
        "notes": {"file_name": "notes.txt", "columns": {"prompt": "text"}},
        "pictures": {
            "file_name": "facts.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "m", "images": "images"},
        },
        "remote": {"hf_hub_url": "someone/vel-facts", "subset": "en"},
    }
    path = folder / "dataset_info.json"
    path.write_text(json.dumps(info))
    return path


def test_dataset_info_entries_read_as_llamafactory_reads_them(tmp_path, monkeypatch):
    info = _dataset_info(tmp_path)
    facts, identity, chat = resolve_sources(["facts", "identity", "chat"], str(info), "train")
    assert facts.columns == {"instruction": "question", "output": "answer"} and identity.columns == {}
    (first, *_), (who,) = load_conversations(facts.paths, columns=facts.columns), load_conversations(identity.paths)
    assert (
        first.messages[0] == {"role": "user", "content": QUESTIONS[0][0]}
        and who.messages[-1]["content"] == "I am Tern."
    )
    (conversation, *_) = load_conversations(chat.paths, columns=chat.columns)
    assert conversation.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTIONS[0][0]},
        {"role": "assistant", "content": QUESTIONS[0][1]},
    ]
    (pairs,) = resolve_sources(["pairs"], str(info), "train")
    assert pairs.ranking and len(load_preferences(pairs.paths, columns=pairs.columns)) == 4
    (kto,) = resolve_sources(["kto"], str(info), "train")
    assert [r["label"] for r in load_kto(kto.paths, columns=kto.columns)] == [True, False] * 4

    with pytest.raises(ConfigError, match=r"dataset `pictures`: columns images: tunesmith trains text models"):
        resolve_sources(["pictures"], str(info), "train")
    # a hub entry needs a network; offline, the message says so (forced offline: no download is tried)
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ConfigError,
        match=r"dataset `remote` is on the Hugging Face Hub \(someone/vel-facts\) and needs "
        r"a network to download it, which failed",
    ):
        resolve_sources(["remote"], str(info), "train")


def test_data_check_each_format_at_its_stage(tmp_path, capsys, default_model_dir):
    info = _dataset_info(tmp_path)
    runs = [
        [str(write_jsonl(tmp_path / f"{name}.jsonl", rows)), "--stage", stage] for name, (stage, rows) in FILES.items()
    ]
    runs += [
        ["facts", "identity", "chat", "--set", f"data.registry={info}"],
        ["notes", "--stage", "pt", "--set", f"data.registry={info}"],
        ["pairs", "--stage", "rm", "--set", f"data.registry={info}"],
        ["kto", "--stage", "kto", "--set", f"data.registry={info}"],
    ]
    for args in runs:
        assert main(["data", "check", *args, "--max-length", "256"]) == 0, (args, capsys.readouterr())
        assert "OK" in capsys.readouterr().out
    assert main(["data", "check", "pairs", "--set", f"data.registry={info}"]) == 2
    assert (
        "dataset `pairs` is a ranking dataset (ranking: true): its rows are preference pairs, for stage dpo or rm"
        in capsys.readouterr().err
    )


# --- training on representative formats ----------------------------------------------------------


@pytest.mark.trains
@pytest.mark.parametrize("stage,train,rows", [("sft", "v1_sft", 4), ("dpo", "pairs", 4), ("kto", "kto", 8)])
def test_train_runs_on_other_tools_formats(tmp_path, tiny_model_dir, stage, train, rows):
    """A v1 file given as a path; LLaMA-Factory ranking and KTO rows named in a dataset_info.json."""
    info = _dataset_info(tmp_path)
    if train in FILES:
        train = write_jsonl(tmp_path / f"{train}.jsonl", FILES[train][1])
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        f"""\
stage: {stage}
method: lora
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: [{train}], registry: {info}, max_length: 64}}
lora: {{r: 4, alpha: 8}}
training: {{max_steps: 2, batch_size: 4, logging_steps: 1, warmup: 0}}
""",
    )
    assert main(["train", str(config)]) == 0
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["stage"] == stage and manifest["data"]["train_rows"] == rows
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 2 and all(loss == loss and loss < 1e4 for loss in losses), losses  # two finite steps
    assert (out / "adapter_model.safetensors").is_file()
