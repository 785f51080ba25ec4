"""Continued pre-training (`stage: pt`): causal-LM loss on raw domain text.

    tunesmith train examples/pt_lora.yaml

Documents (.txt files or rows with a `text` field) are cut into blocks of `data.max_length`
tokens that never span two documents; every token is trained. The recipe is SFT's
(`sft.run_token_recipe`) with raw-text data in place of chats.
"""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.stages import sft
from tunesmith.stages.common import RunResult
from tunesmith.stages.sft import run_token_recipe


def check_data(cfg: TunesmithConfig) -> None:
    sft.check_data(cfg, kind="text")


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    return sft.arguments(cfg, work, device, dtype, has_eval)


def run_pt(cfg: TunesmithConfig) -> RunResult:
    return run_token_recipe(cfg, "text")
