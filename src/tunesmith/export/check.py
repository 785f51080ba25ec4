"""Check an exported artifact against the model it came from, in a reader other than our writer.

An ONNX decoder is run by ONNX Runtime with its KV cache (export/onnx_runtime.py) and compared
with the torch model: the largest logit difference of a prompt in one pass and of one cached
step after it, and the greedy tokens of the chat prompts (cached decoding against `generate`).

A GGUF is read back by transformers' own GGUF loader (`from_pretrained(..., gguf_file=...)`: its
tokenizer from the GGUF's vocabulary and merges, its weights dequantised, the RoPE row order
undone), then compared with the merged model: the token ids of probe texts, the largest logit
difference on a probe prompt, and the greedy tokens of a few chat prompts. The result goes into
the export's manifest (`check`), so what was shipped says how faithful it is.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.errors import ModelError
from tunesmith.eval.generate import chat_prompt
from tunesmith.export.gguf import PROBE

PROMPTS = ("Say hello.", "What is the capital of France?", "List three colours.", "用一句话介绍你自己。")


def chat_ids(tokenizer, question: str, system: str | None) -> list[int]:
    return tokenizer(chat_prompt(tokenizer, question, system), add_special_tokens=False)["input_ids"]


@torch.no_grad()
def compare_gguf(path: Path, model, tokenizer, system: str | None, new_tokens: int = 16) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        read_tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        read_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    except Exception as exc:  # a file transformers cannot read is a failed export, not a warning
        raise ModelError(f"the written GGUF {path} does not load back with transformers' GGUF reader: {exc}") from exc
    model = model.eval()
    texts = [PROBE] + [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False) for p in PROMPTS]
    same_ids = sum(tokenizer(t, add_special_tokens=False)["input_ids"] == read_tokenizer(t, add_special_tokens=False)["input_ids"]
                   for t in texts)
    ids = torch.tensor([chat_ids(tokenizer, PROMPTS[0], system)])
    source_logits = model(ids).logits.float()
    diff = (source_logits - read_model(ids).logits.float()).abs().max().item()
    scale = source_logits.abs().max().item()
    same_greedy = 0
    for question in PROMPTS:
        ids = torch.tensor([chat_ids(tokenizer, question, system)])
        options = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        a = model.generate(ids, **options)[0, ids.shape[1]:].tolist()
        b = read_model.generate(ids, **options)[0, ids.shape[1]:].tolist()
        same_greedy += a == b
    return {"reader": "transformers GGUF loader", "tokenizer_texts": len(texts), "same_token_ids": same_ids,
            "max_logit_diff": round(diff, 5), "max_abs_logit": round(scale, 3), "prompts": len(PROMPTS), "same_greedy_tokens": same_greedy,
            "new_tokens": new_tokens}


@torch.no_grad()
def compare_onnx(path: Path, model, tokenizer, system: str | None, new_tokens: int = 16) -> dict:
    import time

    from tunesmith.export.onnx_runtime import OnnxDecoder

    decoder = OnnxDecoder(path)
    model = model.eval()
    ids = chat_ids(tokenizer, PROMPTS[0], system)
    source = model(torch.tensor([ids])).logits[0].float().numpy()
    diff = float(abs(decoder.logits(ids) - source).max())
    _, cache = decoder.step(torch.tensor([ids[:-1]]).numpy(), decoder.empty_cache())
    step_diff = float(abs(decoder.step(torch.tensor([ids[-1:]]).numpy(), cache)[0][0, -1] - source[-1]).max())
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    same, agreeing, total, seconds, produced = 0, 0, 0, 0.0, 0
    for question in PROMPTS:
        ids = chat_ids(tokenizer, question, system)
        want = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                              pad_token_id=tokenizer.eos_token_id)[0, len(ids):].tolist()
        started = time.perf_counter()
        got = decoder.greedy(ids, new_tokens, eos_ids)
        seconds, produced = seconds + time.perf_counter() - started, produced + len(got)
        same += got == want
        prefix = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        agreeing, total = agreeing + prefix, total + len(want)
    return {"reader": "onnxruntime (CPU), KV cache", "max_logit_diff": round(diff, 6),
            "cached_step_logit_diff": round(step_diff, 6), "max_abs_logit": round(float(abs(source).max()), 3),
            "prompts": len(PROMPTS), "same_greedy_tokens": same, "new_tokens": new_tokens,
            "greedy_agreement": round(agreeing / max(total, 1), 4), "load_seconds": round(decoder.load_seconds, 3),
            "tokens_per_second": round(produced / seconds, 1)}
