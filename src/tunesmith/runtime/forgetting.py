"""The L2 pull toward the starting weights (`forgetting.l2: COEF`), for every stage and method.

    penalty = COEF x sum over trainable parameters of ||theta - theta_0||^2

theta_0 is each trainable parameter as the method left it before training: the base weights for
`full` and `freeze`; the initialisation for added weights (LoRA's A at its random init and B at
zero, so the pull keeps the update B.A small; adapters; prompt vectors). It is snapshotted when
the run is set up, before a resumed run loads its checkpoint, so a resumed run pulls toward the
same theta_0 (the method's initialisation is seeded).

No stage knows about it: a Trainer callback adds the penalty's gradient, 2 x COEF x (theta -
theta_0), to every trainable parameter's gradient at the start of each optimiser step, before any
micro-batch's backward pass. The optimiser therefore sees exactly the gradient of (stage loss +
penalty), once per optimiser step whatever the gradient accumulation, and gradient clipping
covers both. Under DDP every process adds the same term, so the average is unchanged. The
penalty at the current weights is logged as `l2_penalty` next to the stage's own `loss` (which
stays the stage's loss alone, comparable with runs without the pull).

Refused (at config time) with fp16 loss scaling (the scaler's factor is not visible to a
callback) and with the sharding engines (FSDP, DeepSpeed), whose parameters are flat shards.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from tunesmith.errors import ConfigError


class L2TowardStart(TrainerCallback):
    def __init__(self, model, coef: float):
        self.coef = coef
        # kept on the CPU until first use, then on each parameter's own device
        self.start = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}
        if not self.start:
            raise ConfigError("forgetting.l2: the model has no trainable parameters to pull toward their start")

    def _pairs(self, model):
        for name, param in model.named_parameters():
            start = self.start.get(name)
            if start is None:
                continue
            if start.device != param.device:
                start = self.start[name] = start.to(param.device)
            yield param, start

    @torch.no_grad()
    def penalty(self, model) -> float:
        """COEF x sum ||theta - theta_0||^2 at the current weights (in float64)."""
        total = sum(float((p.detach().double() - s.double()).pow(2).sum()) for p, s in self._pairs(model))
        return self.coef * total

    @torch.no_grad()
    def on_step_begin(self, args, state, control, model=None, **kwargs):
        for param, start in self._pairs(model):
            grad = (param.detach() - start).mul_(2 * self.coef).to(param.dtype)
            if param.grad is None:
                param.grad = grad
            else:
                param.grad.add_(grad)

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if logs is not None and "loss" in logs and model is not None:
            logs["l2_penalty"] = self.penalty(model)


def forgetting_callbacks(cfg, model) -> list:
    """The callbacks `cfg.forgetting` asks for (none by default)."""
    return [L2TowardStart(model, cfg.forgetting.l2)] if cfg.forgetting.l2 > 0 else []


def check_l2(cfg, args) -> None:
    """Refuse, before any model loads, what the gradient-adding L2 pull cannot do exactly."""
    if cfg.forgetting.l2 <= 0:
        return
    if args.fp16:
        raise ConfigError(
            "forgetting.l2 cannot be combined with fp16 mixed precision (its loss scaling is applied to "
            "the gradients the pull adds to); use training.mixed_precision=bf16 or no"
        )
    if cfg.training.engine != "ddp":
        raise ConfigError(
            f"forgetting.l2 is not available with training.engine={cfg.training.engine} (its parameters are "
            "sharded); use training.engine=ddp or set forgetting.l2=0"
        )
