"""Tiny Llama-style models built from a config, for tests and quick trials (no download).

    build_tiny_model("tests/assets/tokenizer", "/tmp/tiny", hidden_size=64, num_layers=2)

The folder gets random weights and a copy of the given tokenizer, and loads like any model.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_model(
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    seed: int = 0,
    num_kv_heads: int | None = None,
    initializer_range: float = 0.02,
) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        # No pad id in the config: it would make nn.Embedding zero that row, and the pad token is
        # the end-of-turn token here, which the model must learn to predict.
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
