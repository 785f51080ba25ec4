"""ppo stage: config/data checks, the KL reference, and PPO raises the mean reward of a simple task
(with a verifiable reward function and with a trained reward model)."""

import json
import os
import signal

import pytest
import torch

from helpers.checks import assert_only_last_layer_trained
from helpers.data import HELD_OUT, QUESTIONS
from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.config import validate_config
from tunesmith.methods import apply_method
from tunesmith.models.loader import load_causal_lm
from tunesmith.stages.ppo import Reference, advantages, rollout_order, token_logprobs

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _prompt_files(tmp_path, target="yes"):
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": q, "answer": target} for q in QUESTIONS])
    val = write_jsonl(tmp_path / "val.jsonl", [{"prompt": q, "answer": target} for q in HELD_OUT])
    return train, val


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_ppo_config_errors(tmp_path, tiny_model_dir, capsys):
    train, _ = _prompt_files(tmp_path)
    config = write_config(
        tmp_path / "c.yaml",
        f"stage: ppo\noutput_dir: {tmp_path / 'o'}\n"
        f"model: {{name_or_path: {tiny_model_dir}}}\ndata: {{train: {train}}}\n",
    )
    assert main(["train", str(config)]) == 2
    assert "ppo: no reward given; set ppo.reward_model" in capsys.readouterr().err
    assert main(["train", str(config), f"ppo.reward_model={tmp_path / 'missing'}"]) == 2
    assert f"ppo.reward_model: {tmp_path / 'missing'} is not a folder" in capsys.readouterr().err
    assert main(["train", str(config), f"ppo.reward_model={tiny_model_dir}"]) == 2  # a base model, not an rm output
    assert "is not a finished tunesmith output" in capsys.readouterr().err
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Say yes.", "output": "yes"}])
    assert main(["train", str(config), f"data.train={alpaca}", "ppo.rewards=[{name: exact_answer}]"]) == 2
    assert f"{alpaca}:1:prompt" in capsys.readouterr().err
    no_answer = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Say yes."}])
    assert main(["train", str(config), f"data.train={no_answer}", "ppo.rewards=[{name: exact_answer}]"]) == 2
    assert "which reward exact_answer needs" in capsys.readouterr().err
    assert main(["train", str(config), "ppo.rewards=[{name: length, max_chars: 9}]", "grpo.beta=0.1"]) == 2
    assert "section `grpo` is set but stage is `ppo`" in capsys.readouterr().err


def test_an_sft_output_is_refused_as_reward_model(tmp_path, coin, capsys):
    coin, _ = coin
    train, _ = _prompt_files(tmp_path)
    config = write_config(
        tmp_path / "c.yaml",
        f"stage: ppo\noutput_dir: {tmp_path / 'o'}\n"
        f"model: {{name_or_path: {coin}}}\ndata: {{train: {train}}}\n"
        f"ppo: {{reward_model: {coin}}}\n",
    )
    assert main(["train", str(config)]) == 2
    assert f"ppo.reward_model: {coin} is the output of stage `sft`, not a reward model" in capsys.readouterr().err


def test_rollout_order_repeats_each_batch():
    rows = [{"where": str(i)} for i in range(5)]
    order = [r["where"] for r in rollout_order(rows, 2, 3, seed=0)]
    assert len(order) == 18 and sorted(set(order)) == [str(i) for i in range(5)]
    batches = [order[i : i + 2] for i in range(0, 18, 2)]
    assert all(batches[i] == batches[i + 1] == batches[i + 2] for i in range(0, 9, 3))


def test_advantages_leave_one_out_and_kl_penalty():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    no_kl = advantages(torch.tensor([1.0, 0.0]), torch.zeros(2, 3), mask, kl_coef=0.1, group=2)
    assert no_kl[0, 0] > 0 and no_kl[1, 0] < 0 and no_kl[0, 2] == 0  # better than its sibling: pushed up
    assert torch.allclose(no_kl[0, :2], -no_kl[1, :2])
    kl = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    penalised = advantages(torch.tensor([1.0, 1.0]), kl, mask, kl_coef=0.5, group=2)
    assert penalised[1, 0] < 0 and penalised[1, 1] == 0 == penalised[0, 0]  # only the token that drifted


