"""How much general ability a run kept: loss and perplexity on `forgetting.general_eval`, and the
accuracy on `forgetting.general_qa` (simple questions with key answers).

    forgetting:
      general_eval: examples/data/general_eval.jsonl   # chat/alpaca rows, or raw text (.txt / `text` rows)
      general_qa: examples/data/general_qa.jsonl       # {question, answers, task?} rows, as eval.qa

Chat rows are scored on their assistant tokens, raw text on every token (cut into data.max_length
blocks), with the same token-weighted loss as the validation loss. `tunesmith train` measures the
base model and the trained one and reports `general_loss` / `general_perplexity` next to the
other before/after figures (eval_results.json and the printed table). The general questions are
asked with the run's system prompt, as a user of the served model would ask them; a drop beyond
`forgetting.warn_general_drop` (or a perplexity rise beyond `warn_perplexity_rise`) is printed as a
warning naming the options that reduce forgetting.
"""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import TokenizedSet, build_sources
from tunesmith.data.readers import read_rows
from tunesmith.data.sources import resolve_sources
from tunesmith.eval.perplexity import validation_loss
from tunesmith.eval.qa import qa_accuracy
from tunesmith.models.default import cache_root

KEY = "forgetting.general_eval"


def general_kind(cfg: TunesmithConfig) -> str:
    """'text' when the first source's rows are raw text (.txt files or `text` rows), else 'chat'."""
    source = resolve_sources(cfg.forgetting.general_eval, cfg.data.registry, KEY)[0]
    rows = read_rows(source.paths[0])
    first = rows[0].data if rows else None
    return "text" if isinstance(first, dict) and "text" in first and "messages" not in first else "chat"


def general_set(cfg: TunesmithConfig, tokenizer, system: str | None, cache_root=None) -> TokenizedSet:
    """The tokenised general held-out rows (format auto-detected per row; no cleaning, no sampling, no
    augmentation; every assistant turn scored and nothing else, whatever the run trains on)."""
    data = cfg.data.model_copy(
        update={
            "system": system,
            "format": "auto",
            "columns": {},
            "clean": None,
            "max_samples": None,
            "augment": None,
            "train_on_prompt": False,
            "last_turn_only": False,
        }
    )
    return build_sources(
        tokenizer, data, KEY, general_kind(cfg), cfg.training.seed, cache_root, entries=cfg.forgetting.general_eval
    )


def general_metrics(cfg: TunesmithConfig, model, tokenizer, system: str | None) -> dict:
    rows = general_set(cfg, tokenizer, system, cache_root(cfg.model.cache_dir)).rows
    measured = validation_loss(model, tokenizer, rows, cfg.eval.batch_size)
    return {
        "general_loss": measured["val_loss"],
        "general_perplexity": measured["val_perplexity"],
        "general_tokens": measured["val_tokens"],
    }


def check_general_eval(cfg: TunesmithConfig, tokenizer) -> None:
    """Before any model loads: every row of the general set reads and tokenises (whether the stage's
    model has a language-model head to measure is the stage record's `generates`)."""
    general_set(cfg, tokenizer, cfg.data.system, cache_root(cfg.model.cache_dir))


def general_qa_metrics(cfg: TunesmithConfig, model, tokenizer, system: str | None) -> dict:
    """Accuracy on the general questions, keys prefixed `general_` (general_qa_accuracy, ...)."""
    measured = qa_accuracy(
        model, tokenizer, cfg.forgetting.general_qa, system, cfg.eval.max_new_tokens, cfg.eval.batch_size
    )
    return {f"general_{key}": value for key, value in measured.items()}


def forgetting_summary(before: dict, after: dict) -> dict:
    """The general figures base vs trained: the perplexity's relative change, the QA accuracy's change."""
    summary = {}
    if "general_perplexity" in after and "general_perplexity" in before:
        b, a = before["general_perplexity"], after["general_perplexity"]
        summary.update(
            {
                "general_loss_before": before["general_loss"],
                "general_loss_after": after["general_loss"],
                "general_perplexity_before": b,
                "general_perplexity_after": a,
                "general_perplexity_change": a / b - 1,
            }
        )
    if "general_qa_accuracy" in after and "general_qa_accuracy" in before:
        summary.update(
            {
                "general_qa_correct_before": before["general_qa_correct"],
                "general_qa_correct_after": after["general_qa_correct"],
                "general_qa_total": after["general_qa_total"],
                "general_qa_change": after["general_qa_accuracy"] - before["general_qa_accuracy"],
            }
        )
    return summary


# in the order of what they kept on the demo (docs/benchmarks.md)
REMEDIES = (
    "forgetting.replay: examples/data/general_replay.jsonl with forgetting.replay_answers: model (general "
    "prompts answered by the starting model itself, mixed into training at forgetting.replay_ratio; with "
    "training.neftune_alpha: 5 beside it, as in examples/knowledge_selfreplay.yaml)",
    "fewer training.epochs",
    "forgetting.l2: 0.01 (a pull toward the base)",
)


def forgetting_warnings(summary: dict, cfg: TunesmithConfig) -> list[str]:
    """What the run lost beyond the configured thresholds, each with the options that reduce it."""
    lost = []
    if "general_qa_change" in summary and -summary["general_qa_change"] > cfg.forgetting.warn_general_drop:
        lost.append(
            f"general QA accuracy fell from {summary['general_qa_correct_before']} to "
            f"{summary['general_qa_correct_after']} of {summary['general_qa_total']} questions "
            f"(forgetting.warn_general_drop: {cfg.forgetting.warn_general_drop:g})"
        )
    if (
        "general_perplexity_change" in summary
        and summary["general_perplexity_change"] > cfg.forgetting.warn_perplexity_rise
    ):
        lost.append(
            f"general perplexity rose by {summary['general_perplexity_change']:.0%} "
            f"(forgetting.warn_perplexity_rise: {cfg.forgetting.warn_perplexity_rise:g})"
        )
    if not lost:
        return []
    remedies = list(REMEDIES)
    f = cfg.forgetting
    if f.replay and f.replay_answers == "model":  # already on: what turns it up
        remedies[0] = (
            f"a higher forgetting.replay_ratio (now {f.replay_ratio:g}) or training.neftune_alpha (now "
            f"{cfg.training.neftune_alpha or 0:g}; 15 kept more general answers than 5 on the demo)"
        )
    return [
        f"the fine-tuned model lost general ability: {'; '.join(lost)}. To keep more of it, try: "
        + "; ".join(remedies)
        + ". See docs/runtime.md (forgetting guard)."
    ]
