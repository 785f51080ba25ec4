"""Load base models: resolve a model reference, pick device and dtype, load tokenizer and weights.

A model reference is one of: `default` (the embedded SmolLM2), a local folder (a transformers
model, or a tunesmith output), or a Hugging Face hub id. Loading a finished output together with
what its method trained (adapters, experts) is `methods.load`, one layer up from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.errors import ModelError
from tunesmith.layout import MODEL_FILES
from tunesmith.models.default import default_model_path

log = logging.getLogger(__name__)


def resolve_model_path(name_or_path: str, cache_dir: str | None = None) -> str:
    if name_or_path == "default":
        return str(default_model_path(cache_dir))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not any((path / name).is_file() for name in MODEL_FILES):
            raise ModelError(f"{path}: not a model folder (no {', '.join(MODEL_FILES[:-1])} or {MODEL_FILES[-1]})")
        return str(path.resolve())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(f"{name_or_path}: model folder not found")
    return name_or_path  # a hub id; transformers resolves it


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelError(f"{path}: cannot load the tokenizer ({exc}); a hub id needs network access") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    path: str,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    **options,
):
    """`options` go to from_pretrained as they are (e.g. a method's quantization_config)."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code, **options
        )
    except OSError as exc:
        raise ModelError(f"{path}: cannot load the model ({exc}); a hub id needs network access") from None


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    path: str
    manifest: dict = field(default_factory=dict)

    @property
    def system(self) -> str | None:
        return self.manifest.get("system")
