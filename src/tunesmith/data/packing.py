"""Packing: several rows share one sequence, with per-row position ids and no cross-row attention.

`pack_rows` bins rows (first-fit decreasing, after a seeded shuffle so equal lengths do not
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

import torch

from tunesmith.data.tokenize import IGNORE_INDEX, TokenizedRow


def pack_rows(rows: list[TokenizedRow], capacity: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Packs of rows, each at most `capacity` tokens, as features with position_ids."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: -len(rows[i].input_ids))  # stable: shuffled within equal lengths
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(rows[i].input_ids)
        if n > capacity:
            raise ValueError(f"row {rows[i].where} has {n} tokens, more than the pack capacity {capacity}")
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(capacity - n)
    packs = []
    for members in bins:
        input_ids, labels, positions = [], [], []
        for i in members:
            row = rows[i]
            input_ids += row.input_ids
            labels += [IGNORE_INDEX] + row.labels[1:]
            positions += list(range(len(row.input_ids)))
        packs.append({"input_ids": input_ids, "labels": labels, "position_ids": positions})
    return packs


def packing_efficiency(packs: list[dict[str, list[int]]], capacity: int) -> float:
    """Real tokens over pack slots (1.0 = no padding at all)."""
    return sum(len(p["input_ids"]) for p in packs) / max(1, capacity * len(packs))


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
