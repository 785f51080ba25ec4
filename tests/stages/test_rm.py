"""rm stage: a scalar-head reward model learns to rank held-out pairs; the saved model scores text."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.data.preference import load_preferences
from tunesmith.eval.reward import reward_metrics
from tunesmith.methods.freeze import apply_freeze
from tunesmith.methods.load import load_reward_for_inference
from tunesmith.models.reward import load_reward_model, task_head

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2

TOPICS = ["printer", "laptop", "badge", "VPN", "password", "monitor", "parking", "calendar", "email", "desk"]


def courteous(topic, case):
    return f"Sorry about the {topic}! I have opened ticket {case} and a technician will help you today."


def curt(topic, case):
    return f"Not my job. Fix the {topic} yourself."


def _pairs(topics, start, chosen, rejected):
    return [
        {
            "prompt": f"My {t} is broken, case {start + i}.",
            "chosen": chosen(t, start + i),
            "rejected": rejected(t, start + i),
        }
        for i, t in enumerate(topics)
    ]


@pytest.fixture()
def rm_data(tmp_path, tiny_model_dir):
    """Pairs whose chosen reply is the style the *untrained* head (seed 42, as in training) ranks lower,
    so that the held-out accuracy starts at or below chance and only training can raise it."""
    held_out = ["phone", "keyboard", "chair", "wifi", "locker", "mouse"]
    base = load_reward_for_inference(str(tiny_model_dir), new_head_seed=42)
    initial = reward_metrics(
        base.model,
        base.tokenizer,
        load_preferences([write_jsonl(tmp_path / "probe.jsonl", _pairs(held_out, 50, courteous, curt))]),
    )
    chosen, rejected = (curt, courteous) if initial["rm_accuracy"] > 0.5 else (courteous, curt)
    train = write_jsonl(
        tmp_path / "train.jsonl", _pairs(TOPICS, 0, chosen, rejected) + _pairs(TOPICS[::-1], 10, chosen, rejected)
    )
    val = write_jsonl(tmp_path / "val.jsonl", _pairs(held_out, 50, chosen, rejected))
    return train, val, chosen, rejected


@pytest.mark.parametrize("method", ["lora", "full", "freeze", "adapter"])
def test_reward_model_ranks_held_out_pairs(tmp_path, tiny_model_dir, rm_data, method, capsys):
    train, val, chosen, rejected = rm_data
    out = tmp_path / "out"
    section = {
        "lora": "lora: {r: 8, alpha: 16, dropout: 0.0}",
        "full": "",
        "freeze": "freeze: {trainable_layers: 1}",
        "adapter": "adapter: {r: 8}",
    }[method]
    config = write_config(
        tmp_path / "rm.yaml",
        f"""\
