"""Parameter strategies: `apply_method(model, cfg) -> model` and `save_trained(model, dir)`.

A method decides which parameters train; it never knows the stage. Registered here:
full, freeze, lora. The other names of the mission map (qlora, adapter, prompt, ptuning, prefix,
moe) are valid config values that are refused with a clear message until implemented.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tunesmith.config.schema import TunesmithConfig
from tunesmith.errors import ConfigError
from tunesmith.methods.freeze import apply_freeze
from tunesmith.methods.full import apply_full
from tunesmith.methods.lora import apply_lora

log = logging.getLogger(__name__)

REGISTRY = {"full": apply_full, "freeze": apply_freeze, "lora": apply_lora}


@dataclass
class TrainableReport:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({self.percent:.3f}%)"


def count_parameters(model) -> TrainableReport:
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:  # tied weights count once
            continue
        seen.add(id(param))
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return TrainableReport(trainable, total)


def check_method(name: str) -> None:
    if name == "qlora":
        raise ConfigError("method `qlora` needs a CUDA GPU and bitsandbytes and is not implemented yet; use `method: lora`")
    if name not in REGISTRY:
        raise ConfigError(f"method `{name}` is planned but not implemented yet; available: {', '.join(REGISTRY)}")


def apply_method(model, cfg: TunesmithConfig):
    check_method(cfg.method)
    model = REGISTRY[cfg.method](model, cfg)
    report = count_parameters(model)
    if report.trainable == 0:
        raise ConfigError(f"method `{cfg.method}` left no parameter trainable; check its options")
    log.info("method %s: %s", cfg.method, report)
    return model, report
