"""Assertions on what a training run left in its output folder."""

from __future__ import annotations

import json
from pathlib import Path


def losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def assert_loss_fell(out: Path, factor: float = 0.7):
    values = losses(out)
    assert len(values) >= 6
    assert sum(values[-3:]) / 3 < factor * sum(values[:3]) / 3, values
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["val_loss"] < results["base"]["val_loss"]


def assert_only_last_layer_trained(out: Path, base: Path) -> None:
    """A `method: freeze` (trainable_layers 1, a 2-layer model) output: the first decoder layer and the
    (tied) embeddings are bit-identical to the base's, the last layer changed."""
    import torch
    from safetensors.torch import load_file

    trained, original = load_file(str(out / "model.safetensors")), load_file(str(base / "model.safetensors"))
    frozen = [k for k in original if k.startswith("model.layers.0.")] + ["model.embed_tokens.weight"]
    assert len(frozen) > 1 and all(torch.equal(trained[k], original[k]) for k in frozen), [
        k for k in frozen if not torch.equal(trained[k], original[k])
    ]
    last = [k for k in original if k.startswith("model.layers.1.")]
    assert any(not torch.equal(trained[k], original[k]) for k in last)
