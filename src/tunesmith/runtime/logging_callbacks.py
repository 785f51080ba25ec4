"""Trainer callbacks: a metrics JSONL and a loss-curve PNG in the output folder (redrawn during
training, so a run can be watched: open OUTPUT.partial/loss.png)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from transformers import TrainerCallback


class MetricsLogger(TrainerCallback):
    """Append every log record (loss, lr, eval loss, ...) with its step to `metrics.jsonl`.

    NaN and inf are written as strings ("nan", "inf") so they are never hidden or dropped.
    """

    def __init__(
        self,
        folder: Path,
        resume_step: int | None = None,
        write: bool = True,
        live_plot: float | None = None,
        title: str = "",
    ):
        """With `resume_step`, records of an interrupted run up to that step are kept (later
        ones were not part of the checkpoint the run resumes from); otherwise the file starts empty.
        With `live_plot` (seconds), loss.png beside it is redrawn at most that often while training."""
        self.path = Path(folder) / "metrics.jsonl"
        self.records: list[dict] = []
        self.live_plot, self.title = live_plot, title
        self._plotted_at = time.monotonic()
        if not write:  # another process of a multi-process run writes the file
            return
        if resume_step is not None and self.path.is_file():
            old = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.records = [r for r in old if r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for key, value in logs.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)
            record[key] = value
        self.records.append(record)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if (
            self.live_plot
            and ("loss" in logs or "eval_loss" in logs)
            and time.monotonic() - self._plotted_at >= self.live_plot
        ):
            self.redraw()

    def redraw(self) -> Path | None:
        """loss.png from the records so far, replaced atomically (a viewer never reads half a PNG)."""
        self._plotted_at = time.monotonic()
        scratch = self.path.with_name(".loss.png.tmp")
        if plot_loss(self.records, scratch, self.title, format="png") is None:
            return None
        os.replace(scratch, self.path.with_name("loss.png"))
        return self.path.with_name("loss.png")


def plot_loss(records: list[dict], path: Path, title: str = "", format: str | None = None) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
    evals = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), (int, float))]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    return _save(fig, ax, "loss", title, path, format)


def plot_metric(records: list[dict], key: str, path: Path, title: str = "", band: str | None = None) -> Path | None:
    """One logged metric over optimiser steps (e.g. GRPO's mean reward), with an optional +-`band` (its std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        (r["step"], r[key], r.get(band, 0.0) if band else 0.0) for r in records if isinstance(r.get(key), (int, float))
    ]
    if not points:
        return None
    steps, values, spread = zip(*points)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, values, label=key)
    if band:
        ax.fill_between(
            steps,
            [v - s for v, s in zip(values, spread)],
            [v + s for v, s in zip(values, spread)],
            alpha=0.2,
            label=f"+- {band}",
        )
    return _save(fig, ax, key, title, path)


def _save(fig, ax, ylabel: str, title: str, path: Path, format: str | None = None) -> Path:
    import matplotlib.pyplot as plt

    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format=format)
    plt.close(fig)
    return path


class RewardPlot(TrainerCallback):
    """Draw the logged mean reward (+- its std within groups) into reward.png when training ends
    (the online-RL stages log `reward` and `reward_std`)."""

    def __init__(self, work, title: str):
        self.work, self.title, self.records = work, title, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            self.records.append({"step": state.global_step, **logs})

    def on_train_end(self, args, state, control, **kwargs):
        plot_metric(self.records, "reward", Path(self.work) / "reward.png", self.title, band="reward_std")
