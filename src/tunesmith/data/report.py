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


def set_stats(rows: list[TokenizedRow], max_length: int) -> dict:
    lengths = np.array([len(r.input_ids) for r in rows])
    trained = np.array([r.trained_tokens for r in rows])
    per_source = Counter()
    tokens_per_source = Counter()
    for r, n in zip(rows, lengths.tolist()):
        per_source[_source(r.where)] += 1
        tokens_per_source[_source(r.where)] += n
    pct = {f"p{p}": int(np.percentile(lengths, p)) for p in (50, 90, 95, 99)}
    return {
        "rows": len(rows),
        "tokens": int(lengths.sum()),
        "trained_tokens": int(trained.sum()),
        "length": {"min": int(lengths.min()), **pct, "max": int(lengths.max()), "mean": round(float(lengths.mean()), 1)},
        "rows_at_max_length": int((lengths >= max_length).sum()),
        "sources": {s: {"rows": per_source[s], "tokens": tokens_per_source[s]} for s in sorted(per_source)},
    }


def describe(name: str, data: TokenizedSet, max_length: int) -> tuple[dict, str]:
    """The stats of a set and a few printable lines."""
    stats = set_stats(data.rows, max_length)
    stats["rejected"] = len(data.rejects.entries)
    stats["dropped"] = data.dropped
    length = stats["length"]
    lines = [
        f"{name}: {stats['rows']} rows, {stats['tokens']:,} tokens ({stats['trained_tokens']:,} trained), "
        f"{stats['rejected']} rejected, {stats['dropped']} dropped",
        f"  tokens per row: min {length['min']}, p50 {length['p50']}, p90 {length['p90']}, p99 {length['p99']}, "
        f"max {length['max']} (max_length {max_length}; {stats['rows_at_max_length']} rows reach it)",
    ]
    for source, counts in stats["sources"].items():
        lines.append(f"  {source}: {counts['rows']} rows, {counts['tokens']:,} tokens")
    return stats, "\n".join(lines)


def length_histogram(sets: dict[str, list[TokenizedRow]], path: Path, max_length: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rows in sets.items():
        ax.hist([len(r.input_ids) for r in rows], bins=40, alpha=0.6, label=f"{name} ({len(rows)} rows)")
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
