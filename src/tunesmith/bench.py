"""`tunesmith bench`: one SFT job run two ways on the same machine, tunesmith vs a plain baseline.

    tunesmith bench                                   # 2,000 rows, the first 20 steps of 1,024 tokens
    tunesmith bench --rows 64 --val-rows 16           # the reduced size CI runs
    python bench/sft_speed.py --append docs/benchmarks.md

The job: the embedded default model (or --model), a synthetic instruction set with a realistic
length spread (log-uniform 30-600 tokens; copy, reverse and sort tasks over common words, so the
loss has something to learn), LoRA r=16 / alpha 32 / dropout 0.05 on all linear layers, the same
learning rate, schedule, epochs and the same number of real tokens per optimiser step.

Variants, each in its own process (so peak memory is its own):
  baseline   what a user writes from the transformers + PEFT docs: `apply_chat_template`, prompt
             tokens masked, `DataCollatorForSeq2Seq` padding, `Trainer`, fp32, random batches of
             `tokens_per_step / mean row length` rows.
  tunesmith  `tunesmith train` with its defaults (bf16 autocast where the CPU/GPU has it,
             length-grouped batches, cached tokenisation), same batch size in rows.
  packed     tunesmith with `data.packing: true`: packs of `--pack-length` tokens, as many per
             step as make the same tokens per step.
  compiled   (only when asked: --variants ...,compiled) tunesmith's defaults with
             `training.compile: true` (torch.compile, inductor); compile time counts in its speed.

Figures: tokens/s (real tokens, not padding, over the Trainer's own train_runtime), seconds per
epoch, peak memory while training (RSS high-water mark VmHWM, reset when training starts, on CPU;
max allocated on GPU; runtime.peak_memory), the final validation loss
(one shared evaluator: token-weighted assistant-token loss of the same held-out rows, fp32), and
each variant's ratio to the baseline, and generation speed (greedy tokens/s, one prompt at a time:
the baseline's PEFT model as trained, tunesmith's output loaded as `tunesmith chat` loads it, with
the adapter merged). On a GPU it adds model-FLOPs utilisation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

VARIANTS = ("baseline", "tunesmith", "packed", "compiled")
WORDS = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information back parent face others level office door health person "
    "art war history party result change morning reason research girl guy moment air teacher force education "
    "river garden window table paper music market letter field energy bread stone cloud train bridge light"
).split()
TASKS = (
    ("Repeat these words exactly:", lambda w: w),
    ("Write these words in reverse order:", lambda w: w[::-1]),
    ("Sort these words alphabetically:", sorted),
)
CHAT_OVERHEAD = 36  # tokens the SmolLM2 template adds around one user turn and one reply (default system)


# --- the synthetic job ------------------------------------------------------------------------


def synthetic_rows(n: int, seed: int = 0, min_tokens: int = 30, max_tokens: int = 600) -> list[dict]:
    """`n` chat rows whose rendered length is log-uniform in [min_tokens, max_tokens] (about one
    token per word with the SmolLM2 tokenizer; the bench reports the real token lengths)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        target = math.exp(rng.uniform(math.log(min_tokens), math.log(max_tokens)))
        words = max(1, round((target - CHAT_OVERHEAD - 6) / 2))
        chosen = [rng.choice(WORDS) for _ in range(words)]
        instruction, transform = rng.choice(TASKS)
        rows.append({"messages": [
            {"role": "user", "content": f"{instruction} {' '.join(chosen)}"},
            {"role": "assistant", "content": " ".join(transform(chosen))},
        ]})
    return rows


