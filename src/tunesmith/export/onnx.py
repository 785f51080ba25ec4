"""Write an ONNX decoder with its KV cache (ONNX Runtime, transformers.js, onnxruntime-genai).

    tunesmith export out/demo_veltrano --format onnx --out out/demo_onnx              # fp32
    tunesmith export out/demo_veltrano --format onnx --quant q8_0 --out out/demo_onnx8   # weight-only 8-bit blocks

One graph serves the prompt and every generated token: inputs `input_ids`, `attention_mask`
(past + new tokens), `position_ids` and `past_key_values.N.key/value` ([batch, kv_heads, past,
head_dim], past may be 0); outputs `logits` and `present.N.key/value` (past + new), the names
optimum and transformers.js use, so the cache of one step is the past of the next and
generation never recomputes the prefix (export/onnx_runtime.py runs it).

Path: `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript's translation and
optimiser) on `DecoderWithCache`, a thin module that takes the cache as flat tensors and builds a
transformers `DynamicCache` from them with its public constructor; nothing is patched. Every
axis but the head counts and sizes is dynamic. Quantised variants start from the fp32 graph:

- `int8`: `onnxruntime.quantization.quantize_dynamic` (int8 weights of MatMul and Gather,
  activations quantised per tensor on each call). Small and fast, but the per-tensor activation
  scale loses the few very large activations small LLMs carry (SmolLM2-135M: 61% next-token
  agreement, docs/export.md).
- `q8_0`, `q4_0`: weight-only, as GGUF's formats of those names: every MatMul's weights in
  symmetric blocks of 32 (8 or 4 bits, one fp scale per block), ONNX Runtime's `MatMulNBits`
  (`onnxruntime.quantization.matmul_nbits_quantizer`, accuracy level 4: int8 compute with the
  activations quantised per block); the embedding stays fp32 (and a head tied to it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from tunesmith.errors import ModelError

FAMILIES = ("llama",)  # verified by tests/export/test_export_onnx.py; other decoders are refused by name
MODEL_FILE = {"f32": "model.onnx", "int8": "model-int8.onnx", "q8_0": "model-q8_0.onnx", "q4_0": "model-q4_0.onnx"}
BLOCK = 32  # weights per quantisation block of q8_0 / q4_0 (GGUF's block size)
_PROTOBUF_LIMIT = 2 * 1024**3  # one ONNX protobuf file holds at most 2 GB: larger weights go beside it


def input_names(layers: int) -> list[str]:
    return ["input_ids", "attention_mask", "position_ids"] + [
        f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")
    ]


def output_names(layers: int) -> list[str]:
    return ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


class DecoderWithCache(nn.Module):
    """The model's forward with its KV cache as flat tensors (key, value per layer), as ONNX needs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, past: tuple[torch.Tensor, ...]):
        from transformers import DynamicCache

        from tunesmith.models.compat import cache_kwargs, output_cache

        layers = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        cache = DynamicCache(layers, config=self.model.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **cache_kwargs(cache),
            use_cache=True,
        )
        present = [t for layer in output_cache(out).layers for t in (layer.keys, layer.values)]
        return (out.logits, *present)


def check_toolchain() -> None:
    """Refuse a missing ONNX toolchain before anything loads."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelError(f"--format onnx needs {', '.join(missing)}: pip install 'tunesmith[export]'")


def check_architecture(config) -> None:
    """Refuse what this exporter does not cover, before anything is written."""
    check_toolchain()
    if config.model_type not in FAMILIES:
        raise ModelError(
            f"ONNX export supports the Llama family (model_type `llama`: Llama, SmolLM2, the embedded "
            f"default); this model is `{config.model_type}`. Export it with --format transformers "
            "and use a converter that knows its cache layout"
        )


def cache_shape(config) -> tuple[int, int, int]:
    """(layers, kv heads, head size) of the model's KV cache."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, config.num_key_value_heads, head_dim


