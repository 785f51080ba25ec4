"""Evaluate one model (base or trained output) as a config describes, and compare two results.

tunesmith eval examples/demo_veltrano.yaml            # the config's output_dir
tunesmith eval examples/demo_veltrano.yaml --model default
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.errors import ConfigError
from tunesmith.eval.chat_template import set_run_template
from tunesmith.eval.general import general_metrics, general_qa_metrics
from tunesmith.eval.qa import qa_accuracy
from tunesmith.eval.suites import configured, run_suites, suite_keys, suite_rows

log = logging.getLogger(__name__)


def has_measures(cfg: TunesmithConfig) -> bool:
    """Whether the config names anything to measure: held-out data, a QA file or a general set."""
    return bool(
        cfg.data.validation
        or cfg.data.val_split
        or cfg.eval.qa
        or cfg.forgetting.general_eval
        or cfg.forgetting.general_qa
        or configured(cfg)
    )


def evaluate_model(cfg: TunesmithConfig, model_ref: str, stage, result_path: str | Path | None = None) -> dict:
    """Measure `model_ref` (a base model or a trained output) as `cfg` describes.

    `stage` is the config's stage record (`stages.registry.get_stage(cfg.stage)`): it loads the model
    (`load_for_eval`) and measures its own held-out metrics (`evaluate`); QA accuracy and the general
    loss apply to every stage whose model generates text."""
    if not has_measures(cfg):
        raise ConfigError(
            "nothing to evaluate: set data.validation or data.val_split (held-out metrics), eval.qa "
            "(accuracy), forgetting.general_eval (general loss), forgetting.general_qa (general "
            f"accuracy) and/or a suite: {suite_keys()}"
        )
    started = time.time()
    loaded, system = _load(cfg, model_ref, stage)
    result: dict = {"model": model_ref, "system": system}
    if cfg.data.validation or cfg.data.val_split:
        result.update(stage.evaluate(cfg, loaded, system))
    if stage.generates and cfg.eval.qa:
        result.update(
            qa_accuracy(
                loaded.model, loaded.tokenizer, cfg.eval.qa, system, cfg.eval.max_new_tokens, cfg.eval.batch_size
            )
        )
    if stage.generates and cfg.forgetting.general_eval:
        result.update(general_metrics(cfg, loaded.model, loaded.tokenizer, system))
    if stage.generates and cfg.forgetting.general_qa:
        result.update(general_qa_metrics(cfg, loaded.model, loaded.tokenizer, system))
    if stage.generates:
        result.update(run_suites(cfg, loaded.model, loaded.tokenizer, system))
    result["eval_seconds"] = round(time.time() - started, 1)
    if result_path:
        Path(result_path).parent.mkdir(parents=True, exist_ok=True)
        Path(result_path).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _load(cfg: TunesmithConfig, model_ref: str, stage):
    loaded = stage.load_for_eval(cfg, model_ref)
    if not loaded.manifest:  # a base model: render as training will (a trained one carries its template)
        set_run_template(cfg, loaded.tokenizer, model_ref, getattr(stage, "data_kind", None) == "text")
    return loaded, loaded.system if loaded.manifest else cfg.data.system


def judge_baseline(cfg: TunesmithConfig, model_ref: str) -> str:
    """The model `tunesmith eval` compares `model_ref` with: eval.judge.baseline, else the base model
    a tunesmith output was trained from."""
    from tunesmith.layout import is_run_output, read_manifest

    if cfg.eval.judge.baseline:
        return cfg.eval.judge.baseline
    path = Path(model_ref)
    if path.is_dir() and is_run_output(path):
        return read_manifest(path).get("base_model_ref") or read_manifest(path)["base_model"]
    raise ConfigError(
        f"eval.judge.baseline: `{model_ref}` is not a tunesmith output, so it has no base to be "
        "compared with; name the other model with eval.judge.baseline (--judge-baseline)"
    )


def judge_results(cfg: TunesmithConfig, candidate: dict, baseline: dict, baseline_name: str) -> dict:
    """The judge's win/tie/loss of `candidate`'s replies to the judge prompts against `baseline`'s."""
    from tunesmith.eval.judge import judge_pairs, load_template, open_judge

    judge = open_judge(cfg.eval.judge, cfg.model.cache_dir, cfg.eval.batch_size)
    result = judge_pairs(
        judge,
        candidate.get("judge_replies") or [],
        baseline.get("judge_replies") or [],
        load_template(cfg.eval.judge.template),
    )
    return {**result, "judge_baseline": baseline_name}


