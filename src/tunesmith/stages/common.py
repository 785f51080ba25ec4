"""Pieces every stage recipe shares: setup and save phases, Trainer arguments, the run manifest."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from tunesmith import __version__
from tunesmith.config import TunesmithConfig, config_hash, dump_config
from tunesmith.data.templates import apply_template
from tunesmith.errors import ConfigError, TrainingStopped
from tunesmith.methods import apply_method, method_callbacks, method_load_options, method_optimizer, save_trained
from tunesmith.models.default import cache_root
from tunesmith.models.loader import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model_path
from tunesmith.runtime import hooks, launch
from tunesmith.runtime.accel import accel_arguments
from tunesmith.runtime.checkpoints import CheckpointGuard, StopOnSignal, choose_resume
from tunesmith.runtime.engines import engine_arguments
from tunesmith.runtime.forgetting import forgetting_callbacks
from tunesmith.runtime.logging_callbacks import MetricsLogger, plot_loss
from tunesmith.runtime.nan_guard import NonFiniteGuard
from tunesmith.runtime.outputs import OutputFolder
from tunesmith.runtime.peak_memory import PeakMemory


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)


def training_arguments(cfg: TunesmithConfig, work: Path, device: torch.device, dtype: torch.dtype,
                       has_eval: bool, args_class: type[TrainingArguments] = TrainingArguments,
                       **stage_options) -> TrainingArguments:
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
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss is shown, never hidden
        eval_strategy="epoch" if has_eval else "no",
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=None,  # rotation is CheckpointGuard's, after the new manifest is committed
        report_to=reporters(t.report_to, cfg.output_dir),
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
    options.update(stage_options)
    try:
        return args_class(**options)
    except ValueError as exc:  # the libraries' own argument checks, e.g. fp16 on a CPU
        raise ConfigError(f"training: {exc}") from None


def reporters(names: list[str], output_dir: str | None = None) -> list[str] | str:
    """`training.report_to`, checked: each logger's package must be installed. MLflow without
    MLFLOW_TRACKING_URI logs to a local store beside the output folder (OUTPUT_PARENT/mlflow.db
    when SQLAlchemy is installed, else OUTPUT_PARENT/mlruns), so every run of one folder lands in one
    store (`mlflow ui --backend-store-uri ...`) and no server is needed."""
    import importlib.util
    import os

    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"training.report_to: `{name}` is not installed; pip install 'tunesmith[{name}]' "
                              f"(or pip install {name})")
    if "mlflow" in names and output_dir and not os.environ.get("MLFLOW_TRACKING_URI"):
        parent = Path(output_dir).resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec("sqlalchemy") is not None:
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{parent / 'mlflow.db'}"
        else:  # mlflow-skinny: its file store, which MLflow 3 only opens when asked explicitly
            os.environ["MLFLOW_TRACKING_URI"] = (parent / "mlruns").as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return list(names) or "none"


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX (Linux), where bf16 autocast is faster than fp32."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(mixed_precision: str, dtype: torch.dtype) -> str:
    """'auto': the weights' own half type if they have one; on a CPU with native bf16, bf16
    autocast (measured 1.4x faster for SmolLM2-135M LoRA on a 2-core EPYC); else none."""
    if mixed_precision != "auto":
        return mixed_precision
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16" if dtype == torch.bfloat16 else "fp16"
    if not torch.cuda.is_available() and cpu_has_native_bf16():
        return "bf16"
    return "no"


def library_versions() -> dict[str, str]:
    import peft
    import transformers

    return {
        "tunesmith": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def run_manifest(cfg, base_path, data: dict, trainable, metrics: dict, peak_mb: float, seconds: float) -> dict:
    """What every finished output records: where it came from, on what data, with what result."""
    return {
        "stage": cfg.stage,
        "method": cfg.method,
        "base_model": str(base_path),
        "base_model_ref": cfg.model.name_or_path,
        "system": cfg.data.system,
        "data": {"train": cfg.data.train, "validation": cfg.data.validation, **data},
        "trainable_parameters": trainable.trainable,
        "total_parameters": trainable.total,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        "peak_memory_mb": round(peak_mb, 1),
        "train_seconds": round(seconds, 1),
        "versions": library_versions(),
        "config_hash": config_hash(cfg),
    }


# --- the setup and save phases every recipe shares ----------------------------------------------


@dataclass
class RunSetup:
    output: OutputFolder
    base_path: str
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    cache_root: Path
    started: float = field(default_factory=time.time)


def begin_run(cfg: TunesmithConfig) -> RunSetup:
    """Refuse an existing output, seed, and load the tokenizer (data comes next, before the model)."""
    output = OutputFolder(cfg.output_dir, cfg.overwrite_output, protect=[cfg._source])
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    torch.manual_seed(cfg.training.seed)
    base_path, tokenizer = load_run_tokenizer(cfg)
    device = pick_device()
    return RunSetup(output, base_path, tokenizer, device, pick_dtype(cfg.model.dtype, device), cache_root(cfg.model.cache_dir))


def load_run_tokenizer(cfg: TunesmithConfig):
    """The base model's path and its tokenizer with the chat template `data.template` selects."""
    base_path = resolve_model_path(cfg.model.name_or_path, cfg.model.cache_dir)
    tokenizer = load_tokenizer(base_path, cfg.model.trust_remote_code)
    apply_template(tokenizer, cfg.data.template)
    return base_path, tokenizer


