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

import time
from pathlib import Path

import torch

from tunesmith.errors import ModelError
from tunesmith.eval.generate import question_prompt, stop_ids
from tunesmith.export.gguf import PROBE

PROMPTS = ("Say hello.", "What is the capital of France?", "List three colours.", "用一句话介绍你自己。")


def chat_ids(tokenizer, question: str, system: str | None) -> list[int]:
    return tokenizer(question_prompt(tokenizer, question, system), add_special_tokens=False)["input_ids"]


def torch_greedy(model, tokenizer):
    """greedy(ids, new_tokens) -> new token ids, stopping after a stop token (as eval generates)."""
    stops = sorted(stop_ids(model, tokenizer))

    @torch.no_grad()
    def greedy(ids: list[int], new_tokens: int) -> list[int]:
        out = model.generate(
            torch.tensor([ids], device=model.device),
            max_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=stops[0],
        )
        return out[0, len(ids) :].tolist()

    return greedy


def greedy_comparison(source, artifact, tokenizer, system: str | None, new_tokens: int, artifact_logits=None) -> dict:
    """Greedy tokens of the chat PROMPTS from two greedy functions: how many replies are identical, the
    agreement (tokens before the first difference, over all the source's tokens), timed for the artifact;
    with `artifact_logits(ids) -> [len, vocab]`, also the next-token agreement: the share of the source's
    greedy tokens the artifact also ranks first after the same prefix (one divergence does not end it)."""
    same, agreeing, total, seconds, produced, first = 0, 0, 0, 0.0, 0, 0
    for question in PROMPTS:
        ids = chat_ids(tokenizer, question, system)
        want = source(ids, new_tokens)
        started = time.perf_counter()
        got = artifact(ids, new_tokens)
        seconds, produced = seconds + time.perf_counter() - started, produced + len(got)
        same += got == want
        agreeing += next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        total += len(want)
        if artifact_logits is not None and want:
            ranked = artifact_logits(ids + want)[len(ids) - 1 : -1].argmax(-1)
            first += sum(int(a) == b for a, b in zip(ranked, want))
    result = {
        "prompts": len(PROMPTS),
        "same_greedy_tokens": same,
        "new_tokens": new_tokens,
        "greedy_agreement": round(agreeing / max(total, 1), 4),
    }
    if artifact_logits is not None:
        result["next_token_agreement"] = round(first / max(total, 1), 4)
    return {**result, "tokens_per_second": round(produced / seconds, 1)}


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
    same_ids = sum(
        tokenizer(t, add_special_tokens=False)["input_ids"] == read_tokenizer(t, add_special_tokens=False)["input_ids"]
        for t in texts
    )
    ids = torch.tensor([chat_ids(tokenizer, PROMPTS[0], system)])
    source_logits = model(ids.to(model.device)).logits.float().cpu()
    diff = (source_logits - read_model(ids).logits.float()).abs().max().item()
    scale = source_logits.abs().max().item()
    greedy = greedy_comparison(
        torch_greedy(model, tokenizer), torch_greedy(read_model, tokenizer), tokenizer, system, new_tokens
    )
    return {
        "reader": "transformers GGUF loader",
        "tokenizer_texts": len(texts),
        "same_token_ids": same_ids,
        "max_logit_diff": round(diff, 5),
        "max_abs_logit": round(scale, 3),
        **greedy,
    }


@torch.no_grad()
def compare_onnx(path: Path, model, tokenizer, system: str | None, new_tokens: int = 16) -> dict:
    decoder = onnx_decoder(path)
    model = model.eval()
    ids = chat_ids(tokenizer, PROMPTS[0], system)
    source = model(torch.tensor([ids], device=model.device)).logits[0].float().cpu().numpy()
    diff = float(abs(decoder.logits(ids) - source).max())
    _, cache = decoder.step(torch.tensor([ids[:-1]]).numpy(), decoder.empty_cache())
    step_diff = float(abs(decoder.step(torch.tensor([ids[-1:]]).numpy(), cache)[0][0, -1] - source[-1]).max())
    greedy = greedy_comparison(
        torch_greedy(model, tokenizer),
        onnx_greedy(decoder, model, tokenizer),
        tokenizer,
        system,
        new_tokens,
        decoder.logits,
    )
    return {
        "reader": "onnxruntime (CPU), KV cache",
        "max_logit_diff": round(diff, 6),
        "cached_step_logit_diff": round(step_diff, 6),
        "max_abs_logit": round(float(abs(source).max()), 3),
        **greedy,
        "load_seconds": round(decoder.load_seconds, 3),
    }


def onnx_decoder(path: Path):
    from tunesmith.export.onnx_runtime import OnnxDecoder

    return OnnxDecoder(path)


def llama_greedy(llm, stops: set[int]):
    """greedy(ids, new_tokens) in llama.cpp (a `llama_cpp.Llama`), stopping after a stop token as the
    other runners do; llama-cpp-python is a dev/test dependency, so the caller loads it."""

    def greedy(ids: list[int], new_tokens: int) -> list[int]:
        tokens = []
        for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            tokens.append(token)
            if token in stops or len(tokens) == new_tokens:
                break
        return tokens

    return greedy


def onnx_greedy(decoder, model, tokenizer):
    stops = stop_ids(model, tokenizer)
    return lambda ids, new_tokens: decoder.greedy(ids, new_tokens, stops)


@torch.no_grad()
def compare_transformers(folder: Path, model, tokenizer, system: str | None, new_tokens: int = 16) -> dict:
    """The saved folder loaded back by transformers, against the model it was saved from."""
    from transformers import AutoModelForCausalLM

    from tunesmith.export.bnb import load_kwargs

    read_model = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs(folder)).eval()
    model = model.eval()
    ids = torch.tensor([chat_ids(tokenizer, PROMPTS[0], system)])
    source = model(ids.to(model.device)).logits.float().cpu()
    diff = (source - read_model(ids.to(read_model.device)).logits.float().cpu()).abs().max().item()
    greedy = greedy_comparison(
        torch_greedy(model, tokenizer), torch_greedy(read_model, tokenizer), tokenizer, system, new_tokens
    )
    return {
        "reader": "transformers from_pretrained",
        "max_logit_diff": round(diff, 5),
        "max_abs_logit": round(source.abs().max().item(), 3),
        **greedy,
    }
