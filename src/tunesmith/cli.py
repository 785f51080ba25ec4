"""The `tunesmith` command: one verb per user task.

    tunesmith train CONFIG.yaml [key=value ...]   fine-tune (and compare with the base model)
    tunesmith search CONFIG.yaml                  hyper-parameter search (Optuna)
    tunesmith eval CONFIG.yaml [--model REF]      the stage's held-out metrics, QA accuracy -> JSON
    tunesmith chat --model REF                    streaming terminal chat (REF may be registry:NAME@ALIAS)
    tunesmith serve --model REF | --adapter ...   OpenAI-compatible API (loopback by default)
    tunesmith score MODEL --prompt P --reply R    reward of a reply (a model trained with stage: rm)
    tunesmith export MODEL --out DIR [--merge]    standalone model folder (adapters merged); --format gguf|onnx
    tunesmith registry register|list|show|compare|alias|rollback   versions on MLflow's model registry
    tunesmith adapters list|combine ...           sets of LoRA outputs of one base: list, weighted combine
    tunesmith data check|stats|preview|clean CONFIG_OR_FILES   validate / describe / show / clean data
    tunesmith bench                               speed: tunesmith vs plain transformers + PEFT
    tunesmith ui [--host H --auth USER:PW]        the web page: data, train, evaluate, chat, export

Errors caused by input (config, data, missing model) print one clear message and exit with 2.
Each verb lives in `tunesmith.commands`; this module is their table.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tunesmith import __version__
from tunesmith.commands import bench, data, evaluate, models, registry, train, ui
from tunesmith.errors import TunesmithError

VERB_GROUPS = (train, evaluate, models, registry, data, bench, ui)  # the order of `tunesmith --help`


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="[%(name)s] %(message)s")
    logging.getLogger("tunesmith").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunesmith", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Show library log messages.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for group in VERB_GROUPS:
        group.register(verbs)
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
