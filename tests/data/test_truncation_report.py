"""Nothing silent: rows cut by data.overlength: truncate are counted in data check, the run's log
and the run manifest, with how many lost their reply's end-of-turn token."""

import json
import logging

import pytest

from helpers.configs import tiny_run
from helpers.files import write_jsonl
from tunesmith.cli import main
from tunesmith.config.schema import DataConfig
from tunesmith.data import dataset
from tunesmith.data.dataset import build_set
from tunesmith.data.report import describe

ROWS = [{"instruction": f"Question {i}?", "output": f"Answer {i}."} for i in range(6)]
LONG_REPLY = {"instruction": "Count.", "output": "one two three " * 40}


def test_truncated_rows_are_counted_in_memory_and_streamed(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", ROWS + [LONG_REPLY])
    for streaming in (False, True):
        data = build_set(
            tokenizer,
            [str(path)],
            DataConfig(max_length=64, streaming=streaming, cache=False),
            cache_root=tmp_path / "cache",
        )
        assert len(data.rows) == 7 and data.truncated == 1 and data.truncated_without_end == 1
        assert data.rejects.truncated[0]["where"] == f"{path}:7"
        stats, text = describe("train", data, 64)
        assert stats["truncated"] == 1 and stats["truncated_without_end"] == 1
        assert (
            f"1 rows truncated to max_length (data.overlength: truncate), 1 of them lost their reply's end-of-turn "
            f"token (first: {path}:7)" in text
        )
    # counted again when the tokenised rows come from the on-disk cache (a new process)
    config = DataConfig(max_length=64)
    dataset._MEMO.clear()
    build_set(tokenizer, [str(path)], config, cache_root=tmp_path / "cache")
    dataset._MEMO.clear()
    again = build_set(tokenizer, [str(path)], config, cache_root=tmp_path / "cache")
    assert again.from_cache and again.truncated == 1


def test_data_check_reports_truncated_rows(tmp_path, default_model_dir, capsys):
    path = write_jsonl(tmp_path / "a.jsonl", ROWS + [LONG_REPLY])
    assert main(["data", "check", str(path), "--model", str(default_model_dir), "--set", "data.max_length=64"]) == 0
    assert (
        "1 rows truncated to max_length (data.overlength: truncate), 1 of them lost their reply's end-of-turn"
        in capsys.readouterr().out
    )


@pytest.mark.trains
def test_the_run_logs_and_records_truncated_rows(tmp_path, tiny_model_dir, caplog):
    path = write_jsonl(tmp_path / "a.jsonl", ROWS + [LONG_REPLY])
    config, out = tiny_run(
        tmp_path, tiny_model_dir, path, data={"cache": False}, training={"max_steps": 1, "logging_steps": None}
    )
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        assert main(["train", str(config)]) == 0
    assert any(
        "1 row(s) of" in r.message
        and "were truncated to data.max_length=64" in r.message
        and "1 of them lost their reply's end-of-turn token" in r.message
        for r in caplog.records
    )
    data = json.loads((out / "tunesmith.json").read_text())["data"]
    assert data["train_rows_truncated"] == 1 and data["train_rows_truncated_without_end"] == 1
