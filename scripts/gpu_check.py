"""The GPU check, prepared to run in one call on a lent GPU machine: a developer script, not part
of the installed package (it runs tunesmith's CLI as processes; tunesmith must be importable).

    bash scripts/gpu_check.sh --out gpu_check                  # on the GPU machine (PYTHONPATH=src)
    PYTHONPATH=src python scripts/gpu_check.py --tokenizer DIR --out DIR --only bench-135m,qlora

GPU time is short and the lent machine has no network and no model weights, so the check builds
random-initialised models of real shapes from configs (speed needs no trained weights): the
SmolLM2-135M shape and a ~1B Llama shape, with the real SmolLM2 tokenizer (a folder carried with
the working tree: `python scripts/gpu_check.py --save-tokenizer DIR` writes it here).
Then, each step in its own process with its own time limit, so one failure costs only its step:

- `bench-135m`, `bench-1b`: `tunesmith bench --precision bf16` baseline vs tunesmith defaults (both
  bf16, SDPA): tokens/s, MFU, peak memory, final validation loss;
- `flash-attention`: a short LoRA run with `model.attn_implementation=flash_attention_2`;
- `qlora`, `liger`: a short run with `method: qlora` (bitsandbytes) and `training.liger: true`
  (liger-kernel), when the package is importable (carried as a wheel), else recorded as skipped;
- `fsdp`, `deepspeed`: a short run with `training.engine` fsdp / deepspeed on one GPU;
- `export-bnb4`: `tunesmith export --quant bnb4` of the 135M shape (bitsandbytes NF4 safetensors,
  loaded back on the GPU and compared with the model; needs bitsandbytes);
- `export-gptq4`, `export-awq4`: `tunesmith export --quant gptq4 / awq4` of the 135M shape on the GPU,
  calibrated on the check's rows (needs llm-compressor, which pins transformers 5.15-5.17);
- `vllm`: `tunesmith serve --engine vllm` on the 135M shape, waited for, asked one chat completion
  over HTTP, then stopped (`--vllm-probe`; needs vllm).

The bench steps and `fsdp` are required: the check fails (exit 1) when one of them fails or does
not run. The others need a package the machine may not have; without it they are skipped, and the
summary names each with its reason, so a check with a package missing never reads as complete.

Every result goes to OUT/gpu_check.json and one Markdown table, OUT/gpu_check.md, with the GPU's
name, torch and CUDA versions and the summary (passed, skipped, failed); a step that failed keeps
its exit code and the end of its log.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SHAPES = {  # Llama-family shapes: (hidden, intermediate, layers, heads, kv heads)
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
    },
    "llama-1b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,  # the CPU tests' shape
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout: int
    needs: str | None = None  # a module that must be importable, else the step is skipped
    required: bool = True  # False: the check may pass without this step (its package is optional)
    result_file: str | None = None  # a JSON file the step writes (tunesmith bench's bench.json)
    note: str = ""


@dataclass
class Outcome:
    name: str
    status: str  # ok | failed | skipped | timeout | not implemented
    seconds: float = 0.0
    detail: str = ""
    metrics: dict = field(default_factory=dict)
    required: bool = True

    @property
    def ran(self) -> bool:
        return self.status not in NOT_RUN


NOT_RUN = ("skipped", "not implemented")


def build_shape(tokenizer_dir: str | Path, out: str | Path, shape: str, seed: int = 0) -> Path:
    """A random-initialised Llama of `shape` with the tokenizer of `tokenizer_dir`, saved in bf16."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        raise SystemExit(f"gpu_check: unknown shape `{shape}` (choose from {', '.join(SHAPES)})")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SHAPES[shape],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _rows(path: Path, count: int = 256) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "instruction": f"Question {i}: what is item {i} made of?",
                    "output": f"Item {i} is made of material number {i * 7 % 97}.",
                }
            )
            + "\n"
            for i in range(count)
        )
    )
    return path


