"""The benchmark's driver: writes the job, runs each variant in a fresh process, summarises the
results against the baseline, prints the table and appends it as markdown.

    tunesmith bench [options]            python bench/sft_speed.py [options]
    python -m tunesmith.benchmark --child VARIANT SPEC OUT   (one variant's process; the driver runs it)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from tunesmith.benchmark.args import VARIANTS, add_arguments
from tunesmith.benchmark.baseline import run_baseline
from tunesmith.benchmark.flops import add_mfu, model_shape
from tunesmith.benchmark.jobs import describe_job, token_facts, write_job, write_largest_batch
from tunesmith.benchmark.machine import machine
from tunesmith.benchmark.report import markdown, plan_rows, row_name, summarise
from tunesmith.benchmark.variants import precision_label, run_tunesmith


def run_child(variant: str, spec: dict) -> dict:
    return run_baseline(spec) if variant == "baseline" else run_tunesmith(spec, variant)


# --- one process per row ------------------------------------------------------------------------


def _child(variant: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = run_child(variant, spec)
    Path(out_path).write_text(json.dumps(result))


def _in_child(variant: str, spec: dict, folder: Path, what: str, hint: str = "") -> dict:
    """Run `variant` on `spec` in a fresh Python process (its log in folder/log.txt); its JSON result
    comes back through a file."""
    spec_path, out_path = folder / "spec.json", folder / "result.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    code = subprocess.call(
        [sys.executable, "-m", "tunesmith.benchmark", "--child", variant, str(spec_path), str(out_path)],
        stdout=open(folder / "log.txt", "w"),
        stderr=subprocess.STDOUT,
    )
    if code != 0 or not out_path.is_file():
        tail = (folder / "log.txt").read_text()[-3000:]
        raise RuntimeError(
            f"bench variant {variant}{what} failed (exit {code}{hint}); end of {folder / 'log.txt'}:\n{tail}"
        )
    return json.loads(out_path.read_text())


def run_variant(variant: str, precision: str, spec: dict, work: Path) -> dict:
    """Run one variant at one precision setting in a fresh Python process."""
    folder = work / row_name(variant, precision)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "work": str(folder), "precision": precision}
    print(f"[bench] {variant} ({precision}): training ...", flush=True)
    result = {"variant": variant, **_in_child(variant, spec, folder, "")}
    if spec.get("memory_probe"):
        result.update(largest_batch_memory(variant, spec, folder, result))
    # the tokens counted in the batches the Trainer trained (tokens.TokenCounter), over its train_runtime
    result["tokens_per_second"] = result["real_tokens_trained"] / result["train_seconds"]
    result["computed_tokens_per_second"] = result["computed_tokens"] / result["train_seconds"]
    print(
        f"[bench] {variant} ({result['precision']}): {result['tokens_per_second']:.0f} tokens/s, "
        f"val loss {result['val_loss']:.4f}",
        flush=True,
    )
    return result


def largest_batch_memory(variant: str, spec: dict, folder: Path, result: dict) -> dict:
    """Peak memory of one step on the epoch's largest batch (jobs.write_largest_batch), in a fresh
    process: the figure comparable between rows. A packed row's batches are all packs of
    `pack_length` tokens, so its measured peak is already its largest batch's."""
    if variant == "packed":
        return {"largest_batch_peak_memory_mb": result["peak_memory_mb"], "largest_batch_computed_tokens": None}
    probe = folder / "largest_batch"
    probe.mkdir(exist_ok=True)
    spec = {**spec, "work": str(probe), "train": spec["largest_batch"], "max_steps": 1, "epochs": 1.0, "probe": True}
    print(
        f"[bench] {variant}: one step on the largest batch ({spec['largest_batch_positions']} positions) ...",
        flush=True,
    )
    found = _in_child(
        variant, spec, probe, "'s largest-batch step", "; -9 is often out of memory: --no-memory-probe skips it"
    )
    return {
        "largest_batch_peak_memory_mb": found["peak_memory_mb"],
        "largest_batch_computed_tokens": found["computed_tokens"],
    }


def tunesmith_auto_precision(model: str) -> str:
    """What tunesmith's `training.mixed_precision: auto` resolves to on this machine (fp32 or bf16)."""
    from tunesmith.models.loader import pick_device, pick_dtype
    from tunesmith.runtime.precision import resolve_precision

    return precision_label(resolve_precision("auto", pick_dtype("auto", pick_device())))


# --- the whole benchmark ---------------------------------------------------------------------------


