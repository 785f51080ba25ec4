"""Distributed engines selected by one key: `training.engine: ddp | fsdp | deepspeed`.

    training:
      engine: deepspeed     # or fsdp
      zero_stage: 3         # 2: shard gradients + optimiser state; 3: weights too
      offload: true         # optimiser state (and stage-3 weights) in CPU memory

tunesmith builds the engine's own configuration and hands it to the transformers Trainer, which
runs the engine through accelerate; nothing here re-implements sharding.
- ddp: nothing to add (the Trainer does DDP whenever it runs under torchrun).
- fsdp: `fsdp=True` and an `fsdp_config` for FSDP2 (`fully_shard`): reshard_after_forward is
  zero_stage 3's full sharding (ZeRO-3-like) or, when false, zero_stage 2's (ZeRO-2-like);
  `cpu_offload` with offload; transformer-block auto-wrap; a full (unsharded) state dict on save.
- deepspeed: a ZeRO config dict (written to OUTPUT/deepspeed_config.json for the record and for
  reuse with `deepspeed`/`accelerate launch`), with "auto" values the Trainer fills from
  `training:` (batch size, accumulation, clipping, precision).

Refused at config time, with the reason: fsdp/deepspeed on a machine without a CUDA GPU
(accelerate 1.15 turns its FSDP plugin on only for accelerator devices: on CPU it silently
trains plain DDP), deepspeed without the package, and the methods whose saving or optimiser is not
the Trainer's own (adapter, qlora, PiSSA/OLoRA init, LoRA+).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from tunesmith.errors import ConfigError

# methods whose result the Trainer's own `save_model` writes exactly as the method would
SHARDABLE_METHODS = ("full", "freeze", "lora")


def fsdp_config(training) -> dict:
    return {
        "version": 2,
        "reshard_after_forward": training.zero_stage == 3,
        "cpu_offload": training.offload,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "state_dict_type": "FULL_STATE_DICT",
    }


def deepspeed_config(training) -> dict:
    zero: dict = {"stage": training.zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if training.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_model writes whole weights
    config: dict = {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }
    if training.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if training.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
        # DeepSpeed's own CPU Adam steps the offloaded state; "auto" takes the values of `training:`
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return config


def check_engine(cfg, device: torch.device) -> None:
    """Refuse, before any model loads, an engine that cannot run here or with this method."""
    t = cfg.training
    if t.engine == "ddp":
        return
    if t.engine == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "training.engine=deepspeed needs the deepspeed package, which is not installed: "
            "pip install deepspeed (it builds its kernels against the installed torch and CUDA); "
            "or use training.engine=fsdp"
        )
    if device.type != "cuda":
        raise ConfigError(
            f"training.engine={t.engine} needs CUDA GPUs and none is visible here: accelerate enables "
            "FSDP/DeepSpeed only on accelerator devices (on CPU it would silently train plain DDP); "
            "use training.engine=ddp with training.nproc=N on CPU"
        )
    lora = cfg.lora
    if cfg.method not in SHARDABLE_METHODS or lora.init in ("pissa", "olora") or lora.loraplus_lr_ratio:
        what = (
            f"method `{cfg.method}`"
            if cfg.method not in SHARDABLE_METHODS
            else f"lora.init={lora.init}"
            if lora.init in ("pissa", "olora")
            else "lora.loraplus_lr_ratio"
        )
        raise ConfigError(
            f"training.engine={t.engine} does not support {what} (its saving or optimiser is its "
            f"own, not the Trainer's); use method {' | '.join(SHARDABLE_METHODS)} with the default "
            "LoRA options, or training.engine=ddp"
        )


def engine_arguments(cfg, work: Path, device: torch.device, write: bool = True) -> dict:
    """TrainingArguments options for `training.engine` (empty for ddp); deepspeed's config is also
    written to WORK/deepspeed_config.json when `write`."""
    check_engine(cfg, device)
    t = cfg.training
    if t.engine == "fsdp":
        return {"fsdp": True, "fsdp_config": fsdp_config(t)}
    if t.engine == "deepspeed":
        config = deepspeed_config(t)
        if write:
            Path(work).mkdir(parents=True, exist_ok=True)
            (Path(work) / "deepspeed_config.json").write_text(json.dumps(config, indent=2))
        return {"deepspeed": config}
    return {}
