"""Tokenise a set larger than memory (`data.streaming: true`) into on-disk arrays.

The same steps as the in-memory path (`dataset._tokenize`), one row at a time: rows are read
by `readers.iter_rows`, validated by the same per-row conversion (the same file:line:field
entries, the same `on_error` / `max_reject_fraction` / `overlength` checks at the end),
cleaned (normalisation and filters; dedup needs the whole set and is refused by the config),
cut to `max_samples`, augmented, then tokenised `CHUNK` rows at a time by `tokenize_all` /
`tokenize_documents` and appended to a `TokenWriter`. Memory holds one chunk, the rejected
rows' messages and a few counters; the result equals the in-memory rows exactly.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from tunesmith.config.data import DataConfig
from tunesmith.data.augment import augment_conversation
from tunesmith.data.clean import clean_conversations, clean_documents
from tunesmith.data.formats import conversation_converter
from tunesmith.data.rejects import Rejects, iter_converted
from tunesmith.data.text import to_document, tokenize_documents
from tunesmith.data.token_arrays import TokenWriter
from tunesmith.data.tokenize import MaskOptions, tokenize_all

log = logging.getLogger(__name__)
CHUNK = 512  # rows tokenised per call (tokenize_all's own batch)


def stream_tokenize(
    tokenizer, paths: list[str], data: DataConfig, kind: str, max_samples: int | None, rejects: Rejects, folder: Path
) -> TokenWriter:
    """Write the tokenised rows of `paths` into `folder`; raises DataError like the in-memory path.
    The caller writes meta.json (`writer.finish`) once the rejects are final."""
    text = kind == "text"
    convert = (
        (lambda raw: to_document(raw, data.columns))
        if text
        else conversation_converter(data.format, data.system, data.columns)
    )
    late = Rejects(rejects.skip, rejects.max_fraction)  # found while tokenising, reported after the row errors
    writer = TokenWriter(folder)
    options = MaskOptions.of(data)
    chunk: list = []
    converted = taken = 0
    removed: Counter = Counter()

    def flush():
        if text:
            writer.append(tokenize_documents(tokenizer, chunk, data.max_length))
        else:
            writer.append(tokenize_all(tokenizer, chunk, options, late, batch=CHUNK))
        chunk.clear()

    try:
        for item in iter_converted(paths, convert, rejects, stream=True):
            converted += 1
            if rejects.entries and not rejects.skip:
                continue  # the run will fail: only validate the rest, as the in-memory path does
            if data.clean:
                kept, report = (clean_documents if text else clean_conversations)([item], data.clean)
                for reason, examples in report.removed_rows.items():
                    removed[reason] += len(examples)
                    for where, detail in examples:
                        rejects.drop(where, f"clean: {reason}" + (f" ({detail})" if detail else ""))
                if not kept:
                    continue
                item = kept[0]
            taken += 1
            if max_samples and taken > max_samples:
                continue
            chunk.extend(augment_conversation(item, data.augment) if data.augment and not text else [item])
            if len(chunk) >= CHUNK:
                flush()
        flush()
    finally:
        writer.close()
    if data.clean:
        log.info(
            "clean: kept %d rows; removed %s",
            min(taken, max_samples or taken),
            ", ".join(f"{n} {reason}" for reason, n in removed.most_common()) or "nothing",
        )
    rejects.check("text row" if text else "row", paths, kept=converted)
    if not text:
        rejects.entries += late.entries
        rejects.dropped += late.dropped
        rejects.truncated += late.truncated
        rejects.check("row", paths, kept=writer.rows)
    return writer
