"""What moved between the transformers releases tunesmith runs on (pyproject: transformers >= 5.0).

The KV cache's forward argument and output field were `past_key_values` up to at least 5.17 (what
llm-compressor 0.14 pins, so what `.venv-gptq` runs) and are `cache` in 5.24/5.25. A model called
with the other release's name does not fail: the argument lands in `**kwargs` and is ignored, and
every decoding step would silently run without its past. So callers name it through CACHE.
"""

from __future__ import annotations

from transformers.modeling_outputs import CausalLMOutputWithPast

CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def cache_kwargs(cache) -> dict:
    """The keyword argument that hands `cache` to a transformers model's forward."""
    return {CACHE: cache}


def output_cache(output):
    """The KV cache a transformers model's forward returned."""
    return getattr(output, CACHE)
