"""Peak memory of building the SFT training set in memory vs with `data.streaming: true`.

    python bench/streaming_memory.py --rows 50000 200000

For each size, writes N synthetic alpaca rows (bench/tokenize_speed.py's generator: prompt 5-60
words, reply 5-300 words, 10% with one history turn) as JSONL, then in a fresh subprocess per
mode builds the training set exactly as `tunesmith train` does (validate, tokenise, write the
tokenised cache, make the Trainer's features) and reads 2,000 random training items back. Each
child reports its resident set after loading the tokenizer (the baseline) and the peak of the
build (VmHWM reset when the build starts: runtime.peak_memory.PeakMemory, the function every peak
figure of tunesmith uses), and after the reads its current anonymous and file-backed resident memory:
memory-mapped token pages that were read count as file-backed RSS (page cache the kernel can
drop), not as memory the process allocated. The embedded model's tokenizer, max_length 1024.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tokenize_speed import synthetic


def current_rss_mb() -> float:
    """This process's resident set now (VmRSS), where the measured build starts."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))


def resident_mb() -> dict[str, float]:
    """Current anonymous and file-backed resident memory (/proc/self/status)."""
    found = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("RssAnon:", "RssFile:")):
                found[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return {"anon_after_reads_mb": found.get("RssAnon"), "file_after_reads_mb": found.get("RssFile")}


def child(mode: str, path: str, cache: str) -> None:
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.dataset import build_set
    from tunesmith.models.loader import load_tokenizer, resolve_model_path
    from tunesmith.runtime.peak_memory import PeakMemory

    tokenizer = load_tokenizer(resolve_model_path("default"))
    tokenizer("warm up")

    baseline = current_rss_mb()
    started = time.perf_counter()
    # the build's own high-water mark, reset when it starts (runtime.peak_memory, as every peak figure;
    # not ru_maxrss: across fork + exec that keeps the parent's, which here holds the synthetic rows)
    with PeakMemory() as memory:
        data = DataConfig(max_length=1024, streaming=mode == "streaming")
        built = build_set(tokenizer, [path], data, cache_root=Path(cache))
        features = built.as_features()
    seconds = time.perf_counter() - started
    built_peak = memory.peak_rss_mb
    rng = random.Random(0)
    read = sum(len(features[rng.randrange(len(features))]["input_ids"]) for _ in range(2000))
    print(
        json.dumps(
            {
                "mode": mode,
                "rows": len(built.rows),
                "tokens": built.tokens,
                "build_s": round(seconds, 1),
                "baseline_rss_mb": round(baseline, 1),
                "peak_mb": round(built_peak, 1),
                "peak_over_baseline_mb": round(built_peak - baseline, 1),
                "sampled_tokens": read,
                **resident_mb(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--modes", nargs="+", default=["in-memory", "streaming"])
    parser.add_argument("--child", nargs=3, metavar=("MODE", "PATH", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            path = Path(tmp) / f"synthetic_{n}.jsonl"
            with open(path, "w") as handle:
                for row in synthetic(n):
                    handle.write(json.dumps(row) + "\n")
            size_mb = path.stat().st_size / 2**20
            for mode in args.modes:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, str(path), f"{tmp}/cache-{mode}-{n}"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = {"file_mb": round(size_mb, 1), **json.loads(out.stdout.strip().splitlines()[-1])}
                print(json.dumps(result), flush=True)
                results.append(result)
    print(
        "\n| rows | file | mode | build | peak RSS of the build | over baseline "
        "| after 2,000 reads: anon / file-backed |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in results:
        print(
            f"| {r['rows']:,} | {r['file_mb']} MB | {r['mode']} | {r['build_s']} s | {r['peak_mb']:,.0f} MB | "
            f"{r['peak_over_baseline_mb']:,.0f} MB | "
            f"{r['anon_after_reads_mb']:,.0f} / {r['file_after_reads_mb']:,.0f} MB |"
        )


if __name__ == "__main__":
    main()
