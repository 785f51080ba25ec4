"""Tokenisation speed of the SFT data path on a synthetic instruction set.

    python bench/tokenize_speed.py --rows 100000

Writes N alpaca rows (prompt 5-60 words, reply 5-300 words, 10% two-turn via history) to a temp
folder, then times: reading + validation, a cold tokenisation (no cache), and a second build that
reads the tokenised cache. Prints rows/s for each; the embedded default's tokenizer is used.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from tunesmith.config.schema import DataConfig
from tunesmith.data import dataset
from tunesmith.data.formats import load_conversations
from tunesmith.models.loader import load_tokenizer, resolve_model_path

WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an which have data model "
    "train token value system user reply answer question Veltrano archive server policy shift laptop"
).split()


def synthetic(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."

    rows = []
    for _ in range(n):
        row = {"instruction": text(5, 60), "output": text(5, 300)}
        if rng.random() < 0.1:
            row["history"] = [[text(5, 30), text(5, 60)]]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    tokenizer = load_tokenizer(resolve_model_path("default"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in synthetic(args.rows)))
        data = DataConfig(max_length=1024)
        started = time.perf_counter()
        conversations = load_conversations([str(path)])
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        cold = dataset.build_set(tokenizer, [str(path)], data, cache_root=Path(tmp) / "cache")
        cold_s = time.perf_counter() - started
        dataset._MEMO.clear()  # as a new process would start
        started = time.perf_counter()
        warm = dataset.build_set(tokenizer, [str(path)], data, cache_root=Path(tmp) / "cache")
        warm_s = time.perf_counter() - started
        assert warm.from_cache and len(warm.rows) == len(cold.rows)
        tokens = cold.tokens
    n = len(conversations)
    print(
        json.dumps(
            {
                "rows": n,
                "tokens": tokens,
                "read_validate_rows_per_s": round(n / read_s),
                "cold_build_s": round(cold_s, 1),
                "cold_rows_per_s": round(n / cold_s),
                "cold_tokens_per_s": round(tokens / cold_s),
                "cached_build_s": round(warm_s, 1),
                "cached_rows_per_s": round(n / warm_s),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
