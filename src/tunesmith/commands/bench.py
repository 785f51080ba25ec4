"""`tunesmith bench`: the speed benchmark (the same code as `python bench/sft_speed.py`)."""

from __future__ import annotations


def cmd_bench(args) -> int:
    import shlex

    from tunesmith.benchmark.driver import run_from_args

    return run_from_args(args, shlex.join(["tunesmith", *args.argv]))


def register(verbs) -> None:
    from tunesmith.benchmark.args import add_arguments

    bench = verbs.add_parser(
        "bench",
        help="Speed benchmark: one SFT job with tunesmith's defaults vs a plain transformers + PEFT baseline.",
        description="Train the same LoRA SFT job (synthetic rows of 30-600 tokens, equal tokens per step) as a plain "
        "transformers + PEFT baseline and with tunesmith, each in its own process and at a stated precision; print "
        "tokens/s (tokens counted in the batches each side trained, with and without padding), s/epoch, peak memory, "
        "final validation loss, generation speed (adapters merged) and the ratios to the baseline of the same "
        "precision, with the machine (CPU model and bf16 support, or GPU).",
    )
    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
