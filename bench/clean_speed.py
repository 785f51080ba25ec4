"""Cleaning speed (normalise + exact dedup + MinHash near-dedup) on synthetic rows.

python bench/clean_speed.py --rows 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tunesmith.config.schema import CleanConfig
from tunesmith.data.clean import clean_conversations
from tunesmith.data.formats import Conversation

sys.path.insert(0, str(Path(__file__).parent))
from tokenize_speed import synthetic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    rows = synthetic(args.rows)
    rows += rows[: args.rows // 10]  # 10% exact duplicates
    conversations = [
        Conversation(
            [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}], f"row:{i}"
        )
        for i, r in enumerate(rows)
    ]
    started = time.perf_counter()
    kept, report = clean_conversations(conversations, CleanConfig())
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": len(rows),
                "seconds": round(seconds, 1),
                "rows_per_s": round(len(rows) / seconds),
                "removed": dict(report.removed),
                "kept": report.kept,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
