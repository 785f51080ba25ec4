"""`tunesmith eval`: measure a model (an output, the base, any model folder) as a config or flags describe,
or put several measured outputs in one report (`--compare`).

    tunesmith eval examples/demo_veltrano.yaml                       # the config's output_dir
    tunesmith eval --model out/demo --mcq examples/data/mcq          # any model, no config
    tunesmith eval --compare out/run_a out/run_b --output out/compare
    tunesmith eval --model out/demo --judge default --judge-prompts examples/data/judge_prompts.jsonl
    tunesmith eval --model out/demo --lm-eval tunesmith_mcq --lm-eval-tasks examples/lm_eval
"""

from __future__ import annotations

import json
from pathlib import Path

# the flags of the whole `eval:` section; each suite brings its own (eval.suites.SUITES)
GENERAL_FLAGS = (
    ("--max-new-tokens", "max_new_tokens", "eval.max_new_tokens: reply length."),
    ("--batch-size", "batch_size", "eval.batch_size: prompts per forward."),
)


def _flag_keys() -> dict[str, str]:
    """argparse destination -> eval key, for every suite flag and the general ones."""
    from tunesmith.eval.suites import SUITES

    flags = [(f.option, f.key) for s in SUITES.values() for f in s.flags] + [f[:2] for f in GENERAL_FLAGS]
    return {option[2:].replace("-", "_"): key for option, key in flags}


def _config(args):
    """The config file's (with overrides and suite flags), or one built from the flags alone."""
    from tunesmith.config import load_config
    from tunesmith.config.loader import apply_overrides, validate_config
    from tunesmith.errors import ConfigError

    overrides = list(args.overrides)
    config = args.config
    if config and "=" in config and not Path(config).is_file():  # `tunesmith eval eval.mcq=DIR --model M`
        overrides.insert(0, config)
        config = None
    overrides += [
        f"eval.{key}={json.dumps(getattr(args, flag))}"
        for flag, key in _flag_keys().items()
        if getattr(args, flag) is not None
    ]
    if config:
        return load_config(config, overrides)
    if not args.model:
        from tunesmith.eval.suites import SUITES

        raise ConfigError(
            f"tunesmith eval: give a CONFIG, or --model with a suite flag "
            f"({', '.join(s.flags[0].option for s in SUITES.values())}), or --compare OUTPUT ..."
        )
    # output_dir only names where results go when --model is not a folder (nothing is trained)
    raw = {"output_dir": "tunesmith-eval", "model": {"name_or_path": args.model}}
    return validate_config(apply_overrides(raw, overrides), {}, "command line")


def cmd_eval(args) -> int:
    from tunesmith.eval.report import compare_runs, write_report
    from tunesmith.eval.run import evaluate_model
    from tunesmith.eval.suites import check_suites, reach_suites, summary, write_details
    from tunesmith.stages.registry import get_stage

    if args.compare:
        from tunesmith.config.evaluation import JudgeConfig

        judge = JudgeConfig(model=args.judge, template=args.judge_template) if args.judge else None
        html = compare_runs(args.compare, args.output or "eval-compare", judge)
        print(
            f"[tunesmith] report of {len(args.compare)} output(s): {html} "
            f"(figures in {html.parent / 'eval_results.json'})"
        )
        return 0
    registered = bool(args.model) and args.model.startswith("registry:")
    if registered:  # a registered version is immutable: results go to output_dir (or --output), not into it
        from tunesmith.model_registry import resolve_reference

        args.model = resolve_reference(args.model)
    cfg = _config(args)
    check_suites(cfg)  # every suite file is read and validated before a model loads
    model_ref = args.model or cfg.output_dir
    out = Path(args.output) if args.output else None
    if out is None:
        out = (Path(model_ref) if Path(model_ref).is_dir() and not registered else Path(cfg.output_dir)) / "eval.json"
    stage = get_stage(cfg.stage)
    other = None
    if cfg.eval.judge:  # the model the judge compares with is known (or refused) before any model loads
        from tunesmith.eval.run import judge_baseline

        other = judge_baseline(cfg, model_ref)
    reach_suites(cfg)
    result = evaluate_model(cfg, model_ref, stage)
    if other is not None:
        from tunesmith.eval.run import judge_results, replies_for_judge

        result.update(judge_results(cfg, result, replies_for_judge(cfg, other, stage, result.get("system")), other))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(summary(result), indent=2, ensure_ascii=False))
    written = write_details(result, out.parent)
    html = write_report([(Path(model_ref).name or model_ref, result)], out.parent)
    print(f"[tunesmith] full results in {out}, {html}" + "".join(f", {p}" for p in written))
    return 0


def register(verbs) -> None:
    from tunesmith.eval.suites import SUITES, suite_keys

    ev = verbs.add_parser(
        "eval",
        help="Measure a model: held-out metrics, QA, generation metrics, MCQ, consistency, "
        "edge cases, a pairwise judge, lm-eval tasks; or compare outputs in one HTML report.",
        description="Evaluate the config's output_dir (or --model) on its held-out data "
        "(data.validation or data.val_split: loss/perplexity, preference margins, reward ...), "
        "eval.qa, forgetting.general_eval (general loss), forgetting.general_qa (general accuracy) "
        f"and the eval suites ({suite_keys()}); writes "
        "eval.json, eval_report.html and the per-row files (predictions.jsonl ...) beside each other. "
        "Without a config, --model and the suite flags say what to measure. See docs/eval.md.",
    )
    ev.add_argument(
        "config",
        nargs="?",
        help="YAML config file (its data.validation, eval.* and forgetting.* "
        "are used); optional with --model and suite flags, or --compare.",
    )
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides.")
    ev.add_argument("--model", help="Model to evaluate: an output folder, 'default', a folder or hub id.")
    ev.add_argument(
        "--output",
        help="Where to write the JSON result (default: MODEL/eval.json for a folder); the "
        "report and per-row files go beside it. With --compare: the report's folder (default eval-compare).",
    )
    for suite in SUITES.values():
        for flag in suite.flags:
            ev.add_argument(flag.option, help=flag.help, **flag.options)
    for option, _, text in GENERAL_FLAGS:
        ev.add_argument(option, type=int, help=text)
    ev.add_argument(
        "--compare",
        nargs="+",
        metavar="OUTPUT",
        help="Put the measured results of these outputs "
        "(eval_results.json of `tunesmith train`, eval.json of `tunesmith eval`) in one report.",
    )
    ev.set_defaults(func=cmd_eval)
