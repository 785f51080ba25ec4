"""Evaluate one model (base or trained output) as a config describes, and compare two results.

    tunesmith eval examples/sft_lora_demo.yaml            # the config's output_dir
    tunesmith eval examples/sft_lora_demo.yaml --model default
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import build_sources, build_splits
from tunesmith.data.templates import apply_template
from tunesmith.errors import ConfigError
from tunesmith.data.preference import load_kto, load_preferences, load_prompts
from tunesmith.eval.general import general_metrics
from tunesmith.eval.perplexity import validation_loss, validation_loss_by_task
from tunesmith.eval.policy_reward import PolicyReward, policy_reward_report
from tunesmith.eval.preference import kto_metrics, preference_metrics
from tunesmith.eval.qa import qa_accuracy
from tunesmith.eval.reward import reward_metrics
from tunesmith.eval.verifiers import reward_report
from tunesmith.models.default import cache_root
from tunesmith.models.loader import load_for_inference
from tunesmith.models.reward import load_reward_for_inference

log = logging.getLogger(__name__)


def evaluate_model(cfg: TunesmithConfig, model_ref: str, result_path: str | Path | None = None) -> dict:
    if not (cfg.data.validation or cfg.data.val_split) and not cfg.eval.qa and not cfg.forgetting.general_eval:
        raise ConfigError("nothing to evaluate: set data.validation or data.val_split (loss), eval.qa (accuracy) "
                          "and/or forgetting.general_eval (general loss)")
    started = time.time()
    if cfg.stage == "rm":
        return _evaluate_reward_model(cfg, model_ref, result_path, started)
    loaded = load_for_inference(model_ref, cfg.model.cache_dir)
    if not loaded.manifest:  # a base model: render as training will (a trained one carries its template)
        apply_template(loaded.tokenizer, cfg.data.template)
    system = loaded.system if loaded.manifest else cfg.data.system
    result: dict = {"model": model_ref, "system": system}
    if cfg.data.validation and cfg.stage == "dpo":
        pairs = load_preferences(cfg.data.validation, system, cfg.data.columns)
        result.update(preference_metrics(loaded.model, loaded.tokenizer, pairs, cfg.data.max_length, cfg.eval.batch_size))
    elif cfg.data.validation and cfg.stage == "kto":
        rows = load_kto(cfg.data.validation, system, cfg.data.columns)
        result.update(kto_metrics(loaded.model, loaded.tokenizer, rows, cfg.data.max_length, cfg.eval.batch_size))
    elif cfg.data.validation and cfg.stage == "grpo":
        rows = load_prompts(cfg.data.validation, system, cfg.data.columns)
        g = cfg.grpo
        result.update(reward_report(loaded.model, loaded.tokenizer, rows, g.rewards,
                                    g.eval_max_new_tokens or g.max_completion_length, cfg.eval.batch_size))
    elif cfg.data.validation and cfg.stage == "ppo":
        rows = load_prompts(cfg.data.validation, system, cfg.data.columns)
        p = cfg.ppo
        scorer = PolicyReward(p.reward_model, p.rewards, cfg.model.cache_dir, cfg.eval.batch_size)
        result.update(policy_reward_report(loaded.model, loaded.tokenizer, rows, scorer,
                                           p.eval_max_new_tokens or p.max_completion_length, cfg.eval.batch_size))
    elif cfg.data.validation or cfg.data.val_split:
        data = cfg.data.model_copy(update={"system": system})
        kind, root = "text" if cfg.stage == "pt" else "chat", cache_root(cfg.model.cache_dir)
        if cfg.data.validation:  # only the validation files: the training set is not read again
            val_set = build_sources(loaded.tokenizer, data, "validation", kind, cfg.training.seed, root)
        else:  # a val_split is carved out of the training rows (from the tokenised cache when it is on)
            _, val_set = build_splits(loaded.tokenizer, data, kind, cfg.training.seed, root)
        measure = validation_loss_by_task if cfg.stage == "mtl" else validation_loss
        result.update(measure(loaded.model, loaded.tokenizer, val_set.rows, cfg.eval.batch_size))
    if cfg.eval.qa:
        result.update(qa_accuracy(loaded.model, loaded.tokenizer, cfg.eval.qa, system,
                                  cfg.eval.max_new_tokens, cfg.eval.batch_size))
    if cfg.forgetting.general_eval:
        result.update(general_metrics(cfg, loaded.model, loaded.tokenizer, system))
    result["eval_seconds"] = round(time.time() - started, 1)
    if result_path:
        Path(result_path).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _evaluate_reward_model(cfg: TunesmithConfig, model_ref: str, result_path, started: float) -> dict:
    """Pair accuracy and margin; a base model gets a new head seeded as training seeds it (the starting point)."""
    if not cfg.data.validation:
        raise ConfigError("nothing to evaluate: a reward model is measured on data.validation (preference pairs)")
    loaded = load_reward_for_inference(model_ref, cfg.model.cache_dir, new_head_seed=cfg.training.seed)
    system = loaded.system if loaded.manifest else cfg.data.system
    pairs = load_preferences(cfg.data.validation, system, cfg.data.columns)
    result = {"model": model_ref, "system": system, **reward_metrics(loaded.model, loaded.tokenizer, pairs, cfg.eval.batch_size)}
    result["eval_seconds"] = round(time.time() - started, 1)
    if result_path:
        Path(result_path).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _fmt_share(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def compare_table(before: dict, after: dict) -> str:
    """A Markdown table of the headline metrics, base vs fine-tuned."""
    rows = []
    if "qa_accuracy" in after:
        b, a = before.get("qa_accuracy"), after["qa_accuracy"]
        rows.append(("held-out QA accuracy", f"{b:.1%} ({before.get('qa_correct')}/{before.get('qa_total')})" if b is not None else "-",
                     f"{a:.1%} ({after['qa_correct']}/{after['qa_total']})"))
        rows += [(f"  {k[len('qa_accuracy/'):]}", _fmt_share(before.get(k)), _fmt_share(v)) for k, v in after.items()
                 if k.startswith("qa_accuracy/")]
    for key, label in (("val_loss", "validation loss"), ("val_perplexity", "validation perplexity"),
                       ("pref_margin", "chosen-rejected log-prob margin"), ("pref_accuracy", "preference accuracy"),
                       ("kto_margin", "desirable-undesirable log-prob margin"),
                       ("rm_accuracy", "held-out pair accuracy (reward)"), ("rm_margin", "chosen-rejected reward margin"),
                       ("general_loss", "general loss (forgetting)"), ("general_perplexity", "general perplexity (forgetting)")):
        if key in after:
            rows.append((label, _fmt(before.get(key)), _fmt(after[key])))
        if key == "val_loss":  # stage mtl: each task's validation loss
            rows += [(f"  {k[len('val_loss/'):]}", _fmt(before.get(k)), _fmt(v)) for k, v in after.items()
                     if k.startswith("val_loss/")]
    if "reward_mean" in after:
        rows.append(("held-out mean reward (greedy)", _fmt(before.get("reward_mean")), _fmt(after["reward_mean"])))
        for key in after:
            if key.startswith("reward_") and key not in ("reward_mean", "reward_prompts", "reward_samples"):
                rows.append((f"  {key[len('reward_'):]}", _fmt(before.get(key)), _fmt(after[key])))
    width = max(len(r[0]) for r in rows) if rows else 10
    lines = [f"| {'metric':<{width}} | base | fine-tuned |", f"|{'-' * (width + 2)}|------|------------|"]
    lines += [f"| {name:<{width}} | {b} | {a} |" for name, b, a in rows]
    return "\n".join(lines)
