"""The Trainer arguments of a config: `cfg.training` mapped onto transformers' TrainingArguments
(or a TRL config class a stage passes), with the engine, accelerator and precision options."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import TrainingArguments

from tunesmith.config import TunesmithConfig
from tunesmith.errors import ConfigError
from tunesmith.runtime import launch
from tunesmith.runtime.accel import accel_arguments
from tunesmith.runtime.engines import engine_arguments
from tunesmith.runtime.precision import resolve_precision

log = logging.getLogger(__name__)


def training_arguments(
    cfg: TunesmithConfig,
    work: Path,
    device: torch.device,
    dtype: torch.dtype,
    has_eval: bool,
    args_class: type[TrainingArguments] = TrainingArguments,
    **stage_options,
) -> TrainingArguments:
    """The Trainer arguments of `cfg.training`; a stage passes its TRL config class and options."""
    t = cfg.training
    precision = resolve_precision(t.mixed_precision, dtype)
    options = dict(
        output_dir=str(work),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        warmup_steps=t.warmup,
        lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        neftune_noise_alpha=t.neftune_alpha,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss is shown, never hidden
        eval_strategy=("steps" if t.eval_steps else "epoch") if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=None,  # rotation is CheckpointGuard's, after the new manifest is committed
        report_to=reporters(t.report_to),
        run_name=Path(cfg.output_dir).name,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
        use_cpu=device.type == "cpu",
    )
    options.update(engine_arguments(cfg, work, device, write=launch.rank() == 0))
    options.update(accel_arguments(cfg))
    if args_class is not TrainingArguments:
        # TRL's configs default gradient checkpointing to True (about 20% slower); run what the config says.
        options["gradient_checkpointing"] = t.gradient_checkpointing
    requested = options["train_sampling_strategy"]
    options.update(stage_options)
    if t.group_by_length and options["train_sampling_strategy"] != requested:
        log.info(
            "training.group_by_length: stage `%s` orders its rows itself (%s sampling); length grouping "
            "does not apply to it",
            cfg.stage,
            options["train_sampling_strategy"],
        )
    try:
        return args_class(**options)
    except ValueError as exc:  # the libraries' own argument checks, e.g. fp16 on a CPU
        raise ConfigError(f"training: {exc}") from None


def reporters(names: list[str]) -> list[str] | str:
    """`training.report_to`, checked: each logger's package must be installed."""
    import importlib.util

    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"training.report_to: `{name}` is not installed; pip install 'tunesmith[{name}]' "
                f"(or pip install {name})"
            )
    return list(names) or "none"


def configure_reporters(names: list[str], output_dir: str) -> None:
    """Run-time set-up of the loggers (never done by a mere config check): MLflow without
    MLFLOW_TRACKING_URI logs to a local store beside the output folder (OUTPUT_PARENT/mlflow.db
    when SQLAlchemy is installed, else OUTPUT_PARENT/mlruns), so every run of one folder lands in one
    store (`mlflow ui --backend-store-uri ...`) and no server is needed."""
    import importlib.util
    import os

    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        parent = Path(output_dir).resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec("sqlalchemy") is not None:
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{parent / 'mlflow.db'}"
        else:  # mlflow-skinny: its file store, which MLflow 3 only opens when asked explicitly
            os.environ["MLFLOW_TRACKING_URI"] = (parent / "mlruns").as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
