"""What every stage recipe shares: the setup and save phases, the recipe of the tokenised stages
(sft, pt, mtl), and the manifest's data entry. Not a stage itself: no stage imports another."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from tunesmith.config import TunesmithConfig, dump_config
from tunesmith.data.collate import PaddingCollator
from tunesmith.data.dataset import build_sources, build_splits
from tunesmith.data.packing import PackedCollator, packing_efficiency
from tunesmith.data.rows import PROMPTS, load_row_splits, load_rows
from tunesmith.data.templates import apply_template
from tunesmith.errors import ConfigError, TrainingStopped
from tunesmith.eval.perplexity import validation_loss
from tunesmith.eval.verifiers import require_answers
from tunesmith.methods import apply_method, method_callbacks, method_load_options, method_optimizer, save_trained
from tunesmith.models.default import cache_root
from tunesmith.models.loader import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model_path
from tunesmith.runtime import hooks, launch
from tunesmith.runtime.arguments import configure_reporters, training_arguments
from tunesmith.runtime.checkpoints import CheckpointGuard, StopOnSignal, choose_resume
from tunesmith.runtime.eta import TrainingTimeEstimate
from tunesmith.runtime.forgetting import forgetting_callbacks
from tunesmith.runtime.logging_callbacks import MetricsLogger, plot_loss
from tunesmith.runtime.manifest import library_versions, resume_identity, run_manifest
from tunesmith.runtime.nan_guard import NonFiniteGuard
from tunesmith.runtime.outputs import OutputFolder
from tunesmith.runtime.peak_memory import PeakMemory
from tunesmith.runtime.precision import announce_precision
from tunesmith.runtime.token_loss import TrainedTokenTrainer
from tunesmith.stages.model_replay import replay_entries

log = logging.getLogger(__name__)


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
    return RunSetup(output, base_path, tokenizer, device, pick_dtype(cfg.model.dtype, device), cache_root(cfg.model.cache_dir))


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


def set_run_template(cfg: TunesmithConfig, tokenizer, base_path, raw_text: bool = False) -> None:
    """Give a base model's tokenizer the chat template the run renders with (see load_run_tokenizer)."""
    if raw_text and not getattr(tokenizer, "chat_template", None):
        _refuse_chat_measures(cfg, base_path)
    else:
        apply_template(tokenizer, cfg.data.template)


def _refuse_chat_measures(cfg: TunesmithConfig, base_path) -> None:
    from tunesmith.eval.general import general_kind

    chats = ("qa", "generation", "mcq", "consistency", "edge_cases", "judge")  # prompts rendered as chats
    asks = [f"eval.{name}" for name in chats if getattr(cfg.eval, name)]
    asks += ["forgetting.general_qa"] if cfg.forgetting.general_qa else []
    if cfg.forgetting.general_eval and general_kind(cfg) == "chat":
        asks.append("forgetting.general_eval (chat rows)")
    if asks:
        raise ConfigError(f"{', '.join(asks)}: asked as chats, but the tokenizer of {base_path} has no chat template "
                          f"(stage {cfg.stage} trains on raw text and needs none); measure with raw text instead "
                          "(data.validation, `text` rows in forgetting.general_eval), or start from a model with one")


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
    configure_reporters(t.report_to, cfg.output_dir)
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
    if main_process:
        announce_precision(t.mixed_precision, setup.dtype, setup.device)
    metrics = MetricsLogger(work, resume_step if checkpoint else None, write=main_process,
                            live_plot=t.live_plot_seconds or None, title=f"{cfg.stage}/{cfg.method}")
    stopper = StopOnSignal()
    guard = NonFiniteGuard(t.nan)
    # the guard, the method's and the forgetting callbacks (moe_balance_loss, l2_penalty) run before the
    # metrics logger, so what they add is logged
    trainer = make_trainer(work, [guard, *method_callbacks(model, cfg), *forgetting_callbacks(cfg, model), metrics,
                                  CheckpointGuard(work, identity, t.save_total_limit), stopper, TrainingTimeEstimate(),
                                  *hooks.current()])
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


# --- the manifest's data entry, the same for every stage -------------------------------------------


def merged_rejects(train, val):
    """The rows the training and validation sets left out, together (rejects.jsonl lists both)."""
    if val is None or not (val.rejects.entries or val.rejects.dropped):
        return train.rejects
    return replace(train.rejects, entries=train.rejects.entries + val.rejects.entries,
                   dropped=train.rejects.dropped + val.rejects.dropped)


def data_record(train, val, **extra) -> dict:
    """Fingerprints and row counts of a training set and its validation set (a data.dataset.TokenizedSet
    or a data.rows.RowSet), plus what the stage adds (`extra`)."""
    return {"train_fingerprint": train.fingerprint, "train_rows": len(train.rows),
            "train_rows_rejected": len(train.rejects.entries), "train_rows_dropped": len(train.rejects.dropped),
            **extra, "validation_fingerprint": val.fingerprint if val else None,
            "validation_rows": len(val.rows) if val else None,
            "validation_rows_rejected": len(val.rejects.entries) if val else None,
            "validation_rows_dropped": len(val.rejects.dropped) if val else None}


def token_data_record(train, val, **extra) -> dict:
    """`data_record` of a tokenised training set (data.dataset.TokenizedSet): tokens, trained tokens and
    the rows `overlength: truncate` cut (and how many lost their reply's end-of-turn token)."""
    return data_record(train, val, train_tokens=train.tokens, train_trained_tokens=train.trained_tokens,
                       train_rows_truncated=train.truncated, train_rows_truncated_without_end=train.truncated_without_end,
                       **extra)


