"""Config files and objects for short runs on the tiny model."""

from __future__ import annotations

from pathlib import Path

import yaml

from helpers.files import write_config


def tiny_run(
    tmp_path: Path, model, train, name: str = "run", compare_base: bool = False, **overrides
) -> tuple[Path, Path]:
    """Write `tmp_path/<name>.yaml`, a short run of `model` on the `train` file into `tmp_path/<name>`;
    return (config path, output folder).

    The base: 4 steps of 2 rows, 64 tokens, fp32, every step logged, and no evaluation of the base
    model beside the trained one (`compare_base=True` for a test that reads the base's figures).
    Each override is a top-level key: a dict is merged into that section (a None value drops the
    section's key), anything else replaces it (`stage="dpo"`, `training={"max_steps": 8}`,
    `lora={"r": 4}`, `data={"cache": False}`)."""
    out = tmp_path / name
    config: dict = {
        "output_dir": str(out),
        "model": {"name_or_path": str(model)},
        "data": {"train": str(train), "max_length": 64},
        "training": {"max_steps": 4, "batch_size": 2, "logging_steps": 1, "mixed_precision": "no"},
        "eval": {"compare_base": compare_base},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merged = {**config[key], **value}
            config[key] = {k: v for k, v in merged.items() if v is not None}
        else:
            config[key] = value
    first = {k: config.pop(k) for k in ("stage", "method") if k in config}  # read first, as in the examples
    return write_config(tmp_path / f"{name}.yaml", yaml.safe_dump({**first, **config}, sort_keys=False)), out


def method_config(tmp_path, tiny_model_dir, data, method, section="", name=None, epochs=8) -> tuple[Path, Path]:
    """A small SFT config for `method` with an optional method section (YAML text)."""
    name = name or method
    out = tmp_path / f"out_{name}"
    text = f"""\
stage: sft
method: {method}
output_dir: {out}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {data["train"]}
  validation: {data["validation"]}
  system: You are a test assistant.
  max_length: 128
training:
  epochs: {epochs}
  learning_rate: 0.01
  batch_size: 4
  logging_steps: 1
  warmup: 0
  scheduler: constant
{section}"""
    return write_config(tmp_path / f"{name}.yaml", text), out


def load_config(_, overrides):
    """A validated config object from dotted overrides alone, without a file."""
    from tunesmith.config.loader import apply_overrides, validate_config

    return validate_config(apply_overrides({}, overrides))
