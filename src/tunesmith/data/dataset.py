"""Build the training and validation sets of a config: read, validate, tokenise, cache, report.

    train, val = build_splits(tokenizer, cfg.data, kind="chat", seed=cfg.training.seed, cache_root=...)

`kind` is "chat" (sft: conversations with masked prompts) or "text" (pt: raw documents cut into
blocks). Rows that are invalid follow `data.on_error` (fail, or skip into a rejects list);
over-length rows follow `data.overlength`. With `data.val_split` and no validation files, a
seeded fraction of the training rows is held out. Entries of `data.train` may be registry names
and are mixed by `data.weights` (see `sources.py`); `max_samples` applies to each source.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.schema import DataConfig
from tunesmith.data import cache
from tunesmith.data.clean import clean_conversations, clean_documents
from tunesmith.data.formats import Rejects, load_conversations
from tunesmith.data.packing import pack_rows
from tunesmith.data.readers import data_files
from tunesmith.data.sources import mix, resolve_sources
from tunesmith.data.text import load_documents, tokenize_documents
from tunesmith.data.tokenize import MaskOptions, TokenizedRow, tokenize_all
from tunesmith.errors import DataError

log = logging.getLogger(__name__)
_MEMO: dict[str, tuple[list[TokenizedRow], dict]] = {}  # same key within one process: no re-read


@dataclass
class TokenizedSet:
    rows: list[TokenizedRow]
    fingerprint: str
    rejects: Rejects = field(default_factory=Rejects)
    from_cache: bool = False

    @property
    def dropped(self) -> int:
        return len(self.rejects.dropped)

    def as_features(self, packing: bool = False, capacity: int = 0, seed: int = 0) -> list[dict[str, list[int]]]:
        if packing:
            return pack_rows(self.rows, capacity, seed)
        return [{"input_ids": r.input_ids, "labels": r.labels} for r in self.rows]

    @property
    def trained_tokens(self) -> int:
        return sum(r.trained_tokens for r in self.rows)

    @property
    def tokens(self) -> int:
        return sum(len(r.input_ids) for r in self.rows)


def fingerprint(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        for file in data_files(path):
            digest.update(str(file).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _cleaned(result, rejects: Rejects):
    kept, report = result
    for reason, examples in report.removed_rows.items():
        for where, detail in examples:
            rejects.drop(where, f"clean: {reason}" + (f" ({detail})" if detail else ""))
    log.info("clean: %s", report.summary())
    return kept


def _tokenize(tokenizer, paths: list[str], data: DataConfig, kind: str, max_samples: int | None, rejects: Rejects):
    if kind == "text":
        documents = load_documents(paths, data.columns, rejects)
        if data.clean:
            documents = _cleaned(clean_documents(documents, data.clean), rejects)
        if max_samples:
            documents = documents[:max_samples]
        return tokenize_documents(tokenizer, documents, data.max_length)
    conversations = load_conversations(paths, data.format, data.system, data.columns, rejects)
    if data.clean:
        conversations = _cleaned(clean_conversations(conversations, data.clean), rejects)
    if max_samples:
        conversations = conversations[:max_samples]
    rows = tokenize_all(tokenizer, conversations, MaskOptions.of(data), rejects)
    rejects.check("row", paths, kept=len(rows))  # over-length errors found while tokenising
    return rows


def build_set(tokenizer, paths: list[str], data: DataConfig, max_samples: int | None = None,
              kind: str = "chat", cache_root: Path | None = None) -> TokenizedSet:
    """Tokenised rows of `paths`; reused from the tokenised cache (`data.cache`) when nothing changed."""
    fp = fingerprint(paths)
    key = cache.cache_key(kind=kind, data=fp, tokenizer=cache.tokenizer_fingerprint(tokenizer), max_samples=max_samples,
                          options=data.model_dump(include={"format", "columns", "system", "max_length", "train_on_prompt",
                                                            "last_turn_only", "overlength", "on_error", "max_reject_fraction",
                                                            "clean"}))
    hit = _MEMO.get(key) or (cache.load_cached(cache_root, key) if (data.cache and cache_root) else None)
    if hit is not None:
        rows, meta = hit
        rejects = Rejects(data.on_error == "skip", data.max_reject_fraction, meta["rejected"], meta["dropped"])
        _MEMO[key] = hit
        log.info("tokenised data for %s taken from the cache (%d rows)", ", ".join(paths), len(rows))
        return TokenizedSet(rows, fp, rejects, from_cache=True)
    rejects = Rejects(data.on_error == "skip", data.max_reject_fraction)
    rows = _tokenize(tokenizer, paths, data, kind, max_samples, rejects)
    if rejects.dropped:
        log.warning("%d row(s) of %s were dropped (%s); see rejects.jsonl in the output", len(rejects.dropped),
                    ", ".join(paths), rejects.dropped[0]["reason"])
    if not rows:
        raise DataError(f"no trainable rows left in {', '.join(paths)} (all {len(rejects.dropped)} were dropped: "
                        f"{rejects.dropped[0]['reason'] if rejects.dropped else 'empty'})")
    meta = {"rejected": rejects.entries, "dropped": rejects.dropped}
    _MEMO[key] = (rows, meta)
    if data.cache and cache_root:
        cache.store(cache_root, key, rows, meta)
    return TokenizedSet(rows, fp, rejects)


def build_text_set(tokenizer, paths: list[str], data: DataConfig, max_samples: int | None = None,
                   cache_root: Path | None = None) -> TokenizedSet:
    return build_set(tokenizer, paths, data, max_samples, kind="text", cache_root=cache_root)


def split_off(rows: list[TokenizedRow], fraction: float, seed: int) -> tuple[list[TokenizedRow], list[TokenizedRow]]:
    """(train, held out): a seeded random `fraction` of the rows, at least one, held out."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n = max(1, round(fraction * len(rows)))
    if n >= len(rows):
        raise DataError(f"data.val_split={fraction} leaves no training rows out of {len(rows)}")
    held = set(order[:n])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def build_sources(tokenizer, data: DataConfig, key: str, kind: str, seed: int, cache_root: Path | None,
                  max_samples: int | None = None, weights: list[float] | None = None,
                  entries: list[str] | None = None) -> TokenizedSet:
    """Tokenise each source of `data.<key>` (or of `entries`, named `key` in messages) with its own
    format/columns (cached per source), then mix."""
    sources = resolve_sources(getattr(data, key) if entries is None else entries, data.registry, key)
    parts = []
    for source in sources:
        options = data.model_copy(update={
            "format": source.format or data.format,
            "columns": source.columns or data.columns,
            "system": source.system if source.system is not None else data.system,
        })
        parts.append(build_set(tokenizer, source.paths, options, max_samples, kind, cache_root))
    if len(parts) == 1 and not weights:
        return parts[0]
    tagged = mix([[(i, r) for r in p.rows] for i, p in enumerate(parts)], weights, seed)
    rows = [r for _, r in tagged]
    rejects = Rejects(data.on_error == "skip", data.max_reject_fraction,
                      [e for p in parts for e in p.rejects.entries], [d for p in parts for d in p.rejects.dropped])
    fp = hashlib.sha256("".join(p.fingerprint for p in parts).encode() + repr(weights).encode()).hexdigest()[:16]
    counts = Counter(i for i, _ in tagged)
    log.info("data.%s mixed: %s", key, ", ".join(f"{s.name}: {counts[i]} of {len(parts[i].rows)} rows"
                                                for i, s in enumerate(sources)))
    return TokenizedSet(rows, fp, rejects, all(p.from_cache for p in parts))


