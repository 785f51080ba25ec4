"""KTO (Kahneman-Tversky optimisation) with TRL's KTOTrainer: learn from single completions
labelled desirable or undesirable, no pairs needed.

    tunesmith train examples/kto_lora.yaml

Same shape as the dpo recipe; with LoRA the reference is the base with the adapter disabled.
KTO estimates its KL term from mismatched completions inside a batch, so batch_size must be > 1.
"""

from __future__ import annotations

import logging
import random

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import fingerprint
from tunesmith.data.preference import load_kto
from tunesmith.errors import ConfigError
from tunesmith.stages.common import RunResult, begin_run, load_trainable_model, train_and_save, training_arguments
from tunesmith.stages.dpo import _dataset

log = logging.getLogger(__name__)
KTO_FIELDS = ("prompt", "completion", "label")


def check_data(cfg: TunesmithConfig) -> None:
    if cfg.training.batch_size < 2:
        raise ConfigError("training.batch_size: KTO needs at least 2 rows per batch (its KL estimate pairs rows within a batch)")
    for paths in (cfg.data.train, cfg.data.validation):
        if paths:
            load_kto(paths, cfg.data.system, cfg.data.columns)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    from trl import KTOConfig

    return training_arguments(
        cfg, work, device, dtype, has_eval, args_class=KTOConfig, beta=cfg.kto.beta,
        desirable_weight=cfg.kto.desirable_weight, undesirable_weight=cfg.kto.undesirable_weight,
        max_length=cfg.data.max_length,
        # TRL pairs each row with its neighbour for the KL estimate, so the order must stay fixed;
        # the rows are shuffled once by seed instead (run_kto).
        train_sampling_strategy="sequential",
    )


def run_kto(cfg: TunesmithConfig) -> RunResult:
    from trl import KTOTrainer

    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_rows = load_kto(cfg.data.train, cfg.data.system, cfg.data.columns)
    random.Random(cfg.training.seed).shuffle(train_rows)
    val_rows = load_kto(cfg.data.validation, cfg.data.system, cfg.data.columns) if cfg.data.validation else None
    log.info("kto: %d rows (%d desirable)", len(train_rows), sum(r["label"] for r in train_rows))
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return KTOTrainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=val_rows is not None),
            train_dataset=_dataset(train_rows, KTO_FIELDS),
            eval_dataset=_dataset(val_rows, KTO_FIELDS) if val_rows else None,
            processing_class=setup.tokenizer,
            callbacks=callbacks,
        )

    data = {"train_fingerprint": fingerprint(cfg.data.train), "train_rows": len(train_rows),
            "validation_fingerprint": fingerprint(cfg.data.validation) if cfg.data.validation else None}
    return train_and_save(cfg, setup, model, trainable, make_trainer, val_rows is not None, data)
