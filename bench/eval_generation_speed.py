"""Generation speed of evaluation: one prompt per forward vs batched (left padding), on the embedded model.

    python bench/eval_generation_speed.py                    # 32 held-out questions, 48 new tokens
    python bench/eval_generation_speed.py --rows 16 --max-new-tokens 32

Three ways, in one process on the same prompts (the demo's held-out questions), greedy:
- `one at a time`: batch_size 1 (the cost without batching);
- `batched, input order`: batches of 16 in the file's order (tunesmith before prompts were sorted);
- `batched, sorted`: `eval.generate.generate`, batches of 16 of similar length (what eval uses).
Prints rows/s for each (wall clock, and per CPU-second of this process, which a machine shared with
other jobs disturbs less) and whether the replies equal the one-at-a-time replies.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tunesmith.eval.generate import generate, question_prompt
from tunesmith.methods.load import load_for_inference

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def unsorted_batches(model, tokenizer, prompts, max_new_tokens, batch_size):
    """The eval generation loop as it was: batches in input order, left padding."""
    tokenizer.padding_side = "left"
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        ids = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        out += [
            t.strip() for t in tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    questions = [
        json.loads(line)["question"]
        for line in (ROOT / "examples/data/veltrano_heldout.jsonl").read_text().splitlines()
    ][: args.rows]
    loaded = load_for_inference("default")
    model, tokenizer = loaded.model, loaded.tokenizer
    prompts = [question_prompt(tokenizer, q, None) for q in questions]
    runs = {
        "one at a time": lambda: [g.text for g in generate(model, tokenizer, prompts, args.max_new_tokens, 1)],
        "batched, input order": lambda: unsorted_batches(
            model, tokenizer, prompts, args.max_new_tokens, args.batch_size
        ),
        "batched, sorted": lambda: [
            g.text for g in generate(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
        ],
    }
    reference = None
    print(
        f"{len(prompts)} prompts, {args.max_new_tokens} new tokens, batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, run in runs.items():
        started, cpu = time.perf_counter(), time.process_time()
        replies = run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        reference = reference or replies
        same = sum(a == b for a, b in zip(replies, reference))
        print(
            f"{name:22s} {len(prompts) / seconds:6.3f} rows/s  ({seconds:6.1f} s wall, {cpu:6.1f} CPU-s: "
            f"{len(prompts) / cpu:6.3f} rows per CPU-s; {same}/{len(prompts)} replies equal one-at-a-time)",
            flush=True,
        )


if __name__ == "__main__":
    main()