stage: rm
method: {method}
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, validation: {val}, max_length: 96}}
training: {{epochs: 4, learning_rate: {0.01 if method in ("lora", "adapter") else 0.002}, batch_size: 4,
  logging_steps: 1, warmup: 0, scheduler: constant}}
{section}
""",
    )
    assert main(["train", str(config)]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    before, after = results["base"], results["fine_tuned"]
    assert before["rm_accuracy"] <= 0.5 and after["rm_accuracy"] == 1.0 and after["rm_pairs"] == 6, (before, after)
    assert after["rm_margin"] > before["rm_margin"] + 1.0, (before, after)
    printed = capsys.readouterr().out
    assert "held-out pair accuracy (reward)" in printed
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["stage"] == "rm" and manifest["data"]["train_rows"] == 20
    assert manifest["data"]["train_rows_dropped"] == 0 and manifest["data"]["train_pairs_dropped_by_trainer"] == 0
    if method == "lora":  # the new head is saved beside the adapter (PEFT SEQ_CLS modules_to_save)
        saved = load_file(out / "adapter_model.safetensors")
        assert any("score" in key for key in saved), sorted(saved)[:5]
    if method == "adapter":  # the head trains and is saved beside the bottleneck adapters, nothing of the base
        saved = load_file(out / "bottleneck_adapters.safetensors")
        assert "score.weight" in saved and not any(key.startswith("model.") for key in saved), sorted(saved)[:5]
    # every method trained the new head: the saved one differs from training's starting point (seed 42)
    start = load_reward_for_inference(str(tiny_model_dir), new_head_seed=42).model.score.weight
    trained = load_reward_for_inference(str(out)).model.score.weight
    assert trained.shape == start.shape and not torch.allclose(trained, start), method

    # The saved model scores text from the CLI: the learned style above the other on a new prompt.
    prompt = "My scanner is broken, case 99."
    assert (
        main(
            [
                "score",
                str(out),
                "--prompt",
                prompt,
                "--reply",
                chosen("scanner", 99),
                "--reply",
                rejected("scanner", 99),
            ]
        )
        == 0
    )
    good, bad = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert good["where"] == "--reply 1" and good["reward"] > bad["reward"], (good, bad)
    rows = write_jsonl(
        tmp_path / "score.jsonl",
        [{"prompt": prompt, "reply": rejected("scanner", 99)}, {"prompt": prompt, "reply": chosen("scanner", 99)}],
    )
    assert main(["score", str(out), "--file", str(rows)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["where"] for r in lines] == [f"{rows}:1", f"{rows}:2"]
    assert lines[1]["reward"] > lines[0]["reward"], lines


def test_freeze_and_lora_train_the_new_head(tiny_model_dir, tokenizer):
    from types import SimpleNamespace

    model = load_reward_model(str(tiny_model_dir), tokenizer.pad_token_id)
    assert task_head(model) == "score" and model.config.pad_token_id == tokenizer.pad_token_id
    assert model.model.embed_tokens.padding_idx is None  # the pad (end-of-turn) row stays trainable
    cfg = SimpleNamespace(freeze=SimpleNamespace(trainable_layers=1, position="last", extra_modules=[]))
    apply_freeze(model, cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "score.weight" in trainable and not any(n.startswith("model.layers.0.") for n in trainable)


def test_score_command_and_rm_config_errors(tmp_path, tiny_model_dir, rm_data, capsys):
    train = rm_data[0]
    config = write_config(
        tmp_path / "c.yaml",
        f"stage: rm\noutput_dir: {tmp_path / 'o'}\n"
        f"model: {{name_or_path: {tiny_model_dir}}}\ndata: {{train: {train}}}\n",
    )
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answers": ["a"]}])
    assert main(["train", str(config), f"eval.qa={qa}"]) == 2
    assert "eval.qa: stage `rm` trains a model that does not generate text" in capsys.readouterr().err
    sft_rows = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "q", "output": "a"}])
    assert main(["train", str(config), f"data.train={sft_rows}"]) == 2
    assert (
        f"{sft_rows}:1:chosen: missing required field; a preference row needs prompt/chosen/rejected, "
        "this one has ['instruction', 'output']"
    ) in capsys.readouterr().err
    for method in ("prompt", "ptuning", "prefix", "moe"):  # cannot train the new head: refused before any model loads
        assert main(["train", str(config), f"method={method}"]) == 2
        assert (
            f"method `{method}` cannot train the reward model's new scalar head (stage `rm`): it would stay "
            "randomly initialised"
        ) in capsys.readouterr().err
    assert main(["train", str(config), "stage=dpo", "rm.center_rewards_coefficient=0.01"]) == 2
    assert "section `rm` is set but stage is `dpo`" in capsys.readouterr().err
    # A causal LM has no trained reward head: scoring with it is refused, not answered with noise.
    assert main(["score", str(tiny_model_dir), "--prompt", "hi", "--reply", "hello"]) == 2
    assert "not a reward model" in capsys.readouterr().err
    assert main(["score", str(tiny_model_dir), "--prompt", "hi"]) == 2
    assert "--prompt and --reply go together" in capsys.readouterr().err