def _train_config(out: Path, name: str, model: Path, data: Path, extra: str) -> Path:
    path = out / f"{name}.yaml"
    path.write_text(
        f"stage: sft\nmethod: lora\noutput_dir: {out / 'runs' / name}\noverwrite_output: true\n"
        f"model: {{name_or_path: {model}}}\ndata: {{train: {data}, max_length: 256}}\n"
        f"training: {{max_steps: 20, batch_size: 8, logging_steps: 5}}\neval: {{compare_base: false}}\n"
        f"{extra}"
    )
    return path


def plan(out: Path, models: dict[str, Path], quick: bool = False) -> list[Step]:
    """Every step of the check, in order (`quick`: fewer bench steps, for a rehearsal)."""
    exe = [sys.executable, "-m", "tunesmith"]
    data = _rows(out / "rows.jsonl")
    steps = []
    bench = [
        "--variants",
        "baseline,tunesmith",
        "--precision",
        "bf16",
        "--rows",
        "600" if not quick else "64",
        "--val-rows",
        "32",
        "--max-steps",
        "30" if not quick else "3",
        "--tokens-per-step",
        "16384" if not quick else "512",
    ]
    for shape in ("smollm2-135m", "llama-1b"):
        if shape in models:
            steps.append(
                Step(
                    f"bench-{shape.split('-')[-1]}",
                    exe + ["bench", "--model", str(models[shape]), *bench, "--work", str(out / f"bench-{shape}")],
                    240,
                    result_file=f"bench-{shape}/bench.json",
                )
            )
    small = models.get("smollm2-135m") or next(iter(models.values()))
    runs = {
        "flash-attention": ("model:\n  attn_implementation: flash_attention_2\n", "flash_attn"),
        "qlora": ("method: qlora\n", "bitsandbytes"),
        "liger": ("training:\n  liger: true\n", "liger_kernel"),
        "fsdp": ("training:\n  engine: fsdp\n", None),
        "deepspeed": ("training:\n  engine: deepspeed\n", "deepspeed"),
    }
    for name, (extra, needs) in runs.items():
        config = _train_config(out, name, small, data, "")
        overrides = [line.strip().replace(": ", "=") for line in _flatten(extra)]
        steps.append(Step(name, exe + ["train", str(config), *overrides], 120, needs=needs, required=needs is None))
    # bitsandbytes NF4 safetensors for GPU serving (export/bnb.py): written, loaded back and compared
    steps.append(
        Step(
            "export-bnb4",
            exe + ["export", str(small), "--out", str(out / "export-bnb4"), "--quant", "bnb4"],
            180,
            needs="bitsandbytes",
            required=False,
        )
    )
    # GPTQ and AWQ through llm-compressor on the GPU (export/calibrated.py; AWQ cannot run on a CPU), calibrated
    # on the check's own rows; llm-compressor pins transformers 5.15-5.17, so it runs where the two are carried
    for quant in ("gptq4", "awq4"):
        steps.append(
            Step(
                f"export-{quant}",
                exe
                + [
                    "export",
                    str(small),
                    "--out",
                    str(out / f"export-{quant}"),
                    "--quant",
                    quant,
                    "--calibration",
                    str(data),
                ],
                240,
                needs="llmcompressor",
                required=False,
            )
        )
    steps.append(
        Step(
            "vllm",
            [sys.executable, str(Path(__file__).resolve()), "--vllm-probe", str(small)],
            300,
            needs="vllm",
            required=False,
        )
    )
    return steps


def _flatten(yaml_text: str) -> list[str]:
    """'a:\\n  b: 1\\n' -> ['a.b: 1']; 'a: 1\\n' -> ['a: 1'] (the one or two levels the steps use)."""
    out, section = [], None
    for line in yaml_text.splitlines():
        if not line.strip():
            continue
        if line.startswith("  "):
            out.append(f"{section}.{line.strip()}")
        elif line.rstrip().endswith(":"):
            section = line.strip()[:-1]
        else:
            out.append(line.strip())
    return out


