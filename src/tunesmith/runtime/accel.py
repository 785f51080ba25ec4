"""Speed options that depend on the hardware: torch.compile, Liger kernels, flash-attention.

Each is one config key handed to transformers as it is (`training.compile` -> `torch_compile`,
`training.liger` -> `use_liger_kernel`, `model.attn_implementation: flash_attention_2`); what
tunesmith adds is the config-time refusal, with the reason, where one cannot run, so that a run
never fails after loading the model or silently falls back to something slower.
"""

from __future__ import annotations

import importlib.util

import torch

from tunesmith.errors import ConfigError


def check_accelerators(cfg) -> None:
    cuda = torch.cuda.is_available()
    if cfg.training.liger:
        if not cuda:
            raise ConfigError(
                "training.liger: Liger kernels are Triton GPU kernels and need a CUDA GPU (none is "
                "visible); set training.liger=false"
            )
        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError("training.liger: the liger-kernel package is not installed (pip install liger-kernel)")
    if cfg.model.attn_implementation == "flash_attention_2":
        if not cuda:
            raise ConfigError(
                "model.attn_implementation=flash_attention_2 needs a CUDA GPU (none is visible); use "
                "sdpa, which is the default"
            )
        if importlib.util.find_spec("flash_attn") is None:
            raise ConfigError(
                "model.attn_implementation=flash_attention_2: the flash-attn package is not installed "
                "(pip install flash-attn); sdpa needs nothing extra"
            )
    if cfg.training.compile and importlib.util.find_spec("torch._inductor") is None:
        raise ConfigError("training.compile: this torch build has no inductor backend")


def accel_arguments(cfg) -> dict:
    """TrainingArguments for the speed options of `cfg.training`."""
    return {"torch_compile": cfg.training.compile, "use_liger_kernel": cfg.training.liger}
