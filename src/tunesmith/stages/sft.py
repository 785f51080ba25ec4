"""Supervised fine-tuning (SFT): learn assistant replies from single- or multi-turn chats.

    tunesmith train examples/sft_lora.yaml

Reads top to bottom (`stages.token_recipe.run_token_recipe`): set up (tokenizer, data, model, method),
train with the transformers Trainer, save (weights, tokenizer + chat template, config, metrics,
loss plot, manifest). pt runs the same recipe on raw text; only the data kind differs.
"""

from __future__ import annotations

from tunesmith.data import options
from tunesmith.stages.base import Stage
from tunesmith.stages.token_recipe import TokenRecipe, token_arguments

recipe = TokenRecipe("chat")

STAGE = Stage(
    "sft",
    data_kind="chat",
    reads="chat rows (alpaca, messages, sharegpt, multitask)",
    data_options=options.CHAT,
    run=recipe.run,
    arguments=token_arguments,
    evaluate=recipe.evaluate,
    check=recipe.check,
    replay=True,
)
