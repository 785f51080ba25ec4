"""Supervised fine-tuning (SFT): learn assistant replies from single- or multi-turn chats.

    tunesmith train examples/sft_lora.yaml

Reads top to bottom: set up (tokenizer, data, model, method), train with the transformers
Trainer, save (weights, tokenizer + chat template, config, metrics, loss plot, manifest).
"""

from __future__ import annotations

import logging
import time

import torch
from transformers import Trainer

from tunesmith.config import TunesmithConfig, config_hash, dump_config
from tunesmith.data.collate import PaddingCollator
from tunesmith.data.dataset import build_set
from tunesmith.methods import apply_method
from tunesmith.models.loader import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model_path
from tunesmith.runtime.logging_callbacks import MetricsLogger, plot_loss
from tunesmith.runtime.outputs import OutputFolder
from tunesmith.runtime.peak_memory import PeakMemory
from tunesmith.stages.common import RunResult, run_manifest, training_arguments

log = logging.getLogger(__name__)


def run_sft(cfg: TunesmithConfig) -> RunResult:
    started = time.time()
    output = OutputFolder(cfg.output_dir, cfg.overwrite_output)
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    torch.manual_seed(cfg.training.seed)

    # --- setup: tokenizer and data first, so bad data fails before the model loads -----------
    base_path = resolve_model_path(cfg.model.name_or_path, cfg.model.cache_dir)
    tokenizer = load_tokenizer(base_path, cfg.model.trust_remote_code)
    train_set = build_set(tokenizer, cfg.data.train, cfg.data, cfg.data.max_samples)
    val_set = build_set(tokenizer, cfg.data.validation, cfg.data) if cfg.data.validation else None
    log.info("data: %d training rows (%d trained tokens)%s", len(train_set.rows), train_set.trained_tokens,
             f", {len(val_set.rows)} validation rows" if val_set else "")

    device = pick_device()
    dtype = pick_dtype(cfg.model.dtype, device)
    model = load_causal_lm(base_path, dtype, cfg.model.attn_implementation, cfg.model.trust_remote_code)
    if cfg.training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model, trainable = apply_method(model, cfg)
    print(f"[tunesmith] {cfg.stage}/{cfg.method} on {base_path}: {trainable}", flush=True)

    # --- train -------------------------------------------------------------------------------------
    work = output.open()
    metrics = MetricsLogger(work)
    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, work, device, dtype, has_eval=val_set is not None),
        train_dataset=train_set.as_features(),
        eval_dataset=val_set.as_features() if val_set else None,
        data_collator=PaddingCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[metrics],
    )
    with PeakMemory() as memory:
        result = trainer.train()
    train_metrics = dict(result.metrics)
    if val_set is not None:
        eval_metrics = trainer.evaluate()
        train_metrics.update(eval_metrics)

    # --- save: weights, tokenizer with its chat template, config, plots; manifest last --------
    model.save_pretrained(work)
    tokenizer.save_pretrained(work)
    dump_config(cfg, work / "config.yaml")
    plot_loss(metrics.records, work / "loss.png", f"{cfg.stage}/{cfg.method}")
    manifest = run_manifest(cfg, base_path, train_set, val_set, trainable, train_metrics,
                            peak_rss_mb=memory.peak_mb, seconds=time.time() - started)
    manifest["config_hash"] = config_hash(cfg)
    final = output.commit(manifest)
    return RunResult(output_dir=final, metrics=train_metrics, manifest=manifest)
