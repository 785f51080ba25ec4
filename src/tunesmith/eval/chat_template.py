"""The chat template a run measures (and trains) with, and the refusal of chat measures on a base
without one.

A stage that trains on raw text (pt) needs no chat template: a base model without one (gpt2, most
pre-trained bases) keeps none, unless something measured as a chat (eval.qa, the suites whose
prompts are chats, forgetting.general_qa, chat rows in forgetting.general_eval) needs it, which is
refused before anything trains.
"""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.data.templates import apply_template
from tunesmith.errors import ConfigError
from tunesmith.eval.general import general_kind
from tunesmith.eval.suites import configured


def set_run_template(cfg: TunesmithConfig, tokenizer, base_path, raw_text: bool = False) -> None:
    """Give a base model's tokenizer the chat template the run renders with (`data.template`); `raw_text`:
    the stage trains on raw text, so a tokenizer without a template keeps none (see the module)."""
    if raw_text and not getattr(tokenizer, "chat_template", None):
        refuse_chat_measures(cfg, base_path)
    else:
        apply_template(tokenizer, cfg.data.template)


def chat_measures(cfg: TunesmithConfig) -> list[str]:
    """The config keys of what is measured by rendering chats."""
    asks = ["eval.qa"] if cfg.eval.qa else []
    asks += [f"eval.{suite.name}" for suite in configured(cfg) if suite.chats]
    asks += ["forgetting.general_qa"] if cfg.forgetting.general_qa else []
    if cfg.forgetting.general_eval and general_kind(cfg) == "chat":
        asks.append("forgetting.general_eval (chat rows)")
    return asks


def refuse_chat_measures(cfg: TunesmithConfig, base_path) -> None:
    asks = chat_measures(cfg)
    if asks:
        raise ConfigError(
            f"{', '.join(asks)}: asked as chats, but the tokenizer of {base_path} has no chat template "
            f"(stage {cfg.stage} trains on raw text and needs none); measure with raw text instead "
            "(data.validation, `text` rows in forgetting.general_eval), or start from a model with one"
        )
