"""A tokenised-data cache, so a second run with the same data skips tokenisation.

The key hashes everything that changes the tokens: the bytes of every data file, the tokenizer
(its full serialisation and chat template), and the options (format, columns, system prompt,
max_length, over-length policy, masking, max_samples, error policy). A changed input is a new
key, so stale entries are never read. Entries are written to a temporary folder and renamed into
place; an entry that fails to load is ignored and rebuilt.

Layout: CACHE_ROOT/tokenized/KEY/{rows.npz, meta.json}; a streamed set (`data.streaming`, its
own key) is CACHE_ROOT/tokenized/KEY/{ids.bin, labels.bin, index.bin, meta.json}, written by
`token_arrays.TokenWriter` and read memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tunesmith.data.tokenize import TokenizedRow

log = logging.getLogger(__name__)
CACHE_VERSION = 4  # 2: rows keep their task name; 3: truncated rows are counted in the meta; 4: tools, loss_weight


def tokenizer_fingerprint(tokenizer) -> str:
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    digest.update(str(getattr(tokenizer, "chat_template", "")).encode())
    digest.update(repr((tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id)).encode())
    return digest.hexdigest()[:16]


def cache_key(**parts) -> str:
    text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_cached(root: Path, key: str) -> tuple[list[TokenizedRow], dict] | None:
    folder = root / "tokenized" / key
    if not (folder / "meta.json").is_file():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "rows.npz") as arrays:
            ids, labels, lengths = arrays["input_ids"], arrays["labels"], arrays["lengths"]
        if len(lengths) != len(meta["where"]) or int(lengths.sum()) != len(ids):
            raise ValueError("row count mismatch")
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        log.warning("ignoring a broken tokenised-cache entry %s (%s); rebuilding it", folder, exc)
        return None
    rows, start = [], 0
    ids, labels = ids.tolist(), labels.tolist()
    tasks = meta.get("task") or [None] * len(lengths)
    for n, where, task in zip(lengths.tolist(), meta["where"], tasks):
        rows.append(TokenizedRow(ids[start : start + n], labels[start : start + n], where, task))
        start += n
    return rows, meta


def store(root: Path, key: str, rows: list[TokenizedRow], meta: dict) -> None:
    """Write the entry to a temp folder beside its place and rename it in (atomic on one filesystem)."""
    target = root / "tokenized" / key
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=target.parent))
    try:
        ids = np.fromiter((t for r in rows for t in r.input_ids), dtype=np.int64)
        labels = np.fromiter((t for r in rows for t in r.labels), dtype=np.int64)
        lengths = np.array([len(r.input_ids) for r in rows], dtype=np.int64)
        np.savez(scratch / "rows.npz", input_ids=ids, labels=labels, lengths=lengths)
        tasks = {"task": [r.task for r in rows]} if any(r.task is not None for r in rows) else {}
        (scratch / "meta.json").write_text(
            json.dumps({**meta, "where": [r.where for r in rows], **tasks}, ensure_ascii=False)
        )
        os.replace(scratch, target)
    except OSError as exc:
        log.warning("could not write the tokenised cache at %s (%s); continuing without it", target, exc)
        shutil.rmtree(scratch, ignore_errors=True)
