"""What bf16 / fp16 autocast costs on this CPU: a few LoRA steps of the embedded SmolLM2-135M in each.

    python bench/precision_cpu.py                 # 2 timed steps per precision (after 1 warm-up step)
    python bench/precision_cpu.py --steps 5 --precisions no,bf16 --threads 1 --batch 2

The job is the main demo's (LoRA r 32 / alpha 64 on all linear layers, AdamW), one batch of
8 x 64 tokens, autocast on the CPU as the Trainer does it (`bf16=True` / `fp16=True` with
`use_cpu`). Prints wall and CPU seconds per step, the ratio to fp32 and the CPU it ran on (with
`ATEN_CPU_CAPABILITY` / `ONEDNN_MAX_CPU_ISA` if set); the figures quoted in
tunesmith.runtime.precision come from here. On a machine shared with other jobs, compare CPU
seconds with `--threads 1` (wall time then depends on the others' load; CPU time much less).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch


def one_step(model, optimizer, batch, precision: str) -> None:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
    with autocast:
        loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--precisions", default="no,bf16,fp16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith.models.default import default_model_path
    from tunesmith.runtime.precision import choose_precision

    torch.manual_seed(0)
    path = default_model_path()
    batch = torch.randint(0, 49152, (args.batch, args.tokens))
    seconds, cpu = {}, {}
    for precision in args.precisions.split(","):
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, target_modules="all-linear"))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        one_step(model, optimizer, batch, precision)  # warm-up
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            one_step(model, optimizer, batch, precision)
        seconds[precision] = (time.perf_counter() - started) / args.steps
        cpu[precision] = (time.process_time() - started_cpu) / args.steps
        print(f"{precision:>4}: {seconds[precision]:.2f} s/step wall, {cpu[precision]:.2f} CPU s/step", flush=True)
    print(choose_precision("auto", torch.float32, torch.device("cpu")).reason)
    print(
        f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"batch {args.batch} x {args.tokens} tokens, {args.steps} timed steps each"
    )
    if "no" in seconds:
        for precision in seconds:
            print(
                f"{precision}: {seconds[precision] / seconds['no']:.1f}x the fp32 wall time per step, "
                f"{cpu[precision] / cpu['no']:.1f}x its CPU time"
            )


if __name__ == "__main__":
    main()
