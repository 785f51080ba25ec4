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
from tunesmith.benchmark.jobs import describe_job, token_facts, write_job
from tunesmith.benchmark.machine import machine
from tunesmith.benchmark.variants import run_tunesmith

RUNNERS = {"baseline": run_baseline, "tunesmith": run_tunesmith, "packed": lambda spec: run_tunesmith(spec, True),
           "compiled": lambda spec: run_tunesmith(spec, compiled=True)}


# --- one process per variant --------------------------------------------------------------------


def _child(variant: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = RUNNERS[variant](spec)
    Path(out_path).write_text(json.dumps(result))


def run_variant(variant: str, spec: dict, work: Path) -> dict:
    """Run one variant in a fresh Python process; its JSON result comes back through a file."""
    folder = work / variant
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "work": str(folder)}
    spec_path, out_path = folder / "spec.json", folder / "result.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    print(f"[bench] {variant}: training ...", flush=True)
    code = subprocess.call([sys.executable, "-m", "tunesmith.benchmark", "--child", variant, str(spec_path),
                            str(out_path)], stdout=open(folder / "log.txt", "w"), stderr=subprocess.STDOUT)
    if code != 0 or not out_path.is_file():
        tail = (folder / "log.txt").read_text()[-3000:]
        raise RuntimeError(f"bench variant {variant} failed (exit {code}); end of {folder / 'log.txt'}:\n{tail}")
    result = json.loads(out_path.read_text())
    # real tokens trained: the set's tokens times the (possibly fractional) epochs the Trainer ran
    result["tokens_per_second"] = result["real_tokens"] * result["epochs_run"] / result["train_seconds"]
    print(f"[bench] {variant}: {result['tokens_per_second']:.0f} tokens/s, val loss {result['val_loss']:.4f}",
          flush=True)
    return result


# --- figures -------------------------------------------------------------------------------------------


def summarise(results: dict[str, dict], spec: dict) -> dict:
    base = results.get("baseline")
    for variant, r in results.items():
        r["seconds_per_epoch"] = r["train_seconds"] / r["epochs_run"]
        if base:
            r["speed_ratio"] = r["tokens_per_second"] / base["tokens_per_second"]
            r["memory_ratio"] = r["peak_memory_mb"] / base["peak_memory_mb"]
            r["val_loss_delta"] = r["val_loss"] - base["val_loss"]
    add_mfu(results, spec)
    return results


def table(results: dict[str, dict]) -> str:
    has_mfu = any("mfu" in r for r in results.values())
    lines = ["| variant | precision | train tokens/s | s/epoch | peak memory | final val loss | speed vs baseline | "
             "memory vs baseline | generate tokens/s |" + (" MFU |" if has_mfu else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if has_mfu else "")]
    for variant, r in results.items():
        line = (f"| {variant} | {r['precision']} | {r['tokens_per_second']:.0f} | {r['seconds_per_epoch']:.0f} | "
                f"{r['peak_memory_mb'] / 1024:.2f} GiB | {r['val_loss']:.4f} | {r.get('speed_ratio', 1):.2f}x | "
                f"{r.get('memory_ratio', 1):.2f}x | {r['generate_tokens_per_second']:.1f} |")
        if "mfu" in r:
            line += f" {r['mfu']:.1%} |"
        lines.append(line)
    return "\n".join(lines)


def markdown(summary: dict, command: str) -> str:
    return (f"\n### {summary['date']}: `{command}`\n\nMachine: {summary['machine']}.\n\nJob: {summary['job']}.\n\n"
            f"{table(summary['results'])}\n")


# --- the whole benchmark ---------------------------------------------------------------------------


def run_bench(rows: int = 2000, val_rows: int = 100, epochs: float = 1.0, max_steps: int = 20,
              tokens_per_step: int = 1024, pack_length: int = 1024, learning_rate: float = 2e-4,
              variants: tuple[str, ...] = VARIANTS[:3], model: str = "default", seed: int = 0,
              min_tokens: int = 30, max_tokens: int = 600, work: Path | None = None, gen_prompts: int = 2,
              gen_tokens: int = 32) -> dict:
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="tunesmith-bench-")) if owned else Path(work)
    spec = {"rows": rows, "val_rows": val_rows, "epochs": epochs, "max_steps": max_steps, "seed": seed,
            "tokens_per_step": tokens_per_step, "pack_length": pack_length, "learning_rate": learning_rate,
            "model": model, "max_length": max(pack_length, max_tokens + 64), "gen_prompts": gen_prompts,
            "gen_tokens": gen_tokens}
    spec.update(write_job(work / "data", rows, val_rows, seed, min_tokens, max_tokens))
    spec.update(token_facts(spec))
    spec.update(model_shape(spec["model"]))
    spec["batch_rows"] = max(1, round(tokens_per_step / spec["mean_tokens"]))
    spec["batch_packs"] = max(1, round(tokens_per_step / pack_length))
    print(f"[bench] job: {describe_job(spec)}", flush=True)
    results = {v: run_variant(v, spec, work) for v in variants}
    summary = {"date": date.today().isoformat(), "machine": machine(), "job": describe_job(spec), "spec": spec,
               "results": summarise(results, spec), "work": str(work)}
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
        raise ConfigError(f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}")
    if args.rows < 1 or args.val_rows < 1:
        raise ConfigError("--rows and --val-rows must be at least 1")
    if not 1 <= args.min_tokens < args.max_tokens:
        raise ConfigError("--min-tokens must be at least 1 and below --max-tokens")
    if args.pack_length < args.max_tokens + 64 and "packed" in variants:
        raise ConfigError(f"--pack-length {args.pack_length} must hold the longest row: at least --max-tokens + 64 "
                          f"= {args.max_tokens + 64}")
    summary = run_bench(rows=args.rows, val_rows=args.val_rows, epochs=args.epochs, max_steps=args.max_steps,
                        tokens_per_step=args.tokens_per_step, pack_length=args.pack_length,
                        learning_rate=args.learning_rate, variants=variants, model=args.model,
                        min_tokens=args.min_tokens, max_tokens=args.max_tokens, gen_prompts=args.gen_prompts,
                        gen_tokens=args.gen_tokens,
                        work=Path(args.work) if args.work else None)
    text = markdown(summary, command)
    print(text)
    print(json.dumps({v: {k: (round(x, 4) if isinstance(x, float) else x) for k, x in r.items()}
                      for v, r in summary["results"].items()}, indent=2))
    if args.append:
        with open(args.append, "a", encoding="utf-8") as handle:
            handle.write(text)
        print(f"[bench] appended to {args.append}")
    return 0

