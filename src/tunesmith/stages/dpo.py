"""Direct preference optimisation and its siblings, chosen by `dpo.loss`:

    sigmoid (DPO), ipo  TRL's DPOTrainer, against a reference model
    orpo                TRL's ORPOTrainer: SFT loss on chosen + lambda * odds-ratio term, no reference
    simpo               TRL's CPOTrainer with loss_type simpo and no BC term: length-normalised
                        log-probability margin beyond gamma, no reference

    tunesmith train examples/dpo_lora.yaml

Reads top to bottom like sft: set up (tokenizer, preference pairs, model, method), train, save.
For sigmoid/ipo with LoRA the reference model is the base with the adapter disabled (TRL does this
for a PEFT model given no ref_model; no second copy in memory); with full/freeze TRL keeps a frozen
copy of the base as the reference. orpo and simpo never build a reference.
"""

from __future__ import annotations

import logging

from tunesmith.config import TunesmithConfig
from tunesmith.data import options
from tunesmith.data.rows import PAIRS, load_row_splits
from tunesmith.eval.preference import preference_metrics
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
    load_row_splits(load_run_tokenizer(cfg)[1], cfg.data, PAIRS, cfg.training.seed, trainer_truncates=True)


def _trainer_classes(loss: str):
    """(config class, trainer class, loss-specific options) for `dpo.loss`."""
    if loss == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer, {}
    if loss == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer, {"loss_type": "simpo", "cpo_alpha": 0.0}
    from trl import DPOConfig, DPOTrainer

    return DPOConfig, DPOTrainer, {"loss_type": [loss]}


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    args_class, _, options = _trainer_classes(cfg.dpo.loss)
    if cfg.dpo.loss == "simpo":
        options["simpo_gamma"] = cfg.dpo.simpo_gamma
    return training_arguments(
        cfg,
        work,
        device,
        dtype,
        has_eval,
        args_class=args_class,
        beta=cfg.dpo.resolved_beta,
        max_length=cfg.dpo.max_length or cfg.data.max_length,
        train_sampling_strategy="random",  # TRL tokenises into its own columns; no input_ids to group by
        **options,
    )


def build_trainer(cfg: TunesmithConfig, model, tokenizer, train_pairs, val_pairs, work, device, dtype, callbacks=()):
    """The TRL trainer for `dpo.loss` on `data.rows.RowSet`s of pairs. No ref_model is passed: for sigmoid/ipo
    TRL uses the PEFT model with its adapter disabled, or loads a frozen copy of the base for full/freeze."""
    _, trainer_class, _ = _trainer_classes(cfg.dpo.loss)
    return trainer_class(
        model=model,
        args=arguments(cfg, work, device, dtype, has_eval=val_pairs is not None),
        train_dataset=train_pairs.dataset(PAIRS.fields),
        eval_dataset=val_pairs.dataset(PAIRS.fields) if val_pairs else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


def run(cfg: TunesmithConfig) -> RunResult:
    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_pairs, val_pairs = load_row_splits(
        setup.tokenizer, cfg.data, PAIRS, cfg.training.seed, trainer_truncates=True
    )
    log.info(
        "dpo: %d training pairs, loss %s, beta %s%s",
        len(train_pairs.rows),
        cfg.dpo.loss,
        cfg.dpo.resolved_beta,
        f"; {train_pairs.truncated} longer than data.max_length will be cut" if train_pairs.truncated else "",
    )
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return build_trainer(
            cfg, model, setup.tokenizer, train_pairs, val_pairs, work, setup.device, setup.dtype, callbacks
        )

    return train_and_save(cfg, setup, model, trainable, make_trainer, train_pairs, val_pairs)


def evaluate(cfg: TunesmithConfig, loaded, system: str | None) -> dict:
    pairs = held_out_rows(cfg, loaded.tokenizer, system, PAIRS, trainer_truncates=True).rows
    return preference_metrics(loaded.model, loaded.tokenizer, pairs, cfg.data.max_length, cfg.eval.batch_size)


STAGE = Stage(
    "dpo",
    data_kind="rows",
    reads="preference pairs (prompt, chosen, rejected)",
    data_options=options.ROWS,
    run=run,
    arguments=arguments,
    evaluate=evaluate,
    check=check,
    section="dpo",
)
