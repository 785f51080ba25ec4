"""How much general ability a run kept: loss and perplexity on `forgetting.general_eval`.

    forgetting:
      general_eval: examples/data/general_eval.jsonl   # chat/alpaca rows, or raw text (.txt / `text` rows)

Chat rows are scored on their assistant tokens, raw text on every token (cut into data.max_length
blocks), with the same token-weighted loss as the validation loss. `tunesmith train` measures the
base model and the trained one and reports `general_loss` / `general_perplexity` next to the
other before/after figures (eval_results.json and the printed table).
"""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import TokenizedSet, build_sources
from tunesmith.data.readers import read_rows
from tunesmith.data.sources import resolve_sources
from tunesmith.eval.perplexity import validation_loss
from tunesmith.models.default import cache_root

KEY = "forgetting.general_eval"


def general_kind(cfg: TunesmithConfig) -> str:
    """'text' when the first source's rows are raw text (.txt files or `text` rows), else 'chat'."""
    source = resolve_sources(cfg.forgetting.general_eval, cfg.data.registry, KEY)[0]
    rows = read_rows(source.paths[0])
    first = rows[0].data if rows else None
    return "text" if isinstance(first, dict) and "text" in first and "messages" not in first else "chat"


def general_set(cfg: TunesmithConfig, tokenizer, system: str | None, cache_root=None) -> TokenizedSet:
    """The tokenised general held-out rows (format auto-detected per row; no cleaning, no sampling)."""
    data = cfg.data.model_copy(update={"system": system, "format": "auto", "columns": {}, "clean": None,
                                       "max_samples": None})
    return build_sources(tokenizer, data, KEY, general_kind(cfg), cfg.training.seed, cache_root,
                         entries=cfg.forgetting.general_eval)


def general_metrics(cfg: TunesmithConfig, model, tokenizer, system: str | None) -> dict:
    rows = general_set(cfg, tokenizer, system, cache_root(cfg.model.cache_dir)).rows
    measured = validation_loss(model, tokenizer, rows, cfg.eval.batch_size)
    return {"general_loss": measured["val_loss"], "general_perplexity": measured["val_perplexity"],
            "general_tokens": measured["val_tokens"]}


def check_general_eval(cfg: TunesmithConfig, tokenizer) -> None:
    """Before any model loads: every row of the general set reads and tokenises (whether the stage's
    model has a language-model head to measure is the stage record's `generates`)."""
    general_set(cfg, tokenizer, cfg.data.system, cache_root(cfg.model.cache_dir))


def forgetting_summary(before: dict, after: dict) -> dict:
    """The general figures base vs trained, and the relative change of the perplexity."""
    b, a = before["general_perplexity"], after["general_perplexity"]
    return {"general_loss_before": before["general_loss"], "general_loss_after": after["general_loss"],
            "general_perplexity_before": b, "general_perplexity_after": a, "general_perplexity_change": a / b - 1}