def load_trainable_model(cfg: TunesmithConfig, setup: RunSetup, load=load_causal_lm):
    """The base model with the configured method applied; prints the trainable-parameter report.

    `load(path, dtype, attn_implementation, trust_remote_code, **method options)` builds the model
    class the stage trains (a causal LM by default; the rm stage passes a reward-model loader)."""
    model = load(setup.base_path, setup.dtype, cfg.model.attn_implementation, cfg.model.trust_remote_code,
                 **method_load_options(cfg))
    if cfg.training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model, trainable = apply_method(model, cfg)
    print(f"[tunesmith] {cfg.stage}/{cfg.method} on {setup.base_path}: {trainable}", flush=True)
    return model, trainable


def finish_run(cfg: TunesmithConfig, setup: RunSetup, model, work: Path, metrics: MetricsLogger,
               train_metrics: dict, data: dict, trainable, peak_mb: float, weights_saved: bool = False) -> RunResult:
    """Save weights (unless a sharding engine's save_model already did), tokenizer (with its chat
    template), config and plot; manifest last; commit."""
    if not weights_saved:
        save_trained(model, cfg, work)
    setup.tokenizer.save_pretrained(work)
    dump_config(cfg, work / "config.yaml")
    plot_loss(metrics.records, work / "loss.png", f"{cfg.stage}/{cfg.method}")
    manifest = run_manifest(cfg, setup.base_path, data, trainable, train_metrics, peak_mb, time.time() - setup.started)
    return RunResult(output_dir=setup.output.commit(manifest), metrics=train_metrics, manifest=manifest)


def train_and_save(cfg: TunesmithConfig, setup: RunSetup, model, trainable, make_trainer, has_eval: bool,
                   data: dict, rejects=None) -> RunResult:
    """Open the output, train with `make_trainer(work, callbacks)`, evaluate, save and commit.

    Checkpoints carry a manifest written last; `training.resume` continues from one. A SIGTERM or
    SIGUSR1 saves a checkpoint and raises TrainingStopped (the folder stays .partial).
    `rejects` (a data.formats.Rejects) is written to rejects.jsonl when rows were left out."""
    t = cfg.training
    main_process = launch.rank() == 0  # with several processes only rank 0 writes the output
    identity = {"config_hash": resume_identity(cfg), "data_fingerprint": data.get("train_fingerprint"),
                "versions": library_versions()}
    # a checkpoint left in OUTPUT.partial is continued (unset/auto) or refused (changed run), never deleted silently
    checkpoint = choose_resume(t.resume, setup.output.partial, identity, t.resume_changed)
    work = (setup.output.open(resume=checkpoint is not None, discard=t.resume == "restart") if main_process
            else setup.output.partial)
    if main_process and rejects is not None and (rejects.entries or rejects.dropped):
        rejects.write(work / "rejects.jsonl")
    resume_step = int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None
    if checkpoint:
        print(f"[tunesmith] resuming from {checkpoint}" + ("" if t.resume else " (left by an earlier run of this "
              "config; training.resume=restart starts over instead)"), flush=True)
    metrics = MetricsLogger(work, resume_step if checkpoint else None, write=main_process,
                            live_plot=t.live_plot_seconds or None, title=f"{cfg.stage}/{cfg.method}")
    stopper = StopOnSignal()
    guard = NonFiniteGuard(t.nan)
    # the guard, the method's and the forgetting callbacks (moe_balance_loss, l2_penalty) run before the
    # metrics logger, so what they add is logged
    trainer = make_trainer(work, [guard, *method_callbacks(model, cfg), *forgetting_callbacks(cfg, model), metrics,
                                  CheckpointGuard(work, identity, t.save_total_limit), stopper, *hooks.current()])
    # A method may bring its own optimiser (LoRA+ parameter groups). It goes in through the Trainer's
    # documented `optimizer_cls_and_kwargs` option, read when train() builds the optimiser, so no
    # stage needs to know about it.
    optimizer = method_optimizer(cfg, trainer.args)
    if optimizer is not None:
        trainer.optimizer_cls_and_kwargs = optimizer
    with PeakMemory() as memory:
        train_metrics = dict(trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).metrics)
    if stopper.stopped_at is not None:
        raise TrainingStopped(f"stopped by {stopper.received} at step {stopper.stopped_at}; checkpoint saved in "
                              f"{work}/checkpoint-{stopper.stopped_at}. Continue with: tunesmith train CONFIG "
                              f"training.resume=auto")
    train_metrics["nan_skipped"] = len(guard.skipped)
    if has_eval:
        # the Trainer evaluates after every epoch; only evaluate again if the last step had none
        last = next((r for r in reversed(trainer.state.log_history) if "eval_loss" in r), None)
        if last is not None and last.get("step") == trainer.state.global_step:
            train_metrics.update({k: v for k, v in last.items() if k.startswith("eval_")})
        else:
            train_metrics.update(trainer.evaluate())
    sharded = t.engine != "ddp"
    if sharded:  # every process takes part in gathering the sharded weights; rank 0 writes them
        trainer.save_model(str(work))
    if not main_process:
        return RunResult(output_dir=setup.output.final, metrics=train_metrics)
    return finish_run(cfg, setup, model, work, metrics, train_metrics, data, trainable, memory.peak_mb,
                      weights_saved=sharded)


def resume_identity(cfg: TunesmithConfig) -> str:
    """The config hash a checkpoint must match: everything but the resume keys themselves (and the
    live-plot interval, which does not touch training)."""
    training = cfg.training.model_copy(update={"resume": None, "resume_changed": False, "live_plot_seconds": 0.0})
    return config_hash(cfg.model_copy(update={"training": training, "overwrite_output": False}))
