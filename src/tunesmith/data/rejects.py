"""Rows left out of a run, and the loaders that collect them: every file read, every row converted,
every problem gathered before anything is raised.

    rows = collect_rows(paths, convert, "preference row", rejects)

`convert(raw)` returns the row or raises `RowError(field, reason)`; the row's place is added, so
every problem reads `file:line:field: reason` (`row_errors.py`). Unreadable rows (bad JSON or
UTF-8) are problems too. With the default policy (`Rejects()`, `data.on_error: fail`) they are
raised together; with `Rejects(skip=True)` (`data.on_error: skip`) they are set aside, written to
OUTPUT/rejects.jsonl with the rows dropped by policy, and the run fails only when more than
`data.max_reject_fraction` of the rows were invalid.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.readers import RawRow, iter_rows, read_rows
from tunesmith.data.row_errors import RowError, listing, raise_row_errors, row_error_line
from tunesmith.errors import DataError


@dataclass
class Rejects:
    """Rows set aside instead of failing the run (`data.on_error: skip`), with their reasons.

    `skip=False` (the default policy) turns every entry into an error. `check` fails when more
    than `max_fraction` of the rows were rejected, so a broken file never trains silently.
    """

    skip: bool = False
    max_fraction: float = 0.1
    entries: list[dict[str, str]] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    # rows kept but cut to data.max_length (overlength: truncate): {where, tokens, lost_end}
    truncated: list[dict] = field(default_factory=list)

    def add(self, where: str, field_name: str, reason: str) -> None:
        self.entries.append({"where": where, "field": field_name, "reason": reason})

    def drop(self, where: str, reason: str) -> None:
        """A valid row left out by policy (over-length with `drop`, nothing left to train)."""
        self.dropped.append({"where": where, "reason": reason})

    def truncate(self, where: str, tokens: int, lost_end: bool) -> None:
        """A row kept but cut to max_length; `lost_end`: its last reply lost its end-of-turn token."""
        self.truncated.append({"where": where, "tokens": tokens, "lost_end": lost_end})

    def merge(self, other: Rejects | None) -> Rejects:
        """A new Rejects holding this one's rejected and dropped rows, then `other`'s (None: none), under
        this one's policy; the truncated rows stay this one's (they were kept, not left out)."""
        entries, dropped = list(self.entries), list(self.dropped)
        if other is not None:
            entries += other.entries
            dropped += other.dropped
        return Rejects(self.skip, self.max_fraction, entries, dropped, list(self.truncated))

    def messages(self) -> list[str]:
        return [row_error_line(e["where"], e["field"], e["reason"]) for e in self.entries]

    def check(self, kind: str, paths, kept: int, source: str | None = None, noun: str | None = None) -> None:
        """Raise for the entries (default policy), for no rows at all, or for too many skipped."""
        total = kept + len(self.entries)
        if not self.skip:
            raise_row_errors(self.messages(), kind, paths, bool(kept or self.dropped), source, noun)
            return
        if not kept and not self.dropped:
            raise DataError(
                f"no valid {kind}s left in {', '.join(str(p) for p in paths)}: all {total} were "
                f"rejected; first reasons:\n{listing(self.messages())}"
            )
        if self.entries and len(self.entries) / total > self.max_fraction:
            raise DataError(
                f"{len(self.entries)} of {total} {kind}s ({100 * len(self.entries) / total:.1f}%) are invalid, "
                f"more than data.max_reject_fraction={self.max_fraction}; fix them or raise the limit:\n"
                f"{listing(self.messages())}"
            )

    def write(self, path: Path) -> None:
        """rejects.jsonl: one line per rejected or dropped row, with its reason."""
        lines = [json.dumps({"kind": "rejected", **e}, ensure_ascii=False) for e in self.entries]
        lines += [json.dumps({"kind": "dropped", **e}, ensure_ascii=False) for e in self.dropped]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def converted(rows: Iterable[RawRow], convert: Callable[[RawRow], Any], rejects: Rejects) -> Iterator:
    """Yield `convert(row)` for every good row; unreadable rows and RowErrors become `rejects` entries."""
    for raw in rows:
        if raw.error:
            rejects.add(raw.where, raw.error[0], raw.error[1])
            continue
        try:
            yield convert(raw)
        except RowError as exc:
            rejects.add(raw.where, exc.field_name, exc.reason)


def iter_converted(paths, convert: Callable[[RawRow], Any], rejects: Rejects, stream: bool = False) -> Iterator:
    """`converted` over every row of every file. With `stream`, rows are read one at a time
    (`readers.iter_rows`) instead of file by file."""
    for path in paths:
        yield from converted(iter_rows(path) if stream else read_rows(path), convert, rejects)


def collect_rows(
    paths,
    convert: Callable[[RawRow], Any],
    kind: str,
    rejects: Rejects | None = None,
    source: str | None = None,
    noun: str | None = None,
) -> list:
    """`convert` every row of every file and check the problems against `rejects`' policy (default:
    raise them all); `source`: the config key that named the files, for the message."""
    rejects = rejects if rejects is not None else Rejects()
    rows = list(iter_converted(paths, convert, rejects))
    rejects.check(kind, paths, kept=len(rows), source=source, noun=noun)
    return rows


def parse_rows(
    path: str | Path, parse: Callable[[Any, str], Any], what: str, key: str, noun: str | None = None
) -> list:
    """`collect_rows` for a parser `parse(data, where)` that returns the parsed row, or why it is
    invalid as a "field: reason" string (or raises RowError). `what`: the kind of row, `key`: the
    config key that named the file, `noun`: what an empty file lacks."""

    def convert(raw: RawRow):
        parsed = parse(raw.data, raw.where)
        if isinstance(parsed, str):
            field_name, sep, reason = parsed.partition(": ")
            raise RowError(field_name, reason) if sep else RowError("row", parsed)
        return parsed

    return collect_rows([path], convert, what, source=key, noun=noun)
