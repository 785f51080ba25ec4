"""Forgetting guard: replay mixed in at an exact ratio, the L2 pull toward the starting weights,
and the general before/after measure reported with the run."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.data.dataset import build_splits
from tunesmith.errors import ConfigError
from tunesmith.runtime.forgetting import L2TowardStart

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _general_rows(n):
    return [
        {"instruction": f"General question {i}: what colour is the sky?", "output": f"It is usually blue ({i})."}
        for i in range(n)
    ]


def test_replay_makes_up_exactly_the_ratio_of_the_training_set(tmp_path, tokenizer):
    from tunesmith.config.schema import DataConfig

    domain = write_jsonl(
        tmp_path / "domain.jsonl",
        [{"instruction": f"Domain question {i}?", "output": f"Domain answer {i}."} for i in range(16)],
    )
    general = write_jsonl(tmp_path / "general.jsonl", _general_rows(10))
    data = DataConfig(train=[str(domain)], max_length=64, cache=False)

    def built(ratio, seed=1, rows_file=general):
        train, _ = build_splits(tokenizer, data, "chat", seed, replay=[str(rows_file)], replay_ratio=ratio)
        return [r.where for r in train.rows]

    wheres = built(0.2)
    from_general = [w for w in wheres if w.startswith(str(general))]
    from_domain = [w for w in wheres if w.startswith(str(domain))]
    # 16 domain rows kept once each; round(0.2 / 0.8 x 16) = 4 general rows: 4 / 20 = 0.2 exactly
    assert sorted(from_domain) == sorted(f"{domain}:{i}" for i in range(1, 17))
    assert len(from_general) == 4 and len(set(from_general)) == 4 and len(wheres) == 20
    assert len(from_general) / len(wheres) == 0.2
    # a small general set is repeated to reach the ratio: 0.5 of the set = 16 rows out of 3 distinct
    small = write_jsonl(tmp_path / "small.jsonl", _general_rows(3))
    half = built(0.5, rows_file=small)
    assert sum(w.startswith(str(small)) for w in half) == 16 and len(half) == 32
    # deterministic by seed, and the seed matters
    assert built(0.2) == wheres and built(0.2, seed=2) != wheres


def test_l2_penalty_and_its_gradient_match_a_hand_computed_case():
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        model.bias.copy_(torch.tensor([0.5, -0.5]))
    model.bias.requires_grad_(False)  # frozen parameters are not pulled
    pull = L2TowardStart(model, coef=0.25)
    assert pull.penalty(model) == 0.0
    with torch.no_grad():
        model.weight += torch.tensor([[0.1, 0.0, -0.2], [0.0, 0.3, 0.0]])
        model.bias += 1.0
    # 0.25 x (0.01 + 0.04 + 0.09) = 0.035
    assert abs(pull.penalty(model) - 0.035) < 1e-6
    model.weight.grad = torch.ones(2, 3)  # the pull adds to whatever gradient is there
    pull.on_step_begin(None, None, None, model=model)
    expected = torch.ones(2, 3) + 2 * 0.25 * torch.tensor([[0.1, 0.0, -0.2], [0.0, 0.3, 0.0]])
    assert torch.allclose(model.weight.grad, expected, atol=1e-6, rtol=0)
    assert model.bias.grad is None
    logs = {"loss": 1.0}
    pull.on_log(None, None, None, logs=logs, model=model)
    assert abs(logs["l2_penalty"] - 0.035) < 1e-6


def _run(tmp_path, tiny_model_dir, name, l2, data, general_eval):
    out = tmp_path / name
    config = write_config(
        tmp_path / f"{name}.yaml",
        f"""\
stage: sft
method: full
output_dir: {out}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {data}
  max_length: 64
training:
  max_steps: 12
  batch_size: 4
  learning_rate: 0.01
  logging_steps: 1
  warmup: 0
  scheduler: constant
  mixed_precision: "no"
forgetting:
  l2: {l2}
  general_eval: {general_eval}
