"""Every export format of one trained output, measured in its own runtime (docs/export.md).

    python bench/export_formats.py                                   # the demo's output, out/demo_veltrano
    python bench/export_formats.py --model out/demo_veltrano --formats gguf:f16,onnx:f32 --threads 2

For each FORMAT:QUANT: `tunesmith export` (timed; its own check and after-export QA run on the
artifact are part of it and land in the manifest), then the artifact loaded in the runtime it
ships for (llama.cpp through llama-cpp-python for GGUF, ONNX Runtime with the KV cache for ONNX,
transformers for a quantised transformers folder: `transformers:gptq4` in .venv-gptq, with llm-compressor):
its size on disk, load time, and the output's QA questions (`eval.qa` of its config) answered
greedily one at a time, giving the accuracy in that runtime and the tokens/s of those replies.
The trained output answers the same questions in torch (fp32, adapter merged, `generate`) first:
the reference accuracy and speed, in the same process, with the same thread count. One JSON line
per row, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from tunesmith.benchmark.machine import machine
from tunesmith.eval.generate import stop_ids
from tunesmith.eval.qa import is_correct, load_qa
from tunesmith.export import export_model
from tunesmith.export.compare import chat_ids, llama_greedy, onnx_greedy, torch_greedy
from tunesmith.export.onnx import MODEL_FILE
from tunesmith.export.onnx_runtime import OnnxDecoder
from tunesmith.export.qa import qa_settings
from tunesmith.methods.load import load_for_inference


def answer_all(greedy, tokenizer, items, system, new_tokens, stops) -> dict:
    """QA accuracy and tokens/s of `greedy(ids, new_tokens) -> new token ids` over every question (the
    stop token that ends a reply is not counted as a token of it)."""
    correct = produced = 0
    replies = []
    started = time.perf_counter()
    for item in items:
        tokens = [t for t in greedy(chat_ids(tokenizer, item.question, system), new_tokens) if t not in stops]
        produced += len(tokens)
        reply = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        replies.append(reply)
        correct += is_correct(reply, item.answers)
    seconds = time.perf_counter() - started
    return {
        "qa_correct": correct,
        "qa_total": len(items),
        "tokens_per_s": round(produced / seconds, 1),
        "qa_seconds": round(seconds, 1),
        "replies": replies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="out/demo_veltrano")
    parser.add_argument("--out", default="/tmp/tunesmith-export-formats")
    parser.add_argument("--formats", default="gguf:f16,gguf:q8_0,onnx:f32,onnx:int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="Measure the folders an earlier run exported.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    facts = machine()
    print(f"machine: {facts['label']}; threads {args.threads}", flush=True)
    qa_file, new_tokens = qa_settings(Path(args.model), None)
    if not qa_file:
        raise SystemExit(f"{args.model}: its config has no eval.qa; this bench scores the QA questions")
    items = load_qa(qa_file)
    loaded = load_for_inference(args.model, merge=True, dtype="float32")
    stops = stop_ids(loaded.model, loaded.tokenizer)
    reference = answer_all(
        torch_greedy(loaded.model.eval(), loaded.tokenizer), loaded.tokenizer, items, loaded.system, new_tokens, stops
    )
    safetensors = sum(p.stat().st_size for p in Path(args.model).glob("*.safetensors"))
    rows = [
        {
            "format": "torch (trained output, adapter merged)",
            "mb": None,
            "adapter_mb": round(safetensors / 1e6, 1),
            **{k: v for k, v in reference.items() if k != "replies"},
            "same_replies": len(items),
        }
    ]
    print(json.dumps(rows[0]), flush=True)
    for spec in args.formats.split(","):
        format, quant = spec.split(":")
        out = Path(args.out) / f"{format}-{quant}"
        export_seconds = None
        if not args.reuse:
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            export_model(args.model, str(out), format=format, quant=quant)
            export_seconds = round(time.perf_counter() - started, 1)
        manifest = json.loads((out / "tunesmith.json").read_text())
        started = time.perf_counter()
        if format == "gguf":
            import llama_cpp

            path = out / manifest["gguf"]["file"]
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=args.threads, verbose=False)
            runner, runtime = llama_greedy(llm, stops), f"llama.cpp (llama-cpp-python {llama_cpp.__version__})"
        elif format == "transformers":  # --quant gptq4/gptq8 (llm-compressor) or bnb4/bnb8 (a GPU)
            import transformers
            from transformers import AutoModelForCausalLM

            from tunesmith.export.bnb import load_kwargs

            path = out
            read = AutoModelForCausalLM.from_pretrained(out, **load_kwargs(out)).eval()
            runner = torch_greedy(read, loaded.tokenizer)
            method = manifest.get("quantization", {}).get("format", "plain")
            runtime = f"transformers {transformers.__version__} ({method})"
        else:
            import onnxruntime

            path = out / MODEL_FILE[quant]
            decoder = OnnxDecoder(path, threads=args.threads)
            runner = onnx_greedy(decoder, loaded.model, loaded.tokenizer)
            runtime = f"ONNX Runtime {onnxruntime.__version__}, KV cache"
        load_seconds = round(time.perf_counter() - started, 2)
        measured = answer_all(runner, loaded.tokenizer, items, loaded.system, new_tokens, stops)
        after = manifest.get("after_export", {})
        row = {
            "format": f"{format} {quant}",
            "runtime": runtime,
            "mb": round(
                sum(
                    p.stat().st_size
                    for p in out.iterdir()
                    if p.name.startswith(path.name) or (path == out and p.suffix == ".safetensors")
                )
                / 1e6,
                1,
            ),
            "export_s": export_seconds,
            "load_s": load_seconds,
            **{k: v for k, v in measured.items() if k != "replies"},
            "same_replies": sum(a == b for a, b in zip(measured["replies"], reference["replies"])),
            "after_export": {
                k: after.get(k) for k in ("measure", "trained_qa_accuracy", "artifact_qa_accuracy", "drop")
            },
            "greedy_agreement": manifest["check"].get("greedy_agreement"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        f"\nMachine: {facts['label']}; {args.threads} threads; {len(items)} QA questions of {qa_file}, "
        f"{new_tokens} new tokens at most, greedy, one at a time.\n"
    )
    print(
        "| artifact | runtime | size | export s | load s | QA accuracy "
        "| replies identical to the trained output's | tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        size = f"{r['mb']} MB" if r["mb"] else f"adapter {r['adapter_mb']} MB"
        print(
            f"| {r['format']} | {r.get('runtime', 'torch ' + torch.__version__)} | {size} "
            f"| {r.get('export_s') or '-'} | "
            f"{r.get('load_s', '-')} | {r['qa_correct']}/{r['qa_total']} | {r['same_replies']}/{r['qa_total']} | "
            f"{r['tokens_per_s']} |"
        )


if __name__ == "__main__":
    main()
