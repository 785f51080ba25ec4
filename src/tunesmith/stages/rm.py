"""Reward modelling (RLHF step 2): a scalar head on the LM learns to score chosen above rejected.

    tunesmith train examples/rm_lora.yaml

The base model loads as a sequence classifier with one output (`models.reward`); TRL's
RewardTrainer trains it with the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)) on the
same preference pairs as dpo. The saved folder scores text: `tunesmith score OUTPUT --prompt ... --reply ...`.
"""

from __future__ import annotations

import logging

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import fingerprint
from tunesmith.data.preference import load_preferences
from tunesmith.errors import ConfigError
from tunesmith.models.reward import load_reward_model
from tunesmith.stages.common import RunResult, begin_run, load_trainable_model, train_and_save, training_arguments
from tunesmith.stages.dpo import PAIR_FIELDS, _dataset

log = logging.getLogger(__name__)
NEW_TASK_HEAD = "the reward model's new scalar head"  # the pre-flight check refuses methods that cannot train it


def check_data(cfg: TunesmithConfig) -> None:
    if cfg.eval.qa:
        raise ConfigError("eval.qa: a reward model scores replies and does not generate answers; "
                          "remove eval.qa for stage rm (it reports pair accuracy on data.validation)")
    for paths in (cfg.data.train, cfg.data.validation):
        if paths:
            load_preferences(paths, cfg.data.system, cfg.data.columns)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    from trl import RewardConfig

    return training_arguments(
        cfg, work, device, dtype, has_eval, args_class=RewardConfig,
        max_length=cfg.data.max_length, center_rewards_coefficient=cfg.rm.center_rewards_coefficient,
        train_sampling_strategy="random",  # TRL tokenises into chosen_ids/rejected_ids; no input_ids to group by
    )


def run_rm(cfg: TunesmithConfig) -> RunResult:
    from trl import RewardTrainer

    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_pairs = load_preferences(cfg.data.train, cfg.data.system, cfg.data.columns)
    val_pairs = load_preferences(cfg.data.validation, cfg.data.system, cfg.data.columns) if cfg.data.validation else None
    log.info("rm: %d training pairs", len(train_pairs))
    pad_id = setup.tokenizer.pad_token_id
    model, trainable = load_trainable_model(cfg, setup, load=lambda path, *options: load_reward_model(path, pad_id, *options))
    data = {"train_fingerprint": fingerprint(cfg.data.train), "train_pairs": len(train_pairs),
            "validation_fingerprint": fingerprint(cfg.data.validation) if cfg.data.validation else None}

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        trainer = RewardTrainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=val_pairs is not None),
            train_dataset=_dataset(train_pairs, PAIR_FIELDS),
            eval_dataset=_dataset(val_pairs, PAIR_FIELDS) if val_pairs else None,
            processing_class=setup.tokenizer,
            callbacks=callbacks,
        )
        # RewardTrainer drops pairs longer than max_length; say so instead of training on fewer silently.
        data["train_pairs_dropped"] = len(train_pairs) - len(trainer.train_dataset)
        if data["train_pairs_dropped"]:
            log.warning("rm: %d training pair(s) longer than data.max_length=%d tokens were left out",
                        data["train_pairs_dropped"], cfg.data.max_length)
        return trainer

    return train_and_save(cfg, setup, model, trainable, make_trainer, val_pairs is not None, data)