""",
    )
    assert main(["train", str(config)]) == 0
    return out


def test_l2_keeps_weights_near_the_base_and_general_figures_are_reported(tmp_path, tiny_model_dir, capsys):
    data = write_jsonl(
        tmp_path / "train.jsonl", [{"instruction": f"Code {i}?", "output": f"The code is Z{i * 7}."} for i in range(8)]
    )
    general = write_jsonl(tmp_path / "general.jsonl", _general_rows(6))
    base = load_file(str(tiny_model_dir / "model.safetensors"))

    def distance_sq(out):
        trained = load_file(str(out / "model.safetensors"))
        return sum(float((trained[k].double() - base[k].double()).pow(2).sum()) for k in base)

    free = _run(tmp_path, tiny_model_dir, "free", 0.0, data, general)
    pulled = _run(tmp_path, tiny_model_dir, "pulled", 10.0, data, general)
    # the pull keeps the trained weights much closer to theta_0: squared distance under a quarter
    assert distance_sq(pulled) < 0.25 * distance_sq(free), (distance_sq(pulled), distance_sq(free))

    # the logged penalty is the penalty of the saved weights: coef x ||theta - theta_0||^2
    records = [json.loads(line) for line in (pulled / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "l2_penalty" in r]
    assert len(logged) == 12 and logged[-1]["step"] == 12
    assert logged[-1]["l2_penalty"] == pytest.approx(10.0 * distance_sq(pulled), rel=1e-6, abs=1e-6)
    assert not any("l2_penalty" in json.loads(line) for line in (free / "metrics.jsonl").read_text().splitlines())

    # general before/after figures, in eval_results.json and in what the run prints
    for out in (free, pulled):
        results = json.loads((out / "eval_results.json").read_text())
        for side in ("base", "fine_tuned"):
            assert results[side]["general_loss"] > 0 and results[side]["general_tokens"] > 0
        assert results["base"]["general_loss"] != results["fine_tuned"]["general_loss"]
        f = results["forgetting"]
        assert f["general_perplexity_change"] == pytest.approx(
            results["fine_tuned"]["general_perplexity"] / results["base"]["general_perplexity"] - 1
        )
    printed = capsys.readouterr().out
    print(f"squared distance to theta_0: l2=0 {distance_sq(free):.4f}, l2=10 {distance_sq(pulled):.4f}")
    assert "general perplexity (forgetting)" in printed and "[tunesmith] forgetting: general perplexity" in printed
    # the pull also limits how far the general loss moves
    moved = {
        name: abs(json.loads((o / "eval_results.json").read_text())["forgetting"]["general_perplexity_change"])
        for name, o in (("free", free), ("pulled", pulled))
    }
    print("general perplexity change", moved)
    assert moved["pulled"] < moved["free"], moved


def test_forgetting_options_are_checked_at_config_time(tmp_path, tiny_model_dir):
    from tunesmith.stages.registry import check_stage

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}] * 4)
    base = f"output_dir: {tmp_path / 'o'}\nmodel:\n  name_or_path: {tiny_model_dir}\ndata:\n  train: {data}\n"
    cases = {
        "stage: dpo\nforgetting:\n  replay: x.jsonl\n": "forgetting.replay: stage `dpo` cannot mix general rows",
        "stage: rm\nforgetting:\n  general_eval: x.jsonl\n": "stage `rm` trains a model that does not generate text",
        "stage: rm\nforgetting:\n  general_qa: x.jsonl\n": "forgetting.general_qa: stage `rm` trains a model",
    }
    for extra, message in cases.items():
        path = write_config(tmp_path / "c.yaml", base + extra)
        with pytest.raises(ConfigError, match=message):
            check_stage(load_config(path))


def test_l2_pull_runs_in_a_trl_stage_with_lora_too(tmp_path, tiny_model_dir):
    # DPO (a TRL trainer) with LoRA: the stage knows nothing of the pull, yet it is applied and logged;
    # theta_0 is the adapter's init; every logged value is measured after an optimiser step moved it
    pairs = [
        {"prompt": f"Question {i}?", "chosen": "Certainly, here is an answer.", "rejected": "No."} for i in range(8)
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "dpo"
    config = write_config(
        tmp_path / "dpo.yaml",
        f"""\