def run_step(step: Step, out: Path) -> Outcome:
    if not step.argv:
        return Outcome(step.name, "not implemented", detail=step.note, required=step.required)
    if step.needs and importlib.util.find_spec(step.needs) is None:
        return Outcome(
            step.name, "skipped", detail=f"`{step.needs}` is not installed (carry its wheel)", required=step.required
        )
    log = out / f"{step.name}.log"
    started = time.time()
    try:
        with log.open("w") as handle:
            code = subprocess.run(step.argv, stdout=handle, stderr=subprocess.STDOUT, timeout=step.timeout).returncode
    except subprocess.TimeoutExpired:
        return Outcome(
            step.name,
            "timeout",
            time.time() - started,
            f"over {step.timeout} s; see {log.name}",
            required=step.required,
        )
    seconds = time.time() - started
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    if code != 0:
        return Outcome(step.name, "failed", seconds, f"exit {code}: " + " | ".join(tail)[-400:], required=step.required)
    metrics = {}
    if step.result_file and (out / step.result_file).is_file():
        metrics = json.loads((out / step.result_file).read_text())
    return Outcome(step.name, "ok", seconds, metrics=metrics, required=step.required)


def summary(outcomes: list[Outcome]) -> tuple[str, int]:
    """(the summary lines, the exit code): 0 only when no step failed and every required step ran and passed.
    An optional step that did not run counts as skipped, with its reason; a required one as failed."""
    passed = [o for o in outcomes if o.status == "ok"]
    skipped = [o for o in outcomes if not o.ran and not o.required]
    missing = [o for o in outcomes if not o.ran and o.required]
    failed = [o for o in outcomes if o.ran and o.status != "ok"]
    lines = [
        f"{len(passed)} passed, {len(skipped)} skipped, {len(failed) + len(missing)} failed (of {len(outcomes)} steps)"
    ]
    lines += [f"- failed: {o.name}: {o.status}, {o.detail or 'no detail'}" for o in failed]
    lines += [
        f"- failed: {o.name}: a required step did not run ({o.status}: {o.detail or 'no reason given'})"
        for o in missing
    ]
    lines += [f"- skipped: {o.name} (optional): {o.detail or o.status}" for o in skipped]
    return "\n".join(lines), 0 if not failed and not missing else 1


def device_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        info.update(
            gpu=torch.cuda.get_device_name(),
            bf16=torch.cuda.is_bf16_supported(),
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        )
    return info


def report(outcomes: list[Outcome], info: dict) -> str:
    """The Markdown table of every step (bench steps: tokens/s, MFU and the ratio to the baseline)."""
    lines = [
        f"GPU check on {info.get('gpu') or 'no GPU'} (torch {info.get('torch')}, CUDA {info.get('cuda')})",
        "",
        "| step | status | seconds | figures |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        figures = o.detail
        variants = o.metrics.get("results") if isinstance(o.metrics, dict) else None  # tunesmith bench's bench.json
        if isinstance(variants, dict):
            parts = []
            for name, v in variants.items():
                mfu, peak, ratio = v.get("mfu"), v.get("peak_memory_mb"), v.get("speed_ratio")
                parts.append(
                    f"{name} ({v.get('precision', '?')}): {v.get('tokens_per_second', float('nan')):.0f} tok/s"
                    + (f", MFU {mfu:.1%}" if isinstance(mfu, (int, float)) else "")
                    + (f", peak {peak / 1024:.1f} GiB" if isinstance(peak, (int, float)) else "")
                    + (
                        f", {ratio:.2f}x"
                        if isinstance(ratio, (int, float)) and v.get("variant", name) != "baseline"
                        else ""
                    )
                )
            figures = "; ".join(parts)
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.0f} | {figures or '-'} |")
    return "\n".join(lines) + "\n\n" + summary(outcomes)[0] + "\n"


