"""Load a finished output for use: its base model with what the method trained put back on it.

    loaded = load_for_inference("out/demo_veltrano")      # a causal LM ready to generate
    scorer = load_reward_for_inference("out/rm_lora")     # a reward model (stage rm) ready to score

An output holds either whole weights (full, freeze) or only what its method trained beside a
reference to the base: a PEFT adapter (LoRA family, virtual tokens), bottleneck adapters or LoRA
experts (see `tunesmith.layout`). Rebuilding those needs the methods' own loaders, so this module
sits in `methods/`, above the plain base loading of `models.loader` (which never imports a method).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tunesmith.errors import ModelError
from tunesmith.layout import BOTTLENECK_CONFIG, MOE_CONFIG, PEFT_CONFIG, is_run_output, read_manifest
from tunesmith.methods.bottleneck import load_bottleneck, read_bottleneck_config
from tunesmith.methods.moe import load_moe_lora, read_moe_config
from tunesmith.models.loader import (
    LoadedModel,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    pick_dtype,
    resolve_model_path,
)
from tunesmith.models.reward import is_reward_model, load_reward_model


def load_for_inference(ref: str, cache_dir: str | None = None, merge: bool = True, dtype: str = "auto") -> LoadedModel:
    """Load a base model or a finished tunesmith output (adapter or full) ready for generation."""
    path = Path(resolve_model_path(ref, cache_dir))
    device = pick_device()
    torch_dtype = pick_dtype(dtype, device)
    # A tunesmith run in progress (or killed) lives in NAME.partial/ and has no manifest yet: refused.
    # Finished outputs carry one; other model or PEFT adapter folders load as they are.
    manifest = read_manifest(path) if is_run_output(path) else {}
    if (path / PEFT_CONFIG).is_file():
        from peft import PeftModel

        base_ref = json.loads((path / PEFT_CONFIG).read_text())["base_model_name_or_path"]
        base = load_causal_lm(resolve_model_path(base_ref, cache_dir), torch_dtype)
        model = PeftModel.from_pretrained(base, str(path))
        # LoRA-style adapters fold into the base weights; virtual-token adapters (prompt, ptuning,
        # prefix) cannot, and generate through the PEFT wrapper instead.
        if merge and not model.active_peft_config.is_prompt_learning:
            model = model.merge_and_unload()
    elif (path / BOTTLENECK_CONFIG).is_file():
        base_ref = read_bottleneck_config(path)["base_model_name_or_path"]
        model = load_bottleneck(load_causal_lm(resolve_model_path(base_ref, cache_dir), torch_dtype), path)
    elif (path / MOE_CONFIG).is_file():
        base_ref = read_moe_config(path)["base_model_name_or_path"]
        model = load_moe_lora(load_causal_lm(resolve_model_path(base_ref, cache_dir), torch_dtype), path)
    else:
        model = load_causal_lm(str(path), torch_dtype)
    tokenizer = load_tokenizer(str(path))
    model.to(device).eval()
    return LoadedModel(model, tokenizer, str(path), manifest)


def load_reward_for_inference(ref: str, cache_dir: str | None = None, new_head_seed: int | None = None) -> LoadedModel:
    """A trained reward model (full, LoRA or bottleneck-adapter output). A base model is refused unless
    `new_head_seed` is given: then it gets a new, untrained head initialised from that seed (training's
    starting point)."""
    path = Path(resolve_model_path(ref, cache_dir))
    manifest = read_manifest(path) if is_run_output(path) else {}
    tokenizer = load_tokenizer(str(path))
    device = pick_device()
    dtype = pick_dtype("auto", device)
    trained_head = is_reward_model(path)
    if not trained_head:
        if new_head_seed is None:
            raise ModelError(f"{path}: not a reward model (no sequence-classification head); train one with stage: rm")
        torch.manual_seed(new_head_seed)
    if (path / PEFT_CONFIG).is_file() and trained_head:
        from peft import PeftModel

        settings = json.loads((path / PEFT_CONFIG).read_text())
        base = load_reward_model(
            resolve_model_path(settings["base_model_name_or_path"], cache_dir), tokenizer.pad_token_id, dtype
        )
        model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    elif (path / BOTTLENECK_CONFIG).is_file() and trained_head:
        base_ref = read_bottleneck_config(path)["base_model_name_or_path"]
        model = load_bottleneck(
            load_reward_model(resolve_model_path(base_ref, cache_dir), tokenizer.pad_token_id, dtype), path
        )
    else:
        model = load_reward_model(str(path), tokenizer.pad_token_id, dtype)
    model.to(device).eval()
    return LoadedModel(model, tokenizer, str(path), manifest)
