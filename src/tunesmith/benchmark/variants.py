"""The benchmark's tunesmith variants: the same job through `tunesmith train`'s own stage.

  tunesmith  the defaults (bf16 autocast where the CPU/GPU has it, length-grouped batches, cached
             tokenisation), the baseline's batch size in rows;
  packed     `data.packing: true`, packs of `pack_length` tokens, as many per step as make the
             same tokens per step;
  compiled   the defaults with `training.compile: true`;
  checkpointing  the defaults with `training.gradient_checkpointing: true` (less memory, slower).
Precision (`spec["precision"]`): `auto` leaves tunesmith's default (bf16 autocast where native,
else fp32); `fp32` sets `training.mixed_precision: no` and fp32 weights; `bf16` sets
`training.mixed_precision: bf16`. The row reports the precision the run resolved. Tokens are
counted as they train (tokens.TokenCounter, through runtime.hooks), peak memory is the manifest's
(runtime.peak_memory, as the baseline's). Each runs in its own process (driver.py); the output is
measured as `tunesmith chat` loads it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tunesmith.benchmark.measure import generation_speed, shared_val_loss

OPTIONS = {
    "tunesmith": {},
    "packed": {"packed": True},
    "compiled": {"compiled": True},
    "checkpointing": {"checkpointing": True},
}


def tunesmith_config(spec: dict, packed: bool = False, compiled: bool = False, checkpointing: bool = False) -> dict:
    """The config of the tunesmith variants: defaults, plus what defines the job and the precision."""
    config = {
        "stage": "sft",
        "method": "lora",
        "output_dir": str(Path(spec["work"]) / "out"),
        "overwrite_output": True,
        "model": {"name_or_path": spec["model"]},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "data": {"train": [spec["train"]], "max_length": spec["max_length"]},
        "training": {
            "epochs": spec["epochs"],
            "max_steps": spec["max_steps"],
            "learning_rate": spec["learning_rate"],
            "scheduler": "cosine",
            "warmup": 0.05,
            "seed": spec["seed"],
            "logging_steps": 10,
            "batch_size": spec["batch_rows"],
        },
    }
    if compiled:
        config["training"]["compile"] = True
    if checkpointing:
        config["training"]["gradient_checkpointing"] = True
    precision = spec.get("precision", "auto")
    if precision == "fp32":
        config["training"]["mixed_precision"] = "no"
        config["model"]["dtype"] = "float32"
    elif precision == "bf16":
        config["training"]["mixed_precision"] = "bf16"
    if packed:
        config["data"].update(packing=True, max_length=spec["pack_length"])
        config["training"]["batch_size"] = spec["batch_packs"]
    return config


def run_tunesmith(spec: dict, variant: str = "tunesmith") -> dict:
    import yaml

    from tunesmith.benchmark.tokens import TokenCounter
    from tunesmith.config import load_config
    from tunesmith.methods.load import load_for_inference
    from tunesmith.models.loader import load_tokenizer, pick_device, pick_dtype, resolve_model_path
    from tunesmith.runtime.hooks import extra_callbacks
    from tunesmith.runtime.precision import resolve_precision
    from tunesmith.stages.registry import check_stage, run_stage

    started = time.perf_counter()
    config_path = Path(spec["work"]) / "config.yaml"
    config = tunesmith_config(spec, **OPTIONS[variant])
    config_path.write_text(f"# tunesmith train {config_path}\n" + yaml.safe_dump(config))
    cfg = load_config(config_path, [])
    check_stage(cfg)
    counter = TokenCounter(load_tokenizer(resolve_model_path(spec["model"])).pad_token_id)
    with extra_callbacks(counter):
        result = run_stage(cfg)
    manifest = result.manifest
    if spec.get("probe"):  # the one-step run on the largest batch: its memory is the figure
        return {"peak_memory_mb": manifest["peak_memory_mb"], **counter.figures()}
    device = pick_device()
    weights = pick_dtype(cfg.model.dtype, device)
    loaded = load_for_inference(str(result.output_dir), merge=True, dtype="float32")
    return {
        "train_seconds": result.metrics["train_runtime"],
        "epochs_run": _last_epoch(result.output_dir),
        "set_tokens": manifest["data"]["train_tokens"],
        "rows": manifest["data"]["train_rows"],
        **counter.figures(),
        "packed_sequences": manifest["data"].get("packed_sequences"),
        "peak_memory_mb": manifest["peak_memory_mb"],
        "train_loss": result.metrics["train_loss"],
        "val_loss": shared_val_loss(loaded.model, loaded.tokenizer, spec),
        "precision": precision_label(resolve_precision(cfg.training.mixed_precision, weights)),
        "weights": precision_label(weights),
        "gradient_checkpointing": cfg.training.gradient_checkpointing,
        "wall_seconds": time.perf_counter() - started,
        # inference as `tunesmith chat` runs it: the output loaded with the adapter merged
        "generate_tokens_per_second": generation_speed(loaded.model, loaded.tokenizer, spec),
    }


def precision_label(precision) -> str:
    """fp32 / bf16 / fp16, for a resolved mixed precision ("no" is fp32) or a torch dtype."""
    return {"no": "fp32", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(
        str(precision).removeprefix("torch."), str(precision)
    )


def _last_epoch(output_dir: Path) -> float:
    """The (fractional) epoch the Trainer reached, from the run's metrics.jsonl."""
    records = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    return max(r["epoch"] for r in records if "epoch" in r)