def vllm_probe(model: str, port: int = 8011, timeout: float = 240.0) -> int:
    """Start `tunesmith serve --engine vllm` on `model`, wait until it lists its models, ask one chat
    completion, print it and stop the server; 0 when the reply came."""
    import urllib.request

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunesmith",
            "serve",
            "--engine",
            "vllm",
            "--model",
            model,
            "--name",
            "probe",
            "--port",
            str(port),
        ]
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + timeout
        while True:
            if server.poll() is not None:
                print(f"[gpu_check] vllm: the server exited with {server.returncode} before answering", flush=True)
                return 1
            try:
                urllib.request.urlopen(f"{url}/models", timeout=5).read()
                break
            except OSError:
                if time.time() > deadline:
                    print(f"[gpu_check] vllm: no answer from {url}/models within {timeout:.0f} s", flush=True)
                    return 1
                time.sleep(2)
        body = json.dumps(
            {"model": "probe", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello."}]}
        ).encode()
        request = urllib.request.Request(f"{url}/chat/completions", body, {"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
        print(json.dumps({"reply": reply["choices"][0]["message"]["content"], "usage": reply.get("usage")}), flush=True)
        return 0
    finally:
        server.terminate()
        server.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="A folder with the SmolLM2 tokenizer (carried with the working tree).")
    parser.add_argument("--out", default="gpu_check", help="Where models, logs and the results go.")
    parser.add_argument("--shapes", default="smollm2-135m,llama-1b", help=f"From: {', '.join(SHAPES)}.")
    parser.add_argument("--only", help="Comma-separated step names (default: every step).")
    parser.add_argument("--quick", action="store_true", help="Small bench settings: a rehearsal of the script.")
    parser.add_argument(
        "--save-tokenizer", metavar="DIR", help="Write the embedded default's tokenizer to DIR and stop."
    )
    parser.add_argument("--vllm-probe", metavar="MODEL", help=argparse.SUPPRESS)  # the `vllm` step's own process
    args = parser.parse_args(argv)
    if args.vllm_probe:
        return vllm_probe(args.vllm_probe)
    if args.save_tokenizer:
        from transformers import AutoTokenizer

        from tunesmith.models.default import default_model_path

        AutoTokenizer.from_pretrained(str(default_model_path())).save_pretrained(args.save_tokenizer)
        print(f"[gpu_check] tokenizer written to {args.save_tokenizer}")
        return 0
    if not args.tokenizer or not Path(args.tokenizer).is_dir():
        parser.error(f"--tokenizer: {args.tokenizer!r} is not a folder (write one with --save-tokenizer DIR)")
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"--shapes: unknown {', '.join(unknown)} (choose from {', '.join(SHAPES)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {s: build_shape(args.tokenizer, out / "models" / s, s) for s in shapes}
    steps = plan(out, models, args.quick)
    if args.only:
        wanted = set(args.only.split(","))
        missing = wanted - {s.name for s in steps}
        if missing:
            parser.error(f"--only: no step {', '.join(sorted(missing))} (steps: {', '.join(s.name for s in steps)})")
        steps = [s for s in steps if s.name in wanted]
    info = device_info()
    outcomes = []
    for step in steps:
        outcome = run_step(step, out)
        print(f"[gpu_check] {outcome.name}: {outcome.status} ({outcome.seconds:.0f} s) {outcome.detail}", flush=True)
        outcomes.append(outcome)
        (out / "gpu_check.json").write_text(
            json.dumps({"device": info, "steps": [o.__dict__ for o in outcomes]}, indent=2, default=str)
        )
    text, code = summary(outcomes)
    (out / "gpu_check.json").write_text(
        json.dumps(
            {"device": info, "steps": [o.__dict__ for o in outcomes], "summary": text, "exit_code": code},
            indent=2,
            default=str,
        )
    )
    (out / "gpu_check.md").write_text(report(outcomes, info))
    print(report(outcomes, info))
    return code


if __name__ == "__main__":
    sys.exit(main())
