"""Load base models and trained outputs.

A model reference is one of: `default` (the embedded SmolLM2), a local folder (a transformers
model, or a tunesmith output holding a PEFT adapter), or a Hugging Face hub id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.errors import ModelError, OutputError
from tunesmith.models.default import default_model_path

log = logging.getLogger(__name__)

RUN_MANIFEST = "tunesmith.json"  # written last into every finished output folder
BOTTLENECK_CONFIG = "bottleneck_adapters.json"  # methods.adapter output (adapters without the base)
MOE_CONFIG = "moe_lora.json"  # methods.moe output (LoRA experts and routers without the base)


def resolve_model_path(name_or_path: str, cache_dir: str | None = None) -> str:
    if name_or_path == "default":
        return str(default_model_path(cache_dir))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json", BOTTLENECK_CONFIG,
                                                         MOE_CONFIG)):
            raise ModelError(f"{path}: not a model folder (no config.json, adapter_config.json, {BOTTLENECK_CONFIG} "
                             f"or {MOE_CONFIG})")
        return str(path.resolve())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(f"{name_or_path}: model folder not found")
    return name_or_path  # a hub id; transformers resolves it


def adapter_kind(path: Path) -> str | None:
    """What a model folder holds beside (not instead of) base weights: `lora` (the LoRA family),
    `bottleneck`, `moe`, a PEFT virtual-token type (`prompt_tuning`, `p_tuning`, `prefix_tuning`),
    or None for a whole model."""
    if (path / BOTTLENECK_CONFIG).is_file():
        return "bottleneck"
    if (path / MOE_CONFIG).is_file():
        return "moe"
    if (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text())
        return "lora" if config.get("peft_type") == "LORA" else config.get("peft_type", "unknown").lower()
    return None


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


def load_causal_lm(path: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
                   trust_remote_code: bool = False, **options):
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


def read_manifest(path: Path) -> dict:
    manifest = path / RUN_MANIFEST
    if not manifest.is_file():
        raise OutputError(
            f"{path}: incomplete output (no {RUN_MANIFEST}); the run that wrote it did not finish. "
            "Train again, or point at a finished output folder"
        )
    return json.loads(manifest.read_text())


def load_for_inference(ref: str, cache_dir: str | None = None, merge: bool = True, dtype: str = "auto") -> LoadedModel:
    """Load a base model or a finished tunesmith output (adapter or full) ready for generation."""
    path = Path(resolve_model_path(ref, cache_dir))
    device = pick_device()
    torch_dtype = pick_dtype(dtype, device)
    manifest = {}
    # A tunesmith run in progress (or killed) lives in NAME.partial/ and has no manifest yet: refused.
    # Finished outputs carry one; other model or PEFT adapter folders load as they are.
    if path.exists() and ((path / RUN_MANIFEST).exists() or path.name.endswith(".partial")):
        manifest = read_manifest(path)
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base_ref = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = load_causal_lm(resolve_model_path(base_ref, cache_dir), torch_dtype)
        model = PeftModel.from_pretrained(base, str(path))
        # LoRA-style adapters fold into the base weights; virtual-token adapters (prompt, ptuning,
        # prefix) cannot, and generate through the PEFT wrapper instead.
        if merge and not model.active_peft_config.is_prompt_learning:
            model = model.merge_and_unload()
    elif (path / BOTTLENECK_CONFIG).is_file():
        from tunesmith.methods.adapter import load_adapters, read_adapter_config

        base_ref = read_adapter_config(path)["base_model_name_or_path"]
        model = load_adapters(load_causal_lm(resolve_model_path(base_ref, cache_dir), torch_dtype), path)
    elif (path / MOE_CONFIG).is_file():
        from tunesmith.methods.moe import load_moe_lora, read_moe_config

        base_ref = read_moe_config(path)["base_model_name_or_path"]
        model = load_moe_lora(load_causal_lm(resolve_model_path(base_ref, cache_dir), torch_dtype), path)
    else:
        model = load_causal_lm(str(path), torch_dtype)
    tokenizer = load_tokenizer(str(path))
    model.to(device).eval()
    return LoadedModel(model, tokenizer, str(path), manifest)
