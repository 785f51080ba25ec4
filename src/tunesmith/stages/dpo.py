"""Direct preference optimisation (DPO, and IPO through `dpo.loss`) with TRL's DPOTrainer.

    tunesmith train examples/dpo_lora.yaml

Reads top to bottom like sft: set up (tokenizer, preference pairs, model, method), train, save.
With LoRA the reference model is the base with the adapter disabled (no second copy in memory);
with full/freeze TRL loads a frozen copy of the base as the reference.
"""

from __future__ import annotations

import logging

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import fingerprint
from tunesmith.data.preference import load_preferences
from tunesmith.errors import ConfigError
from tunesmith.stages.common import RunResult, begin_run, load_trainable_model, train_and_save, training_arguments

log = logging.getLogger(__name__)
IMPLEMENTED_LOSSES = ("sigmoid", "ipo")


def check_data(cfg: TunesmithConfig) -> None:
    if cfg.dpo.loss not in IMPLEMENTED_LOSSES:
        raise ConfigError(f"dpo.loss `{cfg.dpo.loss}` is planned but not implemented yet; available: {', '.join(IMPLEMENTED_LOSSES)}")
    for paths in (cfg.data.train, cfg.data.validation):
        if paths:
            load_preferences(paths, cfg.data.system, cfg.data.columns)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    from trl import DPOConfig

    return training_arguments(
        cfg, work, device, dtype, has_eval, args_class=DPOConfig,
        beta=cfg.dpo.beta, loss_type=[cfg.dpo.loss], max_length=cfg.dpo.max_length or cfg.data.max_length,
        train_sampling_strategy="random",  # TRL tokenises into its own columns; no input_ids to group by
    )


PAIR_FIELDS = ("prompt", "chosen", "rejected")


def _dataset(rows, fields):
    """A datasets.Dataset of the fields TRL reads (metadata such as `where` stays behind)."""
    from datasets import Dataset

    return Dataset.from_list([{k: r[k] for k in fields} for r in rows])


def run_dpo(cfg: TunesmithConfig) -> RunResult:
    from trl import DPOTrainer

    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_pairs = load_preferences(cfg.data.train, cfg.data.system, cfg.data.columns)
    val_pairs = load_preferences(cfg.data.validation, cfg.data.system, cfg.data.columns) if cfg.data.validation else None
    log.info("dpo: %d training pairs, loss %s, beta %s", len(train_pairs), cfg.dpo.loss, cfg.dpo.beta)
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return DPOTrainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=val_pairs is not None),
            train_dataset=_dataset(train_pairs, PAIR_FIELDS),
            eval_dataset=_dataset(val_pairs, PAIR_FIELDS) if val_pairs else None,
            processing_class=setup.tokenizer,
            callbacks=callbacks,
        )

    data = {"train_fingerprint": fingerprint(cfg.data.train), "train_pairs": len(train_pairs),
            "validation_fingerprint": fingerprint(cfg.data.validation) if cfg.data.validation else None}
    return train_and_save(cfg, setup, model, trainable, make_trainer, val_pairs is not None, data)
