"""Holding out validation rows (`data.val_split`): the one rule every data path asks.

    kept, held = split_off(rows, data.val_split, seed)

A seeded shuffle picks the held-out rows: `val_split` below 1 is a fraction of the rows (at least
one row), a whole number from 1 up is a count of rows. At least one row must stay for training.

`data.weights` repeat a small source's rows (the same row objects) before the split is taken, so
a row may stand several times in `rows`: each held-out row is held out once, and none of its
repeats stays in training (validation never scores a row the model trained on).

Memory-mapped rows (`RowArrays`, data.streaming) are split into index views of the same arrays;
lists into lists.
"""

from __future__ import annotations

import random

import numpy as np

from tunesmith.data.token_arrays import RowArrays
from tunesmith.errors import DataError


def held_out_count(val_split: float, total: int) -> int:
    """How many of `total` rows `val_split` holds out: a fraction (below 1, at least one row) or a count."""
    if val_split >= 1:
        if val_split != int(val_split):
            raise DataError(
                f"data.val_split={val_split}: a count of rows must be a whole number (or give a fraction below 1)"
            )
        n = int(val_split)
    else:
        n = max(1, round(val_split * total))
    if n >= total:
        raise DataError(f"data.val_split={val_split} leaves no training rows out of {total}")
    return n


def split_off(rows, val_split: float, seed: int):
    """(training rows, held-out rows): a seeded `val_split` of `rows` held out, repeats kept apart."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = np.zeros(len(rows), dtype=bool)
    held[order[: held_out_count(val_split, len(rows))]] = True
    if isinstance(rows, RowArrays):  # streaming refuses data.weights: no row stands twice
        return rows.subset(np.flatnonzero(~held)), rows.subset(np.flatnonzero(held))
    out = {id(r): r for r, h in zip(rows, held) if h}  # each held-out row once, by identity
    return [r for r in rows if id(r) not in out], list(out.values())
