"""Supervised fine-tuning (SFT): learn assistant replies from single- or multi-turn chats.

    tunesmith train examples/sft_lora.yaml

Reads top to bottom: set up (tokenizer, data, model, method), train with the transformers
Trainer, save (weights, tokenizer + chat template, config, metrics, loss plot, manifest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from transformers import Trainer

from tunesmith.config import TunesmithConfig
from tunesmith.data.collate import PaddingCollator
from tunesmith.data.dataset import TokenizedSet, build_set
from tunesmith.data.formats import load_conversations
from tunesmith.stages.common import RunResult, begin_run, load_trainable_model, train_and_save, training_arguments

log = logging.getLogger(__name__)


def check_data(cfg: TunesmithConfig) -> None:
    """Read and validate every data file (file:line:field errors) before any model loads."""
    for paths in (cfg.data.train, cfg.data.validation):
        if paths:
            load_conversations(paths, cfg.data.format, cfg.data.system, cfg.data.columns)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    return training_arguments(cfg, work, device, dtype, has_eval)


def run_sft(cfg: TunesmithConfig) -> RunResult:
    return run_token_recipe(cfg, build_set)


def run_token_recipe(cfg: TunesmithConfig, build: Callable[..., TokenizedSet]) -> RunResult:
    """Train a causal LM on pre-tokenised rows with their labels (sft: chats, pt: raw text)."""
    # --- setup: tokenizer and data first, so bad data fails before the model loads -----------
    setup = begin_run(cfg)
    tokenizer = setup.tokenizer
    train_set = build(tokenizer, cfg.data.train, cfg.data, cfg.data.max_samples)
    val_set = build(tokenizer, cfg.data.validation, cfg.data) if cfg.data.validation else None
    log.info("data: %d training rows (%d trained tokens)%s", len(train_set.rows), train_set.trained_tokens,
             f", {len(val_set.rows)} validation rows" if val_set else "")
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save: weights, tokenizer with its chat template, config, plots; manifest last --
    def make_trainer(work, callbacks):
        return Trainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=val_set is not None),
            train_dataset=train_set.as_features(),
            eval_dataset=val_set.as_features() if val_set else None,
            data_collator=PaddingCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=callbacks,
        )

    data = {"train_fingerprint": train_set.fingerprint, "train_rows": len(train_set.rows),
            "train_rows_dropped": train_set.dropped, "validation_fingerprint": val_set.fingerprint if val_set else None}
    return train_and_save(cfg, setup, model, trainable, make_trainer, val_set is not None, data)
