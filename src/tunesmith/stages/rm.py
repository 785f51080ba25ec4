"""Reward modelling (RLHF step 2): a scalar head on the LM learns to score chosen above rejected.

    tunesmith train examples/rm_lora.yaml

The base model loads as a sequence classifier with one output (`models.reward`); TRL's
RewardTrainer trains it with the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)) on the
same preference pairs as dpo. The saved folder scores text: `tunesmith score OUTPUT --prompt ... --reply ...`.
A reward reads a whole reply, so a pair longer than data.max_length is never cut: it is dropped
(`data.overlength: drop`) or refused as an invalid row.
"""

from __future__ import annotations

import logging

from tunesmith.config import TunesmithConfig
from tunesmith.data import options
from tunesmith.data.rows import PAIRS, load_row_splits
from tunesmith.eval.reward import reward_metrics
from tunesmith.methods.load import load_reward_for_inference
from tunesmith.models.reward import load_reward_model
from tunesmith.runtime.arguments import training_arguments
from tunesmith.stages.base import Stage
from tunesmith.stages.held_out import held_out_rows
from tunesmith.stages.lifecycle import (
    RunResult,
    begin_run,
    data_record,
    load_run_tokenizer,
    load_trainable_model,
    train_and_save,
)

log = logging.getLogger(__name__)


def check(cfg: TunesmithConfig) -> None:
    load_row_splits(load_run_tokenizer(cfg)[1], cfg.data, PAIRS, cfg.training.seed, trainer_truncates=False)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    from trl import RewardConfig

    return training_arguments(
        cfg,
        work,
        device,
        dtype,
        has_eval,
        args_class=RewardConfig,
        max_length=cfg.data.max_length,
        center_rewards_coefficient=cfg.rm.center_rewards_coefficient,
        train_sampling_strategy="random",  # TRL tokenises into chosen_ids/rejected_ids; no input_ids to group by
    )


def run(cfg: TunesmithConfig) -> RunResult:
    from trl import RewardTrainer

    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_pairs, val_pairs = load_row_splits(
        setup.tokenizer, cfg.data, PAIRS, cfg.training.seed, trainer_truncates=False
    )
    log.info("rm: %d training pairs", len(train_pairs.rows))
    pad_id = setup.tokenizer.pad_token_id
    model, trainable = load_trainable_model(
        cfg, setup, load=lambda path, *options: load_reward_model(path, pad_id, *options)
    )
    data = data_record(train_pairs, val_pairs)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        trainer = RewardTrainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=val_pairs is not None),
            train_dataset=train_pairs.dataset(PAIRS.fields),
            eval_dataset=val_pairs.dataset(PAIRS.fields) if val_pairs else None,
            processing_class=setup.tokenizer,
            callbacks=callbacks,
        )
        # RewardTrainer drops pairs longer than max_length as it tokenises them; the data path measured them
        # already, so this only counts a disagreement between the two tokenisations, and says so.
        data["train_pairs_dropped_by_trainer"] = len(train_pairs.rows) - len(trainer.train_dataset)
        if data["train_pairs_dropped_by_trainer"]:
            log.warning(
                "rm: %d training pair(s) longer than data.max_length=%d tokens were left out by the trainer",
                data["train_pairs_dropped_by_trainer"],
                cfg.data.max_length,
            )
        return trainer

    return train_and_save(cfg, setup, model, trainable, make_trainer, train_pairs, val_pairs, data)


def evaluate(cfg: TunesmithConfig, loaded, system: str | None) -> dict:
    pairs = held_out_rows(cfg, loaded.tokenizer, system, PAIRS, trainer_truncates=False).rows
    return reward_metrics(loaded.model, loaded.tokenizer, pairs, cfg.eval.batch_size)


def load_for_eval(cfg: TunesmithConfig, model_ref: str):
    """A trained reward model; a base model gets a new head seeded as training seeds it (the starting point)."""
    return load_reward_for_inference(model_ref, cfg.model.cache_dir, new_head_seed=cfg.training.seed)


STAGE = Stage(
    "rm",
    data_kind="rows",
    reads="preference pairs (prompt, chosen, rejected)",
    data_options=options.ROWS,
    run=run,
    arguments=arguments,
    evaluate=evaluate,
    check=check,
    load_for_eval=load_for_eval,
    section="rm",
    new_task_head="the reward model's new scalar head",
    generates=False,
    next_step=lambda out: f"score replies with: tunesmith score {out} --prompt ... --reply ...",
)
