"""Tokenised rows on disk, read back memory-mapped (`data.streaming`).

A folder holds the rows of one tokenised set:

    ids.bin     int32, every row's input ids back to back
    labels.bin  int32, the labels, aligned with ids.bin
    index.bin   one record per row: end offset into ids.bin, trained-token count, source file
                (index into meta.json's `files`), line, task (index into `tasks`, -1 = none)
    meta.json   files, tasks, totals (rows, tokens, trained tokens), rejected/dropped rows

`TokenWriter` appends rows chunk by chunk (nothing but the current chunk is in memory);
`MemmapRows` is a read-only `Sequence[TokenizedRow]` over the folder: `rows[i]` reads one row
from the maps, `lengths()`/`trained()` come from the index without touching the tokens, so
totals, percentiles, packing and the length-grouped sampler never iterate the token arrays.
`RowSubset` (a val_split) and `RowConcat` (several sources) are views of the same kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tunesmith.data.tokenize import TokenizedRow

INDEX = np.dtype([("end", "<i8"), ("line", "<i8"), ("trained", "<i4"), ("file", "<i4"), ("task", "<i4")])
ARRAYS_VERSION = 1


class TokenWriter:
    """Append tokenised rows to the arrays of `folder` (created); `finish(meta)` writes meta.json."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ids = open(self.folder / "ids.bin", "wb")
        self._labels = open(self.folder / "labels.bin", "wb")
        self._index = open(self.folder / "index.bin", "wb")
        self.files: dict[str, int] = {}
        self.tasks: dict[str, int] = {}
        self.rows = self.tokens = self.trained_tokens = 0

    def append(self, rows: Iterable[TokenizedRow]) -> None:
        rows = list(rows)
        if not rows:
            return
        index = np.zeros(len(rows), dtype=INDEX)
        lengths = np.fromiter((len(r.input_ids) for r in rows), dtype=np.int64, count=len(rows))
        index["end"] = self.tokens + np.cumsum(lengths)
        for k, row in enumerate(rows):
            file, _, line = row.where.rpartition(":")
            if not file or not line.isdigit():
                file, line = row.where, "0"
            index["line"][k] = int(line)
            index["file"][k] = self.files.setdefault(file, len(self.files))
            index["task"][k] = -1 if row.task is None else self.tasks.setdefault(row.task, len(self.tasks))
            index["trained"][k] = row.trained_tokens
        self._ids.write(np.fromiter((t for r in rows for t in r.input_ids), dtype=np.int32).tobytes())
        self._labels.write(np.fromiter((t for r in rows for t in r.labels), dtype=np.int32).tobytes())
        self._index.write(index.tobytes())
        self.rows += len(rows)
        self.tokens += int(lengths.sum())
        self.trained_tokens += int(index["trained"].sum())

    def finish(self, meta: dict) -> None:
        self.close()
        totals = {"rows": self.rows, "tokens": self.tokens, "trained_tokens": self.trained_tokens}
        (self.folder / "meta.json").write_text(
            json.dumps(
                {
                    "arrays_version": ARRAYS_VERSION,
                    **totals,
                    "files": list(self.files),
                    "tasks": list(self.tasks),
                    **meta,
                },
                ensure_ascii=False,
            )
        )

    def close(self) -> None:
        for handle in (self._ids, self._labels, self._index):
            handle.close()


