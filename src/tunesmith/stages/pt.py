"""Continued pre-training (`stage: pt`): causal-LM loss on raw domain text.

    tunesmith train examples/pt_lora.yaml

Documents (.txt files or rows with a `text` field) are cut into blocks of `data.max_length`
tokens that never span two documents; every token is trained. The recipe is SFT's
(`stages.token_recipe.run_token_recipe`) with raw-text data in place of chats.
"""

from __future__ import annotations

from tunesmith.data import options
from tunesmith.stages.base import Stage
from tunesmith.stages.token_recipe import TokenRecipe, token_arguments

recipe = TokenRecipe("text")

STAGE = Stage(
    "pt",
    data_kind="text",
    reads="raw text (.txt files or rows with a `text` field)",
    data_options=options.TEXT,
    run=recipe.run,
    arguments=token_arguments,
    evaluate=recipe.evaluate,
    check=recipe.check,
    replay=True,
)
