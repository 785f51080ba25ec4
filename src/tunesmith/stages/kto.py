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
from tunesmith.data import options
from tunesmith.data.rows import KTO_ROWS, load_row_splits
from tunesmith.errors import ConfigError
from tunesmith.eval.preference import kto_metrics
from tunesmith.runtime.arguments import training_arguments
from tunesmith.stages.base import Stage
from tunesmith.stages.held_out import held_out_rows
from tunesmith.stages.lifecycle import (
    RunResult,
    begin_run,
    load_run_tokenizer,
    load_trainable_model,
    train_and_save,
)

log = logging.getLogger(__name__)


def check(cfg: TunesmithConfig) -> None:
    if cfg.training.batch_size < 2:
        raise ConfigError(
            "training.batch_size: KTO needs at least 2 rows per batch (its KL estimate pairs rows within a batch)"
        )
    load_row_splits(load_run_tokenizer(cfg)[1], cfg.data, KTO_ROWS, cfg.training.seed, trainer_truncates=True)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    from trl import KTOConfig

    return training_arguments(
        cfg,
        work,
        device,
        dtype,
        has_eval,
        args_class=KTOConfig,
        beta=cfg.kto.beta,
        desirable_weight=cfg.kto.desirable_weight,
        undesirable_weight=cfg.kto.undesirable_weight,
        max_length=cfg.data.max_length,
        # TRL pairs each row with its neighbour for the KL estimate, so the order must stay fixed;
        # the rows are shuffled once by seed instead (run).
        train_sampling_strategy="sequential",
    )


def run(cfg: TunesmithConfig) -> RunResult:
    from trl import KTOTrainer

    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_rows, val_rows = load_row_splits(
        setup.tokenizer, cfg.data, KTO_ROWS, cfg.training.seed, trainer_truncates=True
    )
    random.Random(cfg.training.seed).shuffle(train_rows.rows)
    log.info("kto: %d rows (%d desirable)", len(train_rows.rows), sum(r["label"] for r in train_rows.rows))
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return KTOTrainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=val_rows is not None),
            train_dataset=train_rows.dataset(KTO_ROWS.fields),
            eval_dataset=val_rows.dataset(KTO_ROWS.fields) if val_rows else None,
            processing_class=setup.tokenizer,
            callbacks=callbacks,
        )

    return train_and_save(cfg, setup, model, trainable, make_trainer, train_rows, val_rows)


def evaluate(cfg: TunesmithConfig, loaded, system: str | None) -> dict:
    rows = held_out_rows(cfg, loaded.tokenizer, system, KTO_ROWS, trainer_truncates=True).rows
    return kto_metrics(loaded.model, loaded.tokenizer, rows, cfg.data.max_length, cfg.eval.batch_size)


STAGE = Stage(
    "kto",
    data_kind="rows",
    reads="completions labelled desirable/undesirable (prompt, completion, label)",
    data_options=options.ROWS,
    run=run,
    arguments=arguments,
    evaluate=evaluate,
    check=check,
    section="kto",
)
