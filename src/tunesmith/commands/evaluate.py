"""`tunesmith eval`: measure a model (an output, the base, any model folder) as a config describes."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_eval(args) -> int:
    from tunesmith.config import load_config
    from tunesmith.eval import evaluate_model
    from tunesmith.eval.suites import summary, write_details
    from tunesmith.stages.registry import get_stage

    cfg = load_config(args.config, args.overrides)
    model_ref = args.model or cfg.output_dir
    out = Path(args.output) if args.output else None
    if out is None and Path(model_ref).is_dir():
        out = Path(model_ref) / "eval.json"
    result = evaluate_model(cfg, model_ref, get_stage(cfg.stage), out)
    print(json.dumps(summary(result), indent=2, ensure_ascii=False))
    if out:
        written = write_details(result, out.parent)
        print(f"[tunesmith] full results in {out}" + "".join(f", {p}" for p in written))
    return 0


def register(verbs) -> None:
    ev = verbs.add_parser("eval", help="Measure a model: the stage's held-out metrics, QA accuracy, general loss.",
                          description="Evaluate the config's output_dir (or --model) on its held-out data "
                          "(data.validation or data.val_split: loss/perplexity, preference margins, reward ...), "
                          "eval.qa and forgetting.general_eval.")
    ev.add_argument("config", help="YAML config file (its data.validation and eval.qa are used).")
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides.")
    ev.add_argument("--model", help="Model to evaluate: an output folder, 'default', a folder or hub id.")
    ev.add_argument("--output", help="Where to write the JSON result (default: MODEL/eval.json for a folder).")
    ev.set_defaults(func=cmd_eval)
