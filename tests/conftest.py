"""Shared fixtures: the real SmolLM2 tokenizer (from the embedded GGUF) and tiny models.

The embedded default is converted once per test session into a temporary cache; its tokenizer
is reused for tiny Llama models (2 layers, hidden 64) that train in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.data import HELD_OUT, QUESTIONS, preference_pairs
from helpers.files import write_config, write_jsonl
from tunesmith.models.default import default_model_path
from tunesmith.models.tiny import build_tiny_model


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """The session's cache (converted default model, tokenised data); also $TUNESMITH_CACHE, so no
    test reads or writes the user's ~/.cache/tunesmith."""
    import os

    cache = tmp_path_factory.mktemp("tunesmith-cache")
    previous = os.environ.get("TUNESMITH_CACHE")
    os.environ["TUNESMITH_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("TUNESMITH_CACHE", None)
    else:
        os.environ["TUNESMITH_CACHE"] = previous


@pytest.fixture(scope="session")
def default_model_dir(model_cache) -> Path:
    return default_model_path(str(model_cache))


@pytest.fixture(scope="session")
def tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(default_model_dir, tmp_path_factory) -> Path:
    # A wide init lets a random 64-wide model (and LoRA on it) move its logits within a few
    # dozen steps; with the usual 0.02 the frozen, tied head caps how far the loss can fall.
    return build_tiny_model(default_model_dir, tmp_path_factory.mktemp("tiny") / "model", initializer_range=0.3)


@pytest.fixture(scope="session")
def coin(tiny_model_dir, tmp_path_factory):
    """A tiny policy that answers "yes" or "no" at random (SFT on both answers to every question), and
    the target an RL stage rewards: the answer its greedy replies to the held-out questions mostly do
    *not* give, so that both the sampled and the greedy reward have room to rise."""
    from tunesmith.cli import main
    from tunesmith.eval.verifiers import generate_completions
    from tunesmith.methods.load import load_for_inference

    folder = tmp_path_factory.mktemp("coin")
    data = write_jsonl(
        folder / "sft.jsonl", [{"instruction": q, "output": a} for q in QUESTIONS for a in ("yes", "no")]
    )
    config = write_config(
        folder / "sft.yaml",
        f"""\
stage: sft
method: full
output_dir: {folder / "model"}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {data}, max_length: 48}}
training: {{epochs: 6, learning_rate: 0.003, batch_size: 8, warmup: 0, scheduler: constant, logging_steps: 4}}
""",
    )
    assert main(["train", str(config)]) == 0
    loaded = load_for_inference(str(folder / "model"))
    replies = generate_completions(
        loaded.model, loaded.tokenizer, [[{"role": "user", "content": q}] for q in HELD_OUT], 4
    )
    target = "no" if sum("yes" in r for r in replies) > len(replies) / 2 else "yes"
    return folder / "model", target


@pytest.fixture()
def facts_data(tmp_path) -> dict[str, Path]:
    """A small alpaca train/validation set and a QA file."""
    facts = [
        ("What is the code word?", "The code word is Bluefinch."),
        ("Who runs the lab?", "Dr. Okonjo runs the lab."),
        ("Where is the archive?", "The archive is in Room 7B."),
        ("维特拉诺的咖啡角叫什么？", "它叫青梧坊。"),
    ]
    train = [{"instruction": q, "output": a} for q, a in facts] * 4
    val = [{"instruction": q, "output": a} for q, a in facts]
    qa = [{"question": q, "answers": [a.split()[-1].rstrip(".。")]} for q, a in facts]
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", train),
        "validation": write_jsonl(tmp_path / "val.jsonl", val),
        "qa": write_jsonl(tmp_path / "qa.jsonl", qa),
    }


@pytest.fixture()
def dpo_data(tmp_path) -> tuple[Path, Path]:
    """Preference train/validation files: the polite answer chosen over the rude one."""
    train = preference_pairs([f"Question number {i}: how do I do task {i}?" for i in range(12)])
    val = preference_pairs(["Can you explain photosynthesis?", "What is a prime number?", "How do tides work?"])
    return write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "val.jsonl", val)
