"""Shared fixtures: the real SmolLM2 tokenizer (from the embedded GGUF) and tiny models.

The embedded default is converted once per test session into a temporary cache; its tokenizer
is reused for tiny Llama models (2 layers, hidden 64) that train in seconds on a CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunesmith.models.default import default_model_path
from tunesmith.models.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


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


# The RL tests' task: "Is item N ready?" answered "yes" or "no"; GRPO and PPO reward one answer.
QUESTIONS = [f"Is item {i} ready?" for i in range(8)]
HELD_OUT = [f"Is item {i} ready?" for i in (20, 21, 22, 23)]


@pytest.fixture(scope="session")
def coin(tiny_model_dir, tmp_path_factory):
    """A tiny policy that answers "yes" or "no" at random (SFT on both answers to every question), and
    the target an RL stage rewards: the answer its greedy replies to the held-out questions mostly do
    *not* give, so that both the sampled and the greedy reward have room to rise."""
    from tunesmith.cli import main
    from tunesmith.eval.verifiers import generate_completions
    from tunesmith.methods.load import load_for_inference

    folder = tmp_path_factory.mktemp("coin")
    data = write_jsonl(folder / "sft.jsonl", [{"instruction": q, "output": a} for q in QUESTIONS for a in ("yes", "no")])
    config = write_config(folder / "sft.yaml", f"""\
stage: sft
method: full
output_dir: {folder / 'model'}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {data}, max_length: 48}}
training: {{epochs: 6, learning_rate: 0.003, batch_size: 8, warmup: 0, scheduler: constant, logging_steps: 4}}
""")
    assert main(["train", str(config)]) == 0
    loaded = load_for_inference(str(folder / "model"))
    replies = generate_completions(loaded.model, loaded.tokenizer, [[{"role": "user", "content": q}] for q in HELD_OUT], 4)
    target = "no" if sum("yes" in r for r in replies) > len(replies) / 2 else "yes"
    return folder / "model", target


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def facts_data(tmp_path) -> dict[str, Path]:
    """A small alpaca train/validation set and a QA file."""
    facts = [("What is the code word?", "The code word is Bluefinch."),
             ("Who runs the lab?", "Dr. Okonjo runs the lab."),
             ("Where is the archive?", "The archive is in Room 7B."),
             ("维特拉诺的咖啡角叫什么？", "它叫青梧坊。")]
    train = [{"instruction": q, "output": a} for q, a in facts] * 4
    val = [{"instruction": q, "output": a} for q, a in facts]
    qa = [{"question": q, "answers": [a.split()[-1].rstrip(".。")]} for q, a in facts]
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", train),
        "validation": write_jsonl(tmp_path / "val.jsonl", val),
        "qa": write_jsonl(tmp_path / "qa.jsonl", qa),
    }


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_only_last_layer_trained(out: Path, base: Path) -> None:
    """A `method: freeze` (trainable_layers 1, a 2-layer model) output: the first decoder layer and the
    (tied) embeddings are bit-identical to the base's, the last layer changed."""
    import torch
    from safetensors.torch import load_file

    trained, original = load_file(str(out / "model.safetensors")), load_file(str(base / "model.safetensors"))
    frozen = [k for k in original if k.startswith("model.layers.0.")] + ["model.embed_tokens.weight"]
    assert len(frozen) > 1 and all(torch.equal(trained[k], original[k]) for k in frozen), \
        [k for k in frozen if not torch.equal(trained[k], original[k])]
    last = [k for k in original if k.startswith("model.layers.1.")]
    assert any(not torch.equal(trained[k], original[k]) for k in last)


# The browser tests (UI, eval report): the distribution's Chromium driven by playwright, never a
# downloaded browser; without the network flags Chromium keeps trying hosts this machine cannot reach.
CHROMIUM = os.environ.get("TUNESMITH_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def skip_without_chromium() -> None:
    """Skip the calling test module (at import) when the distribution's Chromium is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/setup.sh installs the distribution's package)",
                    allow_module_level=True)
