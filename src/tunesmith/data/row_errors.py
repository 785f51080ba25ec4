"""Invalid rows, reported one way by every loader: `file:line:field: reason`.

A converter raises `RowError(field, reason)` for the row in hand; the loader (`rejects.collect_rows`
and its kin) adds where the row stands and collects every problem of every file, then
`raise_row_errors` raises one DataError that lists the first 20 with `... and N more`, so a user
fixes a file in one pass:

    3 invalid QA row(s); fix them and run again:
      qa.jsonl:2:question: missing or empty
      qa.jsonl:5:answers: expected a non-empty list of non-empty strings
      ...
"""

from __future__ import annotations

from collections.abc import Iterable

from tunesmith.errors import DataError

MAX_SHOWN = 20  # problems listed in one message; the rest are counted


class RowError(Exception):
    """One invalid row: the field (`messages[2].content`) and why; collected as `file:line:field: reason`."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field_name = field_name
        self.reason = reason


def row_error_line(where: str, field_name: str, reason: str) -> str:
    """The one way an invalid row is written: `file:line:field: reason`."""
    return f"{where}:{field_name}: {reason}"


def listing(lines: list[str]) -> str:
    """The first MAX_SHOWN lines, indented one a line, then `... and N more`."""
    shown = "\n  ".join(lines[:MAX_SHOWN])
    more = f"\n  ... and {len(lines) - MAX_SHOWN} more" if len(lines) > MAX_SHOWN else ""
    return f"  {shown}{more}"


def raise_row_errors(
    errors: list[str], kind: str, paths: Iterable, found: bool, source: str | None = None, noun: str | None = None
) -> None:
    """One DataError for all `errors` (lines from `row_error_line`), or for a file without rows (`found`
    false). `kind` names a row ("QA row"), `source` the config key that named the files, `noun` what
    an empty file lacks (`{kind}s` unless given)."""
    named = f" ({source})" if source else ""
    if errors:
        raise DataError(
            f"{len(errors)} invalid {kind}(s){' in ' + source if source else ''}; fix them and run "
            f"again:\n{listing(errors)}"
        )
    if not found:
        raise DataError(f"no {noun or kind + 's'} found in {', '.join(str(p) for p in paths)}{named}")
