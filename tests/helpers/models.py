"""Tiny models of other families than Llama, built from their transformers configs (offline)."""

from __future__ import annotations

from pathlib import Path


def tiny_qwen2(folder: Path, tokenizer_dir: Path) -> Path:
    """A one-layer random Qwen2 with the given folder's tokenizer, saved in `folder`."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