# --- the recipe of the stages that train a causal LM on rows tokenised here (sft, pt, mtl) ---------


def token_splits(cfg: TunesmithConfig, tokenizer, kind: str, replay: bool | list[str] = False):
    """The tokenised training and validation sets (`kind`: chat or text), cached for the run.
    `replay`: True mixes in forgetting.replay as written; a list, those entries instead (the
    model's own answers, stages.model_replay)."""
    entries = replay if isinstance(replay, list) else (cfg.forgetting.replay if replay else None)
    return build_splits(tokenizer, cfg.data, kind, cfg.training.seed, cache_root(cfg.model.cache_dir),
                        entries or None, cfg.forgetting.replay_ratio,
                        own_replay=isinstance(replay, list) and cfg.forgetting.replay_answers == "model")


def token_arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    # Packs are already filled to max_length: grouping them by length would only cost time.
    options = {"train_sampling_strategy": "random"} if cfg.data.packing else {}
    return training_arguments(cfg, work, device, dtype, has_eval, **options)


def run_token_recipe(cfg: TunesmithConfig, kind: str) -> RunResult:
    """Train a causal LM on pre-tokenised rows with their labels (sft: chats, pt: raw text)."""
    # --- setup: tokenizer and data first, so bad data fails before the model loads -----------
    setup = begin_run(cfg, raw_text=kind == "text")
    tokenizer = setup.tokenizer
    # every data file was read by the stage's check (tunesmith train's pre-flight) before the base model
    # loads here to answer the replay prompts (forgetting.replay_answers: model)
    train_set, val_set = token_splits(cfg, tokenizer, kind, replay=replay_entries(cfg, setup))
    packing, capacity, seed = cfg.data.packing, cfg.data.max_length, cfg.training.seed
    train_features = train_set.as_features(packing, capacity, seed)
    val_features = val_set.as_features(packing, capacity, seed) if val_set else None
    log.info("data: %d training rows (%d tokens, %d trained)%s%s", len(train_set.rows), train_set.tokens,
             train_set.trained_tokens, f", {len(val_set.rows)} validation rows" if val_set else "",
             f"; packed into {len(train_features)} sequences of <= {capacity} tokens "
             f"({packing_efficiency(train_features, capacity):.0%} full)" if packing else "")
    model, trainable = load_trainable_model(cfg, setup)
    collator = PackedCollator(tokenizer.pad_token_id) if packing else PaddingCollator(tokenizer.pad_token_id)

    # --- train, then save: weights, tokenizer with its chat template, config, plots; manifest last --
    def make_trainer(work, callbacks):
        # logits only at trained positions: the same loss, a fraction of the logits' memory and time
        return TrainedTokenTrainer(
            model=model,
            args=token_arguments(cfg, work, setup.device, setup.dtype, has_eval=val_set is not None),
            train_dataset=train_features,
            eval_dataset=val_features,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )

    data = token_data_record(train_set, val_set, packed_sequences=len(train_features) if packing else None)
    return train_and_save(cfg, setup, model, trainable, make_trainer, val_set is not None, data,
                          merged_rejects(train_set, val_set))


# --- held-out data for a stage's `evaluate` (validation files, or the val_split of training) ------


def held_out_tokens(cfg: TunesmithConfig, tokenizer, system: str | None, kind: str):
    """The tokenised validation set as the run saw it, rendered with `system` (the model's own); never
    augmented (the run's validation rows are not either)."""
    data = cfg.data.model_copy(update={"system": system, "augment": None})
    root = cache_root(cfg.model.cache_dir)
    if cfg.data.validation:  # only the validation files: the training set is not read again
        return build_sources(tokenizer, data, "validation", kind, cfg.training.seed, root)
    return build_splits(tokenizer, data, kind, cfg.training.seed, root)[1]  # from the tokenised cache


def held_out_rows(cfg: TunesmithConfig, tokenizer, system: str | None, kind, trainer_truncates: bool):
    """The validation rows (data.rows.RowSet) of a stage whose trainer tokenises itself."""
    data = cfg.data.model_copy(update={"system": system})
    if cfg.data.validation:
        return load_rows(tokenizer, data, "validation", kind, cfg.training.seed, trainer_truncates)
    return load_row_splits(tokenizer, data, kind, cfg.training.seed, trainer_truncates)[1]


class TokenRecipe:
    """check / run / evaluate of a stage that trains a causal LM on rows tokenised here (`kind`: chat
    for sft, text for pt); a stage record takes these three as they are."""

    def __init__(self, kind: str):
        self.kind = kind

    def check(self, cfg: TunesmithConfig) -> None:
        """Read, validate and tokenise every data file before any model loads: file:line:field errors,
        over-length and error policies. The tokenised rows are cached, so the run reuses them."""
        token_splits(cfg, load_run_tokenizer(cfg, self.kind == "text")[1], self.kind, replay=True)

    def run(self, cfg: TunesmithConfig) -> RunResult:
        return run_token_recipe(cfg, self.kind)

    def evaluate(self, cfg: TunesmithConfig, loaded, system: str | None) -> dict:
        rows = held_out_tokens(cfg, loaded.tokenizer, system, self.kind).rows
        return validation_loss(loaded.model, loaded.tokenizer, rows, cfg.eval.batch_size)


def prompt_splits(cfg: TunesmithConfig, tokenizer, rewards):
    """Training and held-out prompt rows (grpo, ppo); every row needs an `answer` when exact_answer is
    among `rewards`."""
    train, val = load_row_splits(tokenizer, cfg.data, PROMPTS, cfg.training.seed, trainer_truncates=False)
    for rows in (train, val):
        if rows is not None:
            require_answers(rows.rows, rewards)
    return train, val
