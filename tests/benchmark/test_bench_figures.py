"""`tunesmith bench`'s figures: tokens counted in the batches trained, rows paired with the baseline
of their own precision, the machine label in the report, and the variants' configs."""

from __future__ import annotations

import pytest
import torch

from tunesmith.benchmark.machine import machine
from tunesmith.benchmark.report import markdown, plan_rows, summarise, table
from tunesmith.benchmark.tokens import TokenCounter, batch_tokens
from tunesmith.benchmark.variants import OPTIONS, tunesmith_config
from tunesmith.cli import main
from tunesmith.data.packing import PackedCollator, build_pack, packed_real_tokens
from tunesmith.data.tokenize import TokenizedRow
from tunesmith.runtime.precision import cpu_has_native_bf16, cpu_model_name

PAD = 2


class Echo(torch.nn.Module):
    """A model stand-in: the counter only looks at what its forward receives."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        return input_ids


def test_token_counter_sums_the_non_padding_tokens_of_every_training_batch():
    model, counter = Echo(), TokenCounter(pad_token_id=PAD)
    counter.on_train_begin(None, None, None, model=model)
    model.train()
    # padded batch (attention mask): rows of 3 and 1 real tokens in 2 x 4 positions
    model(
        input_ids=torch.tensor([[5, 6, 7, PAD], [8, PAD, PAD, PAD]]),
        attention_mask=torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]),
    )
    # packed batch (position ids, no mask): pack 1 holds rows of 2 and 3 tokens, the second ending in
    # the pad id (the end-of-turn token), no padding; pack 2 one row of 2 tokens then 3 of padding
    model(
        input_ids=torch.tensor([[5, 6, 7, 8, PAD], [9, 10, PAD, PAD, PAD]]),
        position_ids=torch.tensor([[0, 1, 0, 1, 2], [0, 1, 0, 1, 2]]),
    )
    model.eval()
    model(input_ids=torch.tensor([[5, 6]]), attention_mask=torch.tensor([[1, 1]]))  # evaluation: not counted
    model.train()
    counter.on_train_end(None, None, None)
    model(input_ids=torch.tensor([[5, 6]]), attention_mask=torch.tensor([[1, 1]]))  # after training: not counted
    assert counter.figures() == {
        "real_tokens_trained": 3 + 1 + 5 + 2,
        "computed_tokens": 8 + 10,
        "batches": 2,
        "padding_fraction": pytest.approx(1 - 11 / 18),
    }


def test_packed_real_tokens_are_the_rows_of_the_packs_the_collator_built():
    rows = [
        TokenizedRow(input_ids=ids, labels=ids, where=f"r{i}")
        for i, ids in enumerate([[5, 6, PAD], [7, 8, 9, 10, PAD], [11, PAD]])
    ]
    batch = PackedCollator(PAD)([build_pack(rows[:2]), build_pack(rows[2:])])
    assert batch["input_ids"].shape == (2, 8)
    assert packed_real_tokens(batch["input_ids"], batch["position_ids"], PAD) == 3 + 5 + 2
    assert batch_tokens(batch, PAD) == (10, 16)


@pytest.mark.trains
def test_token_counter_in_a_trainer_counts_every_row_of_each_epoch(tiny_model_dir, tmp_path):
    """Rows of 3, 5, 2 and 6 tokens in one batch of 4: 16 real and 4 x 6 = 24 computed tokens per epoch."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from tunesmith.models.loader import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = [
        {"input_ids": list(range(10, 10 + n)), "attention_mask": [1] * n, "labels": list(range(10, 10 + n))}
        for n in (3, 5, 2, 6)
    ]
    counter = TokenCounter(tokenizer.pad_token_id)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=4,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
        args=args,
        train_dataset=Dataset.from_list(rows),
        callbacks=[counter],
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    trainer.train()
    assert counter.figures()["real_tokens_trained"] == 2 * 16
    assert counter.figures()["computed_tokens"] == 2 * 24
    assert counter.batches == trainer.state.global_step == 2


def test_auto_precision_adds_a_baseline_row_at_tunesmiths_precision():
    variants = ("baseline", "tunesmith", "packed")
    assert plan_rows(variants, "auto", "fp32") == [("baseline", "fp32"), ("tunesmith", "auto"), ("packed", "auto")]
    assert plan_rows(variants, "auto", "bf16") == [
        ("baseline", "fp32"),
        ("baseline", "bf16"),
        ("tunesmith", "auto"),
        ("packed", "auto"),
    ]
    assert plan_rows(("baseline",), "auto", "bf16") == [("baseline", "fp32")]
    assert plan_rows(variants, "bf16", "fp32") == [(v, "bf16") for v in variants]
    assert plan_rows(("tunesmith", "checkpointing"), "fp32", "bf16") == [
        ("tunesmith", "fp32"),
        ("checkpointing", "fp32"),
    ]


def _row(variant, precision, tokens_per_second, memory=1000.0, val_loss=1.0):
    return {
        "variant": variant,
        "precision": precision,
        "weights": "fp32",
        "train_seconds": 10.0,
        "epochs_run": 0.5,
        "set_tokens": 6000,
        "tokens_per_second": tokens_per_second,
        "computed_tokens_per_second": tokens_per_second * 1.25,
        "padding_fraction": 0.2,
        "peak_memory_mb": memory,
        "val_loss": val_loss,
        "generate_tokens_per_second": 9.0,
    }