stage: dpo
method: lora
output_dir: {out}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {data}
  max_length: 64
lora: {{r: 4, alpha: 8, dropout: 0.0}}
training:
  max_steps: 4
  batch_size: 4
  learning_rate: 0.01
  warmup: 0
  logging_steps: 1
  mixed_precision: "no"
forgetting:
  l2: 0.5
eval:
  compare_base: false
""",
    )
    assert main(["train", str(config)]) == 0
    logged = [
        json.loads(line)["l2_penalty"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "l2_penalty" in line
    ]
    assert len(logged) == 4 and all(value > 0 for value in logged), logged


def test_general_qa_is_measured_before_and_after_and_a_drop_is_warned(tmp_path, tiny_model_dir, capsys):
    # The general questions' key answers are taken from the base model's own greedy replies, so the
    # base scores 100% by construction; training hard on unrelated rows changes those replies, so the
    # fine-tuned model scores lower, and the run must report the drop and warn with the remedies.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.eval.generate import generate_replies

    questions = [f"General question {i}: what colour is the sky?" for i in range(6)]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    replies = generate_replies(model, tok, questions, "Be brief.", max_new_tokens=8)
    kept = [(q, r) for q, r in zip(questions, replies) if len(r.strip()) >= 4]
    assert len(kept) >= 3, replies
    qa = write_jsonl(
        tmp_path / "general_qa.jsonl", [{"question": q, "answers": [r.strip()], "task": "en"} for q, r in kept]
    )
    data = write_jsonl(
        tmp_path / "train.jsonl", [{"instruction": f"Code {i}?", "output": f"The code is Z{i * 7}."} for i in range(8)]
    )
    out = tmp_path / "run"
    config = write_config(
        tmp_path / "run.yaml",
        f"""\
stage: sft
method: full
output_dir: {out}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {data}
  system: Be brief.
  max_length: 64
training:
  max_steps: 12
  batch_size: 4
  learning_rate: 0.01
  warmup: 0
  scheduler: constant
  mixed_precision: "no"
eval:
  max_new_tokens: 8
forgetting:
  general_qa: {qa}
""",
    )
    assert main(["train", str(config)]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    base, tuned, summary = results["base"], results["fine_tuned"], results["forgetting"]
    assert base["general_qa_correct"] == base["general_qa_total"] == len(kept)
    assert tuned["general_qa_correct"] < len(kept)
    assert tuned["general_qa_correct"] == sum(d["correct"] for d in tuned["general_qa_details"])
    assert summary["general_qa_change"] == pytest.approx(tuned["general_qa_accuracy"] - 1.0)
    assert tuned["general_qa_accuracy/en"] == tuned["general_qa_accuracy"]
    printed = capsys.readouterr().out
    assert "general QA accuracy (forgetting)" in printed
    assert f"general QA {len(kept)} -> {tuned['general_qa_correct']} of {len(kept)} questions" in printed
    assert "warning: the fine-tuned model lost general ability" in printed and "forgetting.replay" in printed


def test_forgetting_warnings_follow_the_thresholds(tmp_path):
    from tunesmith.eval.general import forgetting_warnings

    cfg = load_config(write_config(tmp_path / "c.yaml", "stage: sft\noutput_dir: o\ndata:\n  train: x.jsonl\n"))
    one_lost = {
        "general_qa_correct_before": 30,
        "general_qa_correct_after": 29,
        "general_qa_total": 38,
        "general_qa_change": -1 / 38,
    }
    assert forgetting_warnings(one_lost, cfg) == []  # within one question of 38: the default tolerance
    two_lost = {**one_lost, "general_qa_correct_after": 28, "general_qa_change": -2 / 38}
    (warning,) = forgetting_warnings(two_lost, cfg)
    assert (
        "fell from 30 to 28 of 38" in warning
        and "replay_answers: model" in warning
        and "knowledge_selfreplay" in warning
    )
    self_replay = load_config(
        write_config(
            tmp_path / "s.yaml",
            "stage: sft\noutput_dir: o\ndata:\n  train: x.jsonl\n"
            "training:\n  neftune_alpha: 5\nforgetting:\n  replay: g.jsonl\n"
            "  replay_answers: model\n",
        )
    )
    (turned_up,) = forgetting_warnings(two_lost, self_replay)  # self-replay already on: turn it up
    assert "replay_answers: model" not in turned_up and "replay_ratio (now 0.2)" in turned_up
    assert "neftune_alpha (now 5" in turned_up
    assert forgetting_warnings({"general_perplexity_change": 0.2}, cfg) == []
    (warning,) = forgetting_warnings({"general_perplexity_change": 0.4}, cfg)
    assert "general perplexity rose by 40%" in warning


def test_replay_answered_by_the_model_itself_is_generated_once_and_trained(tmp_path, coin, capsys, caplog):
    """forgetting.replay_answers: model replaces the written replay answers by the starting model's
    own greedy replies, caches them, and the next run reuses them. The cached file holds chat rows, read
    as such though the domain files say `format: alpaca`."""
    from tunesmith.eval.generate import generate, prompt_text
    from tunesmith.methods.load import load_for_inference

    base, _ = coin  # a tiny model that answers "yes" or "no" and then stops
    questions = [f"Is item {i} ready?" for i in (30, 31, 32, 33, 34, 35)]
    replay = write_jsonl(
        tmp_path / "general.jsonl", [{"instruction": q, "output": "A long answer written by hand."} for q in questions]
    )
    data = write_jsonl(
        tmp_path / "train.jsonl", [{"instruction": f"Code {i}?", "output": f"Z{i * 7}."} for i in range(8)]
    )
    cache = tmp_path / "cache"

    def run(name):
        config = write_config(
            tmp_path / f"{name}.yaml",
            f"""\
