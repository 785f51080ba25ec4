"""`tunesmith data check|stats|preview|clean`: validate, describe, show and clean training data."""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    raw = {
        "stage": args.stage,
        "output_dir": "-",
        "model": {"name_or_path": args.model},
        "data": {"train": args.inputs, "format": args.format, "columns": columns, "max_length": args.max_length},
    }
    return validate_config(apply_overrides(raw, args.set), {}, "command line")


def _token_sets(cfg, verb: str):
    """The tokenised training (with forgetting.replay rows mixed in, as training sees them) and
    validation sets, and the files the replay rows come from."""
    from tunesmith.data.readers import data_files
    from tunesmith.data.sources import resolve_sources
    from tunesmith.stages.lifecycle import load_run_tokenizer
    from tunesmith.stages.token_recipe import token_splits

    stage = _token_stage(cfg, verb)
    _, tokenizer = load_run_tokenizer(cfg, stage.data_kind == "text")
    train, val = token_splits(cfg, tokenizer, stage.data_kind, replay=stage.replay)
    replay_files = (
        {
            str(f)
            for source in resolve_sources(cfg.forgetting.replay, cfg.data.registry, "forgetting.replay")
            for path in source.paths
            for f in data_files(path)
        }
        if cfg.forgetting.replay
        else None
    )
    return tokenizer, {"train": train, **({"validation": val} if val else {})}, replay_files


def _token_stage(cfg, verb: str):
    """The config's stage record, which must read rows tunesmith tokenises (chat or text)."""
    from tunesmith.errors import ConfigError
    from tunesmith.stages.registry import STAGES, get_stage

    stage = get_stage(cfg.stage)
    if stage.data_kind not in ("chat", "text"):
        able = ", ".join(s.name for s in STAGES.values() if s.data_kind in ("chat", "text"))
        raise ConfigError(
            f"data {verb}: stage `{stage.name}` reads {stage.reads}, which its trainer tokenises; "
            f"`data {verb}` works on tokenised data (stages {able}). `tunesmith data check` validates "
            f"{stage.name} data"
        )
    return stage


def cmd_data_check(args) -> int:
    from tunesmith.data.report import describe
    from tunesmith.data.row_errors import listing
    from tunesmith.stages.registry import check_data_options, get_stage

    cfg = _data_config(args)
    stage = get_stage(cfg.stage)
    check_data_options(cfg, stage)
    stage.check(cfg)  # every row read and validated as the run will (its options, policies, over-length)
    if stage.data_kind not in ("chat", "text"):
        print(f"OK: {cfg.stage} data in {', '.join(cfg.data.train + cfg.data.validation)} is valid ({stage.reads})")
        return 0
    _, sets, replay_files = _token_sets(cfg, "check")
    for name, data in sets.items():
        print(describe(name, data, cfg.data.max_length, replay_files if name == "train" else None)[1])
        if data.rejects.messages():
            print(listing([f"rejected {entry}" for entry in data.rejects.messages()]))
    if stage.describe_data:
        for line in stage.describe_data(cfg, sets["train"], sets.get("validation")):
            print(line)
    print("OK")
    return 0


def cmd_data_stats(args) -> int:
    from tunesmith.data.report import describe, length_histogram

    cfg = _data_config(args)
    _, sets, replay_files = _token_sets(cfg, "stats")
    report = {}
    for name, data in sets.items():
        report[name], text = describe(name, data, cfg.data.max_length, replay_files if name == "train" else None)
        print(text)
    png = length_histogram(sets, Path(args.out), cfg.data.max_length)
    Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"[tunesmith] length histogram: {png}; numbers: {Path(args.out).with_suffix('.json')}")
    return 0


def cmd_data_clean(args) -> int:
    from tunesmith.config.data import CleanConfig
    from tunesmith.data.clean import clean_sources
    from tunesmith.data.sources import resolve_sources

    cfg = _data_config(args)
    text = _token_stage(cfg, "clean").data_kind == "text"
    sources = resolve_sources(cfg.data.train, cfg.data.registry, "train")
    kept, report = clean_sources(
        sources, cfg.data.clean or CleanConfig(), text, cfg.data.format, cfg.data.columns
    )  # whole rows, only their text cleaned
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
    tokenizer, sets, _ = _token_sets(cfg, "preview")
    rows = sets["train"].rows
    picks = random.Random(args.seed).sample(range(len(rows)), min(args.n, len(rows)))
    color = sys.stdout.isatty() and not args.no_color
    for i in picks:
        row = rows[i]
        print(
            f"--- {row.where}: {len(row.input_ids)} tokens, {row.trained_tokens} trained "
            f"({'green' if color else 'inside ⟦ ⟧'}) ---"
        )
        print(render_trained(tokenizer, row, color))
    return 0


def register(verbs) -> None:
    from tunesmith.config.stages import STAGE_NAMES

    data = verbs.add_parser("data", help="Data tools: check, stats, preview, clean.")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")

    def data_inputs(p):
        p.add_argument(
            "inputs",
            nargs="+",
            metavar="CONFIG_OR_FILES",
            help="A training YAML (its data section is used) or data files/folders.",
        )
        p.add_argument(
            "--stage",
            default="sft",
            choices=list(STAGE_NAMES),
            help="Which stage the files are for (not with a YAML): how they are read and checked; mtl "
            "also checks every row's task and counts rows per task.",
        )
        p.add_argument(
            "--format",
            default="auto",
            choices=["auto", "alpaca", "messages", "sharegpt", "multitask", "prompt_completion"],
        )
        p.add_argument(
            "--column",
            action="append",
            default=[],
            metavar="CANONICAL=NAME",
            help="Column mapping, e.g. --column instruction=question (repeatable).",
        )
        p.add_argument("--model", default="default", help="Whose tokenizer and chat template to use (not with a YAML).")
        p.add_argument("--max-length", type=int, default=1024, help="data.max_length (not with a YAML).")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Config override, e.g. --set data.overlength=error (repeatable).",
        )

    check = data_verbs.add_parser(
        "check", help="Validate and tokenise data; every bad row is reported as file:line:field."
    )
    data_inputs(check)
    check.set_defaults(func=cmd_data_check)
    stats = data_verbs.add_parser("stats", help="Counts, token-length percentiles, per-source totals, histogram PNG.")
    data_inputs(stats)
    stats.add_argument("--out", default="data_stats.png", help="Histogram PNG (numbers go beside it as .json).")
    stats.set_defaults(func=cmd_data_stats)
    clean = data_verbs.add_parser(
        "clean", help="Normalise, dedup (exact + MinHash), filter; write a cleaned JSONL and a report."
    )
    data_inputs(clean)
    clean.add_argument("--out", required=True, help="Cleaned JSONL (messages rows, or text rows for --stage pt).")
    clean.set_defaults(func=cmd_data_clean)
    preview = data_verbs.add_parser("preview", help="Show rendered rows with the trained tokens marked.")
    data_inputs(preview)
    preview.add_argument("-n", type=int, default=2, help="Rows to show.")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--no-color", action="store_true", help="Mark trained tokens with ⟦ ⟧ even on a terminal.")
    preview.set_defaults(func=cmd_data_preview)