def test_each_row_is_compared_with_the_baseline_of_its_own_precision():
    results = summarise(
        {
            "baseline-fp32": _row("baseline", "fp32", 100.0, memory=4000.0),
            "baseline-bf16": _row("baseline", "bf16", 150.0, memory=3000.0, val_loss=1.5),
            "tunesmith-bf16": _row("tunesmith", "bf16", 300.0, memory=1500.0, val_loss=1.25),
            "packed-fp16": _row("packed", "fp16", 400.0),
        }
    )
    tunesmith = results["tunesmith-bf16"]
    assert tunesmith["compared_with"] == "baseline-bf16"
    assert tunesmith["speed_ratio"] == pytest.approx(2.0)  # 300 / 150, not 300 / 100 (the fp32 baseline)
    assert tunesmith["memory_ratio"] == pytest.approx(0.5) and tunesmith["val_loss_delta"] == pytest.approx(-0.25)
    assert results["baseline-fp32"]["speed_ratio"] == pytest.approx(1.0)
    # the set's tokens at the counted rate (6000 / 100), not the steps' time over the epoch fraction (10 / 0.5)
    assert results["baseline-fp32"]["seconds_per_epoch"] == pytest.approx(60.0)
    assert "speed_ratio" not in results["packed-fp16"]
    lines = table(results).splitlines()
    assert (
        "| tunesmith-bf16 | bf16 | 300 | 375 | 20% | 20 | 1.46 GiB | 1.2500 | 2.00x | 0.50x | baseline-bf16 | 9.0 |"
        in lines
    )
    assert (
        "| packed-fp16 | fp16 | 400 | 500 | 20% | 15 | 0.98 GiB | 1.0000 | - | - | no baseline at this precision |"
        in lines[-1]
    )


def test_the_markdown_names_the_machine_its_cpu_and_bf16_support():
    facts = machine()
    assert facts["cpu"] == cpu_model_name() and facts["cpu_native_bf16"] == cpu_has_native_bf16()
    summary = {
        "date": "2026-11-28",
        "machine": facts,
        "job": "a job",
        "results": summarise({"baseline-fp32": _row("baseline", "fp32", 100.0)}),
    }
    text = markdown(summary, "tunesmith bench --rows 8")
    assert f"Machine: {facts['label']}." in text and cpu_model_name() in text
    assert ("no native bf16" if not cpu_has_native_bf16() else "native bf16") in text
    for library in ("torch", "transformers", "peft"):
        assert f"{library} {facts[library]}" in text


def _spec(tmp_path, precision="auto"):
    return {
        "work": str(tmp_path),
        "model": "default",
        "train": str(tmp_path / "train.jsonl"),
        "max_length": 700,
        "epochs": 1.0,
        "max_steps": 3,
        "learning_rate": 2e-4,
        "seed": 0,
        "batch_rows": 4,
        "batch_packs": 1,
        "pack_length": 1024,
        "precision": precision,
    }


def test_variant_configs_set_their_option_and_the_precision(tmp_path):
    from tunesmith.config.loader import validate_config

    def config(variant, precision="auto"):
        return validate_config(tunesmith_config(_spec(tmp_path, precision), **OPTIONS[variant]), {}, "bench")

    assert config("checkpointing").training.gradient_checkpointing is True
    assert config("tunesmith").training.gradient_checkpointing is False
    defaults = config("tunesmith")
    assert (defaults.training.mixed_precision, defaults.model.dtype) == ("auto", "auto")
    fp32 = config("packed", "fp32")
    assert (fp32.training.mixed_precision, fp32.model.dtype, fp32.data.packing) == ("no", "float32", True)
    assert config("checkpointing", "bf16").training.mixed_precision == "bf16"


def test_bench_refuses_an_unknown_precision(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--precision", "fp8"])
    assert exit_info.value.code == 2
    assert "--precision: invalid choice: 'fp8'" in capsys.readouterr().err


def test_the_largest_batch_is_the_longest_rows_and_its_memory_is_compared_with_the_baselines(tmp_path):
    """Peak memory follows the largest batch a run meets, and the measured steps do not meet the same
    one on each side (length-grouped batches start with the longest rows); the probe's job file holds
    the `batch_rows` longest rows, in file order, and its peak gets its own ratio and table columns."""
    import json

    from tunesmith.benchmark.jobs import write_largest_batch

    rows = [json.dumps({"messages": [{"role": "user", "content": f"row {i}"}]}) for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(r + "\n" for r in rows))
    spec = {**_spec(tmp_path), "batch_rows": 3, "row_tokens": [50, 400, 30, 390, 410, 60]}
    found = write_largest_batch(spec, tmp_path)
    assert (tmp_path / "largest_batch.jsonl").read_text().splitlines() == [rows[1], rows[3], rows[4]]
    assert found["largest_batch_positions"] == 3 * 410  # padded to its longest row
    with pytest.raises(ValueError, match="6 rows but 5 tokenised"):
        write_largest_batch({**spec, "row_tokens": spec["row_tokens"][:5]}, tmp_path)

    results = summarise(
        {
            "baseline-fp32": {**_row("baseline", "fp32", 100.0, memory=3000.0), "largest_batch_peak_memory_mb": 8000.0},
            "tunesmith-fp32": {
                **_row("tunesmith", "fp32", 200.0, memory=4000.0),
                "largest_batch_peak_memory_mb": 6000.0,
            },
        }
    )
    tunesmith = results["tunesmith-fp32"]
    assert tunesmith["memory_ratio"] == pytest.approx(4000 / 3000)  # the measured steps' peaks
    assert tunesmith["largest_batch_memory_ratio"] == pytest.approx(0.75)  # the same batch on both sides
    lines = table(results).splitlines()
    assert "| peak memory | peak memory, largest batch | largest batch vs baseline | final val loss |" in lines[0]
    assert "| 3.91 GiB | 5.86 GiB | 0.75x | 1.0000 |" in lines[-1]
