"""The new methods work with a preference stage too (a stage never branches on the method): DPO
with prompt tuning, bottleneck adapters, and DoRA + LoRA+ raises the held-out margin."""

import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2

POLITE, RUDE = "Certainly, here is a careful answer.", "No. Figure it out."


@pytest.mark.parametrize(
    "method,section",
    [
        ("prompt", "prompt: {num_virtual_tokens: 4}"),
        ("adapter", "adapter: {r: 8}"),
        ("lora", "lora: {r: 8, dropout: 0.0, use_dora: true, loraplus_lr_ratio: 4}"),
    ],
)
def test_dpo_with_method_raises_the_margin(tmp_path, tiny_model_dir, method, section):
    pairs = lambda questions: [{"prompt": q, "chosen": POLITE, "rejected": RUDE} for q in questions]  # noqa: E731
    train = write_jsonl(tmp_path / "t.jsonl", pairs([f"Question number {i}: how do I do task {i}?" for i in range(12)]))
    val = write_jsonl(tmp_path / "v.jsonl", pairs(["Can you explain photosynthesis?", "What is a prime number?"]))
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "dpo.yaml",
        f"""\
stage: dpo
method: {method}
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, validation: {val}, max_length: 64}}
training: {{epochs: 2, learning_rate: 0.01, batch_size: 4, logging_steps: 1, warmup: 0, scheduler: constant}}
{section}
""",
    )
    assert main(["train", str(config)]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["pref_margin"] > results["base"]["pref_margin"] + 1.0, results
