"""Multi-task learning (`stage: mtl`): one model, several tasks, a loss per task and task weights.

    tunesmith train examples/mtl_lora.yaml

Rows carry a task name (`{task, input, output}` rows, or alpaca/messages rows with a `task`
field). The recipe is SFT's with one change: a Trainer subclass computes the loss of each task in
the batch (token-mean over its rows' trained tokens) and combines them with the weighting of
`mtl.weighting` (fixed, uncertainty or loss_proportional; see `runtime.task_weights`). Every
logging step adds `loss/TASK` and `weight/TASK` to metrics.jsonl (and to TensorBoard/MLflow
through the same log call); every evaluation adds `eval_loss/TASK`. `eval_loss` itself stays the
plain token-mean loss over all tasks, the measure sft reports, so runs with different
weightings compare.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tunesmith.config import TunesmithConfig
from tunesmith.data import options
from tunesmith.data.collate import TaskPaddingCollator
from tunesmith.data.row_errors import raise_row_errors
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.errors import ConfigError
from tunesmith.eval.perplexity import validation_loss_by_task
from tunesmith.runtime.task_weights import make_weighting
from tunesmith.stages.base import Stage
from tunesmith.stages.held_out import held_out_tokens
from tunesmith.stages.lifecycle import (
    RunResult,
    begin_run,
    data_record,
    load_run_tokenizer,
    load_trainable_model,
    train_and_save,
)
from tunesmith.stages.token_recipe import token_arguments, token_splits

log = logging.getLogger(__name__)
WEIGHTING_STATE = "task_weighting.pt"


# --- data: every row needs a task; weights must name tasks that exist ------------------------------


def check_options(cfg: TunesmithConfig) -> None:
    if cfg.training.nproc > 1 and cfg.mtl.weighting != "fixed":
        raise ConfigError(
            f"mtl.weighting: {cfg.mtl.weighting} keeps per-process task state that is not yet "
            "synchronised across training.nproc > 1 processes; use weighting: fixed or nproc: 1"
        )


def task_names(cfg: TunesmithConfig, train_set, val_set) -> list[str]:
    """The tasks of the training rows (sorted: task ids), after checking every row and `mtl.weights`."""
    counts = Counter(r.task for r in train_set.rows)
    if set(counts) == {None}:
        raise ConfigError(
            f"stage mtl: no row of data.train ({', '.join(cfg.data.train)}) has a task; write "
            "{task, input, output} rows or add a `task` field to each row (or use stage: sft)"
        )
    tasks = sorted(t for t in counts if t is not None)
    errors = [
        f"{r.where}:task: missing required field (stage mtl needs a task on every row)"
        for r in train_set.rows
        if r.task is None
    ]
    if val_set is not None:
        errors += [
            f"{r.where}:task: task `{r.task}` does not occur in data.train (tasks: {', '.join(tasks)})"
            if r.task is not None
            else f"{r.where}:task: missing required field (stage mtl needs a task on every row)"
            for r in val_set.rows
            if r.task not in tasks
        ]
    raise_row_errors(errors, "row", cfg.data.train, found=True)
    if len(tasks) < 2:
        raise ConfigError(
            f"stage mtl: data.train has one task only (`{tasks[0]}`); multi-task learning needs at "
            "least two (or use stage: sft)"
        )
    unknown = sorted(set(cfg.mtl.weights) - set(tasks))
    if unknown:
        raise ConfigError(
            f"mtl.weights: unknown task(s) {', '.join(f'`{t}`' for t in unknown)}; the tasks in "
            f"data.train are {', '.join(tasks)}"
        )
    return tasks


def check(cfg: TunesmithConfig) -> None:
    """Options, then every row read, validated and tokenised (cached for the run) before any model loads."""
    check_options(cfg)
    task_names(cfg, *token_splits(cfg, load_run_tokenizer(cfg)[1], "chat"))


def describe_tasks(cfg: TunesmithConfig, train_set, val_set) -> list[str]:
    """`data check`'s lines for this stage: rows per task of each set (after the same checks as a run)."""
    tasks = task_names(cfg, train_set, val_set)
    lines = []
    for name, data in (("train", train_set), ("validation", val_set)):
        if data is not None:
            counts = Counter(r.task for r in data.rows)
            lines.append(f"  {name} tasks: " + ", ".join(f"{t}: {counts[t]} rows" for t in tasks))
    return lines


def task_features(token_set, task_ids: dict[str, int]) -> list[dict]:
    return [{"input_ids": r.input_ids, "labels": r.labels, "task_id": task_ids[r.task]} for r in token_set.rows]


# --- the loss ------------------------------------------------------------------------------------


