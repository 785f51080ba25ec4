"""The `tunesmith` command: one verb per user task.

    tunesmith train CONFIG.yaml [key=value ...]   fine-tune (and compare with the base model)
    tunesmith eval CONFIG.yaml [--model REF]      loss/perplexity and QA accuracy -> JSON
    tunesmith chat --model REF                    streaming terminal chat
    tunesmith score MODEL --prompt P --reply R    reward of a reply (a model trained with stage: rm)
    tunesmith data check PATH [PATH ...]          validate data files/folders (file:line:field errors)

Errors caused by input (config, data, missing model) print one clear message and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from tunesmith import __version__
from tunesmith.errors import TunesmithError

log = logging.getLogger("tunesmith")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="[%(name)s] %(message)s")
    logging.getLogger("tunesmith").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --- train ---------------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from tunesmith.config import load_config
    from tunesmith.eval import compare_table, evaluate_model
    from tunesmith.eval.qa import load_qa
    from tunesmith.stages import check_stage, run_stage

    cfg = load_config(args.config, args.overrides)
    check_stage(cfg)  # every input is read and validated before any model is loaded
    if cfg.eval.qa:
        load_qa(cfg.eval.qa)
    measure = bool(cfg.eval.qa or cfg.data.validation)

    before = None
    if measure and cfg.eval.compare_base:
        print("[tunesmith] measuring the base model before training ...", flush=True)
        before = evaluate_model(cfg, cfg.model.name_or_path)
    result = run_stage(cfg)
    print(f"[tunesmith] saved to {result.output_dir}", flush=True)
    if not measure:
        return 0
    print("[tunesmith] measuring the fine-tuned model ...", flush=True)
    after = evaluate_model(cfg, str(result.output_dir))
    report = {"base": before, "fine_tuned": after}
    (result.output_dir / "eval_results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if before is not None:
        print("\n" + compare_table(before, after) + "\n")
    use = (f"score replies with: tunesmith score {result.output_dir} --prompt ... --reply ..." if cfg.stage == "rm"
           else f"chat with: tunesmith chat --model {result.output_dir}")
    print(f"[tunesmith] results in {result.output_dir}/eval_results.json; {use}")
    return 0


# --- eval ------------------------------------------------------------------------------------------


def cmd_eval(args) -> int:
    from tunesmith.config import load_config
    from tunesmith.eval import evaluate_model

    cfg = load_config(args.config, args.overrides)
    model_ref = args.model or cfg.output_dir
    out = Path(args.output) if args.output else None
    if out is None and Path(model_ref).is_dir():
        out = Path(model_ref) / "eval.json"
    result = evaluate_model(cfg, model_ref, out)
    summary = {k: v for k, v in result.items() if k != "qa_details"}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if out:
        print(f"[tunesmith] full results in {out}")
    return 0


# --- chat ------------------------------------------------------------------------------------------


def cmd_chat(args) -> int:
    from tunesmith.models.loader import load_for_inference
    from tunesmith.serve.chat import chat_loop

    loaded = load_for_inference(args.model, args.cache_dir)
    system = args.system if args.system is not None else loaded.system
    chat_loop(loaded, system, args.max_new_tokens, args.temperature)
    return 0


# --- score -----------------------------------------------------------------------------------------


def cmd_score(args) -> int:
    from tunesmith.data.preference import load_scored_rows
    from tunesmith.errors import ConfigError
    from tunesmith.eval.reward import reward_scores
    from tunesmith.models.reward import load_reward_for_inference

    if bool(args.file) == bool(args.prompt is not None or args.reply):
        raise ConfigError("score: give either --prompt with one or more --reply, or --file ROWS.jsonl")
    if args.file is None and (args.prompt is None or not args.reply):
        raise ConfigError("score: --prompt and --reply go together (--reply may repeat to rank several replies)")
    loaded = load_reward_for_inference(args.model, args.cache_dir)  # refuses a model without a trained head
    system = args.system if args.system is not None else loaded.system
    if args.file:
        rows = load_scored_rows(args.file, system)
    else:
        prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": args.prompt}]
        rows = [{"messages": prompt + [{"role": "assistant", "content": reply}], "where": f"--reply {i + 1}"}
                for i, reply in enumerate(args.reply)]
    rewards = reward_scores(loaded.model, loaded.tokenizer, [r["messages"] for r in rows], args.batch_size)
    for row, reward in zip(rows, rewards):
        print(json.dumps({"where": row["where"], "reward": round(reward, 6)}, ensure_ascii=False))
    return 0


# --- data ------------------------------------------------------------------------------------------


def cmd_data_check(args) -> int:
    from tunesmith.data.formats import load_conversations
    from tunesmith.errors import ConfigError

    columns = {}
    for pair in args.column:
        canonical, sep, name = pair.partition("=")
        if not (sep and canonical and name):
            raise ConfigError(f"--column {pair}: expected CANONICAL=NAME, e.g. --column instruction=question")
        columns[canonical] = name
    conversations = load_conversations(args.files, args.format, columns=columns)
    turns = sum(sum(m["role"] == "assistant" for m in c.messages) for c in conversations)
    print(f"OK: {len(conversations)} rows, {turns} assistant turns in {len(args.files)} file(s)")
    return 0


# --- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from tunesmith.config import describe_keys

    parser = argparse.ArgumentParser(prog="tunesmith", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Show library log messages.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = verbs.add_parser(
        "train", help="Fine-tune a model from a YAML config.",
        description="Fine-tune a model as CONFIG describes. Any key can be overridden on the command line "
        "with dotted KEY=VALUE pairs, e.g. `data.train=my.json output_dir=out/my training.epochs=2`.",
        epilog="config keys (YAML sections and dotted override names):\n" + describe_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("config", help="YAML config file.")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides.")
    train.set_defaults(func=cmd_train)

    ev = verbs.add_parser("eval", help="Measure loss/perplexity and QA accuracy of a model.",
                          description="Evaluate the config's output_dir (or --model) on data.validation and eval.qa.")
    ev.add_argument("config", help="YAML config file (its data.validation and eval.qa are used).")
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides.")
    ev.add_argument("--model", help="Model to evaluate: an output folder, 'default', a folder or hub id.")
    ev.add_argument("--output", help="Where to write the JSON result (default: MODEL/eval.json for a folder).")
    ev.set_defaults(func=cmd_eval)

    chat = verbs.add_parser("chat", help="Chat with a model in the terminal (streaming).")
    chat.add_argument("--model", default="default", help="An output folder, 'default', a model folder or hub id.")
    chat.add_argument("--system", help="System prompt (default: the one the model was trained with).")
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy.")
    chat.add_argument("--cache-dir", help="Cache of the converted default model.")
    chat.set_defaults(func=cmd_chat)

    score = verbs.add_parser("score", help="Score replies with a reward model (trained with stage: rm).",
                             description="Print one JSON line {where, reward} per reply; higher is better.")
    score.add_argument("model", help="A reward-model output folder (stage: rm).")
    score.add_argument("--prompt", help="The user message.")
    score.add_argument("--reply", action="append", default=[], help="A reply to score (repeat to rank several).")
    score.add_argument("--file", nargs="+", help='JSONL/JSON files of {"prompt", "reply", "system"?} rows.')
    score.add_argument("--system", help="System prompt (default: the one the model was trained with).")
    score.add_argument("--batch-size", type=int, default=8)
    score.add_argument("--cache-dir", help="Cache of the converted default model.")
    score.set_defaults(func=cmd_score)

    data = verbs.add_parser("data", help="Data tools.")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    check = data_verbs.add_parser("check", help="Validate data files; every bad row is reported as file:line:field.")
    check.add_argument("files", nargs="+")
    check.add_argument("--format", default="auto", choices=["auto", "alpaca", "messages", "sharegpt"])
    check.add_argument("--column", action="append", default=[], metavar="CANONICAL=NAME",
                       help="Column mapping, e.g. --column instruction=question (repeatable).")
    check.set_defaults(func=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except TunesmithError as exc:
        print(f"tunesmith: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunesmith: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
