"""Training stages: one readable recipe each (setup -> train -> save), chosen by `stage:`.

A stage never branches on the method. Each stage module offers `check_data(cfg)` (validate every
input before any model loads), `arguments(...)` (its Trainer/TRL arguments) and its `run_*`; a stage
that puts a new task head on the model says so in `NEW_TASK_HEAD` (a phrase naming it), and the
pre-flight check refuses a method that cannot train one.
Implemented: every stage of the mission map (pt, sft, rm, ppo, dpo, kto, grpo) and mtl (multi-task).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.errors import ConfigError
from tunesmith.eval.general import check_general_eval
from tunesmith.methods import check_method, check_task_head
from tunesmith.models.loader import pick_device, pick_dtype
from tunesmith.runtime.accel import check_accelerators
from tunesmith.runtime.forgetting import check_l2
from tunesmith.stages import dpo, grpo, kto, mtl, ppo, pt, rm, sft
from tunesmith.stages.common import RunResult, load_run_tokenizer

REGISTRY = {
    "pt": (pt, pt.run_pt),
    "sft": (sft, sft.run_sft),
    "rm": (rm, rm.run_rm),
    "dpo": (dpo, dpo.run_dpo),
    "kto": (kto, kto.run_kto),
    "grpo": (grpo, grpo.run_grpo),
    "ppo": (ppo, ppo.run_ppo),
    "mtl": (mtl, mtl.run_mtl),
}


def check_stage(cfg: TunesmithConfig) -> None:
    """Everything that can be checked without loading a model: names, data, training arguments."""
    if cfg.stage not in REGISTRY:
        raise ConfigError(f"stage `{cfg.stage}` is planned but not implemented yet; available: {', '.join(REGISTRY)}")
    check_method(cfg.method, cfg)
    check_accelerators(cfg)
    if not cfg.data.train:
        raise ConfigError("data.train: no training files given; set data.train in the config or data.train=PATH")
    token_stages = ("sft", "pt", "mtl")  # stages that train on tokenised rows (mtl refuses packing itself)
    for key in ("packing", "val_split", "weights", "registry"):
        if getattr(cfg.data, key) and cfg.stage not in token_stages:
            raise ConfigError(f"data.{key} applies to stages {', '.join(token_stages[:-1])} and {token_stages[-1]} "
                              f"only, not `{cfg.stage}`")
    if cfg.forgetting.replay and cfg.stage not in ("sft", "pt"):
        raise ConfigError(f"forgetting.replay applies to stages sft and pt only, not `{cfg.stage}`")
    module, _ = REGISTRY[cfg.stage]
    if getattr(module, "NEW_TASK_HEAD", None):
        check_task_head(cfg.method, f"{module.NEW_TASK_HEAD} (stage `{cfg.stage}`)")
    module.check_data(cfg)
    if cfg.forgetting.general_eval:
        check_general_eval(cfg, load_run_tokenizer(cfg)[1])
    device = pick_device()
    with tempfile.TemporaryDirectory() as scratch:
        args = module.arguments(cfg, Path(scratch), device, pick_dtype(cfg.model.dtype, device), bool(cfg.data.validation))
    check_l2(cfg, args)


def run_stage(cfg: TunesmithConfig) -> RunResult:
    """Run the stage; call `check_stage` first to fail fast (the recipe validates its data too)."""
    if cfg.stage not in REGISTRY:
        raise ConfigError(f"stage `{cfg.stage}` is planned but not implemented yet; available: {', '.join(REGISTRY)}")
    _, run = REGISTRY[cfg.stage]
    return run(cfg)