def run_bench(
    rows: int = 2000,
    val_rows: int = 100,
    epochs: float = 1.0,
    max_steps: int = 20,
    tokens_per_step: int = 1024,
    pack_length: int = 1024,
    learning_rate: float = 2e-4,
    variants: tuple[str, ...] = VARIANTS[:3],
    precision: str = "auto",
    model: str = "default",
    seed: int = 0,
    min_tokens: int = 30,
    max_tokens: int = 600,
    work: Path | None = None,
    gen_prompts: int = 2,
    gen_tokens: int = 32,
    memory_probe: bool = True,
) -> dict:
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="tunesmith-bench-")) if owned else Path(work)
    spec = {
        "rows": rows,
        "val_rows": val_rows,
        "epochs": epochs,
        "max_steps": max_steps,
        "seed": seed,
        "tokens_per_step": tokens_per_step,
        "pack_length": pack_length,
        "learning_rate": learning_rate,
        "model": model,
        "max_length": max(pack_length, max_tokens + 64),
        "gen_prompts": gen_prompts,
        "gen_tokens": gen_tokens,
    }
    spec.update(write_job(work / "data", rows, val_rows, seed, min_tokens, max_tokens))
    spec.update(token_facts(spec))
    spec.update(model_shape(spec["model"]))
    spec["batch_rows"] = max(1, round(tokens_per_step / spec["mean_tokens"]))
    spec["batch_packs"] = max(1, round(tokens_per_step / pack_length))
    spec["memory_probe"] = memory_probe
    if memory_probe:
        spec.update(write_largest_batch(spec, work / "data"))
    del spec["row_tokens"]
    facts = machine()
    print(f"[bench] machine: {facts['label']}", flush=True)
    if precision == "bf16" and not facts["gpu"] and not facts["cpu_native_bf16"]:
        print(
            "[bench] warning: --precision bf16 on a CPU without native bf16 runs emulated bf16 (far slower than "
            "fp32) on every side; the figures say little about either. --precision auto (fp32 here) is the "
            "useful run.",
            flush=True,
        )
    print(f"[bench] job: {describe_job(spec)}", flush=True)
    spec["precision_asked"] = precision
    results = {}
    for variant, setting in plan_rows(variants, precision, tunesmith_auto_precision(model)):
        result = run_variant(variant, setting, spec, work)
        results[row_name(variant, result["precision"])] = result
    summarise(results)
    add_mfu(results, spec)
    summary = {
        "date": date.today().isoformat(),
        "machine": facts,
        "job": describe_job(spec),
        "spec": spec,
        "results": results,
        "work": str(work),
    }
    (work / "bench.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    import tunesmith.benchmark

    parser = argparse.ArgumentParser(prog="tunesmith bench", description=tunesmith.benchmark.__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    import shlex

    return run_from_args(args, "python bench/sft_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv))


def run_from_args(args, command: str) -> int:
    from tunesmith.errors import ConfigError

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(
            f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}"
        )
    if args.rows < 1 or args.val_rows < 1:
        raise ConfigError("--rows and --val-rows must be at least 1")
    if not 1 <= args.min_tokens < args.max_tokens:
        raise ConfigError("--min-tokens must be at least 1 and below --max-tokens")
    if args.pack_length < args.max_tokens + 64 and "packed" in variants:
        raise ConfigError(
            f"--pack-length {args.pack_length} must hold the longest row: at least --max-tokens + 64 "
            f"= {args.max_tokens + 64}"
        )
    summary = run_bench(
        rows=args.rows,
        val_rows=args.val_rows,
        epochs=args.epochs,
        max_steps=args.max_steps,
        tokens_per_step=args.tokens_per_step,
        pack_length=args.pack_length,
        learning_rate=args.learning_rate,
        variants=variants,
        precision=args.precision,
        model=args.model,
        min_tokens=args.min_tokens,
        max_tokens=args.max_tokens,
        gen_prompts=args.gen_prompts,
        gen_tokens=args.gen_tokens,
        memory_probe=args.memory_probe,
        work=Path(args.work) if args.work else None,
    )
    text = markdown(summary, command)
    print(text)
    print(
        json.dumps(
            {
                v: {k: (round(x, 4) if isinstance(x, float) else x) for k, x in r.items()}
                for v, r in summary["results"].items()
            },
            indent=2,
        )
    )
    if args.append:
        with open(args.append, "a", encoding="utf-8") as handle:
            handle.write(text)
        print(f"[bench] appended to {args.append}")
    return 0
