"""The output-folder format: what a finished tunesmith output holds, read by every layer.

A run writes into `OUTPUT_DIR.partial/` and renames it to `OUTPUT_DIR` once the run manifest
(`tunesmith.json`) is written, last. Beside the weights a folder may hold what a method trained
instead of whole weights: a PEFT adapter (`adapter_config.json`), bottleneck adapters
(`bottleneck_adapters.json`) or LoRA experts (`moe_lora.json`). `models/` reads this format to
load, `runtime/` writes it, `methods/` saves into it; none of them owns it, so it lives here.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.errors import OutputError

RUN_MANIFEST = "tunesmith.json"  # written last into every finished output folder
PARTIAL_SUFFIX = ".partial"  # a run in progress (or killed) writes into OUTPUT_DIR.partial/
PEFT_CONFIG = "adapter_config.json"  # a PEFT adapter (LoRA family, virtual tokens) without the base
BOTTLENECK_CONFIG = "bottleneck_adapters.json"  # method `adapter`: bottleneck adapters without the base
MOE_CONFIG = "moe_lora.json"  # method `moe`: LoRA experts and routers without the base
MODEL_FILES = ("config.json", PEFT_CONFIG, BOTTLENECK_CONFIG, MOE_CONFIG)  # one of them makes a model folder


def partial_folder(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def is_run_output(path: Path) -> bool:
    """A folder a tunesmith run wrote: a finished one (manifest) or one still in progress (.partial)."""
    return path.exists() and ((path / RUN_MANIFEST).exists() or path.name.endswith(PARTIAL_SUFFIX))


def read_manifest(path: Path) -> dict:
    manifest = Path(path) / RUN_MANIFEST
    if not manifest.is_file():
        raise OutputError(
            f"{path}: incomplete output (no {RUN_MANIFEST}); the run that wrote it did not finish. "
            "Train again, or point at a finished output folder"
        )
    return json.loads(manifest.read_text())


def trained_part(path: Path) -> str | None:
    """What a model folder holds beside (not instead of) base weights: `lora` (the LoRA family),
    `bottleneck`, `moe`, a PEFT virtual-token type (`prompt_tuning`, `p_tuning`, `prefix_tuning`),
    or None for a whole model."""
    if (path / BOTTLENECK_CONFIG).is_file():
        return "bottleneck"
    if (path / MOE_CONFIG).is_file():
        return "moe"
    if (path / PEFT_CONFIG).is_file():
        config = json.loads((path / PEFT_CONFIG).read_text())
        return "lora" if config.get("peft_type") == "LORA" else config.get("peft_type", "unknown").lower()
    return None
