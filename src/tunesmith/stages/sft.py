"""Supervised fine-tuning (SFT): learn assistant replies from single- or multi-turn chats.

    tunesmith train examples/sft_lora.yaml

Reads top to bottom: set up (tokenizer, data, model, method), train with the transformers
Trainer, save (weights, tokenizer + chat template, config, metrics, loss plot, manifest).
"""

from __future__ import annotations

import logging

from tunesmith.config import TunesmithConfig
from tunesmith.data.collate import PaddingCollator
from tunesmith.data.dataset import build_splits
from tunesmith.data.packing import PackedCollator, packing_efficiency
from tunesmith.models.default import cache_root
from tunesmith.runtime.token_loss import TrainedTokenTrainer
from tunesmith.stages.common import (RunResult, begin_run, load_run_tokenizer, load_trainable_model, train_and_save,
                                     training_arguments)

log = logging.getLogger(__name__)


def check_data(cfg: TunesmithConfig, kind: str = "chat") -> None:
    """Read, validate and tokenise every data file before any model loads: file:line:field errors,
    over-length and error policies. The tokenised rows are cached, so the run reuses them."""
    _, tokenizer = load_run_tokenizer(cfg)
    build_splits(tokenizer, cfg.data, kind, cfg.training.seed, cache_root(cfg.model.cache_dir),
                 cfg.forgetting.replay, cfg.forgetting.replay_ratio)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    # Packs are already filled to max_length: grouping them by length would only cost time.
    options = {"train_sampling_strategy": "random"} if cfg.data.packing else {}
    return training_arguments(cfg, work, device, dtype, has_eval, **options)


def run_sft(cfg: TunesmithConfig) -> RunResult:
    return run_token_recipe(cfg, "chat")


def run_token_recipe(cfg: TunesmithConfig, kind: str) -> RunResult:
    """Train a causal LM on pre-tokenised rows with their labels (sft: chats, pt: raw text)."""
    # --- setup: tokenizer and data first, so bad data fails before the model loads -----------
    setup = begin_run(cfg)
    tokenizer = setup.tokenizer
    train_set, val_set = build_splits(tokenizer, cfg.data, kind, cfg.training.seed, setup.cache_root,
                                      cfg.forgetting.replay, cfg.forgetting.replay_ratio)
    packing, capacity, seed = cfg.data.packing, cfg.data.max_length, cfg.training.seed
    train_features = train_set.as_features(packing, capacity, seed)
    val_features = val_set.as_features(packing, capacity, seed) if val_set else None
    log.info("data: %d training rows (%d tokens, %d trained)%s%s", len(train_set.rows), train_set.tokens,
             train_set.trained_tokens, f", {len(val_set.rows)} validation rows" if val_set else "",
             f"; packed into {len(train_features)} sequences of <= {capacity} tokens "
             f"({packing_efficiency(train_features, capacity):.0%} full)" if packing else "")
    model, trainable = load_trainable_model(cfg, setup)
    collator = PackedCollator(tokenizer.pad_token_id) if packing else PaddingCollator(tokenizer.pad_token_id)

    # --- train, then save: weights, tokenizer with its chat template, config, plots; manifest last --
    def make_trainer(work, callbacks):
        # logits only at trained positions: the same loss, a fraction of the logits' memory and time
        return TrainedTokenTrainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=val_set is not None),
            train_dataset=train_features,
            eval_dataset=val_features,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )

    data = {"train_fingerprint": train_set.fingerprint, "train_rows": len(train_set.rows),
            "train_tokens": train_set.tokens, "train_trained_tokens": train_set.trained_tokens,
            "train_rows_rejected": len(train_set.rejects.entries), "train_rows_dropped": train_set.dropped,
            "train_rows_truncated": train_set.truncated, "train_rows_truncated_without_end": train_set.truncated_without_end,
            "packed_sequences": len(train_features) if packing else None,
            "validation_fingerprint": val_set.fingerprint if val_set else None}
    return train_and_save(cfg, setup, model, trainable, make_trainer, val_set is not None, data, train_set.rejects)
