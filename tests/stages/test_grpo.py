"""grpo stage: verifiable rewards, config/data checks, and GRPO raises the mean reward of a simple task."""

import json
from types import SimpleNamespace

import pytest

from helpers.checks import assert_only_last_layer_trained
from helpers.data import HELD_OUT, QUESTIONS
from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.data.preference import load_prompts
from tunesmith.errors import DataError
from tunesmith.eval.verifiers import exact_answer, length, regex_format, reward_functions

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def test_reward_functions_score_completions():
    chat = [[{"role": "assistant", "content": "The answer is  Paris."}], [{"role": "assistant", "content": "Lyon"}]]
    assert exact_answer(chat, answer=[["paris"], ["Paris"]]) == [1.0, 0.0]
    assert exact_answer(["Paris", "paris!"], answer=[["Paris"], ["Paris"]], match="equals") == [1.0, 0.0]
    assert regex_format(["Answer: 42", "42"], pattern=r"^Answer: \d+$") == [1.0, 0.0]
    assert length(["abcd", "abcdef", "abcdefgh" * 2, " "], max_chars=4) == [1.0, 0.5, 0.0, 0.0]  # empty earns nothing
    specs = [
        SimpleNamespace(name="regex_format", pattern="^A", match=None, max_chars=None, weight=1.0),
        SimpleNamespace(name="regex_format", pattern="B$", match=None, max_chars=None, weight=1.0),
    ]
    first, second = reward_functions(specs)
    assert (first.__name__, second.__name__) == ("regex_format", "regex_format_2")
    assert first(["AB", "xB"], prompts=None, trainer_state=None) == [1.0, 0.0]
    assert second(["AB", "xB"], prompts=None) == [1.0, 1.0]


def test_prompt_rows_are_validated(tmp_path):
    rows = [
        {"prompt": "2+2?", "answer": 4},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"prompt": "q", "answer": []},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"prompt": ""},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_prompts([path])
    message = str(err.value)
    assert f"{path}:3:answer: expected a non-empty string" in message
    assert f"{path}:4:messages: must end with a user message" in message
    assert f"{path}:5:prompt: empty" in message
    good = load_prompts([write_jsonl(tmp_path / "g.jsonl", rows[:2])], system="Be brief.")
    assert good[0]["answer"] == ["4"] and good[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert "answer" not in good[1] and good[1]["prompt"][-1]["content"] == "hi"


def test_grpo_config_errors(tmp_path, tiny_model_dir, capsys):
    no_answer = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Say yes."}, {"prompt": "Say no."}])
    config = write_config(
        tmp_path / "c.yaml",
        f"stage: grpo\noutput_dir: {tmp_path / 'o'}\n"
        f"model: {{name_or_path: {tiny_model_dir}}}\ndata: {{train: {no_answer}}}\n",
    )
    assert main(["train", str(config)]) == 2
    assert "grpo.rewards: no reward function given" in capsys.readouterr().err
    assert main(["train", str(config), "grpo.rewards=[{name: exact_answer}]"]) == 2
    assert (
        f"2 prompt row(s) have no `answer` field, which reward exact_answer needs: {no_answer}:1"
        in capsys.readouterr().err
    )
    assert main(["train", str(config), "grpo.rewards=[{name: regex_format}]"]) == 2
    assert "reward regex_format needs `pattern`" in capsys.readouterr().err
    assert main(["train", str(config), "grpo.rewards=[{name: length, max_chars: 9, pattern: x}]"]) == 2
    assert "`pattern` does not apply to reward `length`" in capsys.readouterr().err
    assert main(["train", str(config), "grpo.rewards=[{name: length, max_chars: 9}]", "training.batch_size=6"]) == 2
    assert "must be a multiple of grpo.num_generations (4)" in capsys.readouterr().err


GRPO_METHODS = {  # method: (its section, learning rate)
    "lora": ("lora: {r: 8, alpha: 16, dropout: 0.0}", 0.01),
    "full": ("", 0.004),
    "freeze": ("freeze: {trainable_layers: 1}", 0.006),
}


@pytest.mark.parametrize("method", list(GRPO_METHODS))
def test_grpo_raises_the_mean_reward(tmp_path, coin, method, capsys):
    # GRPO with exact_answer rewards the answer the coin's greedy replies mostly do not give. Sampled
    # completions differ between CPUs (AVX2 vs AVX512 kernels round differently), so no single step's
    # reward is asserted: the claims are statistics whose margins held for every seed and kernel tried.
    coin, target = coin
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": q, "answer": target} for q in QUESTIONS])
    # one invalid held-out row, skipped: rejects.jsonl lists it as every stage's does
    val = write_jsonl(tmp_path / "val.jsonl", [{"prompt": q, "answer": target} for q in HELD_OUT] + [{"prompt": ""}])
    out = tmp_path / "out"
    section, lr = GRPO_METHODS[method]
    config = write_config(
        tmp_path / "grpo.yaml",
        f"""\
stage: grpo
method: {method}
output_dir: {out}
model: {{name_or_path: {coin}}}
data: {{train: {train}, validation: {val}, max_length: 48, on_error: skip, max_reject_fraction: 0.25}}
grpo: {{rewards: [{{name: exact_answer}}], num_generations: 4, max_completion_length: 4, temperature: 1.0}}
{section}
training: {{max_steps: 10, learning_rate: {lr}, batch_size: 8, warmup: 0, scheduler: constant, logging_steps: 1}}
""",
    )
    assert main(["train", str(config)]) == 0
    assert [json.loads(line)["where"] for line in (out / "rejects.jsonl").read_text().splitlines()] == [f"{val}:5"]
    assert json.loads((out / "tunesmith.json").read_text())["data"]["validation_rows_rejected"] == 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in records if "reward" in r]
    assert "rewards/exact_answer/mean" in records[1] and "reward_std" in records[1]
    assert len(rewards) == 10, rewards
    # Sampled (8 completions a step): step 1 scores the untrained coin; over the last five steps (40
    # samples) the target must be the answer at least 80% of the time, and more often than at step 1.
    # Seen on 2026-11-27 (AMD EPYC, AVX2; seeds 42 and 1, and seed 42 on ATen's non-AVX kernels; 9 runs):
    # first step 0.125-0.625, last five 0.975-1.0; greedy held-out reward 0.0 -> 1.0 in every run.
    first, last = rewards[0], sum(rewards[-5:]) / 5
    assert last >= 0.8 and last > first, rewards
    # Greedy: the held-out replies become the target (the coin's greedy replies mostly were not).
    results = json.loads((out / "eval_results.json").read_text())
    assert results["base"]["reward_mean"] <= 0.5 and results["fine_tuned"]["reward_mean"] == 1.0, results
    assert (out / "reward.png").is_file()
    assert "held-out mean reward (greedy)" in capsys.readouterr().out
    if method == "freeze":
        assert_only_last_layer_trained(out, coin)
