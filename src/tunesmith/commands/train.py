"""`tunesmith train` (fine-tune, then compare with the base model) and `tunesmith search`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def train_and_compare(cfg, config_path: str | None = None, overrides: list[str] | None = None) -> int:
    """The train flow: pre-flight check, base measured, train (one process or a launched group),
    fine-tuned measured, eval_results.json and the before/after table. Returns an exit status."""
    from tunesmith.eval.general import forgetting_summary, forgetting_warnings
    from tunesmith.eval.report import write_report
    from tunesmith.eval.run import compare_table, evaluate_model, has_measures
    from tunesmith.eval.suites import reach_suites, write_details
    from tunesmith.runtime import launch
    from tunesmith.stages.registry import check_stage, get_stage, run_stage

    stage = get_stage(cfg.stage)
    check_stage(cfg)  # every input (data, QA and suite files) is read and validated before any model is loaded
    if launch.under_launcher():  # a training process of a multi-process run: train only
        result = run_stage(cfg)
        if launch.rank() == 0:
            print(f"[tunesmith] saved to {result.output_dir}", flush=True)
        return 0
    reach_suites(cfg)  # an endpoint judge must answer before training, not only after it
    measure = has_measures(cfg)

    before = None
    if measure and cfg.eval.compare_base:
        print("[tunesmith] measuring the base model before training ...", flush=True)
        before = evaluate_model(cfg, cfg.model.name_or_path, stage)
    if cfg.training.nproc > 1:
        if config_path is None:
            from tunesmith.errors import ConfigError

            raise ConfigError(
                "training.nproc > 1 launches `tunesmith train CONFIG` processes: save the config to a file"
            )
        code = launch.launch_workers(cfg.training.nproc, config_path, overrides or [])
        if code != 0:
            print(
                f"tunesmith: error: the training processes failed (exit status {code}); see their messages above",
                file=sys.stderr,
            )
            return code if code in (2, 3) else 1
        output_dir = Path(cfg.output_dir)
    else:
        output_dir = run_stage(cfg).output_dir
        print(f"[tunesmith] saved to {output_dir}", flush=True)
    if not measure:
        return 0
    print("[tunesmith] measuring the fine-tuned model ...", flush=True)
    after = evaluate_model(cfg, str(output_dir), stage)
    if cfg.eval.judge:
        from tunesmith.eval.run import judge_results, replies_for_judge

        print("[tunesmith] judging the fine-tuned model's replies against the base model's ...", flush=True)
        baseline = before if before is not None else replies_for_judge(cfg, cfg.model.name_or_path, stage)
        after.update(judge_results(cfg, after, baseline, cfg.model.name_or_path))
    report = {"base": before, "fine_tuned": after}
    if before is not None and ("general_loss" in after or "general_qa_accuracy" in after):
        report["forgetting"] = forgetting_summary(before, after)
    (output_dir / "eval_results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    write_details(after, output_dir / "eval" / "fine_tuned")
    if before is not None:
        write_details(before, output_dir / "eval" / "base")
    html = write_report(
        [(f"{output_dir.name} (base)", before), (output_dir.name, after)]
        if before is not None
        else [(output_dir.name, after)],
        output_dir,
    )
    if before is not None:
        print("\n" + compare_table(before, after) + "\n")
        f = report.get("forgetting", {})
        if "general_perplexity_change" in f:
            print(
                f"[tunesmith] forgetting: general perplexity {f['general_perplexity_before']:.3f} -> "
                f"{f['general_perplexity_after']:.3f} ({f['general_perplexity_change']:+.1%})"
            )
        if "general_qa_change" in f:
            print(
                f"[tunesmith] forgetting: general QA {f['general_qa_correct_before']} -> "
                f"{f['general_qa_correct_after']} of {f['general_qa_total']} questions"
            )
        for warning in forgetting_warnings(f, cfg):
            print(f"[tunesmith] warning: {warning}", flush=True)
    print(f"[tunesmith] results in {output_dir}/eval_results.json and {html}; {stage.next_step(output_dir)}")
    return 0


def cmd_train(args) -> int:
    from tunesmith.config import load_config

    return train_and_compare(load_config(args.config, args.overrides), args.config, args.overrides)


def cmd_search(args) -> int:
    from tunesmith.search import results_table, run_search

    summary = run_search(args.config, args.overrides)
    out = Path(summary["output_dir"])
    print("\n" + results_table(summary) + "\n")
    print(
        f"[tunesmith] best {summary['metric']} {summary['best_value']:.4f} with {summary['best_params']}; "
        f"train it with: tunesmith train {out / 'best.yaml'}  (all results: {out / 'search_results.json'})"
    )
    return 0


def register(verbs) -> None:
    from tunesmith.config import describe_keys

    train = verbs.add_parser(
        "train",
        help="Fine-tune a model from a YAML config.",
        description="Fine-tune a model as CONFIG describes. Any key can be overridden on the command line "
        "with dotted KEY=VALUE pairs, e.g. `data.train=my.json output_dir=out/my training.epochs=2`.\n\n"
        "Teaching the model facts (a company's policies, a product's details)? Start from "
        "examples/demo_veltrano.yaml (5 epochs) or examples/knowledge_selfreplay.yaml (6 epochs, more facts learned): "
        "general prompts answered by the base model itself are replayed beside your rows "
        "(forgetting.replay_answers: model) and NEFTune noise is on (training.neftune_alpha: 5), so the model learns "
        "the facts and still answers everyday questions; forgetting.general_qa measures that before and after "
        "(docs/runtime.md, forgetting guard; figures in docs/benchmarks.md). Only a few questions per fact (say 3)? "
        "examples/knowledge_rewording.yaml adds a reworded copy of each question (data.augment: question_frames, "
        "word_dropout) and trains about as many steps as the demo.",
        epilog="config keys (YAML sections and dotted override names):\n" + describe_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("config", help="YAML config file.")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides.")
    train.set_defaults(func=cmd_train)

    search = verbs.add_parser(
        "search",
        help="Hyper-parameter search with Optuna over the config's `search.space`.",
        description="Run `search.trials` training runs with sampled config values; prune weak "
        "ones; write OUTPUT/best.yaml and OUTPUT/search_results.json.",
    )
    search.add_argument("config", help="YAML config file with a `search:` section.")
    search.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides.")
    search.set_defaults(func=cmd_search)
