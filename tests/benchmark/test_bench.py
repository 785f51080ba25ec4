"""`tunesmith bench`: the job it builds, its figures, and the reduced-size run CI does.

The reduced run prints its figures; it asserts what must hold on any machine (same data and
tokens in every variant, finite losses, positive speeds), never a time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tunesmith.benchmark.flops import flops_per_token
from tunesmith.benchmark.jobs import synthetic_rows
from tunesmith.cli import main
from tunesmith.runtime.precision import cpu_has_native_bf16, cpu_model_name


def test_synthetic_rows_are_seeded_and_spread_over_the_length_range(tokenizer):
    rows = synthetic_rows(400, seed=3, min_tokens=30, max_tokens=600)
    assert rows == synthetic_rows(400, seed=3, min_tokens=30, max_tokens=600)
    assert rows != synthetic_rows(400, seed=4, min_tokens=30, max_tokens=600)
    token_lengths = sorted(
        len(
            tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)[
                "input_ids"
            ]
        )
        for r in rows
    )
    # log-uniform over [30, 600]: the shortest near 30, the longest near 600, the median near sqrt(30*600)=134
    assert 25 <= token_lengths[0] <= 50 and 520 <= token_lengths[-1] <= 680
    assert 100 <= token_lengths[len(token_lengths) // 2] <= 175
    # the reply is a function of the prompt (copy, reverse or sort), so the loss has something to learn
    for row in rows[:20]:
        words = row["messages"][0]["content"].split(":", 1)[1].split()
        reply = row["messages"][1]["content"].split()
        assert reply in (words, words[::-1], sorted(words))


def test_building_the_cli_parser_imports_only_the_bench_arguments():
    """Every verb builds the whole parser; only `tunesmith.benchmark.args` (argparse only) may load
    with it, and nothing of torch/transformers/PEFT/TRL/datasets: `tunesmith train` pays for no bench
    code. A fresh interpreter, because this test process has imported all of them already."""
    probe = (
        "import json, sys, tunesmith.cli; tunesmith.cli.build_parser(); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tunesmith.bench') "
        "or m.split('.')[0] in ('torch', 'transformers', 'peft', 'trl', 'datasets', 'accelerate'))))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    )
    assert loaded == ["tunesmith.benchmark", "tunesmith.benchmark.args"]


def test_flops_per_token_counts_lora_as_4n_and_full_as_6n():
    assert flops_per_token(100, layers=2, hidden=8, seq_len=10, lora=True) == 400 + 6 * 2 * 8 * 10
    assert flops_per_token(100, layers=2, hidden=8, seq_len=10, lora=False) == 600 + 6 * 2 * 8 * 10


def test_bench_refuses_bad_arguments(capsys):
    assert main(["bench", "--variants", "baseline,fast"]) == 2
    assert (
        "--variants: unknown fast; choose from baseline, tunesmith, packed, compiled, checkpointing"
        in capsys.readouterr().err
    )
    assert main(["bench", "--pack-length", "100", "--max-tokens", "600"]) == 2
    assert "--pack-length 100 must hold the longest row: at least --max-tokens + 64 = 664" in capsys.readouterr().err


@pytest.mark.trains
@pytest.mark.slow
def test_reduced_bench_runs_every_variant_on_the_same_data(tiny_model_dir, tmp_path, capsys):
    """The whole bench on a tiny model, one whole epoch: every row counts exactly the set's tokens,
    and is compared with the baseline of its own precision; the machine label is in both reports."""
    code = main(
        [
            "bench",
            "--model",
            str(tiny_model_dir),
            "--rows",
            "16",
            "--val-rows",
            "4",
            "--min-tokens",
            "30",
            "--max-tokens",
            "90",
            "--pack-length",
            "160",
            "--tokens-per-step",
            "384",
            "--max-steps",
            "-1",
            "--gen-prompts",
            "1",
            "--gen-tokens",
            "8",
            "--work",
            str(tmp_path),
            "--append",
            str(tmp_path / "bench.md"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "bench.json").read_text())
    results = summary["results"]
    precision = "bf16" if cpu_has_native_bf16() else "fp32"  # what tunesmith's auto picks on this CPU
    expected = {"baseline-fp32", f"tunesmith-{precision}", f"packed-{precision}"} | {f"baseline-{precision}"}
    assert set(results) == expected
    # the baseline's own apply_chat_template tokenisation and tunesmith's agree token for token, and a
    # whole epoch trains every row once: the counted tokens are the set's, padding or not
    assert {r["set_tokens"] for r in results.values()} == {int(summary["spec"]["real_tokens"])}
    for name, r in results.items():
        assert r["real_tokens_trained"] == r["set_tokens"], name
        assert r["computed_tokens"] > r["real_tokens_trained"], name  # the batches had padding
        assert r["epochs_run"] == pytest.approx(1.0), name
        assert r["tokens_per_second"] > 0 and r["peak_memory_mb"] > 0, name
        assert math.isfinite(r["val_loss"]) and math.isfinite(r["train_loss"]), name
        assert r["compared_with"] == f"baseline-{r['precision']}", name
        assert r["speed_ratio"] > 0 and r["memory_ratio"] > 0, name
        assert r["generate_tokens_per_second"] > 0, name
    assert results["baseline-fp32"]["speed_ratio"] == pytest.approx(1.0)
    # each unpacked row also ran one step on the epoch's largest batch (the longest rows), the same batch
    # for every row, padded to its longest row; a packed row's measured peak is its largest batch's
    positions = summary["spec"]["largest_batch_positions"]
    for name in ("baseline-fp32", f"tunesmith-{precision}"):
        assert results[name]["largest_batch_computed_tokens"] == positions, name
        assert results[name]["largest_batch_peak_memory_mb"] > 0, name
    assert results[f"tunesmith-{precision}"]["largest_batch_memory_ratio"] > 0
    packed = results[f"packed-{precision}"]
    assert packed["largest_batch_peak_memory_mb"] == packed["peak_memory_mb"]
    assert results[f"packed-{precision}"]["packed_sequences"] < results[f"packed-{precision}"]["rows"]
    table = (tmp_path / "bench.md").read_text()
    for name in results:
        assert f"| {name} |" in table and f"| {name} |" in out
    assert "tokens/s" in table and "tunesmith bench --model" in table
    label = summary["machine"]["label"]
    assert cpu_model_name() in label and f"Machine: {label}." in table
