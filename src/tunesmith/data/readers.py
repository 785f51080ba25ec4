"""Read data files into `(location, row)` pairs, where location is `file:line`.

Supported here: `.json` (an array of objects, or one object per line) and `.jsonl`. Every row
keeps the line it starts on, so a later validation error can point at it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError

READABLE_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class RawRow:
    file: str
    line: int
    data: Any

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def read_rows(path: str | Path) -> list[RawRow]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: data file not found")
    if path.suffix not in READABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type `{path.suffix}` (supported: {', '.join(READABLE_SUFFIXES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 ({exc.reason})") from None
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        return _read_json_array(path, text)
    return _read_json_lines(path, text)


def _read_json_lines(path: Path, text: str) -> list[RawRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(RawRow(str(path), number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    return rows


def _read_json_array(path: Path, text: str) -> list[RawRow]:
    """Decode a JSON array element by element so each row knows the line it starts on."""
    decoder = json.JSONDecoder()
    rows = []
    index = text.index("[") + 1

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def fail(i: int, msg: str) -> DataError:
        return DataError(f"{path}:{text.count(chr(10), 0, i) + 1}: invalid JSON: {msg}")

    index = skip(index)
    if index < len(text) and text[index] == "]":
        return rows
    while True:
        index = skip(index)
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, exc.msg) from None
        rows.append(RawRow(str(path), text.count("\n", 0, index) + 1, value))
        index = skip(end)
        if index >= len(text):
            raise fail(index, "unterminated array (missing `]`)")
        if text[index] == "]":
            if text[index + 1 :].strip():
                raise fail(index + 1, "extra data after the array")
            return rows
        if text[index] != ",":
            raise fail(index, "expected `,` or `]` between rows")
        index += 1
