"""Training stages: one readable recipe each (setup -> train -> save), chosen by `stage:`.

A stage never branches on the method. Implemented: sft. The other stages of the mission map
(pt, rm, ppo, dpo, kto, grpo) are valid config values refused with a clear message for now.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.errors import ConfigError
from tunesmith.methods import check_method
from tunesmith.models.loader import pick_device, pick_dtype
from tunesmith.stages.common import RunResult, training_arguments
from tunesmith.stages.sft import run_sft

REGISTRY = {"sft": run_sft}


def check_stage(cfg: TunesmithConfig) -> None:
    if cfg.stage not in REGISTRY:
        raise ConfigError(f"stage `{cfg.stage}` is planned but not implemented yet; available: {', '.join(REGISTRY)}")
    check_method(cfg.method)
    if not cfg.data.train:
        raise ConfigError("data.train: no training files given; set data.train in the config or data.train=PATH")
    # Let transformers check the training arguments now, before any model is loaded.
    device = pick_device()
    with tempfile.TemporaryDirectory() as scratch:
        training_arguments(cfg, Path(scratch), device, pick_dtype(cfg.model.dtype, device), bool(cfg.data.validation))


def run_stage(cfg: TunesmithConfig) -> RunResult:
    check_stage(cfg)
    return REGISTRY[cfg.stage](cfg)
