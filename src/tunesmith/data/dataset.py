"""Build the training and validation sets of a config: read, validate, tokenise, report."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from tunesmith.config.schema import DataConfig
from tunesmith.data.formats import load_conversations
from tunesmith.data.readers import data_files
from tunesmith.data.text import load_documents, tokenize_documents
from tunesmith.data.tokenize import TokenizedRow, tokenize_all
from tunesmith.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class TokenizedSet:
    rows: list[TokenizedRow]
    dropped: int
    fingerprint: str

    def as_features(self) -> list[dict[str, list[int]]]:
        return [{"input_ids": r.input_ids, "labels": r.labels} for r in self.rows]

    @property
    def trained_tokens(self) -> int:
        return sum(r.trained_tokens for r in self.rows)


def fingerprint(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        for file in data_files(path):
            digest.update(str(file).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def build_text_set(tokenizer, paths: list[str], data: DataConfig, max_samples: int | None = None) -> TokenizedSet:
    documents = load_documents(paths, data.columns)
    if max_samples:
        documents = documents[:max_samples]
    return TokenizedSet(tokenize_documents(tokenizer, documents, data.max_length), 0, fingerprint(paths))


def build_set(tokenizer, paths: list[str], data: DataConfig, max_samples: int | None = None) -> TokenizedSet:
    conversations = load_conversations(paths, data.format, data.system, data.columns)
    if max_samples:
        conversations = conversations[:max_samples]
    rows, dropped = tokenize_all(tokenizer, conversations, data.max_length, data.train_on_prompt)
    if dropped:
        log.warning("%d row(s) had no assistant token left after truncation to %d tokens and were dropped; "
                    "raise data.max_length to keep them", dropped, data.max_length)
    if not rows:
        raise DataError(f"no trainable rows left in {', '.join(paths)} (all {dropped} were dropped)")
    return TokenizedSet(rows, dropped, fingerprint(paths))
