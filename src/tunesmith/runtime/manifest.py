"""The run manifest (`tunesmith.json`): what every finished output records about where it came from,
and the identity a checkpoint must match to be resumed."""

from __future__ import annotations

import platform

import torch

from tunesmith import __version__
from tunesmith.config import TunesmithConfig, config_hash


def library_versions() -> dict[str, str]:
    import peft
    import transformers

    return {
        "tunesmith": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def run_manifest(cfg, base_path, data: dict, trainable, metrics: dict, peak_mb: float, seconds: float) -> dict:
    """What every finished output records: where it came from, on what data, with what result."""
    return {
        "stage": cfg.stage,
        "method": cfg.method,
        "base_model": str(base_path),
        "base_model_ref": cfg.model.name_or_path,
        "system": cfg.data.system,
        "data": {"train": cfg.data.train, "validation": cfg.data.validation, **data},
        "trainable_parameters": trainable.trainable,
        "total_parameters": trainable.total,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        "peak_memory_mb": round(peak_mb, 1),
        "train_seconds": round(seconds, 1),
        "versions": library_versions(),
        "config_hash": config_hash(cfg),
    }


def resume_identity(cfg: TunesmithConfig) -> str:
    """The config hash a checkpoint must match: everything but the resume keys themselves (and the
    live-plot interval, which does not touch training)."""
    training = cfg.training.model_copy(update={"resume": None, "resume_changed": False, "live_plot_seconds": 0.0})
    return config_hash(cfg.model_copy(update={"training": training, "overwrite_output": False}))
