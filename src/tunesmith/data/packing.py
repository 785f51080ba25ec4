"""Packing: several rows share one sequence, with per-row position ids and no cross-row attention.

`pack_bins` / `pack_rows` bin rows (first-fit decreasing, after a seeded shuffle so equal lengths do not
always land together) into packs of at most `capacity` tokens. Each pack carries
`position_ids` that restart at 0 for every row; transformers reads restarts in `position_ids`
(with no `attention_mask`) as sequence boundaries and builds a block-diagonal causal mask, so a
token never attends to another row (sdpa/eager via `masking_utils`, flash-attention via
cu_seqlens). The first label of every row is masked, so no token is trained to follow another
row either: the loss of a pack equals the token-weighted mean of its rows' losses. (transformers
applies this only without a KV cache, which is how the Trainer runs: `TrainingArguments.use_cache`
is False.)

`PackedCollator` right-pads packs to the longest in the batch; the padding is its own segment
(positions from 0, labels -100), so it attends only to itself and is never trained.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tunesmith.data.tokenize import IGNORE_INDEX, TokenizedRow


def pack_bins(lengths, capacity: int, seed: int = 0) -> list[list[int]]:
    """First-fit decreasing over row lengths alone: the row indices of each pack.

    Rows are shuffled (seeded), then stably sorted longest first, and each goes into the first
    pack with room for it. The first pack with room is found in a max-tree of the packs' free
    space (O(log packs) per row instead of a scan of every open pack), with the same result."""
    lengths = [int(n) for n in lengths]
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: -lengths[i])  # stable: shuffled within equal lengths
    size = 1
    while size < max(1, len(lengths)):
        size *= 2
    free = [capacity] * (2 * size)  # leaves: every pack that could ever open, all empty
    bins: list[list[int]] = []
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise PackOverflow(i, n, capacity)
        node = 1
        while node < size:  # descend to the leftmost leaf with room >= n
            node = 2 * node if free[2 * node] >= n else 2 * node + 1
        b = node - size
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
        free[node] -= n
        node //= 2
        while node:
            free[node] = max(free[2 * node], free[2 * node + 1])
            node //= 2
    return bins


class PackOverflow(ValueError):
    def __init__(self, index: int, length: int, capacity: int):
        super().__init__(f"row {index} has {length} tokens, more than the pack capacity {capacity}")
        self.index = index


def build_pack(rows: list[TokenizedRow]) -> dict[str, list[int]]:
    """One pack's features: the rows' tokens back to back, each row's positions from 0, each row's
    first label masked (no token is trained to follow another row)."""
    input_ids, labels, positions = [], [], []
    for row in rows:
        input_ids += row.input_ids
        labels += [IGNORE_INDEX] + row.labels[1:]
        positions += list(range(len(row.input_ids)))
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions}


def pack_rows(rows: list[TokenizedRow], capacity: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Packs of rows, each at most `capacity` tokens, as features with position_ids."""
    try:
        bins = pack_bins([len(r.input_ids) for r in rows], capacity, seed)
    except PackOverflow as exc:
        raise ValueError(
            f"row {rows[exc.index].where} has {len(rows[exc.index].input_ids)} tokens, more than the "
            f"pack capacity {capacity}"
        ) from None
    return [build_pack([rows[i] for i in members]) for members in bins]


class LazyPacks(torch.utils.data.Dataset):
    """Packs of a memory-mapped row set (`data.streaming`), built when the Trainer asks for one.

    Only the bins (row indices, from the lengths array) are held; `total_tokens` is known without
    building any pack."""

    def __init__(self, rows, capacity: int, seed: int = 0):
        self.rows = rows
        bins = pack_bins(rows.lengths(), capacity, seed)
        self.members = np.fromiter((i for b in bins for i in b), dtype=np.int64, count=len(rows))
        self.starts = np.cumsum([0] + [len(b) for b in bins], dtype=np.int64)
        self.total_tokens = int(rows.lengths().sum())

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, k: int) -> dict[str, list[int]]:
        members = self.members[self.starts[k] : self.starts[k + 1]].tolist()
        return build_pack([self.rows[i] for i in members])


def packing_efficiency(packs, capacity: int) -> float:
    """Real tokens over pack slots (1.0 = no padding at all)."""
    tokens = packs.total_tokens if isinstance(packs, LazyPacks) else sum(len(p["input_ids"]) for p in packs)
    return tokens / max(1, capacity * len(packs))


@dataclass
class PackedCollator:
    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        input_ids, labels, positions = [], [], []
        for f in features:
            pad = longest - len(f["input_ids"])
            input_ids.append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            positions.append(list(f["position_ids"]) + list(range(pad)))
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "position_ids": torch.tensor(positions, dtype=torch.long),
        }


def packed_real_tokens(input_ids: torch.Tensor, position_ids: torch.Tensor, pad_token_id: int) -> int:
    """The rows' own tokens in a batch of `PackedCollator`: all but each pack's padding segment.

    The padding is the last segment (positions restart at 0) and holds nothing but the pad id; a
    pack's last row is never that, since a row starts with its own first token (a chat row with
    the template's opening token), so a trailing row that happens to end in the pad id (the pad is
    often the end-of-turn token) still counts in full."""
    real = 0
    for ids, positions in zip(input_ids.tolist(), position_ids.tolist()):
        starts = [i for i, p in enumerate(positions) if p == 0]
        last = starts[-1] if starts else 0
        padding = len(ids) - last if last > 0 and all(t == pad_token_id for t in ids[last:]) else 0
        real += len(ids) - padding
    return real
