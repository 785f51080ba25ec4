"""Task weightings for multi-task learning: per-task losses in, one training loss out.

Every weighting offers `combine(task_losses, present)`, where `task_losses[k]` is task k's
token-mean loss in this micro-batch and `present[k]` says whether task k occurs in it;
`weights()` (one value per task, for logging); `parameters()` (what the optimiser must train);
and `state_dict` / `load_state_dict` (what a checkpoint must keep).

- FixedWeights:            sum_k w_k L_k with the configured weights.
- UncertaintyWeights:      Kendall, Gal & Cipolla (2018), classification form: a learned
                           log-variance s_k per task, loss sum_k exp(-s_k) L_k + s_k. At the optimum
                           exp(-s_k) = 1 / L_k, so a task whose loss stays high (noisy or hard) is
                           weighted down; the logged weight is exp(-s_k).
- LossProportionalWeights: w_k = K m_k / sum_j m_j, where m_k is an exponential running mean of
                           task k's loss (weights treated as constants, mean 1): the task the model
                           has learned least gets the most gradient.
"""

from __future__ import annotations

import torch

from tunesmith.config.stages import MtlConfig


class FixedWeights:
    def __init__(self, weights: list[float], device=None):
        self.w = torch.tensor(weights, dtype=torch.float32, device=device)

    def combine(self, task_losses: torch.Tensor, present: torch.Tensor, update: bool = True) -> torch.Tensor:
        return (self.w * task_losses)[present].sum()

    def weights(self) -> torch.Tensor:
        return self.w

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class UncertaintyWeights(FixedWeights):
    def __init__(self, num_tasks: int, lr: float, device=None):
        self.log_vars = torch.nn.Parameter(torch.zeros(num_tasks, dtype=torch.float32, device=device))
        self.lr = lr

    def combine(self, task_losses: torch.Tensor, present: torch.Tensor, update: bool = True) -> torch.Tensor:
        s = self.log_vars
        return (torch.exp(-s) * task_losses + s)[present].sum()

    def weights(self) -> torch.Tensor:
        return torch.exp(-self.log_vars.detach())

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_vars]

    def state_dict(self) -> dict:
        return {"log_vars": self.log_vars.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])


class LossProportionalWeights(FixedWeights):
    def __init__(self, num_tasks: int, ema: float, device=None):
        self.ema = ema
        self.mean = torch.zeros(num_tasks, dtype=torch.float32, device=device)
        self.seen = torch.zeros(num_tasks, dtype=torch.bool, device=device)

    def combine(self, task_losses: torch.Tensor, present: torch.Tensor, update: bool = True) -> torch.Tensor:
        if update:
            observed = task_losses.detach().float()
            blended = torch.where(self.seen, self.ema * self.mean + (1 - self.ema) * observed, observed)
            self.mean = torch.where(present, blended, self.mean)
            self.seen = self.seen | present
        return (self.weights() * task_losses)[present].sum()

    def weights(self) -> torch.Tensor:
        if not self.seen.any():
            return torch.ones_like(self.mean)
        # a task not seen yet stands at the mean of the others (weight 1 until it is observed)
        means = torch.where(self.seen, self.mean, self.mean[self.seen].mean())
        return len(means) * means / means.sum().clamp(min=1e-12)

    def state_dict(self) -> dict:
        return {"mean": self.mean.cpu(), "seen": self.seen.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"].to(self.mean.device)
        self.seen = state["seen"].to(self.seen.device)


def make_weighting(cfg: MtlConfig, tasks: list[str], device=None):
    """The weighting `mtl.weighting` names, for `tasks` (in task-id order)."""
    if cfg.weighting == "uncertainty":
        return UncertaintyWeights(len(tasks), cfg.uncertainty_lr, device)
    if cfg.weighting == "loss_proportional":
        return LossProportionalWeights(len(tasks), cfg.ema, device)
    return FixedWeights([cfg.weights.get(task, 1.0) for task in tasks], device)
