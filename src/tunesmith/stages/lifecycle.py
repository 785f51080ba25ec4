"""The phases every stage recipe shares: setup (output folder, seed, tokenizer, the model with its
method), train and save (callbacks, checkpoints, resume, the manifest written last), and the
manifest's data entry. A recipe reads top to bottom: `begin_run`, its data, `load_trainable_model`,
its trainer, `train_and_save(..., train, val)`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.config import TunesmithConfig, dump_config
from tunesmith.data.dataset import TokenizedSet
from tunesmith.data.rows import RowSet
from tunesmith.errors import TrainingStopped
from tunesmith.eval.chat_template import set_run_template
from tunesmith.methods import apply_method, method_callbacks, method_load_options, method_optimizer, save_trained
from tunesmith.models.default import cache_root
from tunesmith.models.loader import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model_path
from tunesmith.runtime import hooks, launch
from tunesmith.runtime.arguments import configure_reporters
from tunesmith.runtime.checkpoints import CheckpointGuard, StopOnSignal, choose_resume
from tunesmith.runtime.eta import TrainingTimeEstimate
from tunesmith.runtime.forgetting import forgetting_callbacks
from tunesmith.runtime.logging_callbacks import MetricsLogger, plot_loss
from tunesmith.runtime.manifest import library_versions, resume_identity, run_manifest
from tunesmith.runtime.nan_guard import NonFiniteGuard
from tunesmith.runtime.outputs import OutputFolder
from tunesmith.runtime.peak_memory import PeakMemory
from tunesmith.runtime.precision import announce_precision


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)


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


def begin_run(cfg: TunesmithConfig, raw_text: bool = False) -> RunSetup:
    """Refuse an existing output, seed, and load the tokenizer (data comes next, before the model);
    `raw_text`: the stage trains on raw text (see load_run_tokenizer)."""
    output = OutputFolder(cfg.output_dir, cfg.overwrite_output, protect=[cfg._source])
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    torch.manual_seed(cfg.training.seed)
    base_path, tokenizer = load_run_tokenizer(cfg, raw_text)
    device = pick_device()
    return RunSetup(
        output, base_path, tokenizer, device, pick_dtype(cfg.model.dtype, device), cache_root(cfg.model.cache_dir)
    )


def load_run_tokenizer(cfg: TunesmithConfig, raw_text: bool = False):
    """The base model's path and its tokenizer with the chat template `data.template` selects. A stage
    that trains on raw text (`raw_text`: pt) needs none: a base model without one (gpt2, most
    pre-trained bases) keeps none, unless something measured as a chat (eval.qa, the chat suites,
    forgetting.general_qa, chat rows in forgetting.general_eval) needs it, which is refused here,
    before anything trains."""
    base_path = resolve_model_path(cfg.model.name_or_path, cfg.model.cache_dir)
    tokenizer = load_tokenizer(base_path, cfg.model.trust_remote_code)
    set_run_template(cfg, tokenizer, base_path, raw_text)
    return base_path, tokenizer


def load_trainable_model(cfg: TunesmithConfig, setup: RunSetup, load=load_causal_lm):
    """The base model with the configured method applied; prints the trainable-parameter report.

    `load(path, dtype, attn_implementation, trust_remote_code, **method options)` builds the model
    class the stage trains (a causal LM by default; the rm stage passes a reward-model loader)."""
    model = load(
        setup.base_path,
        setup.dtype,
        cfg.model.attn_implementation,
        cfg.model.trust_remote_code,
        **method_load_options(cfg),
    )
    if cfg.training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model, trainable = apply_method(model, cfg)
    print(f"[tunesmith] {cfg.stage}/{cfg.method} on {setup.base_path}: {trainable}", flush=True)
    return model, trainable


def finish_run(
    cfg: TunesmithConfig,
    setup: RunSetup,
    model,
    work: Path,
    metrics: MetricsLogger,
    train_metrics: dict,
    data: dict,
    trainable,
    peak_mb: float,
    weights_saved: bool = False,
) -> RunResult:
    """Save weights (unless a sharding engine's save_model already did), tokenizer (with its chat
    template), config and plot; manifest last; commit."""
    if not weights_saved:
        save_trained(model, cfg, work)
    setup.tokenizer.save_pretrained(work)
    dump_config(cfg, work / "config.yaml")
    plot_loss(metrics.records, work / "loss.png", f"{cfg.stage}/{cfg.method}")
    manifest = run_manifest(cfg, setup.base_path, data, trainable, train_metrics, peak_mb, time.time() - setup.started)
    return RunResult(output_dir=setup.output.commit(manifest), metrics=train_metrics, manifest=manifest)


def train_and_save(
    cfg: TunesmithConfig,
    setup: RunSetup,
    model,
    trainable,
    make_trainer,
    train,
    val,
    data: dict | None = None,
    trainer_evaluates: bool = True,
) -> RunResult:
    """Open the output, train with `make_trainer(work, callbacks)`, evaluate, save and commit: the same
    tail for every stage.

    `train`, `val`: the training and validation sets (data.dataset.TokenizedSet or data.rows.RowSet;
    `val` may be None). The rows either left out go to rejects.jsonl; `data` is the manifest's data
    entry (default `data_record(train, val)`); `trainer_evaluates`: the trainer measures `val` itself
    (False for grpo and ppo, whose held-out reward the stage's `evaluate` measures).
    Checkpoints carry a manifest written last; `training.resume` continues from one. A SIGTERM or
    SIGUSR1 saves a checkpoint and raises TrainingStopped (the folder stays .partial)."""
    data = data_record(train, val) if data is None else data
    rejects = train.rejects.merge(val.rejects if val is not None else None)
    has_eval = trainer_evaluates and val is not None
    t = cfg.training
    configure_reporters(t.report_to, cfg.output_dir)
    main_process = launch.rank() == 0  # with several processes only rank 0 writes the output
    identity = {
        "config_hash": resume_identity(cfg),
        "data_fingerprint": data.get("train_fingerprint"),
        "versions": library_versions(),
    }
    # a checkpoint left in OUTPUT.partial is continued (unset/auto) or refused (changed run), never deleted silently
    checkpoint = choose_resume(t.resume, setup.output.partial, identity, t.resume_changed)
    work = (
        setup.output.open(resume=checkpoint is not None, discard=t.resume == "restart")
        if main_process
        else setup.output.partial
    )
    if main_process and (rejects.entries or rejects.dropped):
        rejects.write(work / "rejects.jsonl")
    resume_step = int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None
    if checkpoint:
        print(
            f"[tunesmith] resuming from {checkpoint}"
            + (
                ""
                if t.resume
                else " (left by an earlier run of this config; training.resume=restart starts over instead)"
            ),
            flush=True,
        )
    if main_process:
        announce_precision(t.mixed_precision, setup.dtype, setup.device)
    metrics = MetricsLogger(
        work,
        resume_step if checkpoint else None,
        write=main_process,
        live_plot=t.live_plot_seconds or None,
        title=f"{cfg.stage}/{cfg.method}",
    )
    stopper = StopOnSignal()
    guard = NonFiniteGuard(t.nan)
    # the guard, the method's and the forgetting callbacks (moe_balance_loss, l2_penalty) run before the
    # metrics logger, so what they add is logged
    trainer = make_trainer(
        work,
        [
            guard,
            *method_callbacks(model, cfg),
            *forgetting_callbacks(cfg, model),
            metrics,
            CheckpointGuard(work, identity, t.save_total_limit),
            stopper,
            TrainingTimeEstimate(),
            *hooks.current(),
        ],
    )
    # A method may bring its own optimiser (LoRA+ parameter groups). It goes in through the Trainer's
    # documented `optimizer_cls_and_kwargs` option, read when train() builds the optimiser, so no
    # stage needs to know about it.
    optimizer = method_optimizer(cfg, trainer.args)
    if optimizer is not None:
        trainer.optimizer_cls_and_kwargs = optimizer
    with PeakMemory() as memory:
        train_metrics = dict(trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).metrics)
    if stopper.stopped_at is not None:
        raise TrainingStopped(
            f"stopped by {stopper.received} at step {stopper.stopped_at}; checkpoint saved in "
            f"{work}/checkpoint-{stopper.stopped_at}. Continue with: tunesmith train CONFIG "
            f"training.resume=auto"
        )
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
    return finish_run(
        cfg, setup, model, work, metrics, train_metrics, data, trainable, memory.peak_mb, weights_saved=sharded
    )


# --- the manifest's data entry, the same for every stage -------------------------------------------


def data_record(train, val, **extra) -> dict:
    """Fingerprints and row counts of a training set and its validation set (a data.dataset.TokenizedSet
    or a data.rows.RowSet), plus what the stage adds (`extra`). A tokenised set adds its tokens, trained
    tokens and the rows `overlength: truncate` cut (and how many lost their reply's end-of-turn token); a
    set of rows its trainer tokenises, the rows that trainer will cut."""
    if isinstance(train, RowSet):
        extra = {"train_rows_truncated": train.truncated, **extra}
    if isinstance(train, TokenizedSet):
        extra = {
            "train_tokens": train.tokens,
            "train_trained_tokens": train.trained_tokens,
            "train_rows_truncated": train.truncated,
            "train_rows_truncated_without_end": train.truncated_without_end,
            **extra,
        }
    return {
        "train_fingerprint": train.fingerprint,
        "train_rows": len(train.rows),
        "train_rows_rejected": len(train.rejects.entries),
        "train_rows_dropped": len(train.rejects.dropped),
        **extra,
        "validation_fingerprint": val.fingerprint if val else None,
        "validation_rows": len(val.rows) if val else None,
        "validation_rows_rejected": len(val.rejects.entries) if val else None,
        "validation_rows_dropped": len(val.rejects.dropped) if val else None,
    }
