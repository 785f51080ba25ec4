"""Every parameter strategy on one SFT job: what trains, what it costs, what it learns.

    python bench/method_compare.py                                  # every method, 4 epochs of the demo data
    python bench/method_compare.py --methods lora,full --epochs 1   # a subset
    python bench/method_compare.py --append docs/benchmarks.md      # record the table

The job is the main demo's (examples/demo_veltrano.yaml): the embedded SmolLM2-135M-Instruct,
216 Veltrano help-desk rows, 36 validation rows, 72 held-out questions phrased unlike the
training rows; batch 8, max_length 256, seed 0, bf16 autocast, the same number of epochs for
every method. Each method keeps the learning rate and options usual for it (those of its
examples/sft_*.yaml). Each run is `tunesmith train` in its own process, so peak memory is that
run's alone. Read from each output:
- trainable parameters and their share (tunesmith.json);
- peak RSS while training (tunesmith.json `peak_memory_mb`: the process's VmHWM, reset when
  training starts, so the base evaluation and data loading before it are not in the figure);
- training speed: real tokens (no padding) x epochs / the Trainer's train_runtime;
- validation loss and held-out QA accuracy after training (eval_results.json), against the base
  model measured once with `tunesmith eval --model default`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"

# method name in the table -> (config method, its section, learning rate)
METHODS = {
    "full": ("full", {}, 5e-5),
    "freeze (last 4 layers)": ("freeze", {"freeze": {"trainable_layers": 4, "position": "last"}}, 1e-4),
    "lora r32": ("lora", {"lora": {"r": 32, "alpha": 64, "dropout": 0.0, "target_modules": "all-linear"}}, 1e-3),
    "dora r32": (
        "lora",
        {"lora": {"r": 32, "alpha": 64, "dropout": 0.0, "target_modules": "all-linear", "use_dora": True}},
        1e-3,
    ),
    "pissa r16 + rslora + lora+": (
        "lora",
        {
            "lora": {
                "r": 16,
                "alpha": 16,
                "dropout": 0.0,
                "target_modules": "attention",
                "init": "pissa",
                "use_rslora": True,
                "loraplus_lr_ratio": 16,
            }
        },
        2e-4,
    ),
    "adapter r64": ("adapter", {"adapter": {"r": 64, "activation": "relu", "placement": "both"}}, 1e-3),
    "prompt (20 tokens)": (
        "prompt",
        {
            "prompt": {
                "num_virtual_tokens": 20,
                "init_text": "Answer questions about Veltrano Systems, its offices, tools and policies.",
            }
        },
        3e-2,
    ),
    "ptuning (20 tokens)": ("ptuning", {"prompt": {"num_virtual_tokens": 20}}, 1e-2),
    "prefix (20 tokens)": ("prefix", {"prompt": {"num_virtual_tokens": 20}}, 1e-2),
    "moe 4x r8 top-2": (
        "moe",
        {
            "moe": {
                "experts": 4,
                "top_k": 2,
                "rank": 8,
                "alpha": 16,
                "dropout": 0.0,
                "targets": "mlp",
                "balance_coef": 0.01,
            }
        },
        1e-3,
    ),
}


def config_for(method: str, section: dict, lr: float, epochs: int, out: Path) -> dict:
    return {
        "stage": "sft",
        "method": method,
        "output_dir": str(out),
        "overwrite_output": True,
        "model": {"name_or_path": "default"},
        "data": {
            "train": str(DATA / "veltrano_train.json"),
            "validation": str(DATA / "veltrano_val.json"),
            "system": "You are the Veltrano Systems help desk.",
            "max_length": 256,
        },
        **section,
        "training": {
            "epochs": epochs,
            "learning_rate": lr,
            "batch_size": 8,
            "warmup": 0.05,
            "scheduler": "cosine",
            "logging_steps": 10,
            "mixed_precision": "bf16",
            "seed": 0,
        },
        "eval": {"qa": str(DATA / "veltrano_heldout.jsonl"), "max_new_tokens": 40, "compare_base": False},
    }


def tunesmith(*args: str, log: Path) -> float:
    started = time.time()
    with log.open("w") as sink:
        code = subprocess.call([sys.executable, "-m", "tunesmith.cli", *args], stdout=sink, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"tunesmith {' '.join(args)} failed (exit {code}); see {log}")
    return time.time() - started


def measure(name: str, method: str, section: dict, lr: float, epochs: int, work: Path) -> dict:
    out = work / method.replace(" ", "_") / name.split()[0]
    config = work / f"{name.split()[0]}.yaml"
    config.write_text(yaml.safe_dump(config_for(method, section, lr, epochs, out), sort_keys=False))
    wall = tunesmith("train", str(config), log=work / f"{name.split()[0]}.log")
    manifest = json.loads((out / "tunesmith.json").read_text())
    after = json.loads((out / "eval_results.json").read_text())["fine_tuned"]
    metrics = manifest["metrics"]
    tokens = manifest["data"]["train_tokens"] * epochs
    return {
        "method": name,
        "lr": lr,
        "trainable": manifest["trainable_parameters"],
        "total": manifest["total_parameters"],
        "peak_rss_gib": manifest["peak_memory_mb"] / 1024,
        "tokens_per_s": tokens / metrics["train_runtime"],
        "train_runtime_s": metrics["train_runtime"],
        "val_loss": after["val_loss"],
        "qa_accuracy": after["qa_accuracy"],
        "qa": f"{after['qa_correct']}/{after['qa_total']}",
        "wall_s": wall,
    }


def table(base: dict, rows: list[dict]) -> str:
    lines = [
        "| method | lr | trainable params | % | peak RSS | train tokens/s | val loss | held-out QA |",
        "|---|---|---|---|---|---|---|---|",
        f"| base model (no training) | - | - | - | - | - | {base['val_loss']:.4f} | "
        f"{base['qa_accuracy']:.1%} ({base['qa_correct']}/{base['qa_total']}) |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['lr']:g} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.3f}% "
            f"| {r['peak_rss_gib']:.2f} GiB | {r['tokens_per_s']:.0f} | {r['val_loss']:.4f} "
            f"| {r['qa_accuracy']:.1%} ({r['qa']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", help=f"Comma-separated first words of: {', '.join(METHODS)} (default: all).")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--work", help="Folder for configs, logs and outputs (default: a temporary folder).")
    parser.add_argument("--append", help="Append the table (with the machine and command) to this Markdown file.")
    args = parser.parse_args(argv)
    chosen = {n: m for n, m in METHODS.items() if not args.methods or n.split()[0] in args.methods.split(",")}
    if not chosen:
        parser.error(f"--methods {args.methods}: none of {', '.join(n.split()[0] for n in METHODS)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="tunesmith-methods-"))
    work.mkdir(parents=True, exist_ok=True)
    first = next(iter(chosen.values()))
    base_config = work / "base.yaml"
    base_config.write_text(yaml.safe_dump(config_for(first[0], first[1], first[2], args.epochs, work / "unused")))
    tunesmith(
        "eval", str(base_config), "--model", "default", "--output", str(work / "base.json"), log=work / "base.log"
    )
    base = json.loads((work / "base.json").read_text())
    rows = []
    for name, (method, section, lr) in chosen.items():
        print(f"[method_compare] {name} ...", flush=True)
        rows.append(measure(name, method, section, lr, args.epochs, work))
        print(json.dumps(rows[-1]), flush=True)
    text = table(base, rows)
    print("\n" + text)
    (work / "results.json").write_text(json.dumps({"base": base, "rows": rows}, indent=2))
    if args.append:
        import peft
        import torch
        import transformers

        command = "python bench/method_compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
        header = (
            f"\n### Method comparison ({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores; torch {torch.__version__}, transformers {transformers.__version__}, "
            f"peft {peft.__version__})\n\n`{command.strip()}` — {args.epochs} epochs of the demo data "
            "(216 rows), batch 8, bf16 autocast; each method in its own process.\n\n"
        )
        with open(args.append, "a") as sink:
            sink.write(header + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
