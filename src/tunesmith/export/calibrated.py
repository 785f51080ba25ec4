"""Calibrated low-bit safetensors for GPU serving: GPTQ (and AWQ on a GPU) through llm-compressor.

    tunesmith export out/demo_veltrano --out out/demo_gptq4 --quant gptq4     # pip install 'tunesmith[gptq]'
    tunesmith export out/demo_veltrano --out out/demo_gptq4 --quant gptq4 --calibration rows.jsonl

The trained output is merged and saved to a staging folder inside the export; llm-compressor's
`oneshot` loads it, runs calibration rows through it and quantises every linear layer but the
output head (`gptq4`: 4-bit integer weights in groups, symmetric, GPTQ's error-correcting rounding;
`gptq8`: 8-bit per output channel; `awq4`: AWQ's activation-aware scaling, then 4-bit groups with
zero points), and writes the compressed-tensors format (`quantization_config.quant_method =
compressed-tensors`), which vLLM serves as it is and transformers loads with the compressed-tensors
package, on a GPU or a CPU. The export's check loads the folder back that way and compares it with
the merged model; the after-export QA runs on it (export/qa.py).

Calibration rows are the output's own training data (its config's `data.train`, chat rows rendered
with the model's chat template and the run's system prompt, or raw `text` rows), or `--calibration
FILE`; up to CALIBRATION_ROWS of them, drawn with a fixed seed, each cut to CALIBRATION_TOKENS.

Where it runs: GPTQ runs on a CUDA GPU when there is one, else on the CPU (measured: the demo's
135M model with its 216 training rows in 3 minutes on one core; a 7B model on a CPU would take
hours, so use a GPU).
llm-compressor 0.14's AWQ pins host memory for its transfers to the GPU, which fails without one,
so `awq4` is refused on a CPU. The package: `pip install 'tunesmith[gptq]'`. llm-compressor 0.14
pins transformers to 5.15-5.17, so pip installs that transformers beside it: `bash scripts/setup.sh
--gptq` makes that environment as .venv-gptq, to export in (docs/export.md says which of tunesmith's
tests pass on 5.17).
Figures on the demo output: docs/export.md (GPTQ and AWQ).
"""

from __future__ import annotations

import importlib.util
import random
import shutil
from pathlib import Path

from tunesmith.errors import ModelError

CALIBRATION_ROWS = 256
CALIBRATION_TOKENS = 512
CHAT_KEYS = {"messages", "conversations", "instruction", "prompt"}  # a row with one of these is a chat row
GROUP_SIZES = (128, 64, 32)  # the largest that divides every quantised layer's input width is used
INSTALL = (
    "pip install 'tunesmith[gptq]' (llm-compressor; it pins transformers to 5.15-5.17, so use its own "
    "environment if this one needs a newer transformers)"
)


def check_available(quant: str) -> None:
    """Refuse, before anything is loaded or written, where llm-compressor cannot make `quant`."""
    import torch

    if importlib.util.find_spec("llmcompressor") is None:
        raise ModelError(
            f"--quant {quant}: needs llm-compressor: {INSTALL}; without it, GGUF Q4_0/Q8_0 "
            "(--format gguf) and ONNX int8 (--format onnx) are quantised formats this install can write"
        )
    if quant == "awq4" and not torch.cuda.is_available():
        raise ModelError(
            "--quant awq4: llm-compressor's AWQ pins host memory for its transfers to a GPU, which fails "
            "on a machine without a CUDA GPU (as this one); --quant gptq4 makes 4-bit weights of the same "
            "format on a CPU"
        )


def group_size(model) -> int:
    """The largest of GROUP_SIZES dividing the input width of every linear layer that is quantised."""
    import torch

    widths = {
        m.in_features
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")
    }
    for size in GROUP_SIZES:
        if all(width % size == 0 for width in widths):
            return size
    raise ModelError(
        f"--quant gptq4/awq4: no group size of {GROUP_SIZES} divides every linear layer's input width "
        f"({sorted(widths)}); --quant gptq8 quantises per output channel instead"
    )


