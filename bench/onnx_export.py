"""ONNX export of a model (default: the embedded SmolLM2-135M-Instruct), fp32 and int8, measured.

    python bench/onnx_export.py                          # exports to /tmp/tunesmith-onnx-bench/{f32,int8}
    python bench/onnx_export.py --model out/demo_veltrano --threads 2 --new-tokens 64

For each variant: export time, size on disk, ONNX Runtime load time, greedy tokens/s with the KV
cache (one prompt at a time, `--threads` intra-op threads), the largest logit difference from the
torch model and how many greedy replies equal transformers' `generate` (from the export's own
check, `tunesmith.json`). The torch model's own greedy tokens/s on the same prompts, same
thread count, is the baseline, measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from tunesmith.benchmark.machine import machine
from tunesmith.export import export_model
from tunesmith.export.compare import PROMPTS, chat_ids, compare_onnx
from tunesmith.export.onnx import MODEL_FILE
from tunesmith.export.onnx_runtime import OnnxDecoder
from tunesmith.methods.load import load_for_inference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", default="/tmp/tunesmith-onnx-bench")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Measure the folders an earlier run exported (no export; the check is run again).",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()['label']}; threads {args.threads}")
    loaded = load_for_inference(args.model, dtype="float32")
    prompts = [chat_ids(loaded.tokenizer, q, loaded.system) for q in PROMPTS]
    started, cpu, produced = time.perf_counter(), time.process_time(), 0
    with torch.no_grad():
        for ids in prompts:
            out = loaded.model.generate(
                torch.tensor([ids]),
                max_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=loaded.tokenizer.eos_token_id,
            )
            produced += out.shape[1] - len(ids)
    print(
        f"torch fp32 generate: {produced / (time.perf_counter() - started):.1f} tokens/s, "
        f"{produced / (time.process_time() - cpu):.1f} tokens per CPU second"
    )
    eos = loaded.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    for quant in ("f32", "int8"):
        out = Path(args.out) / quant
        export_seconds = export_cpu = None
        if not args.reuse:
            shutil.rmtree(out, ignore_errors=True)
            started, cpu = time.perf_counter(), time.process_time()
            export_model(args.model, str(out), format="onnx", quant=quant)
            export_seconds, export_cpu = time.perf_counter() - started, time.process_time() - cpu
        manifest = json.loads((out / "tunesmith.json").read_text())
        if args.reuse:
            manifest["check"] = compare_onnx(out / MODEL_FILE[quant], loaded.model, loaded.tokenizer, loaded.system)
        decoder = OnnxDecoder(out / MODEL_FILE[quant], threads=args.threads)
        started, cpu, produced = time.perf_counter(), time.process_time(), 0
        for ids in prompts:
            produced += len(decoder.greedy(ids, args.new_tokens, eos_ids))
        speed, cpu_speed = produced / (time.perf_counter() - started), produced / (time.process_time() - cpu)
        check = manifest["check"]
        print(
            json.dumps(
                {
                    "quant": quant,
                    "export_s": export_seconds and round(export_seconds, 1),
                    "export_cpu_s": export_cpu and round(export_cpu, 1),
                    "mb": round(manifest["onnx"]["bytes"] / 1e6, 1),
                    "load_s": round(decoder.load_seconds, 2),
                    "tokens_per_s": round(speed, 1),
                    "tokens_per_cpu_s": round(cpu_speed, 1),
                    "max_logit_diff": check["max_logit_diff"],
                    "max_abs_logit": check["max_abs_logit"],
                    "same_greedy": f"{check['same_greedy_tokens']}/{check['prompts']}",
                    "greedy_agreement": check["greedy_agreement"],
                    "next_token_agreement": check.get("next_token_agreement"),
                }
            )
        )


if __name__ == "__main__":
    main()
