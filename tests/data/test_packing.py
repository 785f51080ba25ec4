"""Packing: a packed batch trains exactly what the rows would train one by one."""

import torch

from tunesmith.data.formats import Conversation
from tunesmith.data.packing import PackedCollator, pack_rows, packing_efficiency
from tunesmith.data.tokenize import IGNORE_INDEX, MaskOptions, tokenize_all

CHATS = [
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Teal."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Four, of course."},
    ],
    [{"role": "user", "content": "用中文说你好"}, {"role": "assistant", "content": "你好！很高兴见到你。"}],
    [
        {"role": "user", "content": "Spell cat."},
        {"role": "assistant", "content": "C-A-T."},
        {"role": "user", "content": "And dog?"},
        {"role": "assistant", "content": "D-O-G, a longer reply than before."},
    ],
    [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "Yes."}],
]


def _rows(tokenizer):
    return tokenize_all(
        tokenizer, [Conversation(c, f"x:{i}") for i, c in enumerate(CHATS)], MaskOptions(max_length=256)
    )


def test_packs_respect_capacity_and_keep_every_row(tokenizer):
    rows = _rows(tokenizer)
    capacity = max(len(r.input_ids) for r in rows) + 10
    packs = pack_rows(rows, capacity, seed=3)
    assert len(packs) < len(rows)
    assert all(len(p["input_ids"]) <= capacity for p in packs)
    assert sum(len(p["input_ids"]) for p in packs) == sum(len(r.input_ids) for r in rows)
    # every row appears once, as a segment whose positions restart at 0
    segments = []
    for p in packs:
        starts = [i for i, pos in enumerate(p["position_ids"]) if pos == 0] + [len(p["input_ids"])]
        segments += [tuple(p["input_ids"][a:b]) for a, b in zip(starts, starts[1:])]
        assert all(p["labels"][s] == IGNORE_INDEX for s in starts[:-1])
    assert sorted(segments) == sorted(tuple(r.input_ids) for r in rows)
    assert 0.5 < packing_efficiency(packs, capacity) <= 1.0
    assert pack_rows(rows, capacity, seed=3) == packs  # deterministic


def test_packed_loss_equals_token_weighted_mean_of_row_losses(tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_dir), dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    rows = _rows(tokenizer)
    pad = tokenizer.pad_token_id
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:  # one row at a time: no padding, no packing
            out = model(input_ids=torch.tensor([r.input_ids]), labels=torch.tensor([r.labels]))
            n = sum(1 for label in r.labels[1:] if label != IGNORE_INDEX)
            total += out.loss.item() * n
            count += n
        expected = total / count
        packs = pack_rows(rows, capacity=120, seed=0)
        assert len(packs) >= 2 and any(len(p["position_ids"]) < 120 for p in packs)  # padded rows in the batch
        batch = PackedCollator(pad)(packs)
        assert "attention_mask" not in batch
        # no KV cache, as under the Trainer (TrainingArguments.use_cache=False): transformers reads
        # restarting position ids as row boundaries only when there is no cache and no attention mask
        packed = model(**batch, use_cache=False).loss.item()
        # the same with eager attention (mask built the same way, computed differently)
        model.set_attn_implementation("eager")
        packed_eager = model(**batch, use_cache=False).loss.item()
    assert abs(packed - expected) < 1e-5, (packed, expected)
    assert abs(packed_eager - expected) < 1e-5, (packed_eager, expected)
