"""Section `search:`: the hyper-parameter search run by `tunesmith search CONFIG`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.section import Section


class SearchParam(Section):
    type: Literal["float", "int", "categorical"] = Field("float", description="Kind of value to try.")
    low: float | None = Field(None, description="Smallest value (float, int).")
    high: float | None = Field(None, description="Largest value (float, int).")
    log: bool = Field(False, description="Sample on a log scale (e.g. learning rates).")
    choices: list | None = Field(None, description="Values to choose from (categorical).")

    @model_validator(mode="after")
    def _bounds(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs `low` < `high`")
        elif self.log and self.low <= 0:
            raise ValueError("`log: true` needs low > 0")
        return self


class SearchConfig(Section):
    trials: int = Field(8, gt=0, description="Trials to run (`tunesmith search`).")
    metric: str = Field("eval_loss", description="Metric of each trial's training result to optimise (e.g. eval_loss).")
    direction: Literal["minimize", "maximize"] = Field("minimize", description="Whether lower or higher is better.")
    pruning: bool = Field(True, description="Stop unpromising trials early (median rule on per-epoch eval_loss).")
    seed: int = Field(0, description="Seed of the sampler (TPE).")
    space: dict[str, SearchParam] = Field(
        default_factory=dict,
        description="Config keys to search, e.g. {training.learning_rate: {low: 1e-5, high: 1e-3, log: true}, "
        "lora.r: {type: categorical, choices: [8, 16, 32]}}.",
    )