def replies_for_judge(cfg: TunesmithConfig, model_ref: str, stage, system: str | None = None) -> dict:
    """Only the judge prompts' replies of `model_ref` (the baseline of `tunesmith eval`). `system`: the
    candidate's system prompt, which a base model (no manifest of its own) is asked with, so that the
    two answer the same prompts, as in `tunesmith train`'s comparison."""
    from tunesmith.eval.judge import judge_replies

    loaded, own = _load(cfg, model_ref, stage)
    system = own if loaded.manifest or system is None else system
    ev = cfg.eval
    return {
        "model": model_ref,
        **judge_replies(loaded.model, loaded.tokenizer, ev.judge.prompts, system, ev.max_new_tokens, ev.batch_size),
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _fmt_share(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def _accuracy_rows(before: dict, after: dict, prefix: str, label: str) -> list[tuple[str, str, str]]:
    """The table rows of one QA measure (`qa`, `general_qa`): correct/total, then one row per category."""
    if f"{prefix}_accuracy" not in after:
        return []

    def cell(result: dict) -> str:
        share = result.get(f"{prefix}_accuracy")
        return "-" if share is None else f"{share:.1%} ({result[f'{prefix}_correct']}/{result[f'{prefix}_total']})"

    head = f"{prefix}_accuracy/"
    return [(label, cell(before), cell(after))] + [
        (f"  {k[len(head) :]}", _fmt_share(before.get(k)), _fmt_share(v))
        for k, v in after.items()
        if k.startswith(head)
    ]


def compare_table(before: dict, after: dict) -> str:
    """A Markdown table of the headline metrics, base vs fine-tuned."""
    rows = []
    rows += _accuracy_rows(before, after, "qa", "held-out QA accuracy")
    rows += _accuracy_rows(before, after, "general_qa", "general QA accuracy (forgetting)")
    for key, label in (
        ("val_loss", "validation loss"),
        ("val_perplexity", "validation perplexity"),
        ("pref_margin", "chosen-rejected log-prob margin"),
        ("pref_accuracy", "preference accuracy"),
        ("kto_margin", "desirable-undesirable log-prob margin"),
        ("rm_accuracy", "held-out pair accuracy (reward)"),
        ("rm_margin", "chosen-rejected reward margin"),
        ("general_loss", "general loss (forgetting)"),
        ("general_perplexity", "general perplexity (forgetting)"),
    ):
        if key in after:
            rows.append((label, _fmt(before.get(key)), _fmt(after[key])))
        if key == "val_loss":  # stage mtl: each task's validation loss
            rows += [
                (f"  {k[len('val_loss/') :]}", _fmt(before.get(k)), _fmt(v))
                for k, v in after.items()
                if k.startswith("val_loss/")
            ]
    if "reward_mean" in after:
        rows.append(("held-out mean reward (greedy)", _fmt(before.get("reward_mean")), _fmt(after["reward_mean"])))
        for key in after:
            if key.startswith("reward_") and key not in ("reward_mean", "reward_prompts", "reward_samples"):
                rows.append((f"  {key[len('reward_') :]}", _fmt(before.get(key)), _fmt(after[key])))
    rows += suite_rows(before, after)
    width = max(len(r[0]) for r in rows) if rows else 10
    lines = [f"| {'metric':<{width}} | base | fine-tuned |", f"|{'-' * (width + 2)}|------|------------|"]
    lines += [f"| {name:<{width}} | {b} | {a} |" for name, b, a in rows]
    return "\n".join(lines)