def test_lora_reference_is_the_base_with_the_adapter_disabled(tiny_model_dir, tokenizer):
    cfg = validate_config(
        {"stage": "ppo", "method": "lora", "output_dir": "-", "lora": {"r": 4, "dropout": 0.0}}, {}, "test"
    )
    policy, _ = apply_method(load_causal_lm(str(tiny_model_dir)), cfg)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained adapter: the policy now differs from the base
    loads = []
    reference = Reference(policy, lambda: loads.append(1))
    assert reference.copy is None and not loads  # no second copy of the model is ever loaded
    ids = torch.tensor([tokenizer.encode("Is item 3 ready? yes it is")])
    mask = torch.ones_like(ids)
    base = load_causal_lm(str(tiny_model_dir)).eval()
    with torch.no_grad():
        expected = token_logprobs(base, ids, mask, 4, 1.0)
        adapted = token_logprobs(policy, ids, mask, 4, 1.0)
    got = reference.logprobs(policy, ids, mask, 4, 1.0)
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(adapted, expected, atol=1e-3)
    with torch.no_grad():  # the adapter is back on afterwards
        assert torch.allclose(token_logprobs(policy, ids, mask, 4, 1.0), adapted)


PPO_METHODS = {  # method: (its section, learning rate)
    "lora": ("lora: {r: 8, alpha: 16, dropout: 0.0}", 0.01),
    "freeze": ("freeze: {trainable_layers: 1}", 0.003),
}


@pytest.mark.parametrize("method", list(PPO_METHODS))
def test_ppo_raises_the_mean_reward(tmp_path, coin, method, capsys):
    # The coin says the rewarded answer in about half of its samples but not in its greedy replies;
    # PPO with exact_answer must make the answer its choice, sampled and greedy.
    coin, target = coin
    section, lr = PPO_METHODS[method]
    train, val = _prompt_files(tmp_path, target)
    val.write_text(val.read_text() + '{"prompt": ""}\n')  # one invalid held-out row, skipped and listed
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "ppo.yaml",
        f"""\
stage: ppo
method: {method}
output_dir: {out}
model: {{name_or_path: {coin}}}
data: {{train: {train}, validation: {val}, max_length: 48, on_error: skip, max_reject_fraction: 0.25}}
ppo: {{rewards: [{{name: exact_answer}}], num_generations: 2, max_completion_length: 4, kl_coef: 0.05,
       target_kl: 0.5, kl_horizon: 16, epochs_per_rollout: 2}}
{section}
training: {{max_steps: 12, learning_rate: {lr}, batch_size: 4, warmup: 0, scheduler: constant, logging_steps: 1}}
""",
    )
    assert main(["train", str(config)]) == 0
    assert [json.loads(line)["where"] for line in (out / "rejects.jsonl").read_text().splitlines()] == [f"{val}:5"]
    assert json.loads((out / "tunesmith.json").read_text())["data"]["validation_rows_rejected"] == 1
    records = [r for r in _records(out) if "reward" in r]
    rewards = [r["reward"] for r in records]
    assert len(records) == 12 and all(
        {"kl", "kl_coef", "entropy", "clip_fraction", "rewards/exact_answer"} <= set(r) for r in records
    )
    # step 1 scores samples of the unchanged policy: its KL to the reference (lora: the adapter off;
    # freeze: a frozen copy of the base) is exactly 0
    assert abs(records[0]["kl"]) < 1e-6 and records[0]["kl_coef"] == 0.05
    assert max(abs(r["kl"]) for r in records) > 0.01
    # adaptive KL: beta is updated after each of the 6 rollouts (steps 1, 3, ..., 11)
    assert len({round(r["kl_coef"], 6) for r in records}) >= 3
    # Sampled completions differ between CPUs (AVX2 vs AVX512 kernels round differently), so no single
    # rollout is asserted: over the last three rollouts (steps 7-12, 24 samples) the rewarded answer must
    # be sampled at least 75% of the time, and more often than in the first rollout (the untrained coin).
    # Seen on 2026-11-27 (AMD EPYC, AVX2; seeds 42 and 1, and seed 42 on ATen's non-AVX kernels; 6 runs):
    # first rollout 0.125-0.625, last three 0.958-1.0 (single rollouts dipped to 0.125 midway); greedy 0.0 -> 1.0.
    first, last = rewards[0], sum(rewards[6:]) / 6
    assert last >= 0.75 and last > first, rewards
    # ... and the greedy held-out replies become the rewarded answer (the coin's greedy replies mostly were not)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["base"]["reward_mean"] <= 0.5 and results["fine_tuned"]["reward_mean"] == 1.0, results
    assert (out / "reward.png").is_file()
    assert "held-out mean reward (greedy)" in capsys.readouterr().out
    if method == "lora":
        assert (out / "adapter_config.json").is_file()
    else:
        assert_only_last_layer_trained(out, coin)