def recipe(quant: str, group: int):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    if quant == "gptq8":
        weights = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel")
    else:
        weights = QuantizationArgs(
            num_bits=4, type="int", symmetric=quant == "gptq4", strategy="group", group_size=group
        )
    groups = {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}
    if quant == "awq4":
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform import AWQModifier

        return [AWQModifier(), QuantizationModifier(ignore=["lm_head"], config_groups=groups)]
    from llmcompressor.modifiers.quantization import GPTQModifier

    return GPTQModifier(ignore=["lm_head"], config_groups=groups)


def calibration_paths(source: Path, given: str | None) -> tuple[list[str], dict]:
    """(files, data options) of the calibration rows: `--calibration FILE`, else the output's data.train."""
    import yaml

    if given:
        if not Path(given).is_file():
            raise ModelError(f"--calibration `{given}` is not a file")
        return [given], {}
    config = source / "config.yaml"
    data = ((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data") or {}) if config.is_file() else {}
    train = data.get("train")
    paths = [train] if isinstance(train, str) else list(train or [])
    if not paths:
        raise ModelError(
            f"{source}: no training data recorded (no config.yaml with data.train) to calibrate GPTQ "
            'with; pass --calibration FILE (chat rows or {"text": ...} rows, JSONL)'
        )
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ModelError(
            f"{config}: data.train `{missing[0]}` is not a file from here (a config's paths are relative to "
            "the working directory the run started in); run the export from there or pass --calibration FILE"
        )
    return paths, data


def calibration_texts(tokenizer, paths: list[str], data: dict, seed: int = 0) -> list[str]:
    """Up to CALIBRATION_ROWS rows as the model sees them: chat rows through the chat template, text rows as
    they are."""
    from tunesmith.data.formats import conversation_converter
    from tunesmith.data.rejects import collect_rows

    to_chat = conversation_converter(data.get("format", "auto"), data.get("system"), data.get("columns"))

    def convert(raw):
        row = raw.data
        if isinstance(row, dict) and isinstance(row.get("text"), str) and not CHAT_KEYS & row.keys():
            return row["text"]  # a raw text row (pre-training data)
        return tokenizer.apply_chat_template(to_chat(raw).messages, tokenize=False)

    texts = collect_rows(paths, convert, "calibration row")
    random.Random(seed).shuffle(texts)
    return texts[:CALIBRATION_ROWS]


def write_calibrated(model, tokenizer, work: Path, quant: str, group: int | None, texts: list[str]) -> dict:
    """Save `model` (merged) with llm-compressor-quantised weights into `work` (`group`: the group size of
    gptq4/awq4, from group_size); returns the manifest entry."""
    import time
    from importlib.metadata import version

    import torch
    from datasets import Dataset
    from llmcompressor import oneshot

    staging = work / ".merged"
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    rows = Dataset.from_dict({"text": texts}).map(
        lambda row: tokenizer(row["text"], truncation=True, max_length=CALIBRATION_TOKENS, add_special_tokens=False),
        remove_columns=["text"],
    )
    started = time.perf_counter()
    oneshot(
        model=str(staging),
        dataset=rows,
        recipe=recipe(quant, group),
        max_seq_length=CALIBRATION_TOKENS,
        num_calibration_samples=len(rows),
        output_dir=str(work),
    )
    seconds = time.perf_counter() - started
    tokenizer.save_pretrained(work)
    shutil.rmtree(staging)
    scheme = {
        "gptq4": f"GPTQ, 4-bit integer weights in groups of {group}, symmetric",
        "gptq8": "GPTQ, 8-bit integer weights per output channel, symmetric",
        "awq4": f"AWQ scaling, then 4-bit integer weights in groups of {group} with zero points",
    }[quant]
    return {
        "quant": quant,
        "method": f"llm-compressor {version('llmcompressor')}: {scheme}; the output head and "
        "embeddings kept in the model's precision",
        "format": "compressed-tensors",
        "calibration_rows": len(texts),
        "calibration_tokens_max": CALIBRATION_TOKENS,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "seconds": round(seconds, 1),
        "bytes": sum(p.stat().st_size for p in work.glob("*.safetensors")),
    }
