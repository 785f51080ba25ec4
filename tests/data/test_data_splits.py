"""Holding out validation rows: one rule (data.splits) for the tokenised and the row data paths."""

import pytest

from tunesmith.data.splits import held_out_count, split_off
from tunesmith.errors import DataError


class Row:
    def __init__(self, i):
        self.i = i

    def __repr__(self):
        return f"Row({self.i})"


def test_val_split_is_a_fraction_below_one_and_a_count_from_one():
    assert held_out_count(0.1, 40) == 4
    assert held_out_count(0.01, 40) == 1  # at least one row
    assert held_out_count(3, 40) == 3
    assert held_out_count(3.0, 40) == 3
    with pytest.raises(DataError, match=r"data.val_split=2.5: a count of rows must be a whole number"):
        held_out_count(2.5, 40)
    with pytest.raises(DataError, match=r"data.val_split=0.4 leaves no training rows out of 1"):
        held_out_count(0.4, 1)
    with pytest.raises(DataError, match=r"data.val_split=5 leaves no training rows out of 5"):
        held_out_count(5, 5)


def test_split_is_seeded_disjoint_and_complete():
    rows = [Row(i) for i in range(20)]
    kept, held = split_off(rows, 0.25, seed=3)
    assert len(held) == 5 and len(kept) == 15
    assert sorted(r.i for r in kept + held) == list(range(20))
    assert [r.i for r in split_off(rows, 0.25, seed=3)[1]] == [r.i for r in held]
    assert [r.i for r in split_off(rows, 0.25, seed=4)[1]] != [r.i for r in held]
    assert [r.i for r in kept] == sorted(r.i for r in kept)  # the rows keep their order
    assert len(split_off(rows, 2, seed=3)[1]) == 2


def test_a_repeated_row_is_held_out_once_and_none_of_its_repeats_trains():
    """data.weights repeat a small source's rows (the same objects) before the split."""
    small = [Row(i) for i in range(3)]
    rows = [Row(100 + i) for i in range(10)] + small * 4
    for seed in range(6):
        kept, held = split_off(rows, 0.3, seed)
        assert len({id(r) for r in held}) == len(held)
        assert not {id(r) for r in held} & {id(r) for r in kept}
        assert len(kept) + len(held) <= len(rows)
    kept, held = split_off(rows, 0.5, seed=0)
    assert any(r in small for r in held)  # so the check above tested the repeats


def test_the_config_takes_a_fraction_or_a_count_and_the_data_path_holds_that_many_out(tmp_path, tokenizer):
    from tunesmith.config.data import DataConfig
    from tunesmith.data.dataset import build_splits

    with pytest.raises(ValueError, match=r"data.val_split=0.6: give a fraction below 0.5 .* or a whole number"):
        DataConfig(train=["t.jsonl"], val_split=0.6)
    with pytest.raises(ValueError, match=r"data.val_split=3.5: give a fraction below 0.5"):
        DataConfig(train=["t.jsonl"], val_split=3.5)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(f'{{"instruction": "Question {i}?", "output": "Answer {i}."}}\n' for i in range(20)))
    train, val = build_splits(tokenizer, DataConfig(train=[str(path)], val_split=3), "chat", 0, tmp_path / "cache")
    assert (len(train.rows), len(val.rows)) == (17, 3)
    train, val = build_splits(tokenizer, DataConfig(train=[str(path)], val_split=0.1), "chat", 0, tmp_path / "cache")
    assert (len(train.rows), len(val.rows)) == (18, 2)
