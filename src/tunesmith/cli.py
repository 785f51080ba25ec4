"""The `tunesmith` command: one verb per user task.

    tunesmith train CONFIG.yaml [key=value ...]   fine-tune (and compare with the base model)
    tunesmith eval CONFIG.yaml [--model REF]      loss/perplexity and QA accuracy -> JSON
    tunesmith chat --model REF                    streaming terminal chat
    tunesmith export MODEL --out DIR [--merge]    standalone model folder (adapters merged)
    tunesmith adapters list|combine ...           several adapters of one base: list, weighted combine
    tunesmith serve --model REF | --adapter ...   OpenAI-compatible API (loopback by default)
    tunesmith score MODEL --prompt P --reply R    reward of a reply (a model trained with stage: rm)
    tunesmith search CONFIG.yaml                  hyper-parameter search (Optuna)
    tunesmith data check|stats|preview|clean CONFIG_OR_FILES   validate / describe / show / clean data

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
    from tunesmith.eval.general import forgetting_summary
    from tunesmith.eval.qa import load_qa
    from tunesmith.stages import check_stage, run_stage

    from tunesmith.runtime import launch

    cfg = load_config(args.config, args.overrides)
    check_stage(cfg)  # every input is read and validated before any model is loaded
    if launch.under_launcher():  # a training process of a multi-process run: train only
        result = run_stage(cfg)
        if launch.rank() == 0:
            print(f"[tunesmith] saved to {result.output_dir}", flush=True)
        return 0
    if cfg.eval.qa:
        load_qa(cfg.eval.qa)
    measure = bool(cfg.eval.qa or cfg.data.validation or cfg.data.val_split or cfg.forgetting.general_eval)

    before = None
    if measure and cfg.eval.compare_base:
        print("[tunesmith] measuring the base model before training ...", flush=True)
        before = evaluate_model(cfg, cfg.model.name_or_path)
    if cfg.training.nproc > 1:
        code = launch.launch_workers(cfg.training.nproc, args.config, args.overrides)
        if code != 0:
            print(f"tunesmith: error: the training processes failed (exit status {code}); see their messages above",
                  file=sys.stderr)
            return code if code in (2, 3) else 1
        output_dir = Path(cfg.output_dir)
    else:
        output_dir = run_stage(cfg).output_dir
        print(f"[tunesmith] saved to {output_dir}", flush=True)
    if not measure:
        return 0
    print("[tunesmith] measuring the fine-tuned model ...", flush=True)
    after = evaluate_model(cfg, str(output_dir))
    report = {"base": before, "fine_tuned": after}
    if before is not None and "general_loss" in after:
        report["forgetting"] = forgetting_summary(before, after)
    (output_dir / "eval_results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if before is not None:
        print("\n" + compare_table(before, after) + "\n")
        if "forgetting" in report:
            f = report["forgetting"]
            print(f"[tunesmith] forgetting: general perplexity {f['general_perplexity_before']:.3f} -> "
                  f"{f['general_perplexity_after']:.3f} ({f['general_perplexity_change']:+.1%})")
    use = (f"score replies with: tunesmith score {output_dir} --prompt ... --reply ..." if cfg.stage == "rm"
           else f"chat with: tunesmith chat --model {output_dir}")
    print(f"[tunesmith] results in {output_dir}/eval_results.json; {use}")
    return 0


def cmd_search(args) -> int:
    from tunesmith.search import results_table, run_search

    summary = run_search(args.config, args.overrides)
    out = Path(summary["output_dir"])
    print("\n" + results_table(summary) + "\n")
    print(f"[tunesmith] best {summary['metric']} {summary['best_value']:.4f} with {summary['best_params']}; "
          f"train it with: tunesmith train {out / 'best.yaml'}  (all results: {out / 'search_results.json'})")
    return 0


def cmd_bench(args) -> int:
    from tunesmith.bench import run_from_args

    import shlex

    return run_from_args(args, shlex.join(["tunesmith", *args.argv]))


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
    from tunesmith.serve.chat import chat_loop

    if args.adapter:
        from tunesmith.errors import ConfigError
        from tunesmith.models.adapters import AdapterSet, parse_named

        if args.model != "default":
            raise ConfigError("chat: --adapter loads the adapters' own base model; leave out --model")
        adapters = AdapterSet(parse_named(args.adapter), args.cache_dir)
        chat_loop(None, args.system, args.max_new_tokens, args.temperature, adapters=adapters)
        return 0
    from tunesmith.models.loader import load_for_inference

    loaded = load_for_inference(args.model, args.cache_dir)
    chat_loop(loaded, args.system, args.max_new_tokens, args.temperature)
    return 0


# --- serve -----------------------------------------------------------------------------------------


def cmd_serve(args) -> int:
    from tunesmith.errors import ConfigError
    from tunesmith.serve.api import ModelHost, serve

    api_key = args.api_key or os.environ.get("TUNESMITH_API_KEY") or None
    if args.adapter:
        from tunesmith.models.adapters import AdapterSet, parse_named

        if args.model != "default":
            raise ConfigError("serve: --adapter loads the adapters' own base model; leave out --model")
        host = ModelHost(adapters=AdapterSet(parse_named(args.adapter), args.cache_dir))
    else:
        from tunesmith.models.loader import load_for_inference

        loaded = load_for_inference(args.model, args.cache_dir)
        host = ModelHost(loaded, args.name or ("default" if args.model == "default" else Path(args.model).name))
    serve(host, args.host, args.port, api_key, args.max_tokens)
    return 0


# --- adapters --------------------------------------------------------------------------------------


def cmd_adapters_list(args) -> int:
    from tunesmith.models.adapters import adapters_table, find_adapters

    found = find_adapters(args.roots)
    if args.json:
        print(json.dumps([a.row() for a in found], indent=2, ensure_ascii=False))
    else:
        print(adapters_table(found))
    return 0


def cmd_adapters_combine(args) -> int:
    from tunesmith.export import combine_adapters
    from tunesmith.models.adapters import parse_weighted

    out = combine_adapters(parse_weighted(args.adapter), args.out, args.combination, args.density, args.rank,
                           args.cache_dir, args.overwrite)
    print(f"[tunesmith] combined adapter written to {out}; chat with: tunesmith chat --model {out}")
    return 0


# --- export ----------------------------------------------------------------------------------------


def cmd_export(args) -> int:
    from tunesmith.export import export_model

    out = export_model(args.model, args.out, merge=args.merge, cache_dir=args.cache_dir, overwrite=args.overwrite)
    print(f"[tunesmith] standalone model written to {out}")
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


def _data_config(args):
    """A config for the data tools: the YAML given, or one built from files and options."""
    from tunesmith.config import apply_overrides, load_config, validate_config
    from tunesmith.errors import ConfigError

    if len(args.inputs) == 1 and args.inputs[0].endswith((".yaml", ".yml")):
        return load_config(args.inputs[0], args.set)
    columns = {}
    for pair in args.column:
        canonical, sep, name = pair.partition("=")
        if not (sep and canonical and name):
            raise ConfigError(f"--column {pair}: expected CANONICAL=NAME, e.g. --column instruction=question")
        columns[canonical] = name
    raw = {"stage": args.stage, "output_dir": "-", "model": {"name_or_path": args.model},
           "data": {"train": args.inputs, "format": args.format, "columns": columns, "max_length": args.max_length}}
    return validate_config(apply_overrides(raw, args.set), {}, "command line")


def _token_sets(cfg):
    """The tokenised training (with forgetting.replay rows mixed in, as training sees them) and
    validation sets, and the files the replay rows come from."""
    from tunesmith.data.dataset import build_splits
    from tunesmith.data.readers import data_files
    from tunesmith.data.sources import resolve_sources
    from tunesmith.models.default import cache_root
    from tunesmith.stages.common import load_run_tokenizer

    _, tokenizer = load_run_tokenizer(cfg)
    kind = "text" if cfg.stage == "pt" else "chat"
    train, val = build_splits(tokenizer, cfg.data, kind, cfg.training.seed, cache_root(cfg.model.cache_dir),
                              cfg.forgetting.replay, cfg.forgetting.replay_ratio)
    replay_files = {str(f) for source in resolve_sources(cfg.forgetting.replay, cfg.data.registry, "forgetting.replay")
                    for path in source.paths for f in data_files(path)} if cfg.forgetting.replay else None
    return tokenizer, {"train": train, **({"validation": val} if val else {})}, replay_files


def cmd_data_check(args) -> int:
    from collections import Counter

    from tunesmith.data.report import describe
    from tunesmith.stages import check_stage

    cfg = _data_config(args)
    if cfg.stage not in ("sft", "pt", "mtl"):
        check_stage(cfg)  # preference/KTO data: validated row by row
        print(f"OK: {cfg.stage} data in {', '.join(cfg.data.train + cfg.data.validation)} is valid")
        return 0
    if cfg.stage == "mtl":
        from tunesmith.stages import mtl

        mtl.check_options(cfg)
    _, sets, replay_files = _token_sets(cfg)
    if cfg.stage == "mtl":  # every row has a task, validation tasks occur in training, at least two tasks
        tasks = mtl.task_names(cfg, sets["train"], sets.get("validation"))
    for name, data in sets.items():
        print(describe(name, data, cfg.data.max_length, replay_files if name == "train" else None)[1])
        if cfg.stage == "mtl":
            counts = Counter(r.task for r in data.rows)
            print("  tasks: " + ", ".join(f"{t}: {counts[t]} rows" for t in tasks))
        for entry in data.rejects.messages()[:20]:
            print(f"  rejected {entry}")
    print("OK")
    return 0


def cmd_data_stats(args) -> int:
    from tunesmith.data.report import describe, length_histogram

    cfg = _data_config(args)
    _, sets, replay_files = _token_sets(cfg)
    report = {}
    for name, data in sets.items():
        report[name], text = describe(name, data, cfg.data.max_length, replay_files if name == "train" else None)
        print(text)
    png = length_histogram(sets, Path(args.out), cfg.data.max_length)
    Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"[tunesmith] length histogram: {png}; numbers: {Path(args.out).with_suffix('.json')}")
    return 0


def cmd_data_clean(args) -> int:
    from tunesmith.config.schema import CleanConfig
    from tunesmith.data.clean import clean_sources
    from tunesmith.data.sources import resolve_sources

    cfg = _data_config(args)
    sources = resolve_sources(cfg.data.train, cfg.data.registry, "train")
    kept, report = clean_sources(sources, cfg.data.clean or CleanConfig(), cfg.stage == "pt", cfg.data.format,
                                 cfg.data.columns)  # whole rows, only their text cleaned
    lines = [json.dumps(row, ensure_ascii=False) for row in kept]
    out = Path(args.out)
    scratch = out.with_name(f".{out.name}.tmp")
    scratch.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    scratch.replace(out)  # never a half-written output under the real name
    out.with_suffix(".report.json").write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    print(f"{report.summary()}\nwrote {out} ({len(lines)} rows) and {out.with_suffix('.report.json')}")
    return 0


def cmd_data_preview(args) -> int:
    import random

    from tunesmith.data.report import render_trained

    cfg = _data_config(args)
    tokenizer, sets, _ = _token_sets(cfg)
    rows = sets["train"].rows
    picks = random.Random(args.seed).sample(range(len(rows)), min(args.n, len(rows)))
    color = sys.stdout.isatty() and not args.no_color
    for i in picks:
        row = rows[i]
        print(f"--- {row.where}: {len(row.input_ids)} tokens, {row.trained_tokens} trained "
              f"({'green' if color else 'inside ⟦ ⟧'}) ---")
        print(render_trained(tokenizer, row, color))
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

    search = verbs.add_parser("search", help="Hyper-parameter search with Optuna over the config's `search.space`.",
                              description="Run `search.trials` training runs with sampled config values; prune weak "
                              "ones; write OUTPUT/best.yaml and OUTPUT/search_results.json.")
    search.add_argument("config", help="YAML config file with a `search:` section.")
    search.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides.")
    search.set_defaults(func=cmd_search)

    bench = verbs.add_parser(
        "bench", help="Speed benchmark: one SFT job with tunesmith's defaults vs a plain transformers + PEFT baseline.",
        description="Train the same LoRA SFT job (synthetic rows of 30-600 tokens, equal tokens per step) as a plain "
        "transformers + PEFT baseline and with tunesmith, each in its own process; print tokens/s, s/epoch, peak "
        "memory, final validation loss and the ratios to the baseline.")
    from tunesmith.bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)

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
    chat.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                      help="Load this LoRA-family output beside others on their shared base (repeatable); "
                           "/adapter NAME switches between them per turn.")
    chat.set_defaults(func=cmd_chat)

    srv = verbs.add_parser("serve", help="OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions).",
                           description="Serve a model, or several adapters of one base (the request's `model` picks "
                           "one), with the OpenAI API. Listens on 127.0.0.1 unless --host says otherwise.")
    srv.add_argument("--model", default="default", help="An output folder, 'default', a model folder or hub id.")
    srv.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                     help="Serve this LoRA-family output under NAME beside others on their shared base (repeatable).")
    srv.add_argument("--name", help="The model name clients send (default: the folder name, or 'default').")
    srv.add_argument("--host", default="127.0.0.1", help="Address to listen on (another than loopback needs --api-key).")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--api-key", help="Require `Authorization: Bearer KEY` (default: $TUNESMITH_API_KEY, else none).")
    srv.add_argument("--max-tokens", type=int, default=1024, help="The most new tokens one request may ask for.")
    srv.add_argument("--cache-dir", help="Cache of the converted default model.")
    srv.set_defaults(func=cmd_serve)

    adapters = verbs.add_parser("adapters", help="Several adapters of one base: list them, combine them by weight.")
    adapter_verbs = adapters.add_subparsers(dest="adapters_verb", metavar="VERB", required=True)
    listing = adapter_verbs.add_parser("list", help="Finished outputs in (or directly under) folders, with kind, "
                                                    "base, rank, size and metrics.")
    listing.add_argument("roots", nargs="*", default=["out"], help="Folders to look in (default: out).")
    listing.add_argument("--json", action="store_true", help="Print JSON rows instead of a table.")
    listing.set_defaults(func=cmd_adapters_list)
    combine = adapter_verbs.add_parser("combine", help="Write one adapter that is a weighted combination of several "
                                                       "LoRA adapters of the same base.")
    combine.add_argument("out", help="Output folder (written as OUT.partial, then renamed).")
    combine.add_argument("--adapter", action="append", required=True, metavar="PATH[:WEIGHT]",
                         help="An adapter output and its weight (default 1); repeat for each.")
    combine.add_argument("--combination", default="cat",
                         help="cat (exact weighted sum; rank = sum of ranks), svd (the same sum at --rank), linear, "
                              "ties, dare_linear, dare_ties, magnitude_prune (with --density), or their _svd forms.")
    combine.add_argument("--density", type=float, help="Fraction of each delta kept by the pruning combinations.")
    combine.add_argument("--rank", type=int, help="Rank of an svd combination (default: the largest input rank).")
    combine.add_argument("--overwrite", action="store_true", help="Replace an existing OUT.")
    combine.add_argument("--cache-dir", help="Cache of the converted default model.")
    combine.set_defaults(func=cmd_adapters_combine)

    export = verbs.add_parser("export", help="Write a standalone model folder (adapters merged into the base).",
                              description="Merge a LoRA/DoRA/PiSSA output into plain base weights (--merge), or "
                              "re-save a full/freeze output, as a transformers folder with tokenizer and manifest.")
    export.add_argument("model", help="A finished output folder (or any model folder).")
    export.add_argument("--out", required=True, help="Folder to write (written as OUT.partial, then renamed).")
    export.add_argument("--merge", action="store_true", help="Fold LoRA-family adapters into a copy of the base weights.")
    export.add_argument("--overwrite", action="store_true", help="Replace an existing OUT.")
    export.add_argument("--cache-dir", help="Cache of the converted default model.")
    export.set_defaults(func=cmd_export)

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

    data = verbs.add_parser("data", help="Data tools: check, stats, preview, clean.")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")

    def data_inputs(p):
        p.add_argument("inputs", nargs="+", metavar="CONFIG_OR_FILES",
                       help="A training YAML (its data section is used) or data files/folders.")
        p.add_argument("--stage", default="sft", choices=["sft", "pt", "mtl", "dpo", "kto"],
                       help="How to read files (not with a YAML); mtl also checks every row's task and counts rows per task.")
        p.add_argument("--format", default="auto", choices=["auto", "alpaca", "messages", "sharegpt", "multitask"])
        p.add_argument("--column", action="append", default=[], metavar="CANONICAL=NAME",
                       help="Column mapping, e.g. --column instruction=question (repeatable).")
        p.add_argument("--model", default="default", help="Whose tokenizer and chat template to use (not with a YAML).")
        p.add_argument("--max-length", type=int, default=1024, help="data.max_length (not with a YAML).")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="Config override, e.g. --set data.overlength=error (repeatable).")

    check = data_verbs.add_parser("check", help="Validate and tokenise data; every bad row is reported as file:line:field.")
    data_inputs(check)
    check.set_defaults(func=cmd_data_check)
    stats = data_verbs.add_parser("stats", help="Counts, token-length percentiles, per-source totals, histogram PNG.")
    data_inputs(stats)
    stats.add_argument("--out", default="data_stats.png", help="Histogram PNG (numbers go beside it as .json).")
    stats.set_defaults(func=cmd_data_stats)
    clean = data_verbs.add_parser("clean", help="Normalise, dedup (exact + MinHash), filter; write a cleaned JSONL and a report.")
    data_inputs(clean)
    clean.add_argument("--out", required=True, help="Cleaned JSONL (messages rows, or text rows for --stage pt).")
    clean.set_defaults(func=cmd_data_clean)
    preview = data_verbs.add_parser("preview", help="Show rendered rows with the trained tokens marked.")
    data_inputs(preview)
    preview.add_argument("-n", type=int, default=2, help="Rows to show.")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--no-color", action="store_true", help="Mark trained tokens with ⟦ ⟧ even on a terminal.")
    preview.set_defaults(func=cmd_data_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for reports
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except TunesmithError as exc:
        print(f"tunesmith: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("tunesmith: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