def test_ppo_against_a_trained_reward_model(tmp_path, tiny_model_dir, coin, capsys):
    # A tiny reward model learns to prefer the answer the coin does not give greedily; PPO then
    # optimises the coin against that score alone.
    coin, target = coin
    other = {"yes": "no", "no": "yes"}[target]
    pairs = [{"prompt": q, "chosen": target, "rejected": other} for q in QUESTIONS]
    rm_data = write_jsonl(tmp_path / "pairs.jsonl", pairs * 2)
    rm_out = tmp_path / "rm"
    rm_config = write_config(
        tmp_path / "rm.yaml",
        f"""\
stage: rm
method: full
output_dir: {rm_out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {rm_data}, max_length: 48}}
training: {{epochs: 3, learning_rate: 0.003, batch_size: 8, warmup: 0, scheduler: constant, logging_steps: 2}}
""",
    )
    assert main(["train", str(rm_config)]) == 0
    train, val = _prompt_files(tmp_path, target)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "ppo.yaml",
        f"""\
stage: ppo
method: full
output_dir: {out}
model: {{name_or_path: {coin}}}
data: {{train: {train}, validation: {val}, max_length: 48}}
ppo: {{reward_model: {rm_out}, num_generations: 2, max_completion_length: 4, kl_coef: 0.02}}
training: {{max_steps: 10, learning_rate: 0.001, batch_size: 4, warmup: 0, scheduler: constant, logging_steps: 1}}
""",
    )
    assert main(["train", str(config)]) == 0
    records = [r for r in _records(out) if "reward" in r]
    rewards = [r["reward"] for r in records]
    assert "rewards/reward_model" in records[0] and abs(records[0]["kl"]) < 1e-6  # full: a frozen copy is the reference
    # the reward model's mean score of the samples: the last half of the run (steps 6-10) well above the
    # first rollout's (steps 1-2, the untrained coin). Seen on 2026-11-27 (AMD EPYC, AVX2): a rise of 3.4
    # (seed 42), 8.3 (seed 1) and about 6 (seed 42 on ATen's non-AVX kernels).
    assert sum(rewards[5:]) / 5 > rewards[0] + 1.0, rewards
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["reward_reward_model"] > results["base"]["reward_reward_model"], results


def test_resumed_ppo_continues_the_kl_coefficient_and_rollout(tmp_path, tiny_model_dir, capsys):
    # A run stopped by SIGTERM in the middle of a rollout (step 3 of rollouts at steps 1, 3, 5 with two PPO
    # epochs each) and resumed must be the same run as one that never stopped: the adaptive KL coefficient
    # continues from its saved value (not ppo.kl_coef) and step 4 optimises the saved rollout again.
    from transformers import TrainerCallback

    from tunesmith.runtime import hooks
    from tunesmith.runtime.checkpoints import MANIFEST, checkpoints
    from tunesmith.stages.ppo import PPO_ROLLOUT, PPO_STATE

    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": q} for q in QUESTIONS[:6]])

    def config(name):
        return write_config(
            tmp_path / f"{name}.yaml",
            f"""\
stage: ppo
method: lora
output_dir: {tmp_path / name}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, max_length: 48}}
ppo: {{rewards: [{{name: length, max_chars: 12}}], num_generations: 2, max_completion_length: 4, kl_coef: 0.05,
       target_kl: 0.01, kl_horizon: 8, epochs_per_rollout: 2}}
lora: {{r: 4, alpha: 8, dropout: 0.0}}
training: {{max_steps: 6, learning_rate: 0.01, batch_size: 2, warmup: 0, scheduler: constant, logging_steps: 1,
           mixed_precision: "no", seed: 5}}
""",
        )

    class SigtermAfterStep2(TrainerCallback):  # a scheduler's SIGTERM, arriving during step 2
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    assert main(["train", str(config("straight"))]) == 0
    with hooks.extra_callbacks(SigtermAfterStep2()):
        assert main(["train", str(config("resumed"))]) == 3
    ((step, checkpoint),) = checkpoints(tmp_path / "resumed.partial")
    assert step == 3
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    assert {PPO_STATE, PPO_ROLLOUT} <= set(manifest["files"])  # written before the manifest, covered by it
    saved = json.loads((checkpoint / PPO_STATE).read_text())["kl_coef"]
    capsys.readouterr()
    assert main(["train", str(config("resumed")), "training.resume=auto"]) == 0
    assert f"resuming from {checkpoint}" in capsys.readouterr().out

    straight = {r["step"]: r for r in _records(tmp_path / "straight") if "reward" in r}
    resumed = {r["step"]: r for r in _records(tmp_path / "resumed") if "reward" in r}
    assert sorted(straight) == sorted(resumed) == list(range(1, 7))
    # the coefficient adapted before the stop, and the third rollout (step 5) used the saved value
    assert saved != 0.05 and straight[5]["kl_coef"] == saved, (saved, straight[5])
    for s in range(1, 7):
        for key in ("kl_coef", "reward", "kl", "loss"):
            assert abs(straight[s][key] - resumed[s][key]) < 1e-6, (s, key, straight[s], resumed[s])