stage: sft
method: lora
output_dir: {tmp_path / name}
model: {{name_or_path: {base}, cache_dir: {cache}}}
data: {{train: {data}, max_length: 48, format: alpaca}}
training: {{max_steps: 2, batch_size: 4, mixed_precision: "no"}}
eval: {{compare_base: false}}
forgetting: {{replay: {replay}, replay_ratio: 0.5, replay_answers: model, replay_max_new_tokens: 6}}
""",
        )
        assert main(["train", str(config)]) == 0
        return capsys.readouterr().out

    first = run("first")
    assert "the starting model answers 6 replay prompts" in first
    [cached] = (cache / "model_replay").glob("*.jsonl")
    rows = [json.loads(line)["messages"] for line in cached.read_text().splitlines()]
    loaded = load_for_inference(str(base))
    expected = generate(
        loaded.model,
        loaded.tokenizer,
        [prompt_text(loaded.tokenizer, [{"role": "user", "content": q}]) for q in questions],
        6,
    )
    kept = [(q, g.text) for q, g in zip(questions, expected) if g.stopped and g.text]
    assert kept and all(text in ("yes", "no") for _, text in kept)
    assert rows == [[{"role": "user", "content": q}, {"role": "assistant", "content": text}] for q, text in kept]
    # the second run of the config reuses the answers: nothing generated again, and what it replays is
    # that file (8 domain rows + 8 rows drawn from the model's answers), not the written answers
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tunesmith.data"):
        assert "replay prompts" not in run("second")
    assert len(list((cache / "model_replay").glob("*"))) == 1
    assert any(str(cached) in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    manifest = json.loads((tmp_path / "second" / "tunesmith.json").read_text())
    assert manifest["data"]["train_rows"] == 16


def test_replay_answers_model_is_refused_for_raw_text(tmp_path, tiny_model_dir):
    from tunesmith.stages.registry import check_stage

    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "Some raw text."}] * 4)
    path = write_config(
        tmp_path / "c.yaml",
        f"stage: pt\noutput_dir: {tmp_path / 'o'}\nmodel: {{name_or_path: "
        f"{tiny_model_dir}}}\ndata: {{train: {text}}}\nforgetting: {{replay: "
        f"{text}, replay_answers: model}}\n",
    )
    with pytest.raises(
        ConfigError,
        match="forgetting.replay_answers: `model` answers the prompts of chat rows, but stage `pt` replays raw text",
    ):
        check_stage(load_config(path))
