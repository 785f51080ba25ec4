"""Row data for the stages whose trainer tokenises by itself: preference pairs (dpo, rm), labelled
completions (kto) and prompts (grpo, ppo).

    train, val = load_row_splits(tokenizer, cfg.data, PAIRS, seed=cfg.training.seed, trainer_truncates=True)

The same data options as the tokenised stages (`data.dataset`), applied the same way:
- `train`/`validation` entries are paths or `registry` names, each source with its own `columns`
  and `system`; `weights` mix the training sources (seeded); `max_samples` caps each source;
- invalid rows follow `on_error` / `max_reject_fraction` (skipped rows go to rejects.jsonl);
- `overlength` is judged on the rendered token length (chat template) against `max_length`:
  `drop` leaves the row out (counted), `error` makes it an invalid row, `truncate` lets the trainer
  cut it where the trainer can (TRL's DPO/KTO keep the start) and is an invalid row, with the reason,
  where it cannot (a reward model scores whole replies; a prompt is never cut);
- `val_split` holds out a seeded part of the training rows when there are no validation files
  (`splits.py`, the rule the tokenised stages follow too).
Options that have no meaning for such rows (packing, cleaning, augmentation, streaming, masking)
are refused at config time by the stage record, never ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config.data import DataConfig
from tunesmith.data.dataset import fingerprint
from tunesmith.data.preference import check_kto_labels, to_kto_row, to_pair, to_prompt_row
from tunesmith.data.rejects import Rejects, iter_converted
from tunesmith.data.sources import mix, resolve_sources
from tunesmith.data.splits import split_off
from tunesmith.data.tokenize import render
from tunesmith.errors import ConfigError, DataError


@dataclass(frozen=True)
class RowKind:
    """One kind of row: how a raw row converts, which conversations must fit `data.max_length`, and
    the checks a whole set must pass."""

    name: str
    convert: Callable  # (raw, system, columns) -> dict row (raises RowError)
    conversations: Callable[[dict], list[tuple[list[dict], bool]]]  # (messages, add_generation_prompt) to measure
    fields: tuple[str, ...]  # what the trainer reads of a row (`where`, score, reason stay behind)
    check_set: Callable[[list[dict], list[str]], None] | None = None


def _pair_texts(row):
    return [(row["prompt"] + row["chosen"], False), (row["prompt"] + row["rejected"], False)]


PAIRS = RowKind("preference pair", to_pair, _pair_texts, ("prompt", "chosen", "rejected"))
KTO_ROWS = RowKind(
    "KTO row",
    to_kto_row,
    lambda row: [(row["prompt"] + row["completion"], False)],
    ("prompt", "completion", "label"),
    check_kto_labels,
)
PROMPTS = RowKind("prompt row", to_prompt_row, lambda row: [(row["prompt"], True)], ("prompt", "answer"))


@dataclass
class RowSet:
    rows: list[dict[str, Any]]
    fingerprint: str
    rejects: Rejects = field(default_factory=Rejects)
    truncated: int = 0  # rows longer than data.max_length that the trainer will cut

    def dataset(self, fields: tuple[str, ...] | None = None):
        """A datasets.Dataset of the fields the trainer reads (those every row has)."""
        from datasets import Dataset

        keep = [f for f in fields if all(f in r for r in self.rows)] if fields else None
        return Dataset.from_list([{k: r[k] for k in keep} if keep else dict(r) for r in self.rows])


def _token_length(tokenizer, messages: list[dict], generation_prompt: bool) -> int:
    return len(tokenizer(render(tokenizer, messages, generation_prompt), add_special_tokens=False)["input_ids"])


def _apply_overlength(
    tokenizer, rows: list[dict], kind: RowKind, data: DataConfig, rejects: Rejects, trainer_truncates: bool
) -> tuple[list[dict], int]:
    kept, truncated = [], 0
    for row in rows:
        longest = max(_token_length(tokenizer, messages, prompt) for messages, prompt in kind.conversations(row))
        if longest <= data.max_length:
            kept.append(row)
        elif data.overlength == "drop":
            rejects.drop(row["where"], f"over-length: {longest} tokens > data.max_length={data.max_length}")
        elif data.overlength == "truncate" and trainer_truncates:
            truncated += 1
            kept.append(row)
        else:
            why = (
                ""
                if data.overlength == "error"
                else "; this stage cannot cut such a row (set data.overlength: drop to leave it out)"
            )
            rejects.add(row["where"], "overlength", f"{longest} tokens > data.max_length={data.max_length}{why}")
    return kept, truncated


def load_rows(
    tokenizer,
    data: DataConfig,
    key: str,
    kind: RowKind,
    seed: int,
    trainer_truncates: bool,
    max_samples: int | None = None,
    weights: list[float] | None = None,
) -> RowSet:
    """Every source of `data.<key>` read, validated and measured; the training sources mixed by `weights`."""
    sources = resolve_sources(getattr(data, key), data.registry, key)
    parts, rejects, truncated = [], Rejects(data.on_error == "skip", data.max_reject_fraction), 0
    for source in sources:
        if source.format not in (None, "auto"):
            raise ConfigError(
                f"data.registry: dataset `{source.name}` sets format `{source.format}`, a chat-row format; "
                f"{kind.name}s have one layout of their own (map other field names with `columns`)"
            )
        if source.ranking and kind is not PAIRS:
            raise ConfigError(
                f"data.{key}: dataset `{source.name}` is a ranking dataset (ranking: true): its rows are "
                f"preference pairs, not {kind.name}s"
            )
        system = source.system if source.system is not None else data.system
        columns = source.columns or data.columns
        own = Rejects(rejects.skip, rejects.max_fraction)
        rows = list(
            iter_converted(
                source.paths, lambda raw, system=system, columns=columns: kind.convert(raw, system, columns), own
            )
        )
        rows, cut = _apply_overlength(tokenizer, rows, kind, data, own, trainer_truncates)
        own.check(kind.name, source.paths, kept=len(rows))
        if not rows:
            reason = own.dropped[0]["reason"] if own.dropped else "no rows"
            raise DataError(
                f"no {kind.name}s left in {', '.join(source.paths)} (all {len(own.dropped)} were dropped: {reason})"
            )
        if max_samples:
            rows = rows[:max_samples]
        if kind.check_set:
            kind.check_set(rows, source.paths)
        parts.append(rows)
        rejects = rejects.merge(own)
        truncated += cut
    rows = mix(parts, weights, seed)
    prints = [fingerprint(source.paths) for source in sources]  # each file hashed once
    if len(prints) == 1 and not weights and not max_samples:
        return RowSet(rows, prints[0], rejects, truncated)
    digest = "".join(prints) + repr(weights or "") + repr(max_samples or "")
    return RowSet(rows, hashlib.sha256(digest.encode()).hexdigest()[:16], rejects, truncated)


def load_row_splits(
    tokenizer, data: DataConfig, kind: RowKind, seed: int, trainer_truncates: bool
) -> tuple[RowSet, RowSet | None]:
    """The training rows and the validation rows (its files, a `val_split` of training, or None)."""
    train = load_rows(tokenizer, data, "train", kind, seed, trainer_truncates, data.max_samples, data.weights)
    if data.validation:
        return train, load_rows(tokenizer, data, "validation", kind, seed, trainer_truncates)
    if not data.val_split:
        return train, None
    kept, val = split_off(train.rows, data.val_split, seed)
    if kind.check_set:
        kind.check_set(kept, data.train)
        kind.check_set(val, [f"data.val_split={data.val_split} of {', '.join(data.train)}"])
    return (
        RowSet(kept, train.fingerprint, train.rejects, train.truncated),
        RowSet(val, f"{train.fingerprint}-split{data.val_split}"),
    )
