"""Write a GGUF file (llama.cpp, Ollama) from a tunesmith output, with the `gguf` package alone.

    tunesmith export out/demo_veltrano --format gguf --quant q8_0 --out out/demo_gguf

No llama.cpp checkout or build: the merged weights, the architecture metadata and the tokenizer
(vocabulary, merges, special tokens, chat template) are written with `gguf.GGUFWriter`, and the
weights are quantised with `gguf.quants` (F32, F16, BF16, Q8_0, Q4_0, Q4_1). Supported: the Llama
family (`model_type: llama`: Llama 2/3-style models, SmolLM/SmolLM2, the embedded default) with a
byte-level BPE tokenizer; anything else is refused by name.

Layout choices that llama.cpp expects of a `llama` GGUF:
- q_proj/k_proj rows are reordered from transformers' rotate-half layout to the interleaved pairs
  llama.cpp's RoPE rotates (`_interleave_rope_rows`); readers of GGUF (llama.cpp, transformers'
  GGUF loader) undo exactly this.
- 1-D tensors (norms) stay F32; a matrix whose rows do not split into the quant's 32-value blocks
  is written F16 (listed in the manifest as `kept_f16`).
- A tied output head is not written (llama.cpp reuses token_embd).
- `tokenizer.ggml.pre` names llama.cpp's pre-tokenizer. It is recognised from how the tokenizer
  splits a probe text (`gguf_pretokenizers.json`: fingerprints of the tokenizers we verified), or
  given with `--gguf-pre NAME`; an unknown tokenizer is refused rather than written with a
  pre-tokenizer that would split text differently from training.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import torch

from tunesmith.errors import ModelError

PROBE = (
    "Hello world!  \n\n 3.14 1234567 don't I'm 'll \t tabs\u00a0nbsp ñandú 维特拉诺 数字123 ,.;:!? "
    "<|im_start|>user\nHi<|im_end|> \U0001f600 a\u200bb CamelCase snake_case"
)
PRE_TABLE = Path(__file__).with_name("gguf_pretokenizers.json")


# --quant -> (ggml tensor type, llama.cpp file type) by name; the quants of export.formats' gguf record
GGML_TYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
}


def _qtype(quant: str):
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType[GGML_TYPES[quant][0]]


def _file_type(quant: str):
    from gguf import LlamaFileType

    return LlamaFileType[GGML_TYPES[quant][1]]


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of how the tokenizer splits PROBE: equal fingerprints split text the same way."""
    ids = tokenizer.encode(PROBE, add_special_tokens=False)
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def pretokenizer_name(tokenizer, given: str | None) -> str:
    if given:
        return given
    known = json.loads(PRE_TABLE.read_text())
    found = known.get(tokenizer_fingerprint(tokenizer))
    if found is None:
        raise ModelError(
            "GGUF export: this tokenizer's pre-tokenizer is not one tunesmith has verified (known: "
            f"{', '.join(sorted(set(known.values())))}); llama.cpp needs its name to split text as training "
            "did. Pass --gguf-pre NAME with the name llama.cpp uses for this model family (llama-bpe, qwen2, ...)"
        )
    return found["name"] if isinstance(found, dict) else found


def check_architecture(config) -> None:
    """Refuse what this writer does not cover, naming it."""
    if config.model_type != "llama":
        raise ModelError(
            f"GGUF export supports the Llama family (model_type `llama`: Llama, SmolLM2, the embedded "
            f"default); this model is `{config.model_type}`. Export it with --format transformers and "
            "convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    for option in ("attention_bias", "mlp_bias"):
        if getattr(config, option, False):
            raise ModelError(f"GGUF export: {option}=true is not written by this exporter (Llama GGUFs have no biases)")
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ("default", None):
        raise ModelError(f"GGUF export: rope scaling `{kind}` is not written by this exporter (only plain RoPE)")


def _interleave_rope_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of each head from [first half; second half] (rotate-half RoPE) to interleaved pairs."""
    rows, cols = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, cols).transpose(1, 2).reshape(rows, cols)


def _vocabulary(tokenizer, size: int):
    from gguf import TokenType

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
    return tokens, types


def _check_tokenizer(tokenizer_dir: Path) -> None:
    path = tokenizer_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelError("GGUF export needs a fast tokenizer (tokenizer.json) with a byte-level BPE model")
    model = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    if model.get("type") != "BPE":
        raise ModelError(
            f"GGUF export: tokenizer model `{model.get('type')}` is not written by this exporter "
            "(byte-level BPE only, as GPT-2/Llama 3/SmolLM2 use)"
        )


def write_gguf(model, tokenizer, path: Path, quant: str, name: str, pre: str | None = None) -> dict:
    """Write `model` (a merged transformers Llama) and its tokenizer to `path`; returns what was written."""
    import gguf

    if quant not in GGML_TYPES:
        raise ModelError(f"--quant {quant}: choose one of {', '.join(GGML_TYPES)}")
    config = model.config
    check_architecture(config)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(_file_type(quant))
    if quant.startswith("q"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # --- tokenizer: vocabulary and types in id order, merges, special ids, chat template ---------
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        _check_tokenizer(Path(scratch))
        tokens, types = _vocabulary(tokenizer, config.vocab_size)
        pre = pretokenizer_name(tokenizer, pre)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(scratch, load_merges=True, n_vocab=config.vocab_size)
    starts_with_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    special.add_special_token["bos"] = starts_with_bos  # what the tokenizer does, whatever its config says
    special.chat_template = special.chat_template or tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)

    # --- tensors: GGUF names, RoPE row order, the quant for matrices, F32 for vectors ----------------
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    qtype, kept_f16 = _qtype(quant), []
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        target = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ModelError(f"GGUF export: no GGUF name for tensor {hf_name}")
        data = tensor.detach().to("cpu", torch.float32)  # a model loaded on a GPU: numpy needs host memory
        if hf_name.endswith("q_proj.weight"):
            data = _interleave_rope_rows(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _interleave_rope_rows(data, kv_heads)
        array = data.numpy()
        if array.ndim == 1 or quant == "f32":
            writer.add_tensor(target, array)
            continue
        kind = qtype
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if array.shape[-1] % block:
            kind = gguf.GGMLQuantizationType.F16
            kept_f16.append(target)
        packed = gguf.quants.quantize(array, kind)
        writer.add_tensor(target, packed, raw_shape=packed.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "quant": quant,
        "pre_tokenizer": pre,
        "kept_f16": kept_f16,
        "bytes": path.stat().st_size,
        "add_bos": starts_with_bos,
    }
