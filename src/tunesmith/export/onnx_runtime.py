"""Run an exported ONNX decoder with ONNX Runtime: one prompt pass, then one token per step with
the KV cache (the `present` tensors of a step are the `past_key_values` of the next).

    decoder = OnnxDecoder("out/demo_onnx/model.onnx")
    tokens = decoder.greedy(prompt_ids, max_new_tokens=32, eos_ids={2})

The cache layout (layers, kv heads, head size) is read from the graph's own inputs, so a folder
needs nothing but its .onnx file (and the weights beside it) to run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tunesmith.errors import ModelError


class OnnxDecoder:
    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        started = time.perf_counter()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a file ONNX Runtime cannot load is a failed export
            raise ModelError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        self.load_seconds = time.perf_counter() - started
        self.past_inputs = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        if not self.past_inputs:
            raise ModelError(f"{path}: the graph has no past_key_values inputs; it is not a tunesmith decoder export")
        _, self.kv_heads, _, self.head_dim = self.past_inputs[0].shape
        self.dtype = np.float16 if "float16" in self.past_inputs[0].type else np.float32

    def empty_cache(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((batch, self.kv_heads, 0, self.head_dim), self.dtype) for i in self.past_inputs}

    def step(self, ids: np.ndarray, cache: dict[str, np.ndarray], attention_mask: np.ndarray | None = None):
        """Logits [batch, len, vocab] of `ids` after the cached tokens, and the cache that includes them."""
        past = next(iter(cache.values())).shape[2]
        batch, length = ids.shape
        mask = np.ones((batch, past + length), np.int64) if attention_mask is None else attention_mask
        positions = np.broadcast_to(np.arange(past, past + length, dtype=np.int64), (batch, length))
        outputs = self.session.run(
            None, {"input_ids": ids.astype(np.int64), "attention_mask": mask, "position_ids": positions, **cache}
        )
        names = [o.name for o in self.session.get_outputs()]
        present = {n.replace("present.", "past_key_values.", 1): v for n, v in zip(names[1:], outputs[1:])}
        return outputs[0], present

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits of a whole sequence in one pass, from an empty cache."""
        return self.step(np.array([ids]), self.empty_cache())[0][0]

    def greedy(
        self, ids: list[int], max_new_tokens: int, eos_ids: set[int] = frozenset(), use_cache: bool = True
    ) -> list[int]:
        """Greedy tokens after `ids`, stopping after an end token as `generate` does. `use_cache=False`
        recomputes the whole sequence at every step (the reference the cache must equal)."""
        logits, cache = self.step(np.array([ids]), self.empty_cache())
        new = [int(logits[0, -1].argmax())]
        while len(new) < max_new_tokens and new[-1] not in eos_ids:
            if use_cache:
                logits, cache = self.step(np.array([new[-1:]]), cache)
            else:
                logits, _ = self.step(np.array([ids + new]), self.empty_cache())
            new.append(int(logits[0, -1].argmax()))
        return new
