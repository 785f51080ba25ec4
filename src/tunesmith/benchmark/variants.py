"""The benchmark's tunesmith variants: the same job through `tunesmith train`'s own stage.

  tunesmith  the defaults (bf16 autocast where the CPU/GPU has it, length-grouped batches, cached
             tokenisation), the baseline's batch size in rows;
  packed     `data.packing: true`, packs of `pack_length` tokens, as many per step as make the
             same tokens per step;
  compiled   the defaults with `training.compile: true`.
Each runs in its own process (driver.py); the output is measured as `tunesmith chat` loads it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tunesmith.benchmark.measure import generation_speed, shared_val_loss


def tunesmith_config(spec: dict, packed: bool, compiled: bool = False) -> dict:
    """The config of the tunesmith variants: defaults, plus what defines the job."""
    config = {
        "stage": "sft", "method": "lora", "output_dir": str(Path(spec["work"]) / "out"), "overwrite_output": True,
        "model": {"name_or_path": spec["model"]},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "data": {"train": [spec["train"]], "max_length": spec["max_length"]},
        "training": {"epochs": spec["epochs"], "max_steps": spec["max_steps"], "learning_rate": spec["learning_rate"],
                     "scheduler": "cosine", "warmup": 0.05, "seed": spec["seed"], "logging_steps": 10,
                     "batch_size": spec["batch_rows"]},
    }
    if compiled:
        config["training"]["compile"] = True
    if packed:
        config["data"].update(packing=True, max_length=spec["pack_length"])
        config["training"]["batch_size"] = spec["batch_packs"]
    return config


def run_tunesmith(spec: dict, packed: bool = False, compiled: bool = False) -> dict:
    import yaml

    from tunesmith.config import load_config
    from tunesmith.methods.load import load_for_inference
    from tunesmith.models.loader import pick_device, pick_dtype
    from tunesmith.runtime.precision import resolve_precision
    from tunesmith.stages.registry import check_stage, run_stage

    started = time.perf_counter()
    config_path = Path(spec["work"]) / "config.yaml"
    config_path.write_text(f"# tunesmith train {config_path}\n" + yaml.safe_dump(tunesmith_config(spec, packed, compiled)))
    cfg = load_config(config_path, [])
    check_stage(cfg)
    result = run_stage(cfg)
    manifest = result.manifest
    device = pick_device()
    loaded = load_for_inference(str(result.output_dir), merge=True, dtype="float32")
    return {
        "train_seconds": result.metrics["train_runtime"], "epochs_run": _last_epoch(result.output_dir),
        "real_tokens": manifest["data"]["train_tokens"], "rows": manifest["data"]["train_rows"],
        "packed_sequences": manifest["data"].get("packed_sequences"),
        "peak_memory_mb": manifest["peak_memory_mb"], "train_loss": result.metrics["train_loss"],
        "val_loss": shared_val_loss(loaded.model, loaded.tokenizer, spec),
        "precision": resolve_precision(cfg.training.mixed_precision, pick_dtype(cfg.model.dtype, device)),
        "wall_seconds": time.perf_counter() - started,
        # inference as `tunesmith chat` runs it: the output loaded with the adapter merged
        "generate_tokens_per_second": generation_speed(loaded.model, loaded.tokenizer, spec),
    }


def _last_epoch(output_dir: Path) -> float:
    """The (fractional) epoch the Trainer reached, from the run's metrics.jsonl."""
    records = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    return max(r["epoch"] for r in records if "epoch" in r)
