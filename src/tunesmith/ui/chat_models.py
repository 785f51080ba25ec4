"""Models the Chat tab talks to: loaded on first use and kept (a few at a time), streamed replies.

    models = ChatModels()
    for text in models.stream("out/demo", [{"role": "user", "content": "Hi"}], max_new_tokens=64):
        ...                                  # the reply so far, growing
    models.base_of("out/demo")               # the base model the output was trained on

    refs = set_refs(guard, ["out/birds", "out/wolves"])   # typed paths, checked by the page's PathGuard
    models.lora_set(refs).names                           # ['base', 'birds', 'wolves']: the base loaded once
    for text in models.stream_adapter(refs, "wolves", messages):   # switched, not reloaded
        ...

A LoRA set is `models.lora_set.LoraSet` (as `tunesmith chat --adapter`): LoRA-family outputs of one
base, each adapter loaded into one PEFT model under its folder's name; `base` runs the base with the
adapters disabled. It refuses outputs of another base and outputs that are not LoRA adapters, naming
them, before anything is loaded. Generation is serve.chat's (the same prompt budget and streaming
thread as `tunesmith chat`). No Gradio.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from tunesmith.data.turns import with_system
from tunesmith.errors import ConfigError

KEEP = 3  # models kept in memory (a tuned one, its base, the last one switched from); a LoRA set counts as one


def set_refs(guard, typed: list[str]) -> list[str]:
    """The folders of a LoRA set as typed or picked in the page: each one checked by `guard` (a
    `ui.safety.PathGuard`: inside the page's folders, an existing folder), resolved, repeats dropped."""
    refs: list[str] = []
    for text in typed or []:
        ref = str(guard.resolve(text, "LoRA set output", kind="dir"))
        if ref not in refs:
            refs.append(ref)
    if not refs:
        raise ConfigError("LoRA set: pick at least one LoRA output (several outputs trained on one base)")
    return refs


def adapter_names(refs: list[str]) -> dict[str, str]:
    """{name: folder}: each output named after its folder; a repeated name (or `base`, the base
    model's) gets -2, -3, ..."""
    from tunesmith.models.lora_set import BASE

    named: dict[str, str] = {}
    for ref in refs:
        stem = name = Path(ref).name
        count = 1
        while name in named or name == BASE:
            count += 1
            name = f"{stem}-{count}"
        named[name] = ref
    return named


class ChatModels:
    def __init__(self, cache_dir: str | None = None):
        self.cache_dir = cache_dir
        self._loaded: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # one load at a time; generation itself runs per request

    def _keep(self, key, load):
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            loaded = load()
            self._loaded[key] = loaded
            while len(self._loaded) > KEEP:
                self._loaded.popitem(last=False)
            return loaded

    def get(self, ref: str):
        from tunesmith.methods.load import load_for_inference

        return self._keep(ref, lambda: load_for_inference(ref, self.cache_dir))

    def lora_set(self, refs: list[str]):
        """The LoRA set of these output folders (a `LoraSet`), loaded on first use and kept like a model."""
        from tunesmith.models.lora_set import LoraSet

        return self._keep(("lora set", *refs), lambda: LoraSet(adapter_names(refs), self.cache_dir))

    def base_of(self, ref: str) -> str:
        """The base model an output was trained on (its manifest's `base_model`), or `ref` itself for a
        plain model."""
        from tunesmith.layout import RUN_MANIFEST, read_manifest

        if ref != "default" and (Path(ref) / RUN_MANIFEST).is_file():
            return read_manifest(Path(ref)).get("base_model") or ref
        return ref

    def stream(
        self, ref: str, messages: list[dict], max_new_tokens: int = 128, temperature: float = 0.0
    ) -> Iterator[str]:
        """The reply so far, after each new piece; the output's training system prompt is put first
        when the conversation has none. The prompt is trimmed to the model's context as in `tunesmith chat`."""
        _check_tokens(max_new_tokens)
        yield from _reply(self.get(ref), messages, max_new_tokens, temperature)

    def stream_adapter(
        self, refs: list[str], adapter: str, messages: list[dict], max_new_tokens: int = 128, temperature: float = 0.0
    ) -> Iterator[str]:
        """`stream` with adapter ADAPTER of the LoRA set of `refs` (`base`: the adapters disabled); the
        set stays on that adapter until the reply ends (another request for the set waits)."""
        _check_tokens(max_new_tokens)
        with self.lora_set(refs).use(adapter) as loaded:
            yield from _reply(loaded, messages, max_new_tokens, temperature)


def _check_tokens(max_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise ConfigError("max new tokens must be at least 1")


def _reply(loaded, messages: list[dict], max_new_tokens: int, temperature: float) -> Iterator[str]:
    from tunesmith.serve.chat import context_budget, fit_history
    from tunesmith.serve.streaming import Generation

    full = with_system(messages, loaded.system)
    head, messages = full[: len(full) - len(messages)], full[len(full) - len(messages) :]
    history, _, _ = fit_history(loaded, head, messages, context_budget(loaded, max_new_tokens))
    inputs = loaded.tokenizer.apply_chat_template(
        head + history, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: v.to(loaded.model.device) for k, v in inputs.items()}
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    reply = ""
    for piece in Generation(
        loaded.model,
        loaded.tokenizer,
        inputs,
        max_new_tokens=max_new_tokens,
        pad_token_id=loaded.tokenizer.pad_token_id,
        **sampling,
    ):
        reply += piece
        yield reply
    if not reply:
        yield ""
