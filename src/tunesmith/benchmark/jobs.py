"""The benchmark's job: synthetic chat rows with a realistic length spread, written as job files,
and the facts about them every variant shares (token lengths with the model's tokenizer).

Copy, reverse and sort tasks over common words, so the loss has something to learn; lengths
log-uniform between `min_tokens` and `max_tokens`.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

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
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"{instruction} {' '.join(chosen)}"},
                    {"role": "assistant", "content": " ".join(transform(chosen))},
                ]
            }
        )
    return rows


def write_job(folder: Path, rows: int, val_rows: int, seed: int, min_tokens: int, max_tokens: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    every = synthetic_rows(rows + val_rows, seed, min_tokens, max_tokens)
    train, val = folder / "train.jsonl", folder / "validation.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in every[:rows]))
    val.write_text("".join(json.dumps(r) + "\n" for r in every[rows:]))
    return {"train": str(train), "validation": str(val)}


def token_facts(spec: dict) -> dict:
    """Real token lengths of the training rows as tunesmith tokenises them (the model's tokenizer)."""
    from tunesmith.config.data import DataConfig
    from tunesmith.data.dataset import build_set
    from tunesmith.models.loader import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(spec["model"]))
    per_row = [
        len(r.input_ids)
        for r in build_set(tokenizer, [spec["train"]], DataConfig(max_length=spec["max_length"]), cache_root=None).rows
    ]
    lengths = sorted(per_row)
    pick = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    return {
        "real_tokens": sum(lengths),
        "mean_tokens": sum(lengths) / len(lengths),
        "length_percentiles": f"{pick(0.05)}/{pick(0.5)}/{pick(0.95)}/{lengths[-1]}",
        "row_tokens": per_row,
    }


def write_largest_batch(spec: dict, folder: Path) -> dict:
    """The epoch's largest batch as a job file of its own: the `batch_rows` longest training rows.

    Peak memory follows the largest batch a run meets, and the measured steps do not meet the same
    one on every side: length-grouped batches put the longest rows first, random ones meet them
    somewhere in the epoch, padded to the longest row. One step on these rows is each side's peak
    at the batch both meet in a whole epoch (the baseline's has the same positions, mostly padding)."""
    rows = Path(spec["train"]).read_text().splitlines()
    if len(rows) != len(spec["row_tokens"]):
        raise ValueError(f"{spec['train']}: {len(rows)} rows but {len(spec['row_tokens'])} tokenised")
    longest = sorted(range(len(rows)), key=lambda i: -spec["row_tokens"][i])[: spec["batch_rows"]]
    path = folder / "largest_batch.jsonl"
    path.write_text("".join(rows[i] + "\n" for i in sorted(longest)))
    return {"largest_batch": str(path), "largest_batch_positions": spec["batch_rows"] * spec["row_tokens"][longest[0]]}


def describe_job(spec: dict) -> str:
    return (
        f"{spec['rows']} training rows ({spec['real_tokens']:,} tokens, lengths p5/p50/p95/max "
        f"{spec['length_percentiles']}), {spec['val_rows']} validation rows, {spec['epochs']} epoch(s)"
        f"{' capped at ' + str(spec['max_steps']) + ' steps' if spec['max_steps'] > 0 else ''}, LoRA r=16 "
        f"all-linear, lr {spec['learning_rate']} cosine, {spec['tokens_per_step']} tokens per step "
        f"({spec['batch_rows']} rows per batch unpacked; {spec['batch_packs']} packs of {spec['pack_length']} "
        f"tokens packed), model {spec['model']}"
    )
