"""The benchmark's baseline: what a user writes from the transformers + PEFT docs.

`apply_chat_template`, prompt tokens masked, `DataCollatorForSeq2Seq` padding, `Trainer`, fp32
weights, random batches of `tokens_per_step / mean row length` rows; LoRA r=16 / alpha 32 /
dropout 0.05 on all linear layers. The row's precision (`spec["precision"]`) is fp32 or the
Trainer's own bf16 autocast (`bf16=True`), so a tunesmith row is always compared with a baseline
at its own precision. Tokens are counted as they train (tokens.TokenCounter), peak memory is
runtime.peak_memory's, and generation runs on the adapter merged into the base
(`merge_and_unload`), as `tunesmith chat` runs a LoRA output. Runs in its own process (driver.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tunesmith.benchmark.measure import generation_speed, shared_val_loss
from tunesmith.benchmark.tokens import TokenCounter


def _accelerator() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_baseline(spec: dict) -> dict:
    """Plain transformers + PEFT, as their documentation shows it."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from tunesmith.models.loader import resolve_model_path
    from tunesmith.runtime.peak_memory import PeakMemory

    started = time.perf_counter()
    path = resolve_model_path(spec["model"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    )

    def encode(row):
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        input_ids = tokenizer(full, add_special_tokens=False)["input_ids"][: spec["max_length"]]
        labels = [-100] * len(prompt_ids) + input_ids[len(prompt_ids) :]
        return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels[: len(input_ids)]}

    rows = [json.loads(line) for line in Path(spec["train"]).read_text().splitlines()]
    train = Dataset.from_list(rows).map(encode, remove_columns=["messages"])
    args = TrainingArguments(
        output_dir=spec["work"],
        num_train_epochs=spec["epochs"],
        max_steps=spec["max_steps"],
        per_device_train_batch_size=spec["batch_rows"],
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=spec["seed"],
        use_cpu=_accelerator() == "cpu",
        disable_tqdm=True,
        bf16=spec["precision"] == "bf16",
    )
    counter = TokenCounter(tokenizer.pad_token_id)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        callbacks=[counter],
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    with PeakMemory() as memory:
        metrics = trainer.train().metrics
    if spec.get("probe"):  # the one-step run on the largest batch: its memory is the figure
        return {"peak_memory_mb": memory.peak_mb, **counter.figures(), "precision": spec["precision"]}
    val_loss = shared_val_loss(model, tokenizer, spec)
    merged = model.merge_and_unload()  # the same form as tunesmith's output in `tunesmith chat`
    return {
        "train_seconds": metrics["train_runtime"],
        "steps": trainer.state.global_step,
        "epochs_run": trainer.state.epoch,
        "set_tokens": sum(len(ids) for ids in train["input_ids"]),
        "rows": len(train),
        **counter.figures(),
        "peak_memory_mb": memory.peak_mb,
        "train_loss": metrics["train_loss"],
        "val_loss": val_loss,
        "precision": spec["precision"],
        "weights": "fp32",
        "wall_seconds": time.perf_counter() - started,
        "generate_tokens_per_second": generation_speed(merged, tokenizer, spec),
    }
