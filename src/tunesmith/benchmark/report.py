"""The benchmark's figures: each row against the baseline row of its own precision, the table and
the markdown (the machine label, the method in one paragraph, the table)."""

from __future__ import annotations

METHOD = (
    "Tokens/s: the real (non-padding) tokens of the batches each side trained in its measured steps, "
    "counted as the model received them, over the Trainer's train_runtime; computed tokens/s counts every "
    "position the model ran, padding included. Speed, memory and validation loss are compared with the "
    "baseline row of the same precision (column `vs`). Peak memory: the process's high-water mark, reset "
    "when training starts; in the measured steps, and in one step on the epoch's largest batch (the longest "
    "rows; the same batch for every unpacked row, met by each side somewhere in a whole epoch; a packed "
    "row's packs are all of one size, so its measured peak). Generation: greedy, one prompt at a time, both "
    "sides with the LoRA adapter merged into the base, fp32 weights."
)


def row_name(variant: str, precision: str) -> str:
    return f"{variant}-{precision}"


def plan_rows(variants: tuple[str, ...], precision: str, tunesmith_precision: str) -> list[tuple[str, str]]:
    """(variant, precision setting) of each row to run, in order.

    `precision` is the bench's --precision; `tunesmith_precision` what tunesmith's `auto` resolves
    to here (fp32 or bf16). With auto the tunesmith rows keep their default and the baseline runs
    fp32 and, where tunesmith runs anything else, at that precision too, so every tunesmith row has
    a baseline row to be compared with. fp32 / bf16 put every row at that precision."""
    if precision != "auto":
        return [(v, precision) for v in variants]
    rows = []
    for v in variants:
        if v != "baseline":
            rows.append((v, "auto"))
        else:
            rows.append((v, "fp32"))
            if tunesmith_precision != "fp32" and any(other != "baseline" for other in variants):
                rows.append((v, tunesmith_precision))
    return rows


def summarise(results: dict[str, dict]) -> dict[str, dict]:
    """Add per-epoch time and, for each row, its ratios to the baseline row of the same precision
    (named in `compared_with`; absent where no baseline ran at that precision)."""
    baselines = {r["precision"]: name for name, r in results.items() if r["variant"] == "baseline"}
    for r in results.values():
        # the whole set's tokens at the counted rate: the measured steps are not an average sample of the
        # epoch (length-grouped batches start with the longest rows), so steps x epoch fraction misleads
        r["seconds_per_epoch"] = r["set_tokens"] / r["tokens_per_second"] if r.get("tokens_per_second") else 0.0
        base_name = baselines.get(r["precision"])
        if base_name is None:
            continue
        base = results[base_name]
        r["compared_with"] = base_name
        r["speed_ratio"] = r["tokens_per_second"] / base["tokens_per_second"]
        r["memory_ratio"] = r["peak_memory_mb"] / base["peak_memory_mb"]
        if "largest_batch_peak_memory_mb" in r and "largest_batch_peak_memory_mb" in base:
            r["largest_batch_memory_ratio"] = r["largest_batch_peak_memory_mb"] / base["largest_batch_peak_memory_mb"]
        r["val_loss_delta"] = r["val_loss"] - base["val_loss"]
    return results


def _ratio(r: dict, key: str) -> str:
    return f"{r[key]:.2f}x" if key in r else "-"


def table(results: dict[str, dict]) -> str:
    has_mfu = any("mfu" in r for r in results.values())
    has_probe = any("largest_batch_peak_memory_mb" in r for r in results.values())
    header = [
        "row",
        "precision",
        "train tokens/s (real)",
        "computed tokens/s",
        "padding",
        "s/epoch (set tokens / real tokens/s)",
        "peak memory",
        "final val loss",
        "speed vs baseline",
        "memory vs baseline",
        "vs",
        "generate tokens/s (merged)",
    ]
    if has_probe:
        header[7:7] = ["peak memory, largest batch", "largest batch vs baseline"]
    if has_mfu:
        header.append("MFU")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        precision = r["precision"] + (f", {r['weights']} weights" if r.get("weights", "fp32") != "fp32" else "")
        cells = [
            name,
            precision,
            f"{r['tokens_per_second']:.0f}",
            f"{r['computed_tokens_per_second']:.0f}",
            f"{r['padding_fraction']:.0%}",
            f"{r['seconds_per_epoch']:.0f}",
            f"{r['peak_memory_mb'] / 1024:.2f} GiB",
            f"{r['val_loss']:.4f}",
            _ratio(r, "speed_ratio"),
            _ratio(r, "memory_ratio"),
            r.get("compared_with", "no baseline at this precision"),
            f"{r['generate_tokens_per_second']:.1f}",
        ]
        if has_probe:
            probe = r.get("largest_batch_peak_memory_mb")
            cells[7:7] = [f"{probe / 1024:.2f} GiB" if probe else "-", _ratio(r, "largest_batch_memory_ratio")]
        if has_mfu:
            cells.append(f"{r['mfu']:.1%}" if "mfu" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(summary: dict, command: str) -> str:
    return (
        f"\n### {summary['date']}: `{command}`\n\nMachine: {summary['machine']['label']}.\n\n"
        f"Job: {summary['job']}.\n\n{METHOD}\n\n{table(summary['results'])}\n"
    )
