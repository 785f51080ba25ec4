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
from tunesmith.data.dataset import fingerprint
from tunesmith.data.preference import load_preferences
from tunesmith.stages.common import RunResult, begin_run, load_trainable_model, train_and_save, training_arguments

log = logging.getLogger(__name__)


def check_data(cfg: TunesmithConfig) -> None:
    for paths in (cfg.data.train, cfg.data.validation):
        if paths:
            load_preferences(paths, cfg.data.system, cfg.data.columns)


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
        cfg, work, device, dtype, has_eval, args_class=args_class, beta=cfg.dpo.resolved_beta,
        max_length=cfg.dpo.max_length or cfg.data.max_length,
        train_sampling_strategy="random",  # TRL tokenises into its own columns; no input_ids to group by
        **options,
    )


PAIR_FIELDS = ("prompt", "chosen", "rejected")


def _dataset(rows, fields):
    """A datasets.Dataset of the fields TRL reads (metadata such as `where` stays behind)."""
    from datasets import Dataset

    return Dataset.from_list([{k: r[k] for k in fields} for r in rows])


def build_trainer(cfg: TunesmithConfig, model, tokenizer, train_pairs, val_pairs, work, device, dtype, callbacks=()):
    """The TRL trainer for `dpo.loss`. No ref_model is passed: for sigmoid/ipo TRL uses the PEFT model
    with its adapter disabled, or loads a frozen copy of the base for full/freeze."""
    _, trainer_class, _ = _trainer_classes(cfg.dpo.loss)
    return trainer_class(
        model=model,
        args=arguments(cfg, work, device, dtype, has_eval=val_pairs is not None),
        train_dataset=_dataset(train_pairs, PAIR_FIELDS),
        eval_dataset=_dataset(val_pairs, PAIR_FIELDS) if val_pairs else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


def run_dpo(cfg: TunesmithConfig) -> RunResult:
    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_pairs = load_preferences(cfg.data.train, cfg.data.system, cfg.data.columns)
    val_pairs = load_preferences(cfg.data.validation, cfg.data.system, cfg.data.columns) if cfg.data.validation else None
    log.info("dpo: %d training pairs, loss %s, beta %s", len(train_pairs), cfg.dpo.loss, cfg.dpo.resolved_beta)
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return build_trainer(cfg, model, setup.tokenizer, train_pairs, val_pairs, work, setup.device, setup.dtype, callbacks)

    data = {"train_fingerprint": fingerprint(cfg.data.train), "train_pairs": len(train_pairs),
            "validation_fingerprint": fingerprint(cfg.data.validation) if cfg.data.validation else None}
    return train_and_save(cfg, setup, model, trainable, make_trainer, val_pairs is not None, data)
