"""Build the training and validation sets of a config: read, validate, tokenise, cache, report.

    train, val = build_splits(tokenizer, cfg.data, kind="chat", seed=cfg.training.seed, cache_root=...)

`kind` is "chat" (sft: conversations with masked prompts) or "text" (pt: raw documents cut into
blocks). Rows that are invalid follow `data.on_error` (fail, or skip into a rejects list);
over-length rows follow `data.overlength`. With `data.val_split` and no validation files, a
seeded part of the training rows is held out (`splits.py`). Entries of `data.train` may be
registry names and are mixed by `data.weights` (see `sources.py`); `max_samples` applies to each
source.

With `data.streaming`, each source is tokenised row by row into on-disk arrays (`streaming.py`,
kept in the tokenised cache) and `TokenizedSet.rows` is a memory-mapped `RowArrays` sequence;
val_split, several sources and packing work on it without loading the rows. `data.augment`
expands training rows (never validation rows) before tokenising.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunesmith.config.data import DataConfig
from tunesmith.data import cache
from tunesmith.data.augment import augment_all
from tunesmith.data.clean import clean_conversations, clean_documents
from tunesmith.data.formats import load_conversations
from tunesmith.data.packing import LazyPacks, pack_rows
from tunesmith.data.readers import data_files
from tunesmith.data.rejects import Rejects
from tunesmith.data.sources import mix, resolve_sources
from tunesmith.data.splits import split_off
from tunesmith.data.streaming import stream_tokenize
from tunesmith.data.text import load_documents, tokenize_documents
from tunesmith.data.token_arrays import MemmapRows, RowArrays, RowConcat
from tunesmith.data.tokenize import MaskOptions, TokenizedRow, tokenize_all
from tunesmith.errors import ConfigError, DataError

log = logging.getLogger(__name__)
_MEMO: dict[str, tuple[list[TokenizedRow], dict]] = {}  # same key within one process: no re-read


class RowFeatures:
    """The Trainer's view of memory-mapped rows: item i is row i's features, read when asked for."""

    def __init__(self, rows: RowArrays):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        row = self.rows[i]
        return {"input_ids": row.input_ids, "labels": row.labels}


@dataclass
class TokenizedSet:
    rows: list[TokenizedRow] | RowArrays  # RowArrays: memory-mapped (data.streaming)
    fingerprint: str
    rejects: Rejects = field(default_factory=Rejects)
    from_cache: bool = False

    @property
    def dropped(self) -> int:
        return len(self.rejects.dropped)

    @property
    def truncated(self) -> int:
        """Rows cut to data.max_length (overlength: truncate)."""
        return len(self.rejects.truncated)

    @property
    def truncated_without_end(self) -> int:
        """Truncated rows whose last reply lost its end-of-turn token."""
        return sum(t["lost_end"] for t in self.rejects.truncated)

    def as_features(self, packing: bool = False, capacity: int = 0, seed: int = 0):
        """Training features: a list, or for memory-mapped rows a map-style dataset read row by row."""
        if isinstance(self.rows, RowArrays):
            return LazyPacks(self.rows, capacity, seed) if packing else RowFeatures(self.rows)
        if packing:
            return pack_rows(self.rows, capacity, seed)
        return [{"input_ids": r.input_ids, "labels": r.labels} for r in self.rows]

    @property
    def trained_tokens(self) -> int:
        if isinstance(self.rows, RowArrays):
            return self.rows.trained_tokens
        return sum(r.trained_tokens for r in self.rows)

    @property
    def tokens(self) -> int:
        if isinstance(self.rows, RowArrays):
            return self.rows.tokens
        return sum(len(r.input_ids) for r in self.rows)

    def lengths(self) -> np.ndarray:
        """Tokens per row (from the index for memory-mapped rows)."""
        if isinstance(self.rows, RowArrays):
            return self.rows.lengths()
        return np.array([len(r.input_ids) for r in self.rows], dtype=np.int64)

    def wheres(self):
        return self.rows.wheres() if isinstance(self.rows, RowArrays) else (r.where for r in self.rows)


def fingerprint(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        for file in data_files(path):
            digest.update(str(file).encode())
            with open(file, "rb") as handle:  # in pieces: a file may be larger than memory
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
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
    if data.augment:
        conversations = list(augment_all(conversations, data.augment))
    rows = tokenize_all(tokenizer, conversations, MaskOptions.of(data), rejects)
    rejects.check("row", paths, kept=len(rows))  # over-length errors found while tokenising
    return rows


TOKEN_OPTIONS = {
    "format",
    "columns",
    "system",
    "max_length",
    "train_on_prompt",
    "last_turn_only",
    "overlength",
    "on_error",
    "max_reject_fraction",
    "clean",
    "augment",
}


def build_set(
    tokenizer,
    paths: list[str],
    data: DataConfig,
    max_samples: int | None = None,
    kind: str = "chat",
    cache_root: Path | None = None,
) -> TokenizedSet:
    """Tokenised rows of `paths`; reused from the tokenised cache (`data.cache`) when nothing changed."""
    fp = fingerprint(paths)
    options = data.model_dump(include=TOKEN_OPTIONS)
    if kind == "text":
        options.pop("augment")  # raw text is never augmented
    if not options.get("augment"):
        options.pop("augment", None)  # keys of sets built before augmentation existed stay valid
    layout = {"layout": "memmap"} if data.streaming else {}
    key = cache.cache_key(
        kind=kind,
        data=fp,
        tokenizer=cache.tokenizer_fingerprint(tokenizer),
        max_samples=max_samples,
        options=options,
        **layout,
    )
    if data.streaming:
        return _build_streamed(tokenizer, paths, data, max_samples, kind, cache_root, key, fp)
    hit = _MEMO.get(key) or (cache.load_cached(cache_root, key) if (data.cache and cache_root) else None)
    if hit is not None:
        rows, meta = hit
        rejects = Rejects(
            data.on_error == "skip",
            data.max_reject_fraction,
            meta["rejected"],
            meta["dropped"],
            meta.get("truncated", []),
        )
        _warn_truncated(rejects, paths, data.max_length)
        _MEMO[key] = hit
        log.info("tokenised data for %s taken from the cache (%d rows)", ", ".join(paths), len(rows))
        return TokenizedSet(rows, fp, rejects, from_cache=True)
    rejects = Rejects(data.on_error == "skip", data.max_reject_fraction)
    rows = _tokenize(tokenizer, paths, data, kind, max_samples, rejects)
    _warn_dropped(rejects, paths, len(rows))
    _warn_truncated(rejects, paths, data.max_length)
    meta = {"rejected": rejects.entries, "dropped": rejects.dropped, "truncated": rejects.truncated}
    _MEMO[key] = (rows, meta)
    if data.cache and cache_root:
        cache.store(cache_root, key, rows, meta)
    return TokenizedSet(rows, fp, rejects)


def _warn_truncated(rejects: Rejects, paths: list[str], max_length: int) -> None:
    if rejects.truncated:
        lost = sum(t["lost_end"] for t in rejects.truncated)
        log.warning(
            "%d row(s) of %s were truncated to data.max_length=%d (first: %s); %d of them lost their reply's "
            "end-of-turn token, so the model is not shown where that reply stops",
            len(rejects.truncated),
            ", ".join(paths),
            max_length,
            rejects.truncated[0]["where"],
            lost,
        )


def _warn_dropped(rejects: Rejects, paths: list[str], kept: int) -> None:
    if rejects.dropped:
        log.warning(
            "%d row(s) of %s were dropped (%s); see rejects.jsonl in the output",
            len(rejects.dropped),
            ", ".join(paths),
            rejects.dropped[0]["reason"],
        )
    if not kept:
        raise DataError(
            f"no trainable rows left in {', '.join(paths)} (all {len(rejects.dropped)} were dropped: "
            f"{rejects.dropped[0]['reason'] if rejects.dropped else 'empty'})"
        )


def _build_streamed(tokenizer, paths, data: DataConfig, max_samples, kind, cache_root, key, fp) -> TokenizedSet:
    """`data.streaming`: tokenise row by row into arrays under CACHE/tokenized/KEY (or a temporary folder
    when the cache is off), written beside their place and renamed in, then memory-map them."""
    skip = data.on_error == "skip"
    cached = bool(data.cache and cache_root)
    target = Path(cache_root) / "tokenized" / key if cached else None
    hit = _MEMO.get(key)
    if hit is None and cached:
        try:
            hit = (MemmapRows(target), None) if (target / "meta.json").is_file() else None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring a broken tokenised-cache entry %s (%s); rebuilding it", target, exc)
            shutil.rmtree(target, ignore_errors=True)
    if hit is not None:
        rows = hit[0]
        _MEMO[key] = hit
        log.info("tokenised data for %s taken from the cache (%d rows, memory-mapped)", ", ".join(paths), len(rows))
        rejects = Rejects(
            skip, data.max_reject_fraction, rows.meta["rejected"], rows.meta["dropped"], rows.meta.get("truncated", [])
        )
        _warn_truncated(rejects, paths, data.max_length)
        return TokenizedSet(rows, fp, rejects, from_cache=True)
    if cached:
        target.parent.mkdir(parents=True, exist_ok=True)
        keep, scratch = None, Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=target.parent))
    else:
        keep = tempfile.TemporaryDirectory(prefix="tunesmith-stream-")
        scratch = Path(keep.name) / "rows"
    rejects = Rejects(skip, data.max_reject_fraction)
    try:
        writer = stream_tokenize(tokenizer, paths, data, kind, max_samples, rejects, scratch)
        _warn_dropped(rejects, paths, writer.rows)
        _warn_truncated(rejects, paths, data.max_length)
        writer.finish({"rejected": rejects.entries, "dropped": rejects.dropped, "truncated": rejects.truncated})
        if cached:
            try:
                os.replace(scratch, target)
            except OSError:  # another process finished the same entry first: use theirs
                shutil.rmtree(scratch, ignore_errors=True)
            scratch = target
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    rows = MemmapRows(scratch, keep)
    _MEMO[key] = (rows, None)
    log.info(
        "tokenised %s row by row: %d rows, %d tokens, on disk in %s", ", ".join(paths), len(rows), rows.tokens, scratch
    )
    return TokenizedSet(rows, fp, rejects)


def build_text_set(
    tokenizer, paths: list[str], data: DataConfig, max_samples: int | None = None, cache_root: Path | None = None
) -> TokenizedSet:
    return build_set(tokenizer, paths, data, max_samples, kind="text", cache_root=cache_root)


def without_rows(token_set: TokenizedSet, wheres: set[str]) -> TokenizedSet:
    """`token_set` less every row from one of the locations `wheres` (augmented copies of held-out rows)."""
    keep = [i for i, where in enumerate(token_set.wheres()) if where not in wheres]
    rows = token_set.rows
    rows = rows.subset(keep) if isinstance(rows, RowArrays) else [rows[i] for i in keep]
    return TokenizedSet(rows, token_set.fingerprint, token_set.rejects, token_set.from_cache)


def _merged_rejects(sets: list[TokenizedSet], data: DataConfig) -> Rejects:
    """The rows every one of `sets` left out, under the policy of `data`."""
    rejects = Rejects(data.on_error == "skip", data.max_reject_fraction)
    for token_set in sets:
        rejects = rejects.merge(token_set.rejects)
    return rejects


def build_sources(
    tokenizer,
    data: DataConfig,
    key: str,
    kind: str,
    seed: int,
    cache_root: Path | None,
    max_samples: int | None = None,
    weights: list[float] | None = None,
    entries: list[str] | None = None,
) -> TokenizedSet:
    """Tokenise each source of `data.<key>` (or of `entries`, named `key` in messages) with its own
    format/columns (cached per source), then mix."""
    sources = resolve_sources(getattr(data, key) if entries is None else entries, data.registry, key)
    parts = []
    for source in sources:
        if source.ranking:
            raise ConfigError(
                f"data.{key}: dataset `{source.name}` is a ranking dataset (ranking: true): its rows are "
                "preference pairs, for stage dpo or rm"
            )
        columns = source.text_columns if kind == "text" and source.text_columns is not None else source.columns
        options = data.model_copy(
            update={
                "format": source.format or data.format,
                "columns": columns or data.columns,
                "system": source.system if source.system is not None else data.system,
            }
        )
        parts.append(build_set(tokenizer, source.paths, options, max_samples, kind, cache_root))
    if len(parts) == 1 and not weights:
        return parts[0]
    if data.streaming:  # weights are refused with streaming: the sources one after the other
        rows = RowConcat([p.rows for p in parts])
        rejects = _merged_rejects(parts, data)
        fp = hashlib.sha256("".join(p.fingerprint for p in parts).encode()).hexdigest()[:16]
        return TokenizedSet(rows, fp, rejects, all(p.from_cache for p in parts))
    tagged = mix([[(i, r) for r in p.rows] for i, p in enumerate(parts)], weights, seed)
    rows = [r for _, r in tagged]
    rejects = _merged_rejects(parts, data)
    fp = hashlib.sha256("".join(p.fingerprint for p in parts).encode() + repr(weights).encode()).hexdigest()[:16]
    counts = Counter(i for i, _ in tagged)
    log.info(
        "data.%s mixed: %s",
        key,
        ", ".join(f"{s.name}: {counts[i]} of {len(parts[i].rows)} rows" for i, s in enumerate(sources)),
    )
    return TokenizedSet(rows, fp, rejects, all(p.from_cache for p in parts))


def with_replay(
    tokenizer,
    train: TokenizedSet,
    data: DataConfig,
    replay: list[str],
    ratio: float,
    kind: str,
    seed: int,
    cache_root: Path | None,
    own_rows: bool = False,
) -> TokenizedSet:
    """`train` with general rows mixed in (`forgetting.replay`) so that they make up `ratio` of the result.

    Every domain row is kept once; round(ratio / (1 - ratio) x domain rows) general rows are drawn
    (without replacement while there are enough, then repeated), seeded, by the same `mix` as data.weights.
    `own_rows`: `replay` is tunesmith's own file of chat rows (the model's answers, replay_answers: model),
    read as such whatever data.format and data.columns say about the domain files."""
    update = {"augment": None}  # general rows are not augmented
    if own_rows:
        update.update(format="auto", columns={})
    general = build_sources(
        tokenizer,
        data.model_copy(update=update),
        "forgetting.replay",
        kind,
        seed,
        cache_root,
        data.max_samples,
        entries=replay,
    )
    total = len(train.rows) / (1 - ratio)
    tagged = mix([[(0, r) for r in train.rows], [(1, r) for r in general.rows]], [1 - ratio, ratio], seed, total)
    counts = Counter(i for i, _ in tagged)
    log.info(
        "forgetting.replay: %d general rows (of %d) mixed into %d domain rows (%.1f%%)",
        counts[1],
        len(general.rows),
        counts[0],
        100 * counts[1] / max(len(tagged), 1),
    )
    rejects = _merged_rejects([train, general], data)
    fp = hashlib.sha256(f"{train.fingerprint}+{general.fingerprint}@{ratio}".encode()).hexdigest()[:16]
    return TokenizedSet([r for _, r in tagged], fp, rejects, train.from_cache and general.from_cache)


def build_splits(
    tokenizer,
    data: DataConfig,
    kind: str,
    seed: int,
    cache_root: Path | None = None,
    replay: list[str] | None = None,
    replay_ratio: float = 0.0,
    own_replay: bool = False,
) -> tuple[TokenizedSet, TokenizedSet | None]:
    """The training set and the validation set (its files, a `val_split` of training, or None).

    With `replay` (forgetting.replay), general rows are mixed into the training set only, after
    any val_split, so the validation set stays domain data."""
    train = build_sources(tokenizer, data, "train", kind, seed, cache_root, data.max_samples, data.weights)
    val = None
    plain = data.model_copy(update={"augment": None})  # validation rows are never augmented
    if data.validation:
        val = build_sources(tokenizer, plain, "validation", kind, seed, cache_root)
    elif data.val_split:
        # with augmentation, the held-out rows come from the un-augmented set, and every copy of
        # them leaves the augmented training set
        source = (
            build_sources(tokenizer, plain, "train", kind, seed, cache_root, data.max_samples, data.weights)
            if data.augment and kind == "chat"
            else train
        )
        kept, held = split_off(source.rows, data.val_split, seed)
        val = TokenizedSet(held, source.fingerprint + f"-split{data.val_split}", Rejects(), source.from_cache)
        if source is train:
            train = TokenizedSet(kept, train.fingerprint, train.rejects, train.from_cache)
        else:
            train = without_rows(train, set(val.wheres()))
    if replay:
        train = with_replay(tokenizer, train, data, replay, replay_ratio, kind, seed, cache_root, own_replay)
    return train, val
