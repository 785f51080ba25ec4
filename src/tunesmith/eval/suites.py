"""The evaluation suites of the `eval:` section, one file each: generation metrics, multiple-choice
benchmarks, consistency, edge-case probes, the judge's prompts (each model's replies; the pairwise
verdicts need two results: `eval.run.judge_results`), lm-evaluation-harness tasks.

`check_suites(cfg)` reads and validates every configured file before any model loads (errors name
file:line: field); `run_suites` measures one loaded model; `write_details` writes the per-row
records (predictions.jsonl and the others) beside a result. Detail lists are kept in the result
under `DETAIL_KEYS` and left out of printed summaries.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.config import TunesmithConfig

SUITES = ("generation", "mcq", "consistency", "edge_cases", "judge", "lm_eval")
# result key -> file written beside the result
DETAIL_KEYS = {"gen_predictions": "predictions.jsonl", "mcq_details": "mcq_predictions.jsonl",
               "consistency_details": "consistency.jsonl", "edge_details": "edge_cases.jsonl",
               "judge_replies": "judge_replies.jsonl", "judge_verdicts": "judge.jsonl",
               "qa_details": None, "general_qa_details": None}


def configured(cfg: TunesmithConfig) -> list[str]:
    return [name for name in SUITES if getattr(cfg.eval, name)]


def check_suites(cfg: TunesmithConfig) -> None:
    """Every configured suite file reads and validates (DataError naming file:line otherwise)."""
    from tunesmith.eval.textmetrics import load_generation_rows

    if cfg.eval.generation:
        load_generation_rows(cfg.eval.generation)
    if cfg.eval.mcq:
        from tunesmith.eval.mcq import load_mcq

        load_mcq(cfg.eval.mcq)
    if cfg.eval.consistency:
        from tunesmith.eval.consistency import load_consistency

        load_consistency(cfg.eval.consistency)
    if cfg.eval.edge_cases:
        from tunesmith.eval.edge_cases import load_probes

        load_probes(cfg.eval.edge_cases)
    if cfg.eval.judge:
        from tunesmith.errors import ConfigError
        from tunesmith.eval.judge import check_judge

        if not cfg.eval.judge.prompts:
            raise ConfigError("eval.judge.prompts: missing; name the file of prompts both models answer "
                              "(rows {prompt, reference?}, e.g. examples/data/judge_prompts.jsonl)")
        check_judge(cfg.eval.judge)
    if cfg.eval.lm_eval:
        from tunesmith.eval.lm_eval import check_lm_eval

        check_lm_eval(cfg.eval.lm_eval)


def run_suites(cfg: TunesmithConfig, model, tokenizer, system: str | None) -> dict:
    """The configured suites' metrics (and detail lists) for one loaded model."""
    ev = cfg.eval
    result: dict = {}
    if ev.generation:
        from tunesmith.eval.textmetrics import generation_metrics

        result.update(generation_metrics(model, tokenizer, ev.generation, system, ev.max_new_tokens, ev.batch_size))
    if ev.mcq:
        from tunesmith.eval.mcq import mcq_accuracy

        result.update(mcq_accuracy(model, tokenizer, ev.mcq, ev.mcq_shots, system, ev.batch_size))
    if ev.consistency:
        from tunesmith.eval.consistency import consistency_metrics

        result.update(consistency_metrics(model, tokenizer, ev.consistency, system, ev.max_new_tokens, ev.batch_size,
                                          ev.consistency_samples, ev.consistency_temperature, cfg.training.seed))
    if ev.edge_cases:
        from tunesmith.eval.edge_cases import edge_case_metrics

        result.update(edge_case_metrics(model, tokenizer, ev.edge_cases, system, ev.max_new_tokens, ev.batch_size))
    if ev.judge:
        from tunesmith.eval.judge import judge_replies

        result.update(judge_replies(model, tokenizer, ev.judge.prompts, system, ev.max_new_tokens, ev.batch_size))
    if ev.lm_eval:
        from tunesmith.eval.lm_eval import lm_eval_metrics

        result.update(lm_eval_metrics(model, tokenizer, ev.lm_eval, ev.batch_size, cfg.training.seed))
    return result


def summary(result: dict) -> dict:
    """The result without its per-row detail lists (what is printed)."""
    return {k: v for k, v in result.items() if k not in DETAIL_KEYS}


def write_details(result: dict, folder: str | Path) -> list[Path]:
    """Write each detail list of `result` as JSONL into `folder`; returns the files written."""
    folder = Path(folder)
    written = []
    for key, name in DETAIL_KEYS.items():
        if name and result.get(key):
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result[key]), encoding="utf-8")
            written.append(path)
    return written


# headline figures of the suites in the printed before/after table: (key, label, share?)
HEADLINES = (("gen_bleu", "BLEU (sacreBLEU, corpus)", False), ("gen_chrf", "chrF", False),
             ("gen_rougeL", "ROUGE-L F", False), ("gen_exact_match", "exact match", True),
             ("gen_key_match", "key match", True), ("bleu4_char_llamafactory", "char BLEU-4 (LLaMA-Factory)", False),
             ("mcq_accuracy", "multiple-choice accuracy", True), ("consistency_agreement", "consistency agreement", True),
             ("edge_fail/any", "edge-case probes failing", True), ("judge_win_rate", "judge: wins against the base", True),
             ("judge_tie_rate", "judge: ties", True), ("judge_loss_rate", "judge: losses", True))


def suite_rows(before: dict, after: dict) -> list[tuple[str, str, str]]:
    """(label, base, fine-tuned) rows of the suites' headline figures, for the before/after table."""
    def fmt(value, share):
        return "-" if value is None else f"{value:.1%}" if share else f"{value:.2f}"

    rows = []
    for key, name, share in HEADLINES:
        if key in after:
            rows.append((name, fmt(before.get(key), share), fmt(after[key], share)))
            if key == "mcq_accuracy":
                rows += [(f"  {k[len('mcq_category/'):]}", fmt(before.get(k), True), fmt(v, True))
                         for k, v in after.items() if k.startswith("mcq_category/")]
    for key, value in after.items():  # lm-eval's metrics, as it names them
        if key.startswith("lm_eval/") and not key.endswith(("_stderr", "/samples")) and isinstance(value, (int, float)):
            share = key.rsplit("/", 1)[-1].startswith(("acc", "exact_match"))
            rows.append((f"lm-eval {key[len('lm_eval/'):]}", fmt(before.get(key), share), fmt(value, share)))
    return rows
