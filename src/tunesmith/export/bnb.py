"""Quantised safetensors for GPU serving: bitsandbytes NF4 (4-bit) and LLM.int8() (8-bit) weights.

    tunesmith export out/demo_veltrano --out out/demo_nf4 --quant bnb4     # a CUDA GPU + bitsandbytes

The trained output is merged (adapters folded into the base, on the GPU in bf16 where it has bf16,
else fp16) and saved to a staging folder inside the export; transformers loads those weights again
onto the GPU with a `BitsAndBytesConfig` (bnb4: NF4 with double quantisation and the same compute
dtype; bnb8: LLM.int8()) and `save_pretrained` writes the quantised weights with their
`quantization_config`. The folder loads with `AutoModelForCausalLM.from_pretrained(folder)` on a
GPU, and vLLM serves it with `--quantization bitsandbytes`. The export's check loads it back that
way and compares it with the merged model (export/compare.py: compare_transformers).

bitsandbytes' kernels are CUDA kernels, so on a machine without a CUDA GPU (or without the package)
the export is refused before anything is written, naming the CPU formats that do the same job
(GGUF Q8_0/Q4_0, ONNX q8_0/q4_0). Calibrated GPTQ/AWQ: export/calibrated.py (llm-compressor).
Status: written against transformers' public API, not yet run on a GPU (see README: GPU paths).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from tunesmith.errors import ModelError

CPU_ALTERNATIVES = (
    "for a CPU runtime, export --format gguf --quant q8_0 or q4_0 (llama.cpp, Ollama) or --format onnx "
    "--quant q8_0 or q4_0 (ONNX Runtime)"
)


def check_available(quant: str) -> None:
    """Refuse, before anything is written, where bitsandbytes cannot quantise (no CUDA GPU, no package)."""
    import torch

    bits = {"bnb4": "4-bit (NF4)", "bnb8": "8-bit (LLM.int8())"}[quant]
    if not torch.cuda.is_available():
        raise ModelError(
            f"--quant {quant}: bitsandbytes {bits} weights are made and served by CUDA kernels, and this "
            f"machine has no CUDA GPU; {CPU_ALTERNATIVES}"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError(
            f"--quant {quant}: needs the bitsandbytes package (pip install bitsandbytes); {CPU_ALTERNATIVES}"
        )


def quantization_config(quant: str, compute_dtype):
    from transformers import BitsAndBytesConfig

    if quant == "bnb4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def write_bnb(model, tokenizer, work: Path, quant: str) -> dict:
    """Save `model` (merged) with bitsandbytes-quantised weights into `work`; returns the manifest entry."""
    import torch
    from transformers import AutoModelForCausalLM

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    staging = work / ".merged"
    stage_in(model, tokenizer, staging, compute)
    quantised = AutoModelForCausalLM.from_pretrained(
        staging,
        dtype=compute,
        quantization_config=quantization_config(quant, compute),
        device_map={"": torch.cuda.current_device()},
    )
    quantised.save_pretrained(work)
    tokenizer.save_pretrained(work)
    shutil.rmtree(staging)
    del quantised
    return {
        "quant": quant,
        "method": "bitsandbytes " + ("NF4, double quantisation" if quant == "bnb4" else "LLM.int8()"),
        "compute_dtype": str(compute).removeprefix("torch."),
        "bytes": sum(p.stat().st_size for p in work.glob("*.safetensors")),
    }


def stage_in(model, tokenizer, staging: Path, dtype) -> None:
    """Write `model`'s weights cast to `dtype` into `staging`, leaving `model` as it is: the export's check
    and QA compare the quantised folder with the model itself, so it must not be rounded to half
    precision on the way (`model.to(dtype)` would do that in place)."""
    state = {
        name: tensor.to(dtype) if tensor.is_floating_point() else tensor for name, tensor in model.state_dict().items()
    }
    model.save_pretrained(staging, state_dict=state)
    tokenizer.save_pretrained(staging)


def quantization_method(folder: Path) -> str | None:
    """The `quant_method` of a transformers folder holding pre-quantised weights (bitsandbytes,
    compressed-tensors, ...), None for plain weights."""
    import json

    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    quantization = json.loads(config.read_text(encoding="utf-8")).get("quantization_config")
    return None if quantization is None else str(quantization.get("quant_method", "unknown"))


def is_quantised(folder: Path) -> bool:
    """Whether a transformers folder holds pre-quantised weights (its config has a quantization_config)."""
    return quantization_method(folder) is not None


def load_kwargs(folder: Path) -> dict:
    """How to load an exported transformers folder back: bitsandbytes weights onto the GPU; compressed-tensors
    (GPTQ/AWQ) weights onto the GPU where there is one, else the CPU (the package decompresses them); else fp32."""
    import torch

    method = quantization_method(folder)
    if method == "compressed-tensors" and not torch.cuda.is_available():
        return {}
    if method is not None:
        return {"device_map": {"": torch.cuda.current_device()}}
    return {"dtype": torch.float32}
