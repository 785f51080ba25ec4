"""The evaluation suites of the `eval:` section, one record each: generation metrics, multiple-choice
benchmarks, consistency, edge-case probes, the judge's prompts (each model's replies; the pairwise
verdicts need two results: `eval.run.judge_results`), lm-evaluation-harness tasks.

A `Suite` is to a suite what `stages.base.Stage` is to a stage: everything that needs the list of
suites asks `SUITES` (the pre-flight check, the measuring, the per-row files, the before/after table,
`tunesmith eval`'s flags, the refusals for stages whose model does not generate and for bases
without a chat template). Adding a suite is one module in `eval/` and one record below.

`check_suites(cfg)` reads and validates every configured file before any model loads (errors name
file:line: field); `run_suites` measures one loaded model; `write_details` writes the per-row
records (predictions.jsonl and the others) beside a result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class Flag:
    """One `tunesmith eval` option that sets a key of the suite's config (`eval.KEY`)."""

    option: str  # --option
    key: str  # dotted key below `eval.`
    help: str
    options: dict = field(default_factory=dict)  # argparse's type, nargs, metavar


@dataclass(frozen=True)
class Suite:
    name: str  # the key of the `eval:` section that configures it
    check: Callable[[TunesmithConfig], None]  # read and validate its files; nothing loads
    run: Callable[..., dict]  # (cfg, model, tokenizer, system) -> flat figures and its detail lists
    details: dict[str, str]  # result key of a per-row list -> the JSONL file written beside the result
    chats: bool  # its prompts are rendered as chats (needs a chat template)
    reads: tuple[str, ...]  # the config keys of the files and folders it reads
    headlines: tuple[tuple[str, str, bool], ...] = ()  # (result key, label, a share?) in the before/after table
    flags: tuple[Flag, ...] = ()
    reach: Callable[[TunesmithConfig], None] | None = None  # contact what it needs outside the process, up front


# --- what each suite does, reached lazily (metrics libraries load only when a suite is configured) ---


def _check_generation(cfg):
    from tunesmith.eval.textmetrics import load_generation_rows

    load_generation_rows(cfg.eval.generation)


def _run_generation(cfg, model, tokenizer, system):
    from tunesmith.eval.textmetrics import generation_metrics

    ev = cfg.eval
    return generation_metrics(model, tokenizer, ev.generation, system, ev.max_new_tokens, ev.batch_size)


def _check_mcq(cfg):
    from tunesmith.eval.mcq import load_mcq

    load_mcq(cfg.eval.mcq)


def _run_mcq(cfg, model, tokenizer, system):
    from tunesmith.eval.mcq import mcq_accuracy

    ev = cfg.eval
    return mcq_accuracy(model, tokenizer, ev.mcq, ev.mcq_shots, system, ev.batch_size)


def _check_consistency(cfg):
    from tunesmith.eval.consistency import load_consistency

    load_consistency(cfg.eval.consistency)


def _run_consistency(cfg, model, tokenizer, system):
    from tunesmith.eval.consistency import consistency_metrics

    ev = cfg.eval
    return consistency_metrics(
        model,
        tokenizer,
        ev.consistency,
        system,
        ev.max_new_tokens,
        ev.batch_size,
        ev.consistency_samples,
        ev.consistency_temperature,
        cfg.training.seed,
    )


def _check_edge_cases(cfg):
    from tunesmith.eval.edge_cases import load_probes

    load_probes(cfg.eval.edge_cases)


def _run_edge_cases(cfg, model, tokenizer, system):
    from tunesmith.eval.edge_cases import edge_case_metrics

    ev = cfg.eval
    return edge_case_metrics(model, tokenizer, ev.edge_cases, system, ev.max_new_tokens, ev.batch_size)


def _check_judge(cfg):
    from tunesmith.eval.judge import check_judge

    if not cfg.eval.judge.prompts:
        raise ConfigError(
            "eval.judge.prompts: missing; name the file of prompts both models answer "
            "(rows {prompt, reference?}, e.g. examples/data/judge_prompts.jsonl)"
        )
    check_judge(cfg.eval.judge)


