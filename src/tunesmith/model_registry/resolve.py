"""A model reference of serve, chat and eval -> a local folder: `registry:...` references are
looked up in the store and their files hash-checked; any other reference passes through."""

from __future__ import annotations

from tunesmith.errors import ConfigError
from tunesmith.layout import read_manifest
from tunesmith.model_registry.reference import PREFIX
from tunesmith.model_registry.store import Registry


def resolve_reference(ref: str, store: str | None = None) -> str:
    """`registry:N@alias` / `registry:N:version` / `registry:N` -> the verified local folder, for
    serve/chat/eval (a GGUF or ONNX version is refused: it runs in its own runtime); any other model
    reference is returned as it is."""
    if not ref.startswith(PREFIX):
        return ref
    folder = Registry(store).resolve(ref)
    form = read_manifest(folder).get("format")
    if form in ("gguf", "onnx"):
        raise ConfigError(
            f"{ref} is {'an ONNX' if form == 'onnx' else 'a GGUF'} export: it runs in its own runtime "
            "(llama.cpp/Ollama, ONNX Runtime; docs/export.md); serve, chat and eval load transformers folders and "
            "tunesmith outputs"
        )
    return str(folder)
