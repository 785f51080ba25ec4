"""The recipe of the stages that train a causal LM on rows tokenised here: sft (chats), pt (raw text),
and the data half of mtl. Logits only at trained positions (runtime.token_loss.TrainedTokenTrainer)."""

from __future__ import annotations

import logging

from tunesmith.config import TunesmithConfig
from tunesmith.data.collate import PaddingCollator
from tunesmith.data.dataset import build_splits
from tunesmith.data.packing import PackedCollator, packing_efficiency
from tunesmith.eval.perplexity import validation_loss
from tunesmith.models.default import cache_root
from tunesmith.runtime.arguments import training_arguments
from tunesmith.runtime.token_loss import TrainedTokenTrainer
from tunesmith.stages.held_out import held_out_tokens
from tunesmith.stages.lifecycle import (
    RunResult,
    begin_run,
    data_record,
    load_run_tokenizer,
    load_trainable_model,
    train_and_save,
)
from tunesmith.stages.model_replay import replay_entries

log = logging.getLogger(__name__)


# --- the recipe of the stages that train a causal LM on rows tokenised here (sft, pt, mtl) ---------


def token_splits(cfg: TunesmithConfig, tokenizer, kind: str, replay: bool | list[str] = False):
    """The tokenised training and validation sets (`kind`: chat or text), cached for the run.
    `replay`: True mixes in forgetting.replay as written; a list, those entries instead (the
    model's own answers, stages.model_replay)."""
    entries = replay if isinstance(replay, list) else (cfg.forgetting.replay if replay else None)
    return build_splits(
        tokenizer,
        cfg.data,
        kind,
        cfg.training.seed,
        cache_root(cfg.model.cache_dir),
        entries or None,
        cfg.forgetting.replay_ratio,
        own_replay=isinstance(replay, list) and cfg.forgetting.replay_answers == "model",
    )


def token_arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    # Packs are already filled to max_length: grouping them by length would only cost time.
    options = {"train_sampling_strategy": "random"} if cfg.data.packing else {}
    return training_arguments(cfg, work, device, dtype, has_eval, **options)


def run_token_recipe(cfg: TunesmithConfig, kind: str) -> RunResult:
    """Train a causal LM on pre-tokenised rows with their labels (sft: chats, pt: raw text)."""
    # --- setup: tokenizer and data first, so bad data fails before the model loads -----------
    setup = begin_run(cfg, raw_text=kind == "text")
    tokenizer = setup.tokenizer
    # every data file was read by the stage's check (tunesmith train's pre-flight) before the base model
    # loads here to answer the replay prompts (forgetting.replay_answers: model)
    train_set, val_set = token_splits(cfg, tokenizer, kind, replay=replay_entries(cfg, setup))
    packing, capacity, seed = cfg.data.packing, cfg.data.max_length, cfg.training.seed
    train_features = train_set.as_features(packing, capacity, seed)
    val_features = val_set.as_features(packing, capacity, seed) if val_set else None
    log.info(
        "data: %d training rows (%d tokens, %d trained)%s%s",
        len(train_set.rows),
        train_set.tokens,
        train_set.trained_tokens,
        f", {len(val_set.rows)} validation rows" if val_set else "",
        f"; packed into {len(train_features)} sequences of <= {capacity} tokens "
        f"({packing_efficiency(train_features, capacity):.0%} full)"
        if packing
        else "",
    )
    model, trainable = load_trainable_model(cfg, setup)
    collator = PackedCollator(tokenizer.pad_token_id) if packing else PaddingCollator(tokenizer.pad_token_id)

    # --- train, then save: weights, tokenizer with its chat template, config, plots; manifest last --
    def make_trainer(work, callbacks):
        # logits only at trained positions: the same loss, a fraction of the logits' memory and time
        return TrainedTokenTrainer(
            model=model,
            args=token_arguments(cfg, work, setup.device, setup.dtype, has_eval=val_set is not None),
            train_dataset=train_features,
            eval_dataset=val_features,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )

    data = data_record(train_set, val_set, packed_sequences=len(train_features) if packing else None)
    return train_and_save(cfg, setup, model, trainable, make_trainer, train_set, val_set, data)


class TokenRecipe:
    """check / run / evaluate of a stage that trains a causal LM on rows tokenised here (`kind`: chat
    for sft, text for pt); a stage record takes these three as they are."""

    def __init__(self, kind: str):
        self.kind = kind

    def check(self, cfg: TunesmithConfig) -> None:
        """Read, validate and tokenise every data file before any model loads: file:line:field errors,
        over-length and error policies. The tokenised rows are cached, so the run reuses them."""
        token_splits(cfg, load_run_tokenizer(cfg, self.kind == "text")[1], self.kind, replay=True)

    def run(self, cfg: TunesmithConfig) -> RunResult:
        return run_token_recipe(cfg, self.kind)

    def evaluate(self, cfg: TunesmithConfig, loaded, system: str | None) -> dict:
        rows = held_out_tokens(cfg, loaded.tokenizer, system, self.kind).rows
        return validation_loss(loaded.model, loaded.tokenizer, rows, cfg.eval.batch_size)
