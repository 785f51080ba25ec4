"""Every stage, by name, and the pre-flight check every run, search, bench and data check goes through.

    from tunesmith.stages.registry import get_stage, check_stage, run_stage

Adding a stage: a module in `stages/` that declares `STAGE = Stage(...)` (see `stages.base`), one
line below, and (if it has options) its config section in `config/schema.py`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.data.options import WHY, refused_options
from tunesmith.errors import ConfigError
from tunesmith.eval.general import check_general_eval
from tunesmith.eval.qa import load_qa
from tunesmith.eval.suites import check_suites, configured
from tunesmith.methods import check_method, check_task_head
from tunesmith.models.loader import pick_device, pick_dtype
from tunesmith.runtime.accel import check_accelerators
from tunesmith.runtime.forgetting import check_l2
from tunesmith.stages import dpo, grpo, kto, mtl, ppo, pt, rm, sft
from tunesmith.stages.base import Stage
from tunesmith.stages.lifecycle import RunResult, load_run_tokenizer

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        pt.STAGE,
        sft.STAGE,
        rm.STAGE,
        dpo.STAGE,
        kto.STAGE,
        grpo.STAGE,
        ppo.STAGE,
        mtl.STAGE,
    )
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigError(f"stage `{name}` is not one of: {', '.join(STAGES)}")
    return STAGES[name]


def check_data_options(cfg: TunesmithConfig, stage: Stage) -> None:
    """Every `data.*` option set in the config works for the stage, or the run is refused here."""
    for key in refused_options(cfg.data, stage.data_options):
        reason = stage.why_not.get(key) or WHY.get(key)
        why = f" ({reason})" if reason else ""
        raise ConfigError(
            f"data.{key}: stage `{stage.name}` does not support it{why}; it reads {stage.reads}. "
            f"Remove data.{key} (options this stage supports: "
            f"{', '.join(sorted(stage.data_options))})"
        )
    if cfg.forgetting.replay and not stage.replay:
        able = " and ".join(s.name for s in STAGES.values() if s.replay)
        raise ConfigError(
            f"forgetting.replay: stage `{stage.name}` cannot mix general rows into {stage.reads}; "
            f"replay applies to stages {able}"
        )
    if cfg.forgetting.replay and cfg.forgetting.replay_answers == "model" and stage.data_kind != "chat":
        raise ConfigError(
            f"forgetting.replay_answers: `model` answers the prompts of chat rows, but stage "
            f"`{stage.name}` replays {stage.reads}, which has no answers (set replay_answers: data)"
        )


def check_stage(cfg: TunesmithConfig) -> None:
    """Everything that can be checked without loading a model: names, options, data, the measures and
    suites that apply to the stage and their files, training arguments. Reads and validates the data
    once (tokenised data is cached for the run); contacts nothing and changes nothing else."""
    stage = get_stage(cfg.stage)
    check_method(cfg.method, cfg)
    check_accelerators(cfg)
    if not cfg.data.train:
        raise ConfigError("data.train: no training files given; set data.train in the config or data.train=PATH")
    check_data_options(cfg, stage)
    if not stage.generates:
        for key, value in (
            ("eval.qa", cfg.eval.qa),
            ("forgetting.general_eval", cfg.forgetting.general_eval),
            ("forgetting.general_qa", cfg.forgetting.general_qa),
            *((f"eval.{suite.name}", True) for suite in configured(cfg)),
        ):
            if value:
                raise ConfigError(
                    f"{key}: stage `{stage.name}` trains a model that does not generate text (it "
                    f"reads {stage.reads} and scores them); remove {key}"
                )
    if stage.new_task_head:
        check_task_head(cfg.method, f"{stage.new_task_head} (stage `{stage.name}`)")
    stage.check(cfg)
    if cfg.forgetting.general_eval:
        check_general_eval(cfg, load_run_tokenizer(cfg, stage.data_kind == "text")[1])
    if cfg.forgetting.general_qa:
        load_qa(cfg.forgetting.general_qa)
    if cfg.eval.qa:
        load_qa(cfg.eval.qa)
    check_suites(cfg)
    device = pick_device()
    with tempfile.TemporaryDirectory() as scratch:
        has_eval = bool(cfg.data.validation or cfg.data.val_split)
        args = stage.arguments(cfg, Path(scratch), device, pick_dtype(cfg.model.dtype, device), has_eval)
    check_l2(cfg, args)


def run_stage(cfg: TunesmithConfig) -> RunResult:
    """Run the stage's recipe; call `check_stage` first to fail fast (the recipe validates its data too)."""
    return get_stage(cfg.stage).run(cfg)