def task_token_losses(logits: torch.Tensor, labels: torch.Tensor, task_id: torch.Tensor, num_tasks: int):
    """(summed token loss, trained-token count) per task, fp32; the causal shift as in transformers."""
    logits = logits[:, -labels.shape[1] :]  # prompt/P-tuning prepend virtual-token positions: keep the inputs' own
    targets = labels[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(targets.shape)
    mask = targets != IGNORE_INDEX
    zeros = torch.zeros(num_tasks, dtype=torch.float32, device=logits.device)
    sums = zeros.index_add(0, task_id, (token_loss * mask).sum(dim=1))
    counts = zeros.index_add(0, task_id, mask.sum(dim=1).float())
    return sums, counts


class MultiTaskTrainer(Trainer):
    """A Trainer whose loss is a weighted combination of per-task losses, logged per task.

    Extension points used: `compute_loss`, `create_optimizer` (adds learned weighting parameters
    as their own group), `log` (adds per-task losses and weights to every record) and `train`
    (restores the weighting state of a resumed checkpoint)."""

    # compute_loss returns a per-micro-batch value: the Trainer divides it by the accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(self, *args, tasks: list[str], weighting, **kwargs):
        # first among the callbacks: the state file must exist before CheckpointGuard writes the manifest
        kwargs["callbacks"] = [WeightingCheckpoint(weighting), *(kwargs.get("callbacks") or [])]
        super().__init__(*args, **kwargs)
        self.tasks, self.weighting = tasks, weighting
        device = self.args.device
        self._train_sum = torch.zeros(len(tasks), device=device)  # sum of per-batch task losses since the last log
        self._train_batches = torch.zeros(len(tasks), device=device)
        self._eval_sum = torch.zeros(len(tasks), device=device)  # token losses of the evaluation in progress
        self._eval_tokens = torch.zeros(len(tasks), device=device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        task_id, labels = inputs.pop("task_id"), inputs.pop("labels")
        outputs = model(**inputs)
        sums, counts = task_token_losses(outputs.logits, labels, task_id, len(self.tasks))
        present = counts > 0
        if model.training:
            task_losses = sums / counts.clamp(min=1)
            loss = self.weighting.combine(task_losses, present)
            self._train_sum += task_losses.detach() * present
            self._train_batches += present
        else:
            loss = sums.sum() / counts.sum().clamp(min=1)
            self._eval_sum += sums.detach()
            self._eval_tokens += counts
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        extra = self.weighting.parameters()
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if extra and id(extra[0]) not in known:
            optimizer.add_param_group({"params": extra, "lr": self.weighting.lr, "weight_decay": 0.0})
        return optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training record: task means since the last one, and the current weights
            means = (self._train_sum / self._train_batches.clamp(min=1)).tolist()
            for k, task in enumerate(self.tasks):
                if self._train_batches[k] > 0:
                    logs[f"loss/{task}"] = round(means[k], 6)
            for task, weight in zip(self.tasks, self.weighting.weights().tolist()):
                logs[f"weight/{task}"] = round(weight, 6)
            self._train_sum.zero_()
            self._train_batches.zero_()
        if "eval_loss" in logs:  # token-mean loss of each task over the whole validation set
            means = (self._eval_sum / self._eval_tokens.clamp(min=1)).tolist()
            for k, task in enumerate(self.tasks):
                if self._eval_tokens[k] > 0:
                    logs[f"eval_loss/{task}"] = round(means[k], 6)
            self._eval_sum.zero_()
            self._eval_tokens.zero_()
        super().log(logs, start_time)

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint and (Path(resume_from_checkpoint) / WEIGHTING_STATE).is_file():
            self.weighting.load_state_dict(torch.load(Path(resume_from_checkpoint) / WEIGHTING_STATE))
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


class WeightingCheckpoint(TrainerCallback):
    """Saves the weighting's state (learned log-variances, running means) into every checkpoint."""

    def __init__(self, weighting):
        self.weighting = weighting

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            torch.save(self.weighting.state_dict(), folder / WEIGHTING_STATE)


# --- the recipe: setup -> train -> save ------------------------------------------------------------


def run(cfg: TunesmithConfig) -> RunResult:
    check_options(cfg)
    setup = begin_run(cfg)
    train_set, val_set = token_splits(cfg, setup.tokenizer, "chat")
    tasks = task_names(cfg, train_set, val_set)
    task_ids = {task: k for k, task in enumerate(tasks)}
    counts = Counter(r.task for r in train_set.rows)
    log.info(
        "mtl: %d training rows in %d tasks (%s); weighting %s",
        len(train_set.rows),
        len(tasks),
        ", ".join(f"{t}: {counts[t]}" for t in tasks),
        cfg.mtl.weighting,
    )
    model, trainable = load_trainable_model(cfg, setup)
    weighting = make_weighting(cfg.mtl, tasks, setup.device)

    def make_trainer(work, callbacks):
        return MultiTaskTrainer(
            model=model,
            args=token_arguments(cfg, work, setup.device, setup.dtype, has_eval=val_set is not None),
            train_dataset=task_features(train_set, task_ids),
            eval_dataset=task_features(val_set, task_ids) if val_set else None,
            data_collator=TaskPaddingCollator(setup.tokenizer.pad_token_id),
            processing_class=setup.tokenizer,
            callbacks=callbacks,
            tasks=tasks,
            weighting=weighting,
        )

    data = data_record(train_set, val_set, tasks={t: counts[t] for t in tasks}, weighting=cfg.mtl.weighting)
    return train_and_save(cfg, setup, model, trainable, make_trainer, train_set, val_set, data)


def evaluate(cfg: TunesmithConfig, loaded, system: str | None) -> dict:
    """Validation loss overall (token mean) and per task."""
    rows = held_out_tokens(cfg, loaded.tokenizer, system, "chat").rows
    return validation_loss_by_task(loaded.model, loaded.tokenizer, rows, cfg.eval.batch_size)


# packing mixes rows of several tasks in one sequence and streaming has no task index yet: both refused
STAGE = Stage(
    "mtl",
    data_kind="chat",
    reads="chat rows with a task name ({task, input, output}, or any chat row with `task`)",
    data_options=options.CHAT - {"packing", "streaming"},
    run=run,
    arguments=token_arguments,
    evaluate=evaluate,
    check=check,
    section="mtl",
    describe_data=describe_tasks,
    why_not={
        "packing": "a pack mixes rows of several tasks, and mtl weighs each row's loss by its task",
        "streaming": "streamed rows keep no task index yet",
    },
)
