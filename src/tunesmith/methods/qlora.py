"""QLoRA: LoRA adapters (options from `lora:`) on a base loaded in 4 or 8 bits by bitsandbytes.

Needs a CUDA GPU and bitsandbytes; its record's `available` (`check_qlora_hardware`) refuses it elsewhere
at config time.
The base is quantised while it loads (`qlora_load_options` gives `from_pretrained` its
BitsAndBytesConfig), then PEFT's `prepare_model_for_kbit_training` readies it (norms in fp32,
input gradients for checkpointing) and the LoRA family is applied on top as for `method: lora`.
The saved adapter applies to the full-precision base as well.
"""

from __future__ import annotations

import torch

from tunesmith.errors import ConfigError
from tunesmith.methods.lora import apply_lora


def check_qlora_hardware() -> None:
    """qlora quantises the base with bitsandbytes on a CUDA GPU; refused elsewhere before anything loads."""
    import importlib.util

    if not (torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes")):
        missing = "no CUDA GPU is visible" if not torch.cuda.is_available() else "bitsandbytes is not installed"
        raise ConfigError(
            f"method `qlora` needs a CUDA GPU and bitsandbytes ({missing}); "
            "use `method: lora` (same adapters on a full-precision base) instead"
        )


def qlora_load_options(cfg) -> dict:
    from transformers import BitsAndBytesConfig

    q = cfg.qlora
    if q.bits == 8:
        quantization = BitsAndBytesConfig(load_in_8bit=True)
    else:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
        )
    return {"quantization_config": quantization, "device_map": {"": torch.cuda.current_device()}}


def apply_qlora(model, cfg):
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.training.gradient_checkpointing)
    return apply_lora(model, cfg)
