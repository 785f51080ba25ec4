"""What the data looks like to the model: counts, token-length percentiles, a histogram, and a
rendered preview with the trained tokens marked (`tunesmith data stats|preview`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from tunesmith.data.dataset import TokenizedSet
from tunesmith.data.tokenize import IGNORE_INDEX, TokenizedRow


def _source(where: str) -> str:
    return where.rsplit(":", 1)[0] if ":" in where else where


def set_stats(data: TokenizedSet | list[TokenizedRow], max_length: int, replay_files: set[str] | None = None) -> dict:
    """Counts, length percentiles and per-source totals. Memory-mapped sets are measured from their
    index (no token is read). Sources in `replay_files` (forgetting.replay) are also totalled apart."""
    data = data if isinstance(data, TokenizedSet) else TokenizedSet(data, "")
    lengths = data.lengths()
    per_source = Counter()
    tokens_per_source = Counter()
    for where, n in zip(data.wheres(), lengths.tolist()):
        per_source[_source(where)] += 1
        tokens_per_source[_source(where)] += n
    pct = {f"p{p}": int(np.percentile(lengths, p)) for p in (50, 90, 95, 99)}
    stats = {
        "rows": len(data.rows),
        "tokens": int(lengths.sum()),
        "trained_tokens": data.trained_tokens,
        "length": {
            "min": int(lengths.min()),
            **pct,
            "max": int(lengths.max()),
            "mean": round(float(lengths.mean()), 1),
        },
        "rows_at_max_length": int((lengths >= max_length).sum()),
        "sources": {
            s: {
                "rows": per_source[s],
                "tokens": tokens_per_source[s],
                **({"replay": True} if s in (replay_files or ()) else {}),
            }
            for s in sorted(per_source)
        },
    }
    if replay_files:
        replay = [c for c in stats["sources"].values() if c.get("replay")]
        rows = sum(c["rows"] for c in replay)
        stats["replay"] = {
            "rows": rows,
            "tokens": sum(c["tokens"] for c in replay),
            "share": round(rows / max(1, stats["rows"]), 4),
        }
        stats["domain"] = {"rows": stats["rows"] - rows, "tokens": stats["tokens"] - stats["replay"]["tokens"]}
    return stats


def describe(name: str, data: TokenizedSet, max_length: int, replay_files: set[str] | None = None) -> tuple[dict, str]:
    """The stats of a set and a few printable lines."""
    stats = set_stats(data, max_length, replay_files)
    stats["rejected"] = len(data.rejects.entries)
    stats["dropped"] = data.dropped
    stats["truncated"] = data.truncated
    stats["truncated_without_end"] = data.truncated_without_end
    length = stats["length"]
    lines = [
        f"{name}: {stats['rows']} rows, {stats['tokens']:,} tokens ({stats['trained_tokens']:,} trained), "
        f"{stats['rejected']} rejected, {stats['dropped']} dropped",
        f"  tokens per row: min {length['min']}, p50 {length['p50']}, p90 {length['p90']}, p99 {length['p99']}, "
        f"max {length['max']} (max_length {max_length}; {stats['rows_at_max_length']} rows reach it)",
    ]
    if stats["truncated"]:
        first = ", ".join(t["where"] for t in data.rejects.truncated[:3])
        lines.append(
            f"  {stats['truncated']} rows truncated to max_length (data.overlength: truncate), "
            f"{stats['truncated_without_end']} of them lost their reply's end-of-turn token (first: {first})"
        )
    if "replay" in stats:
        lines.append(
            f"  domain: {stats['domain']['rows']} rows, {stats['domain']['tokens']:,} tokens; replay "
            f"(forgetting.replay): {stats['replay']['rows']} rows, {stats['replay']['tokens']:,} tokens "
            f"({100 * stats['replay']['share']:.1f}% of rows)"
        )
    for source, counts in stats["sources"].items():
        tag = " (replay)" if counts.get("replay") else ""
        lines.append(f"  {source}{tag}: {counts['rows']} rows, {counts['tokens']:,} tokens")
    return stats, "\n".join(lines)


def length_histogram(sets: dict[str, TokenizedSet], path: Path, max_length: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, data in sets.items():
        data = data if isinstance(data, TokenizedSet) else TokenizedSet(data, "")
        ax.hist(data.lengths(), bins=40, alpha=0.6, label=f"{name} ({len(data.rows)} rows)")
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length {max_length}")
    ax.set_xlabel("tokens per row")
    ax.set_ylabel("rows")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def render_trained(tokenizer, row: TokenizedRow, color: bool) -> str:
    """The row's text with trained tokens marked: green on a terminal, ⟦...⟧ otherwise."""
    start, end = ("\x1b[42;30m", "\x1b[0m") if color else ("⟦", "⟧")
    out, run, trained = [], [], None
    for token, label in zip(row.input_ids, row.labels):
        is_trained = label != IGNORE_INDEX
        if trained is not None and is_trained != trained:
            text = tokenizer.decode(run)
            out.append(f"{start}{text}{end}" if trained else text)
            run = []
        run.append(token)
        trained = is_trained
    if run:
        text = tokenizer.decode(run)
        out.append(f"{start}{text}{end}" if trained else text)
    return "".join(out)
