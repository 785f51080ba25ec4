"""The options of `tunesmith bench` (and `python bench/sft_speed.py`) and the variant names.

`tunesmith`'s CLI imports this module whenever it builds its parser, for every verb, so it
imports nothing but argparse: the benchmark itself lives in the package's other modules and
loads only when `tunesmith bench` runs.
"""

from __future__ import annotations

import argparse

VARIANTS = ("baseline", "tunesmith", "packed", "compiled", "checkpointing")
PRECISIONS = ("auto", "fp32", "bf16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=2000, help="Training rows (default 2000).")
    parser.add_argument("--val-rows", type=int, default=100, help="Held-out rows for the final validation loss.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument(
        "--max-steps",
        type=int,
        default=20,
        help="Stop each variant after N optimiser steps (-1: whole epochs; on a 2-core CPU one epoch of "
        "the baseline takes about 97 min).",
    )
    parser.add_argument(
        "--tokens-per-step",
        type=int,
        default=1024,
        help="Real tokens per optimiser step (mean); the baseline's padded fp32 batches need about "
        "13 GiB at 1024 and ran out of 24 GiB at 2048.",
    )
    parser.add_argument("--pack-length", type=int, default=1024, help="Pack length of the `packed` variant.")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--min-tokens", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=600)
    parser.add_argument(
        "--variants",
        default="baseline,tunesmith,packed",
        help=f"Comma-separated, from {', '.join(VARIANTS)} (compiled: tunesmith's defaults with "
        "training.compile=true; checkpointing: with training.gradient_checkpointing=true).",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: tunesmith's default (bf16 autocast where the CPU/GPU has native bf16, else fp32); "
        "the baseline runs fp32 and, where tunesmith runs bf16, bf16 too, so every tunesmith row has a "
        "baseline row at its precision. fp32 / bf16: every row at that precision.",
    )
    parser.add_argument(
        "--no-memory-probe",
        dest="memory_probe",
        action="store_false",
        help="Skip each row's one-step run on the epoch's largest batch (the longest rows), whose peak "
        "memory is the figure comparable between rows (the measured steps meet different batches).",
    )
    parser.add_argument("--gen-prompts", type=int, default=2, help="Validation prompts for the generation speed.")
    parser.add_argument("--gen-tokens", type=int, default=32, help="New tokens generated per prompt (greedy).")
    parser.add_argument("--model", default="default", help="Base model: 'default', a folder or a hub id.")
    parser.add_argument("--work", help="Keep data, logs and outputs here (default: a temporary folder).")
    parser.add_argument("--append", help="Append the result table to this markdown file (e.g. docs/benchmarks.md).")