def _map(path: Path, dtype, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    if path.stat().st_size != count * np.dtype(dtype).itemsize:
        raise ValueError(f"{path.name} has {path.stat().st_size} bytes, expected {count} x {np.dtype(dtype).itemsize}")
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


class RowArrays(Sequence):
    """A sequence of TokenizedRow whose lengths and trained counts are arrays (no token is read)."""

    def lengths(self) -> np.ndarray:
        raise NotImplementedError

    def trained(self) -> np.ndarray:
        raise NotImplementedError

    def wheres(self) -> Iterable[str]:
        raise NotImplementedError

    @property
    def tokens(self) -> int:
        return int(self.lengths().sum())

    @property
    def trained_tokens(self) -> int:
        return int(self.trained().sum(dtype=np.int64))

    def subset(self, indices) -> RowSubset:
        return RowSubset(self, np.asarray(indices, dtype=np.int64))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.row(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.row(int(i))

    def row(self, i: int) -> TokenizedRow:
        raise NotImplementedError


class MemmapRows(RowArrays):
    """The rows of a TokenWriter folder, memory-mapped. `keep` holds whatever must outlive the
    maps (a TemporaryDirectory when the set is not cached)."""

    def __init__(self, folder: Path, keep=None):
        self.folder, self._keep = Path(folder), keep
        self.meta = json.loads((self.folder / "meta.json").read_text())
        if self.meta.get("arrays_version") != ARRAYS_VERSION:
            raise ValueError(f"arrays version {self.meta.get('arrays_version')}, expected {ARRAYS_VERSION}")
        count, tokens = self.meta["rows"], self.meta["tokens"]
        self.index = _map(self.folder / "index.bin", INDEX, count)
        self.ids = _map(self.folder / "ids.bin", np.int32, tokens)
        self.labels = _map(self.folder / "labels.bin", np.int32, tokens)
        if count and int(self.index["end"][-1]) != tokens:
            raise ValueError("index and token arrays disagree")
        self.files, self.tasks = self.meta["files"], self.meta["tasks"]

    def __reduce__(self):  # a DataLoader worker reopens the maps instead of copying them
        return MemmapRows, (self.folder,)

    def __len__(self) -> int:
        return len(self.index)

    def row(self, i: int) -> TokenizedRow:
        record = self.index[i]
        end = int(record["end"])
        start = int(self.index["end"][i - 1]) if i else 0
        task = int(record["task"])
        return TokenizedRow(
            self.ids[start:end].tolist(),
            self.labels[start:end].tolist(),
            f"{self.files[int(record['file'])]}:{int(record['line'])}",
            self.tasks[task] if task >= 0 else None,
        )

    def lengths(self) -> np.ndarray:
        ends = np.asarray(self.index["end"])
        return np.diff(ends, prepend=0)

    def trained(self) -> np.ndarray:
        return np.asarray(self.index["trained"])

    def wheres(self) -> Iterable[str]:
        for file, line in zip(self.index["file"].tolist(), self.index["line"].tolist()):
            yield f"{self.files[file]}:{line}"

    @property
    def tokens(self) -> int:
        return int(self.meta["tokens"])

    @property
    def trained_tokens(self) -> int:
        return int(self.meta["trained_tokens"])


class RowSubset(RowArrays):
    """The rows of `base` at `indices` (in that order)."""

    def __init__(self, base: RowArrays, indices: np.ndarray):
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def row(self, i: int) -> TokenizedRow:
        return self.base.row(int(self.indices[i]))

    def lengths(self) -> np.ndarray:
        return self.base.lengths()[self.indices]

    def trained(self) -> np.ndarray:
        return self.base.trained()[self.indices]

    def wheres(self) -> Iterable[str]:
        wanted = set(self.indices.tolist())
        found = {i: w for i, w in enumerate(self.base.wheres()) if i in wanted}
        return (found[i] for i in self.indices.tolist())


class RowConcat(RowArrays):
    """Several row sets one after the other (data.train with several sources, streamed)."""

    def __init__(self, parts: list[RowArrays]):
        self.parts = parts
        self.ends = np.cumsum([len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def row(self, i: int) -> TokenizedRow:
        k = int(np.searchsorted(self.ends, i, side="right"))
        return self.parts[k].row(i - (int(self.ends[k - 1]) if k else 0))

    def lengths(self) -> np.ndarray:
        return np.concatenate([p.lengths() for p in self.parts])

    def trained(self) -> np.ndarray:
        return np.concatenate([p.trained() for p in self.parts])

    def wheres(self) -> Iterable[str]:
        for part in self.parts:
            yield from part.wheres()
