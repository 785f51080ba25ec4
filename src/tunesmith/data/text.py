"""Raw text for continued pre-training (`stage: pt`).

A document is a `.txt` file, or a row with a `text` field in any readable file (`columns` maps
another field name onto `text`). Documents are tokenised with an end-of-text token appended and
cut into blocks of at most `max_length` tokens; a block never spans two documents, so no token
is trained to follow text from another document. Every token is trained.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.data.readers import RawRow
from tunesmith.data.rejects import Rejects, collect_rows
from tunesmith.data.row_errors import RowError
from tunesmith.data.tokenize import TokenizedRow
from tunesmith.data.turns import rename_columns


def to_document(raw: RawRow, columns: dict[str, str] | None) -> tuple[str, str]:
    if not isinstance(raw.data, dict):
        raise RowError("row", "expected a JSON object with a `text` field")
    text = rename_columns(raw.data, columns).get("text")
    if not isinstance(text, str):
        raise RowError("text", "missing or not a string (raw-text rows need a `text` field)")
    if not text.strip():
        raise RowError("text", "empty")
    return raw.where, text


def load_documents(
    paths: list[str | Path], columns: dict[str, str] | None = None, rejects: Rejects | None = None
) -> list[tuple[str, str]]:
    """(where, text) for every document; rows without a non-empty string `text` are errors."""
    return collect_rows(paths, lambda raw: to_document(raw, columns), "text row", rejects)


def tokenize_documents(tokenizer, documents: list[tuple[str, str]], max_length: int) -> list[TokenizedRow]:
    end = tokenizer.eos_token_id
    rows = []
    for where, text in documents:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + ([end] if end is not None else [])
        for start in range(0, len(ids), max_length):
            block = ids[start : start + max_length]
            if len(block) > 1:  # a single token has nothing to predict
                rows.append(TokenizedRow(block, list(block), where))
    return rows