def with_replay(tokenizer, train: TokenizedSet, data: DataConfig, replay: list[str], ratio: float, kind: str,
                seed: int, cache_root: Path | None) -> TokenizedSet:
    """`train` with general rows mixed in (`forgetting.replay`) so that they make up `ratio` of the result.

    Every domain row is kept once; round(ratio / (1 - ratio) x domain rows) general rows are drawn
    (without replacement while there are enough, then repeated), seeded, by the same `mix` as data.weights."""
    general = build_sources(tokenizer, data, "forgetting.replay", kind, seed, cache_root, data.max_samples,
                            entries=replay)
    total = len(train.rows) / (1 - ratio)
    tagged = mix([[(0, r) for r in train.rows], [(1, r) for r in general.rows]], [1 - ratio, ratio], seed, total)
    counts = Counter(i for i, _ in tagged)
    log.info("forgetting.replay: %d general rows (of %d) mixed into %d domain rows (%.1f%%)", counts[1],
             len(general.rows), counts[0], 100 * counts[1] / max(len(tagged), 1))
    rejects = Rejects(data.on_error == "skip", data.max_reject_fraction, train.rejects.entries + general.rejects.entries,
                      train.rejects.dropped + general.rejects.dropped)
    fp = hashlib.sha256(f"{train.fingerprint}+{general.fingerprint}@{ratio}".encode()).hexdigest()[:16]
    return TokenizedSet([r for _, r in tagged], fp, rejects, train.from_cache and general.from_cache)


def build_splits(tokenizer, data: DataConfig, kind: str, seed: int, cache_root: Path | None = None,
                 replay: list[str] | None = None, replay_ratio: float = 0.0) -> tuple[TokenizedSet, TokenizedSet | None]:
    """The training set and the validation set (its files, a `val_split` of training, or None).

    With `replay` (forgetting.replay), general rows are mixed into the training set only, after
    any val_split, so the validation set stays domain data."""
    train = build_sources(tokenizer, data, "train", kind, seed, cache_root, data.max_samples, data.weights)
    val = None
    if data.validation:
        val = build_sources(tokenizer, data, "validation", kind, seed, cache_root)
    elif data.val_split:
        kept, held = split_off(train.rows, data.val_split, seed)
        val = TokenizedSet(held, train.fingerprint + f"-split{data.val_split}", Rejects(), train.from_cache)
        train = TokenizedSet(kept, train.fingerprint, train.rejects, train.from_cache)
    if replay:
        train = with_replay(tokenizer, train, data, replay, replay_ratio, kind, seed, cache_root)
    return train, val