def write_job(folder: Path, rows: int, val_rows: int, seed: int, min_tokens: int, max_tokens: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    every = synthetic_rows(rows + val_rows, seed, min_tokens, max_tokens)
    train, val = folder / "train.jsonl", folder / "validation.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in every[:rows]))
    val.write_text("".join(json.dumps(r) + "\n" for r in every[rows:]))
    return {"train": str(train), "validation": str(val)}


# --- pieces both variants share -----------------------------------------------------------------


def _validation_rows(tokenizer, path: str, max_length: int):
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.dataset import build_set

    return build_set(tokenizer, [path], DataConfig(max_length=max_length), cache_root=None).rows


def _shared_val_loss(model, tokenizer, spec: dict) -> float:
    """The same evaluator for every variant: fp32, eval mode, token-weighted over assistant tokens."""
    from tunesmith.eval.perplexity import validation_loss

    rows = _validation_rows(tokenizer, spec["validation"], spec["max_length"])
    return validation_loss(model.float().eval(), tokenizer, rows)["val_loss"]


def _generation_speed(model, tokenizer, spec: dict) -> float:
    """Greedy generation tokens/s on the first validation prompts, one at a time (chat-like),
    exactly `gen_tokens` new tokens each."""
    import torch

    rows = [json.loads(line) for line in Path(spec["validation"]).read_text().splitlines()][:spec["gen_prompts"]]
    model.eval()
    new_tokens, seconds = 0, 0.0
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=spec["gen_tokens"], min_new_tokens=spec["gen_tokens"],
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        seconds += time.perf_counter() - started
        new_tokens += out.shape[1] - ids["input_ids"].shape[1]
    return new_tokens / seconds


def _accelerator() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- the variants (each runs in a child process) ----------------------------------------------------


def run_baseline(spec: dict) -> dict:
    """Plain transformers + PEFT, as their documentation shows it."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from tunesmith.models.loader import resolve_model_path
    from tunesmith.runtime.peak_memory import PeakMemory

    started = time.perf_counter()
    path = resolve_model_path(spec["model"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))

    def encode(row):
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        input_ids = tokenizer(full, add_special_tokens=False)["input_ids"][: spec["max_length"]]
        labels = [-100] * len(prompt_ids) + input_ids[len(prompt_ids):]
        return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels[: len(input_ids)]}

    rows = [json.loads(line) for line in Path(spec["train"]).read_text().splitlines()]
    train = Dataset.from_list(rows).map(encode, remove_columns=["messages"])
    args = TrainingArguments(
        output_dir=spec["work"], num_train_epochs=spec["epochs"], max_steps=spec["max_steps"],
        per_device_train_batch_size=spec["batch_rows"], learning_rate=spec["learning_rate"],
        lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=10, save_strategy="no", report_to="none",
        seed=spec["seed"], use_cpu=_accelerator() == "cpu", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    with PeakMemory() as memory:
        metrics = trainer.train().metrics
    return {
        "train_seconds": metrics["train_runtime"], "steps": trainer.state.global_step, "epochs_run": trainer.state.epoch,
        "real_tokens": sum(len(ids) for ids in train["input_ids"]), "rows": len(train),
        "peak_memory_mb": memory.peak_mb, "train_loss": metrics["train_loss"],
        "val_loss": _shared_val_loss(model, tokenizer, spec), "precision": "fp32",
        "wall_seconds": time.perf_counter() - started,
        # inference as the PEFT docs show it: the adapter model as trained, not merged
        "generate_tokens_per_second": _generation_speed(model, tokenizer, spec),
    }


def tunesmith_config(spec: dict, packed: bool, compiled: bool = False) -> dict:
    """The config of the tunesmith variants: defaults, plus what defines the job."""
    config = {
        "stage": "sft", "method": "lora", "output_dir": str(Path(spec["work"]) / "out"), "overwrite_output": True,
        "model": {"name_or_path": spec["model"]},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "data": {"train": [spec["train"]], "max_length": spec["max_length"]},
        "training": {"epochs": spec["epochs"], "max_steps": spec["max_steps"], "learning_rate": spec["learning_rate"],
                     "scheduler": "cosine", "warmup": 0.05, "seed": spec["seed"], "logging_steps": 10,
                     "batch_size": spec["batch_rows"]},
    }
    if compiled:
        config["training"]["compile"] = True
    if packed:
        config["data"].update(packing=True, max_length=spec["pack_length"])
        config["training"]["batch_size"] = spec["batch_packs"]
    return config


def run_tunesmith(spec: dict, packed: bool = False, compiled: bool = False) -> dict:
    import yaml

    from tunesmith.config import load_config
    from tunesmith.models.loader import load_for_inference, pick_device, pick_dtype
    from tunesmith.stages import check_stage, run_stage
    from tunesmith.stages.common import resolve_precision

    started = time.perf_counter()
    config_path = Path(spec["work"]) / "config.yaml"
    config_path.write_text(f"# tunesmith train {config_path}\n" + yaml.safe_dump(tunesmith_config(spec, packed, compiled)))
    cfg = load_config(config_path, [])
    check_stage(cfg)
    result = run_stage(cfg)
    manifest = result.manifest
    device = pick_device()
    loaded = load_for_inference(str(result.output_dir), merge=True, dtype="float32")
    return {
        "train_seconds": result.metrics["train_runtime"], "epochs_run": _last_epoch(result.output_dir),
        "real_tokens": manifest["data"]["train_tokens"], "rows": manifest["data"]["train_rows"],
        "packed_sequences": manifest["data"].get("packed_sequences"),
        "peak_memory_mb": manifest["peak_memory_mb"], "train_loss": result.metrics["train_loss"],
        "val_loss": _shared_val_loss(loaded.model, loaded.tokenizer, spec),
        "precision": resolve_precision(cfg.training.mixed_precision, pick_dtype(cfg.model.dtype, device)),
        "wall_seconds": time.perf_counter() - started,
        # inference as `tunesmith chat` runs it: the output loaded with the adapter merged
        "generate_tokens_per_second": _generation_speed(loaded.model, loaded.tokenizer, spec),
    }


def _last_epoch(output_dir: Path) -> float:
    """The (fractional) epoch the Trainer reached, from the run's metrics.jsonl."""
    records = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    return max(r["epoch"] for r in records if "epoch" in r)


RUNNERS = {"baseline": run_baseline, "tunesmith": run_tunesmith, "packed": lambda spec: run_tunesmith(spec, True),
           "compiled": lambda spec: run_tunesmith(spec, compiled=True)}


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
    code = subprocess.call([sys.executable, "-m", "tunesmith.bench", "--child", variant, str(spec_path),
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


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def flops_per_token(params: int, layers: int, hidden: int, seq_len: float, lora: bool) -> float:
    """Model FLOPs per trained token: 6N for full training (2N forward, 4N backward), about 4N with
    LoRA (no weight gradients for the frozen base), plus causal attention 6 * layers * hidden * seq
    (forward + backward of the score and value products, halved by the causal mask)."""
    return (4 if lora else 6) * params + 6 * layers * hidden * seq_len


def gpu_peak_flops() -> tuple[str, float] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return name, flops
    return name, float("nan")


def machine() -> str:
    import torch
    import transformers
    import peft

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()}-core {cpu}, {gpu}; torch {torch.__version__}, transformers "
            f"{transformers.__version__}, peft {peft.__version__}")


def summarise(results: dict[str, dict], spec: dict) -> dict:
    base = results.get("baseline")
    for variant, r in results.items():
        r["seconds_per_epoch"] = r["train_seconds"] / r["epochs_run"]
        if base:
            r["speed_ratio"] = r["tokens_per_second"] / base["tokens_per_second"]
            r["memory_ratio"] = r["peak_memory_mb"] / base["peak_memory_mb"]
            r["val_loss_delta"] = r["val_loss"] - base["val_loss"]
    peak = gpu_peak_flops()
    if peak:
        per_token = flops_per_token(spec["model_params"], spec["model_layers"], spec["model_hidden"],
                                    spec["mean_tokens"], lora=True)
        for r in results.values():
            r["mfu"] = r["tokens_per_second"] * per_token / peak[1]
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


def describe_job(spec: dict) -> str:
    return (f"{spec['rows']} training rows ({spec['real_tokens']:,} tokens, lengths p5/p50/p95/max "
            f"{spec['length_percentiles']}), {spec['val_rows']} validation rows, {spec['epochs']} epoch(s)"
            f"{' capped at ' + str(spec['max_steps']) + ' steps' if spec['max_steps'] > 0 else ''}, LoRA r=16 "
            f"all-linear, lr {spec['learning_rate']} cosine, {spec['tokens_per_step']} tokens per step "
            f"({spec['batch_rows']} rows per batch unpacked; {spec['batch_packs']} packs of {spec['pack_length']} "
            f"tokens packed), model {spec['model']}")


def _model_facts(spec: dict) -> dict:
    from transformers import AutoConfig

    from tunesmith.models.loader import load_tokenizer, resolve_model_path

    path = resolve_model_path(spec["model"])
    config = AutoConfig.from_pretrained(path)
    tokenizer = load_tokenizer(path)
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.dataset import build_set

    lengths = sorted(len(r.input_ids) for r in build_set(tokenizer, [spec["train"]],
                                                          DataConfig(max_length=spec["max_length"]), cache_root=None).rows)
    pick = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    layers, hidden = config.num_hidden_layers, config.hidden_size
    # parameters without embeddings (tied head counted once), from the config alone
    inter, heads, kv = config.intermediate_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = hidden // heads
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter
    return {"real_tokens": sum(lengths), "mean_tokens": sum(lengths) / len(lengths),
            "length_percentiles": f"{pick(0.05)}/{pick(0.5)}/{pick(0.95)}/{lengths[-1]}",
            "model_params": layers * per_layer + config.vocab_size * hidden, "model_layers": layers,
            "model_hidden": hidden}


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
    spec.update(_model_facts(spec))
    spec["batch_rows"] = max(1, round(tokens_per_step / spec["mean_tokens"]))
    spec["batch_packs"] = max(1, round(tokens_per_step / pack_length))
    print(f"[bench] job: {describe_job(spec)}", flush=True)
    results = {v: run_variant(v, spec, work) for v in variants}
    summary = {"date": date.today().isoformat(), "machine": machine(), "job": describe_job(spec), "spec": spec,
               "results": summarise(results, spec), "work": str(work)}
    (work / "bench.json").write_text(json.dumps(summary, indent=2))
    return summary


def markdown(summary: dict, command: str) -> str:
    return (f"\n### {summary['date']}: `{command}`\n\nMachine: {summary['machine']}.\n\nJob: {summary['job']}.\n\n"
            f"{table(summary['results'])}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunesmith bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    import shlex

    return run_from_args(args, "python bench/sft_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=2000, help="Training rows (default 2000).")
    parser.add_argument("--val-rows", type=int, default=100, help="Held-out rows for the final validation loss.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=20,
                        help="Stop each variant after N optimiser steps (-1: whole epochs; on a 2-core CPU one epoch of "
                        "the baseline takes about 97 min).")
    parser.add_argument("--tokens-per-step", type=int, default=1024,
                        help="Real tokens per optimiser step (mean); the baseline's padded fp32 batches need about "
                        "13 GiB at 1024 and ran out of 24 GiB at 2048.")
    parser.add_argument("--pack-length", type=int, default=1024, help="Pack length of the `packed` variant.")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--min-tokens", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=600)
    parser.add_argument("--variants", default="baseline,tunesmith,packed",
                        help=f"Comma-separated, from {', '.join(VARIANTS)} (compiled: tunesmith's defaults with "
                        "training.compile=true).")
    parser.add_argument("--gen-prompts", type=int, default=2, help="Validation prompts for the generation speed.")
    parser.add_argument("--gen-tokens", type=int, default=32, help="New tokens generated per prompt (greedy).")
    parser.add_argument("--model", default="default", help="Base model: 'default', a folder or a hub id.")
    parser.add_argument("--work", help="Keep data, logs and outputs here (default: a temporary folder).")
    parser.add_argument("--append", help="Append the result table to this markdown file (e.g. docs/benchmarks.md).")


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


if __name__ == "__main__":
    sys.exit(main())