def _reach_judge(cfg):
    from tunesmith.eval.judge import reach_judge

    reach_judge(cfg.eval.judge)


def _run_judge(cfg, model, tokenizer, system):
    from tunesmith.eval.judge import judge_replies

    ev = cfg.eval
    return judge_replies(model, tokenizer, ev.judge.prompts, system, ev.max_new_tokens, ev.batch_size)


def _check_lm_eval(cfg):
    from tunesmith.eval.lm_eval import check_lm_eval

    check_lm_eval(cfg.eval.lm_eval)


def _run_lm_eval(cfg, model, tokenizer, system):
    from tunesmith.eval.lm_eval import lm_eval_metrics

    return lm_eval_metrics(model, tokenizer, cfg.eval.lm_eval, cfg.eval.batch_size, cfg.training.seed)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "generation",
            _check_generation,
            _run_generation,
            {"gen_predictions": "predictions.jsonl"},
            chats=True,
            reads=("eval.generation",),
            headlines=(
                ("gen_bleu", "BLEU (sacreBLEU, corpus)", False),
                ("gen_chrf", "chrF", False),
                ("gen_rougeL", "ROUGE-L F", False),
                ("gen_exact_match", "exact match", True),
                ("gen_key_match", "key match", True),
                ("bleu4_char_llamafactory", "char BLEU-4 (LLaMA-Factory)", False),
            ),
            flags=(
                Flag(
                    "--generation",
                    "generation",
                    "eval.generation: rows {prompt|messages, reference|references} (BLEU, chrF, ROUGE).",
                ),
            ),
        ),
        Suite(
            "mcq",
            _check_mcq,
            _run_mcq,
            {"mcq_details": "mcq_predictions.jsonl"},
            chats=True,
            reads=("eval.mcq",),
            headlines=(("mcq_accuracy", "multiple-choice accuracy", True),),
            flags=(
                Flag("--mcq", "mcq", "eval.mcq: an MMLU/C-Eval layout folder or a CSV of question,A,B,C,D,answer."),
                Flag("--mcq-shots", "mcq_shots", "eval.mcq_shots: dev rows shown before each question.", {"type": int}),
            ),
        ),
        Suite(
            "consistency",
            _check_consistency,
            _run_consistency,
            {"consistency_details": "consistency.jsonl"},
            chats=True,
            reads=("eval.consistency",),
            headlines=(("consistency_agreement", "consistency agreement", True),),
            flags=(
                Flag(
                    "--consistency",
                    "consistency",
                    "eval.consistency: rows {id, prompt, answers?}, phrasings grouped by id.",
                ),
            ),
        ),
        Suite(
            "edge_cases",
            _check_edge_cases,
            _run_edge_cases,
            {"edge_details": "edge_cases.jsonl"},
            chats=True,
            reads=("eval.edge_cases",),
            headlines=(("edge_fail/any", "edge-case probes failing", True),),
            flags=(
                Flag(
                    "--edge-cases",
                    "edge_cases",
                    "eval.edge_cases: probe rows {kind, prompt} (examples/data/edge_cases.jsonl).",
                ),
            ),
        ),
        Suite(
            "judge",
            _check_judge,
            _run_judge,
            {"judge_replies": "judge_replies.jsonl", "judge_verdicts": "judge.jsonl"},
            chats=True,
            reads=("eval.judge.prompts", "eval.judge.template", "eval.judge.model", "eval.judge.baseline"),
            headlines=(
                ("judge_win_rate", "judge: wins against the base", True),
                ("judge_tie_rate", "judge: ties", True),
                ("judge_loss_rate", "judge: losses", True),
            ),
            flags=(
                Flag(
                    "--judge",
                    "judge.model",
                    "eval.judge.model: a judge model folder or an OpenAI-compatible "
                    "endpoint (http://HOST:PORT/v1); compares the model's replies to --judge-prompts with its base's "
                    "(or --judge-baseline's), both orders. With --compare: the first output against the last, from "
                    "their stored replies.",
                    {"metavar": "MODEL_OR_URL"},
                ),
                Flag(
                    "--judge-prompts",
                    "judge.prompts",
                    "eval.judge.prompts: rows {prompt | messages, reference?} both models answer.",
                ),
                Flag(
                    "--judge-baseline",
                    "judge.baseline",
                    "eval.judge.baseline: the model compared with (default: the output's base).",
                ),
                Flag(
                    "--judge-template",
                    "judge.template",
                    "eval.judge.template: a judge prompt file with "
                    "{question}, {answer_a}, {answer_b} (and {reference}).",
                ),
            ),
            reach=_reach_judge,
        ),
        Suite(
            "lm_eval",
            _check_lm_eval,
            _run_lm_eval,
            {},
            chats=False,
            reads=("eval.lm_eval.include_path",),
            flags=(
                Flag(
                    "--lm-eval",
                    "lm_eval.tasks",
                    "eval.lm_eval.tasks: lm-evaluation-harness tasks, run offline on "
                    "the model (pip install 'tunesmith[lm-eval]').",
                    {"nargs": "+", "metavar": "TASK"},
                ),
                Flag(
                    "--lm-eval-tasks",
                    "lm_eval.include_path",
                    "eval.lm_eval.include_path: a folder of local task YAMLs (examples/lm_eval).",
                    {"metavar": "DIR"},
                ),
                Flag(
                    "--lm-eval-limit", "lm_eval.limit", "eval.lm_eval.limit: documents scored per task.", {"type": int}
                ),
            ),
        ),
    )
}
# per-row lists of the other measures (QA), kept in results but written by their own callers
OTHER_DETAILS = ("qa_details", "general_qa_details")
DETAIL_KEYS = {key: name for s in SUITES.values() for key, name in s.details.items()} | dict.fromkeys(OTHER_DETAILS)


