"""Small trained outputs several test folders start from, and stopping a run as a scheduler would."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

from helpers.configs import load_config
from helpers.files import write_config, write_jsonl

CODE_WORD_QUESTIONS = ("What is the code word?", "Name the code word.")


def train_adapter(root, tiny_model_dir, name: str, answer: str, system: str, r: int = 8):
    """A LoRA adapter of the tiny model that answers the code-word questions with `answer`."""
    from tunesmith.cli import main

    rows = [{"instruction": q, "output": answer} for q in CODE_WORD_QUESTIONS] * 8
    train = write_jsonl(root / f"{name}.jsonl", rows)
    config = write_config(
        root / f"{name}.yaml",
        f"""\
method: lora
output_dir: {root / "runs" / name}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, system: {system}}}
lora: {{r: {r}, alpha: {2 * r}, dropout: 0.0}}
training: {{epochs: 10, learning_rate: 0.02, batch_size: 4, warmup: 0, scheduler: constant}}
""",
    )
    assert main(["train", str(config)]) == 0
    return root / "runs" / name


def trained_output(tmp_path, tiny_model_dir, tokenizer, overrides, name):
    """A small output folder as a run writes it: adapter trained a few steps, tokenizer, manifest."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.methods import apply_method, save_trained

    cfg = load_config(None, [f"output_dir={tmp_path}/{name}", *overrides])
    model, _ = apply_method(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.02)
    ids = torch.randint(0, 1000, (2, 12))
    for _ in range(4):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path / name
    save_trained(model, cfg, out)
    tokenizer.save_pretrained(out)
    (out / "tunesmith.json").write_text(json.dumps({"method": cfg.method, "system": "Be brief."}))
    return out


def stop_when(out, step):
    """SIGTERM this process once the run in `out`.partial has logged `step` (as a scheduler would)."""
    metrics = out.with_name(out.name + ".partial") / "metrics.jsonl"

    def watch():
        while True:
            if metrics.is_file() and any(
                json.loads(line).get("step", 0) >= step and "loss" in line for line in metrics.read_text().splitlines()
            ):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
