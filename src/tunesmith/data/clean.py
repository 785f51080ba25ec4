"""Cleaning: normalise text, drop exact and near duplicates, filter by length and script.

Used by the `clean:` config section (applied before tokenisation, so the tokenised cache keys on
it) and by `tunesmith data clean`. Each step counts what it removed and why:

- normalise: Unicode NFKC (CJK full-width punctuation kept), control characters removed (newlines and tabs
  kept), runs of spaces collapsed, trailing spaces trimmed — in every message.
- exact dedup: rows whose normalised text (all turns, case-folded) is identical; the first stays.
- near dedup: MinHash LSH (datasketch) on word 3-grams, or character 4-grams for text without
  spaces (Chinese/Japanese); a row whose estimated Jaccard similarity to an earlier kept row is at
  least `near_dup_threshold` is removed.
- length: rows whose assistant text (or document) has fewer than `min_chars` / more than
  `max_chars` characters.
- script: with `languages`, rows whose letters are mostly outside those scripts (latin, cjk,
  cyrillic, arabic, ...) are removed — a cheap filter, not a language identifier.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from tunesmith.config.data import CleanConfig

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200e\u200f\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")


# Full-width punctuation (，！？：；（）) is how Chinese and Japanese are written: NFKC would turn it
# into ASCII, so it is kept as is; full-width letters and digits still become ASCII.
_FULLWIDTH_PUNCT = re.compile(r"([\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65])")


def normalise(text: str) -> str:
    text = "".join(
        part if _FULLWIDTH_PUNCT.fullmatch(part) else unicodedata.normalize("NFKC", part)
        for part in _FULLWIDTH_PUNCT.split(text)
    )
    text = _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(_SPACES.sub(" ", line).rstrip() for line in text.split("\n"))
    return text.strip()


def script_of(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    code = ord(ch)
    if code < 0x250 or 0x1E00 <= code < 0x1F00:
        return "latin"
    if 0x4E00 <= code < 0xA000 or 0x3400 <= code < 0x4DC0 or 0x3040 <= code < 0x3100 or 0xAC00 <= code < 0xD7B0:
        return "cjk"
    if 0x400 <= code < 0x530:
        return "cyrillic"
    if 0x600 <= code < 0x700:
        return "arabic"
    if 0x370 <= code < 0x400:
        return "greek"
    if 0x900 <= code < 0x980:
        return "devanagari"
    return "other"


LANGUAGE_SCRIPTS = {
    "en": "latin",
    "fr": "latin",
    "de": "latin",
    "es": "latin",
    "it": "latin",
    "pt": "latin",
    "zh": "cjk",
    "ja": "cjk",
    "ko": "cjk",
    "ru": "cyrillic",
    "uk": "cyrillic",
    "ar": "arabic",
    "el": "greek",
    "hi": "devanagari",
}


def _shingles(text: str) -> set[str]:
    words = text.lower().split()
    if len(words) >= 3 and len(words) * 3 > len(text) / 4:  # space-separated language
        return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}
    compact = re.sub(r"\s+", "", text.lower())
    return {compact[i : i + 4] for i in range(max(1, len(compact) - 3))}


@dataclass
class CleanReport:
    kept: int = 0
    removed: Counter = field(default_factory=Counter)
    removed_rows: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    changed_text: int = 0

    def note(self, reason: str, where: str, detail: str = "") -> None:
        self.removed[reason] += 1
        self.removed_rows.setdefault(reason, []).append((where, detail))

    def as_dict(self) -> dict:
        return {
            "kept": self.kept,
            "removed": dict(self.removed),
            "normalised_rows": self.changed_text,
            "rows": {reason: [f"{w}: {d}" for w, d in rows] for reason, rows in self.removed_rows.items()},
        }

    def summary(self) -> str:
        removed = ", ".join(f"{n} {reason}" for reason, n in self.removed.most_common()) or "nothing"
        return f"kept {self.kept} rows; removed {removed}; {self.changed_text} rows had text normalised"


def clean_items(items: list, texts, replace, where, options: CleanConfig) -> tuple[list, CleanReport]:
    """Generic cleaning over items (conversations or documents).

    texts(item) -> list of strings (all text, for dedup); replace(item, fn) -> item with every string
    mapped by fn; where(item) -> location; length text = texts(item)[-1] (the reply or document).
    """
    report = CleanReport()
    seen: dict[str, str] = {}
    lsh = None
    if options.near_dup_threshold is not None:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=options.near_dup_threshold, num_perm=options.num_perm)
    kept = []
    wanted = {LANGUAGE_SCRIPTS.get(lang, lang) for lang in options.languages}
    for index, item in enumerate(items):
        if options.normalise:
            cleaned = replace(item, normalise)
            report.changed_text += texts(cleaned) != texts(item)
            item = cleaned
        parts = texts(item)
        body = parts[-1]
        if len(body) < options.min_chars:
            report.note("too short", where(item), f"{len(body)} chars < clean.min_chars={options.min_chars}")
            continue
        if options.max_chars and len(body) > options.max_chars:
            report.note("too long", where(item), f"{len(body)} chars > clean.max_chars={options.max_chars}")
            continue
        if wanted:
            scripts = Counter(s for s in map(script_of, "".join(parts)) if s)
            total = sum(scripts.values())
            if total and sum(scripts[s] for s in wanted) / total < 0.5:
                main = scripts.most_common(1)[0][0]
                report.note("other language", where(item), f"mostly {main} script")
                continue
        full = "\n".join(parts).casefold()
        if options.dedup:
            digest = hashlib.sha1(full.encode()).hexdigest()
            if digest in seen:
                report.note("exact duplicate", where(item), f"same as {seen[digest]}")
                continue
            seen[digest] = where(item)
        if lsh is not None:
            minhash = MinHash(num_perm=options.num_perm)
            minhash.update_batch([shingle.encode() for shingle in _shingles(full)])
            similar = lsh.query(minhash)
            if similar:
                report.note("near duplicate", where(item), f"similar to {similar[0]}")
                continue
            lsh.insert(f"{where(item) or index}#{index}", minhash)
        kept.append(item)
    report.kept = len(kept)
    return kept, report


def clean_conversations(conversations, options: CleanConfig):
    from dataclasses import replace as dc_replace

    def texts(c):
        return [m["content"] for m in c.messages]

    def replace(c, fn):
        return dc_replace(c, messages=[{**m, "content": fn(m["content"])} for m in c.messages])

    return clean_items(conversations, texts, replace, lambda c: c.where, options)


def clean_documents(documents: list[tuple[str, str]], options: CleanConfig):
    return clean_items(documents, lambda d: [d[1]], lambda d, fn: (d[0], fn(d[1])), lambda d: d[0], options)


# --- `tunesmith data clean`: whole rows out, only their text fields cleaned ---------------------


@dataclass
class _Row:
    """One row being cleaned: the row as read (its own field names and format) and what it means."""

    data: dict
    kind: str  # alpaca | multitask | messages | sharegpt | text
    columns: dict
    texts: list[str]
    where: str


def map_text_fields(row: dict, kind: str, columns: dict[str, str] | None, fn) -> dict:
    """A copy of `row` with `fn` applied to its text fields only (the strings that become turns or
    the document), named as in the file (`columns`: {canonical: name in file}); every other field
    (task, ids, labels, tool calls, unknown keys) is kept as it is."""
    import copy

    name = (columns or {}).get
    out = copy.deepcopy(row)

    def text(holder, key):
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            holder[key] = fn(holder[key])

    if kind == "text":
        text(out, name("text", "text"))
        return out
    text(out, name("system", "system"))
    if kind in ("alpaca", "multitask"):
        for key in ("instruction", "input", "output"):
            text(out, name(key, key))
        history = out.get(name("history", "history"))
        if isinstance(history, list):
            out[name("history", "history")] = [
                [fn(t) if isinstance(t, str) else t for t in pair] if isinstance(pair, list) else pair
                for pair in history
            ]
        for example in out.get(name("examples", "examples")) or []:
            text(example, "input")
            text(example, "output")
        return out
    if kind == "prompt_completion":
        holders = [("prompt", "content"), ("completion", "content")]
    else:
        holders = [("messages", "content") if kind == "messages" else ("conversations", name("content_tag", "value"))]
    call = (name("role_tag", "from"), name("function_tag", "function_call"))
    for key, content in holders:
        if isinstance(out.get(name(key, key)), str):  # a TRL prompt or completion written as a string
            text(out, name(key, key))
            continue
        for turn in out.get(name(key, key)) or []:
            if kind == "sharegpt" and isinstance(turn, dict) and turn.get(call[0]) == call[1]:
                continue
            parts = turn.get(content) if isinstance(turn, dict) else None
            for part in parts if isinstance(parts, list) else []:  # v1 content parts: text and reasoning
                if isinstance(part, dict) and part.get("type") in ("text", "reasoning"):
                    text(part, "value" if "value" in part else "text")
            text(turn, content)
    return out


def clean_sources(
    sources, options: CleanConfig, documents: bool, fmt: str = "auto", columns: dict[str, str] | None = None
) -> tuple[list[dict], CleanReport]:
    """Read and validate every row of `sources` (data.sources.Source), clean them, and return the
    kept rows whole, in their own format, with only their text fields normalised.

    `documents`: raw-text rows (`stage: pt`); otherwise conversation rows of any format. A file
    with invalid rows raises one DataError listing them (file:line:field), as training would."""
    from tunesmith.data.formats import conversation_converter, detect_format
    from tunesmith.data.rejects import collect_rows
    from tunesmith.data.text import to_document
    from tunesmith.data.turns import rename_columns

    rows: list[_Row] = []
    for source in sources:
        cols = source.columns or columns or {}
        kind_of = source.format or fmt
        if documents:

            def convert(raw, cols=cols):
                _, body = to_document(raw, cols)
                return _Row(raw.data, "text", cols, [body], raw.where)
        else:
            to_conv = conversation_converter(kind_of, source.system, cols)

            def convert(raw, cols=cols, to_conv=to_conv, kind_of=kind_of):
                conversation = to_conv(raw)
                kind = detect_format(rename_columns(raw.data, cols)) if kind_of == "auto" else kind_of
                return _Row(raw.data, kind, cols, [m["content"] for m in conversation.messages], raw.where)

        rows += collect_rows(source.paths, convert, "text row" if documents else "row")

    def replace(row: _Row, fn) -> _Row:
        return _Row(
            map_text_fields(row.data, row.kind, row.columns, fn),
            row.kind,
            row.columns,
            [fn(t) for t in row.texts],
            row.where,
        )

    kept, report = clean_items(rows, lambda r: r.texts, replace, lambda r: r.where, options)
    return [row.data for row in kept], report
