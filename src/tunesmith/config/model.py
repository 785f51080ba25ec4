"""Section `model:`: which base model is loaded, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunesmith.config.section import Section


class ModelConfig(Section):
    name_or_path: str = Field(
        "default",
        description="Base model: 'default' (the embedded SmolLM2-135M-Instruct), a local folder, "
        "or a Hugging Face hub id.",
    )
    cache_dir: str | None = Field(
        None,
        description="Where the embedded default is converted to safetensors once "
        "(default: $TUNESMITH_CACHE or ~/.cache/tunesmith).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype for training: auto = float32 on CPU, bfloat16 on GPUs that support it."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel passed to transformers."
    )
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub.")
