"""Read data files into `(location, row)` pairs, where location is `file:line`.

Supported: `.json` (an array of objects, or one object per line), `.jsonl`, `.csv` (header
row; `line` is the line the record starts on), `.parquet` (`line` is the 1-based row number), `.txt`
(the whole file is one `{"text"}` row), any of these compressed as `.gz`, and folders (every supported
file inside, sorted by path).
Every row keeps where it came from, so a later validation error can point at it.

`read_rows` reads whole files; `iter_rows` yields the same rows one at a time for
`data.streaming` (JSON lines line by line, CSV record by record, parquet in record batches, a
.txt file as its one document) and refuses a `.json` array, which can only be parsed whole.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError

READABLE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, as some editors write it: not part of the first row


def _json(text: str):
    """json.loads, with every way it can refuse a value turned into one ValueError (too deep a
    nesting raises RecursionError, a number of more than 4300 digits a plain ValueError)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None


@dataclass(frozen=True)
class RawRow:
    file: str
    line: int
    data: Any
    error: tuple[str, str] | None = None  # (field, reason) for a row that could not be read

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _kind(path: Path) -> str:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return suffixes[0] if suffixes else ""


def data_files(path: str | Path) -> list[Path]:
    """The readable files of a path: itself, or every supported file in a folder (recursive)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: data file not found")
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and _kind(p) in READABLE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(f"{path}: folder has no data files ({', '.join(READABLE_SUFFIXES)}, optionally .gz)")
        return files
    return [path]


def read_rows(path: str | Path) -> list[RawRow]:
    rows = []
    for file in data_files(path):
        rows.extend(_read_file(file))
    return rows


def _read_file(path: Path) -> list[RawRow]:
    kind = _kind(path)
    if kind not in READABLE_SUFFIXES:
        shown = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
        raise DataError(
            f"{path}: unsupported file type `{shown}` (supported: {', '.join(READABLE_SUFFIXES)}, optionally .gz)"
        )
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    if kind != ".parquet":
        data = data.removeprefix(BOM)
    if kind == ".parquet":
        return _read_parquet(path, data)
    if kind == ".jsonl" or (kind == ".json" and not data.lstrip().startswith(b"[")):
        return _read_json_lines(path, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 ({exc.reason})") from None
    if kind == ".csv":
        return _read_csv(path, text)
    if kind == ".txt":  # one document per file, for continued pre-training
        return [RawRow(str(path), 1, {"text": text})]
    return _read_json_array(path, text)


def _read_csv(path: Path, text: str) -> list[RawRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows, start = [], 2
    try:
        for record in reader:
            if None in record:
                raise DataError(f"{path}:{start}: more fields than the header has columns")
            rows.append(RawRow(str(path), start, {k: v for k, v in record.items() if v is not None}))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from None
    return rows


def _read_parquet(path: Path, data: bytes) -> list[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read parquet ({exc})") from None
    return [RawRow(str(path), i, row) for i, row in enumerate(table.to_pylist(), start=1)]


def _read_json_lines(path: Path, data: bytes) -> list[RawRow]:
    """One JSON value per line; a line with bad UTF-8 or bad JSON becomes an error row, so every
    broken line of a file is reported at once (and can be skipped with `data.on_error: skip`)."""
    rows = []
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rows.append(RawRow(str(path), number, None, ("row", f"invalid UTF-8 ({exc.reason} at byte {exc.start})")))
            continue
        try:
            rows.append(RawRow(str(path), number, _json(line)))
        except ValueError as exc:
            rows.append(RawRow(str(path), number, None, ("row", str(exc))))
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
        except RecursionError:
            raise fail(index, "nested too deeply") from None
        except ValueError as exc:  # e.g. a number of more than 4300 digits
            raise fail(index, str(exc)) from None
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


# --- streaming: one row at a time ---------------------------------------------------------------

STREAM_BATCH = 1024  # parquet rows per record batch


def iter_rows(path: str | Path) -> Iterator[RawRow]:
    """The rows `read_rows` returns, in the same order with the same locations and error rows,
    read one at a time so that memory does not grow with the file."""
    for file in data_files(path):
        yield from _iter_file(file)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _iter_file(path: Path) -> Iterator[RawRow]:
    kind = _kind(path)
    if kind not in READABLE_SUFFIXES:
        shown = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
        raise DataError(
            f"{path}: unsupported file type `{shown}` (supported: {', '.join(READABLE_SUFFIXES)}, optionally .gz)"
        )
    try:
        if kind == ".parquet":
            yield from _iter_parquet(path)
        elif kind in (".jsonl", ".json"):
            yield from _iter_json_lines(path, kind)
        elif kind == ".csv":
            yield from _iter_csv(path)
        else:  # .txt: one document per file
            yield from _read_file(path)
    except (OSError, EOFError, zlib.error) as exc:
        if path.suffix != ".gz":
            raise
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None


def _iter_json_lines(path: Path, kind: str) -> Iterator[RawRow]:
    with _open_binary(path) as handle:
        for number, raw_line in enumerate(handle, start=1):
            raw_line = raw_line.rstrip(b"\n")
            if number == 1:
                raw_line = raw_line.removeprefix(BOM)
            if not raw_line.strip():
                continue
            if kind == ".json" and raw_line.lstrip().startswith(b"["):
                raise DataError(
                    f"{path}: a JSON array cannot be streamed (it is parsed as a whole); convert it to "
                    ".jsonl (one object per line) or set data.streaming: false"
                )
            kind = ".jsonl"  # only the first non-empty line can open an array
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRow(str(path), number, None, ("row", f"invalid UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            try:
                yield RawRow(str(path), number, _json(line))
            except ValueError as exc:
                yield RawRow(str(path), number, None, ("row", str(exc)))


def _iter_csv(path: Path) -> Iterator[RawRow]:
    with _open_binary(path) as handle:
        read = 0

        def lines():
            nonlocal read
            for raw_line in handle:
                read += 1
                if read == 1:
                    raw_line = raw_line.removeprefix(BOM)
                try:
                    yield raw_line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}:{read}: invalid UTF-8 ({exc.reason})") from None

        reader = csv.DictReader(lines())
        start = 2
        try:
            for record in reader:
                if None in record:
                    raise DataError(f"{path}:{start}: more fields than the header has columns")
                yield RawRow(str(path), start, {k: v for k, v in record.items() if v is not None})
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from None


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="tunesmith-parquet-") as scratch:
        source = path
        if path.suffix == ".gz":  # parquet needs random access: decompress to a scratch file, in pieces
            source = Path(scratch) / path.stem
            with gzip.open(path, "rb") as packed, open(source, "wb") as plain:
                shutil.copyfileobj(packed, plain, 1 << 20)
        try:
            batches = pq.ParquetFile(source).iter_batches(batch_size=STREAM_BATCH)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path}: cannot read parquet ({exc})") from None
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield RawRow(str(path), number, row)
