"""Reward models: a language model's body with a scalar head (sequence classification, 1 label).

A base causal LM loads as `AutoModelForSequenceClassification(num_labels=1)`: the decoder keeps its
weights, the LM head is dropped and a new linear `score` head maps the last token's hidden state
to one number. Methods ask `task_head(model)` to learn that such a new head exists and must train
(LoRA: PEFT's SEQ_CLS task type saves it; freeze: it stays trainable; adapter: it trains and is
saved beside the adapters), so they never need to
know which stage built the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from tunesmith.errors import ModelError
from tunesmith.layout import BOTTLENECK_CONFIG, PEFT_CONFIG

# Names transformers gives the head of its *ForSequenceClassification models (PEFT's SEQ_CLS knows both).
SCALAR_HEADS = ("score", "classifier")


def task_head(model) -> str | None:
    """The attribute name of a sequence-classification model's (new) head, or None for other models."""
    if not type(model).__name__.endswith("ForSequenceClassification"):
        return None
    return next((name for name in SCALAR_HEADS if isinstance(getattr(model, name, None), nn.Module)), None)


def load_reward_model(
    path: str,
    pad_token_id: int,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
):
    """A reward model from a causal-LM folder (new random head) or a saved reward model (trained head)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialised / lm_head unused" is the point here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=1,
            dtype=dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
    except OSError as exc:
        raise ModelError(f"{path}: cannot load the model ({exc}); a hub id needs network access") from None
    except ValueError as exc:  # an architecture without a sequence-classification variant
        raise ModelError(f"{path}: cannot build a reward model (sequence classification) from it: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    # Set after loading, not passed to from_pretrained: the embedding then keeps no padding_idx (the pad
    # token is often the end-of-turn token, which must stay trainable). The head reads the last non-pad token.
    model.config.pad_token_id = pad_token_id
    return model


def is_reward_model(path: Path) -> bool:
    """A saved sequence-classification model folder, a SEQ_CLS adapter or bottleneck adapters saved with
    their trained head."""
    if (path / PEFT_CONFIG).is_file():
        return json.loads((path / PEFT_CONFIG).read_text()).get("task_type") == "SEQ_CLS"
    if (path / BOTTLENECK_CONFIG).is_file():
        return bool(json.loads((path / BOTTLENECK_CONFIG).read_text()).get("task_head"))
    if (path / "config.json").is_file():
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in architectures)
    return False