@torch.no_grad()
def write_onnx(model, path: Path, quant: str = "f32") -> dict:
    """Export `model` (float32, eval) to `path`'s folder as MODEL_FILE[quant]; returns the manifest's `onnx`."""
    import onnx
    from torch.export import Dim

    if quant not in MODEL_FILE:
        raise ModelError(f"--quant {quant}: ONNX export writes {', '.join(MODEL_FILE)}")
    check_architecture(model.config)
    layers, kv_heads, head_dim = cache_shape(model.config)
    folder = path.parent
    # A sample with every axis above 1 (torch.export fixes axes of size 0 or 1); the graph runs
    # with any batch, prompt length and past length, an empty past included.
    batch, seq, past_len = 2, 3, 4
    ids = torch.randint(0, model.config.vocab_size, (batch, seq))
    mask = torch.ones(batch, past_len + seq, dtype=torch.long)
    positions = torch.arange(past_len, past_len + seq).unsqueeze(0).expand(batch, -1)
    past = tuple(torch.zeros(batch, kv_heads, past_len, head_dim) for _ in range(2 * layers))
    axes = {
        "input_ids": {0: Dim.DYNAMIC, 1: Dim.DYNAMIC},
        "attention_mask": {0: Dim.DYNAMIC, 1: Dim.DYNAMIC},
        "position_ids": {0: Dim.DYNAMIC, 1: Dim.DYNAMIC},
        "past": tuple({0: Dim.DYNAMIC, 2: Dim.DYNAMIC} for _ in range(2 * layers)),
    }
    fp32 = folder / MODEL_FILE["f32"] if quant == "f32" else folder / "fp32" / MODEL_FILE["f32"]
    fp32.parent.mkdir(parents=True, exist_ok=True)
    try:
        program = torch.onnx.export(
            DecoderWithCache(model).eval(),
            (ids, mask, positions, past),
            dynamo=True,
            dynamic_shapes=axes,
            input_names=input_names(layers),
            output_names=output_names(layers),
            optimize=True,
            verbose=False,
        )
    except Exception as exc:  # the exporter's own message says which op or shape failed
        raise ModelError(
            f"ONNX export of this {model.config.model_type} model failed in torch.onnx.export: {exc}"
        ) from exc
    program.save(str(fp32), external_data=True)  # weights in model.onnx.data: no 2 GB protobuf limit
    opset = next(
        o.version for o in onnx.load(str(fp32), load_external_data=False).opset_import if o.domain in ("", "ai.onnx")
    )
    info = {
        "file": path.name,
        "quant": quant,
        "opset": opset,
        "exporter": f"torch.onnx.export dynamo (torch {torch.__version__})",
        "layers": layers,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "fp32_bytes": _size(fp32),
    }
    if quant == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(fp32),
            str(path),
            weight_type=QuantType.QInt8,
            use_external_data_format=info["fp32_bytes"] / 4 > _PROTOBUF_LIMIT * 0.9,
        )
        shutil.rmtree(fp32.parent)
        info["quantisation"] = "onnxruntime quantize_dynamic, QInt8 weights (MatMul, Gather), dynamic activations"
    elif quant in ("q8_0", "q4_0"):
        _weight_only(
            fp32,
            path,
            bits=8 if quant == "q8_0" else 4,
            external=info["fp32_bytes"] / (4 if quant == "q8_0" else 8) > _PROTOBUF_LIMIT * 0.9,
        )
        shutil.rmtree(fp32.parent)
        info["quantisation"] = (
            f"onnxruntime MatMulNBits, {quant[1]}-bit symmetric weight blocks of {BLOCK} (every MatMul), "
            "accuracy level 4; embedding fp32"
        )
    info["bytes"] = _size(path)
    info["files"] = sorted(p.name for p in folder.iterdir() if p.name.startswith(path.name))
    return info


def _weight_only(fp32: Path, path: Path, bits: int, external: bool) -> None:
    """Block-wise weight-only quantisation of every MatMul with a constant weight (MatMulNBits)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(fp32)), bits=bits, block_size=BLOCK, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(path), use_external_data_format=external)


def _size(onnx_file: Path) -> int:
    """Bytes of the graph file and its external weights."""
    return sum(p.stat().st_size for p in onnx_file.parent.iterdir() if p.name.startswith(onnx_file.name))
