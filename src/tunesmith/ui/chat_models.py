"""Models the Chat tab talks to: loaded on first use and kept (a few at a time), streamed replies.

    models = ChatModels()
    for text in models.stream("out/demo", [{"role": "user", "content": "Hi"}], max_new_tokens=64):
        ...                                  # the reply so far, growing
    models.base_of("out/demo")               # the base model the output was trained on

Generation is serve.chat's (the same prompt budget and streaming thread as `tunesmith chat`). No Gradio.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from tunesmith.errors import ConfigError

KEEP = 3  # loaded models kept in memory (a tuned one and its base, plus the last one switched from)


class ChatModels:
    def __init__(self, cache_dir: str | None = None):
        self.cache_dir = cache_dir
        self._loaded: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # one load at a time; generation itself runs per request

    def get(self, ref: str):
        from tunesmith.methods.load import load_for_inference

        with self._lock:
            if ref in self._loaded:
                self._loaded.move_to_end(ref)
                return self._loaded[ref]
            loaded = load_for_inference(ref, self.cache_dir)
            self._loaded[ref] = loaded
            while len(self._loaded) > KEEP:
                self._loaded.popitem(last=False)
            return loaded

    def base_of(self, ref: str) -> str:
        """The base model an output was trained on (its manifest's `base_model`), or `ref` itself for a
        plain model."""
        from pathlib import Path

        from tunesmith.layout import RUN_MANIFEST, read_manifest

        if ref != "default" and (Path(ref) / RUN_MANIFEST).is_file():
            return read_manifest(Path(ref)).get("base_model") or ref
        return ref

    def stream(self, ref: str, messages: list[dict], max_new_tokens: int = 128,
               temperature: float = 0.0) -> Iterator[str]:
        """The reply so far, after each new piece; the output's training system prompt is put first
        when the conversation has none. The prompt is trimmed to the model's context as in `tunesmith chat`."""
        from tunesmith.serve.chat import context_budget, fit_history
        from tunesmith.serve.streaming import Generation

        if max_new_tokens < 1:
            raise ConfigError("max new tokens must be at least 1")
        loaded = self.get(ref)
        head = [{"role": "system", "content": loaded.system}] if loaded.system and \
            not any(m["role"] == "system" for m in messages) else []
        history, _, size = fit_history(loaded, head, messages, context_budget(loaded, max_new_tokens))
        inputs = loaded.tokenizer.apply_chat_template(head + history, add_generation_prompt=True,
                                                      return_tensors="pt", return_dict=True)
        inputs = {k: v.to(loaded.model.device) for k, v in inputs.items()}
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        reply = ""
        for piece in Generation(loaded.model, loaded.tokenizer, inputs, max_new_tokens=max_new_tokens,
                                pad_token_id=loaded.tokenizer.pad_token_id, **sampling):
            reply += piece
            yield reply
        if not reply:
            yield ""
