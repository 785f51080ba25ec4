"""What a non-finite (NaN or inf) gradient does to a run: `training.nan: error | skip`.

Checked after gradient clipping, just before the optimiser step (a NaN loss always gives NaN
gradients, so one check covers both).

- error: stop with the step, epoch and the first parameter with a non-finite gradient named.
- skip: the step is dropped: gradients are discarded (PyTorch optimisers leave a parameter
  without a gradient untouched: no update, no moment or step-count change), and the scheduler is
  put back to its state before the step. Skipped steps are counted and logged as `nan_skipped`.
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

from tunesmith.errors import TunesmithError

log = logging.getLogger(__name__)


class NonFiniteLoss(TunesmithError):
    """Training met a NaN/inf gradient under `training.nan: error`."""


class NonFiniteGuard(TrainerCallback):
    def __init__(self, policy: str = "error"):
        self.policy = policy
        self.skipped: list[int] = []
        self._scheduler_state = None

    @staticmethod
    def first_non_finite(model) -> str | None:
        for name, param in model.named_parameters():
            if param.grad is not None and not torch.isfinite(param.grad).all():
                return name
        return None

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self._scheduler_state = None
        bad = self.first_non_finite(model)
        if bad is None:
            return
        step = state.global_step + 1
        if self.policy == "error":
            raise NonFiniteLoss(
                f"non-finite gradient at optimiser step {step} (epoch {state.epoch:.2f}), first in `{bad}`; "
                "lower training.learning_rate, check the data around this step (tunesmith data stats), or set "
                "training.nan=skip to drop such steps"
            )
        for param in model.parameters():
            param.grad = None
        self._scheduler_state = lr_scheduler.state_dict() if lr_scheduler is not None else None
        self._scheduler = lr_scheduler
        self.skipped.append(step)
        log.warning(
            "step %d: non-finite gradient (first in %s); step skipped (%d so far)", step, bad, len(self.skipped)
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self._scheduler_state is not None:
            self._scheduler.load_state_dict(self._scheduler_state)  # the skipped step never happened
            self._scheduler_state = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.skipped:
            logs["nan_skipped"] = len(self.skipped)
