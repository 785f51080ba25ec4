"""The model host of `tunesmith serve`: what the server answers with, and the facts about that model
every request needs (its end-of-sequence ids, its context length).

    host = ModelHost(load_for_inference("out/demo"), name="demo")     # one model
    host = ModelHost(adapters=LoraSet({"policy": "out/policy"}))       # one base, many adapters
    state = ServerState()      # the app answers 503 until a loader thread sets state.host
"""

from __future__ import annotations

import time

from tunesmith.errors import ConfigError
from tunesmith.models.loader import LoadedModel
from tunesmith.serve.batcher import Batcher
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.requests import ApiError, Options


class ModelHost:
    """What the server answers with: one loaded model, or a LoraSet (one base, many adapters), and
    the batcher that generates for every request on it."""

    def __init__(
        self,
        loaded: LoadedModel | None = None,
        name: str | None = None,
        adapters=None,
        max_batch: int = 16,
        max_queue: int = 64,
    ):
        from peft import PeftModel

        if (loaded is None) == (adapters is None):
            raise ConfigError("serve: give either one model or a set of adapters")
        self.loaded, self.adapters, self.single_name = loaded, adapters, name
        self.created = int(time.time())
        model = adapters.model if adapters is not None else loaded.model
        tokenizer = self.loaded_for(self.names[0]).tokenizer
        virtual_tokens = isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning
        mixed = adapters is not None and adapters.mixed_batches
        self.batcher = Batcher(
            model,
            tokenizer.pad_token_id,
            max_batch,
            max_queue,
            mixed_adapters=mixed,
            activate=adapters.activate if adapters is not None and not mixed else None,
            recompute=virtual_tokens,
            known=(lambda adapter: adapter in adapters.infos) if adapters is not None else None,
        )

    @property
    def names(self) -> list[str]:
        return list(self.adapters.names) if self.adapters is not None else [self.single_name]

    def loaded_for(self, name: str) -> LoadedModel:
        return self.adapters.loaded(name) if self.adapters is not None else self.loaded

    def adapter_for(self, name: str) -> str | None:
        return self.adapters.adapter_name(name) if self.adapters is not None else None


class ServerState:
    """The host once loaded (None while loading) and the metrics; shared by app and loader thread."""

    def __init__(self, host: ModelHost | None = None):
        self.host, self.load_error, self.metrics = host, None, Metrics()


def check_context(loaded: LoadedModel, prompt_ids: list[int], options: Options, param: str) -> None:
    """ApiError 400 (`context_length_exceeded`, naming `param`) when prompt and reply overflow the model."""
    limit = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and len(prompt_ids) + options.sampling.max_tokens > limit:
        raise ApiError(
            400,
            f"the prompt is {len(prompt_ids)} tokens and asks for {options.sampling.max_tokens} more, "
            f"over the model's context of {limit} tokens; shorten it or lower `max_tokens`",
            param,
            "context_length_exceeded",
        )


def eos_ids(loaded: LoadedModel) -> set[int]:
    """The tokens that end a reply: the tokenizer's end-of-sequence and the generation config's."""
    ids = loaded.tokenizer.eos_token_id
    config_ids = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    found = {ids} if isinstance(ids, int) else set()
    for extra in config_ids if isinstance(config_ids, list) else [config_ids]:
        if isinstance(extra, int):
            found.add(extra)
    return found