def configured(cfg: TunesmithConfig) -> list[Suite]:
    """The suites the config sets, in table order."""
    return [suite for suite in SUITES.values() if getattr(cfg.eval, suite.name)]


def suite_keys(suites=None) -> str:
    """`eval.generation, eval.mcq, ...`: the suites' config keys, for messages."""
    return ", ".join(f"eval.{s.name}" for s in (SUITES.values() if suites is None else suites))


def check_suites(cfg: TunesmithConfig) -> None:
    """Every configured suite file reads and validates (DataError naming file:line otherwise)."""
    for suite in configured(cfg):
        suite.check(cfg)


def reach_suites(cfg: TunesmithConfig) -> None:
    """What the configured suites need outside this process answers (an endpoint judge), before any work."""
    for suite in configured(cfg):
        if suite.reach is not None:
            suite.reach(cfg)


def run_suites(cfg: TunesmithConfig, model, tokenizer, system: str | None) -> dict:
    """The configured suites' metrics (and detail lists) for one loaded model."""
    result: dict = {}
    for suite in configured(cfg):
        result.update(suite.run(cfg, model, tokenizer, system))
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


def suite_rows(before: dict, after: dict) -> list[tuple[str, str, str]]:
    """(label, base, fine-tuned) rows of the suites' headline figures, for the before/after table."""

    def fmt(value, share):
        return "-" if value is None else f"{value:.1%}" if share else f"{value:.2f}"

    rows = []
    for key, name, share in (h for s in SUITES.values() for h in s.headlines):
        if key in after:
            rows.append((name, fmt(before.get(key), share), fmt(after[key], share)))
            if key == "mcq_accuracy":
                rows += [
                    (f"  {k[len('mcq_category/') :]}", fmt(before.get(k), True), fmt(v, True))
                    for k, v in after.items()
                    if k.startswith("mcq_category/")
                ]
    for key, value in after.items():  # lm-eval's metrics, as it names them
        if key.startswith("lm_eval/") and not key.endswith(("_stderr", "/samples")) and isinstance(value, (int, float)):
            share = key.rsplit("/", 1)[-1].startswith(("acc", "exact_match"))
            rows.append((f"lm-eval {key[len('lm_eval/') :]}", fmt(before.get(key), share), fmt(value, share)))
    return rows
