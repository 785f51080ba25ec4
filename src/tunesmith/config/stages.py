"""The sections of the stages with options: `rm`, `dpo`, `kto`, `grpo`, `ppo`, `mtl`; the stage names.

A stage's options live in the section named after it; what a stage does with them is its record's
(`tunesmith.stages.registry`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.section import Section

STAGE_NAMES = ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo", "mtl")


class DpoConfig(Section):
    loss: Literal["sigmoid", "ipo", "orpo", "simpo"] = Field(
        "sigmoid",
        description="Preference loss: sigmoid (DPO), ipo (IPO), orpo (ORPO: SFT + odds-ratio term) or simpo "
        "(SimPO: length-normalised margin). orpo and simpo need no reference model.",
    )
    beta: float | None = Field(
        None,
        gt=0,
        description="Loss strength: DPO's beta / IPO's tau (pull toward the reference), ORPO's lambda (weight of "
        "the odds-ratio term), SimPO's beta (reward scale). Default: 0.1, and 2.0 for simpo (the papers' values).",
    )
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO's target reward margin gamma (loss simpo only).")
    max_length: int | None = Field(None, gt=8, description="Longest prompt+reply in tokens (default: data.max_length).")

    @model_validator(mode="after")
    def _gamma_needs_simpo(self):
        if "simpo_gamma" in self.model_fields_set and self.loss != "simpo":
            raise ValueError(f"simpo_gamma is set but loss is `{self.loss}`: remove simpo_gamma or set loss: simpo")
        return self

    @property
    def resolved_beta(self) -> float:
        return self.beta if self.beta is not None else (2.0 if self.loss == "simpo" else 0.1)


class RmConfig(Section):
    center_rewards_coefficient: float | None = Field(
        None,
        ge=0,
        description="Weight of a penalty on the squared rewards that keeps them centred on zero "
        "(Eisenstein et al. 2023; 0.01 is typical). Default: no penalty.",
    )


class KtoConfig(Section):
    beta: float = Field(0.1, gt=0, description="Strength of the pull toward the reference model.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of desirable (label true) rows.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of undesirable (label false) rows.")


class GrpoRewardConfig(Section):
    name: Literal["exact_answer", "regex_format", "length"] = Field(
        ...,
        description="exact_answer: 1 when the completion contains (match: equals) one of the row's `answer`s; "
        "regex_format: 1 when it matches `pattern`; length: 1 for 1 to `max_chars` characters, falling to 0 at "
        "twice that (0 when empty).",
    )
    weight: float = Field(1.0, description="Weight of this reward in the sum the policy maximises.")
    match: Literal["contains", "equals"] | None = Field(
        None, description="exact_answer only: `contains` (default) or `equals` (after trimming and lower-casing)."
    )
    pattern: str | None = Field(
        None, description="regex_format only (required): a Python regular expression (re.search)."
    )
    max_chars: int | None = Field(None, gt=0, description="length only (required): the longest full-reward completion.")

    @model_validator(mode="after")
    def _options_fit_the_name(self):
        own = {"exact_answer": {"match"}, "regex_format": {"pattern"}, "length": {"max_chars"}}[self.name]
        for option in ("match", "pattern", "max_chars"):
            if getattr(self, option) is not None and option not in own:
                raise ValueError(f"`{option}` does not apply to reward `{self.name}`")
        if self.name == "regex_format":
            if self.pattern is None:
                raise ValueError(
                    "reward regex_format needs `pattern`, e.g. {name: regex_format, pattern: '^Answer: \\d+$'}"
                )
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        if self.name == "length" and self.max_chars is None:
            raise ValueError("reward length needs `max_chars`, e.g. {name: length, max_chars: 200}")
        return self


class GrpoConfig(Section):
    rewards: list[GrpoRewardConfig] = Field(
        default_factory=list,
        description="Verifiable reward functions, summed with their weights, e.g. [{name: exact_answer}, "
        "{name: regex_format, pattern: '^Answer: .+$', weight: 0.5}]. Required.",
    )
    num_generations: int = Field(
        4,
        ge=2,
        description="Completions sampled per prompt; each is scored against its group's mean. training.batch_size "
        "counts completions and (times gradient_accumulation) must be a multiple of it.",
    )
    max_completion_length: int = Field(64, gt=0, description="Longest sampled completion in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the completions.")
    beta: float = Field(
        0.0,
        ge=0,
        description="KL penalty toward the base model (0: none and no reference kept, TRL's default; DeepSeekMath "
        "used 0.04). With LoRA the reference is the base with the adapter off.",
    )
    eval_max_new_tokens: int | None = Field(
        None, gt=0, description="Greedy completion length for the before/after reward (default: max_completion_length)."
    )


class PpoConfig(Section):
    reward_model: str | None = Field(
        None,
        description="Output folder of a `stage: rm` run whose score of (prompt + completion) is the reward. "
        "Combine with or replace by `rewards`; at least one is required.",
    )
    rewards: list[GrpoRewardConfig] = Field(
        default_factory=list,
        description="Verifiable reward functions (as in grpo.rewards: exact_answer, regex_format, length), added "
        "with their weights to the reward model's score.",
    )
    num_generations: int = Field(
        2,
        ge=1,
        description="Completions sampled per prompt. With 2 or more, each completion's baseline is the mean score "
        "of its prompt's other completions (leave-one-out); with 1, the mean of the rest of the batch.",
    )
    max_completion_length: int = Field(64, gt=0, description="Longest sampled completion in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (log-probabilities use the same).")
    kl_coef: float = Field(
        0.05,
        ge=0,
        description="Weight beta of the per-token KL penalty toward the reference model (the base; with LoRA the "
        "base with the adapter off). The starting value when target_kl is set.",
    )
    target_kl: float | None = Field(
        None,
        gt=0,
        description="Adaptive KL control (Ziegler et al. 2019): move beta so that the completions' KL (nats, summed "
        "over tokens) approaches this. Default: beta stays fixed.",
    )
    kl_horizon: int = Field(
        10000,
        gt=0,
        description="Adaptive KL only: beta changes by up to 20% x (completions per rollout / kl_horizon) per rollout.",
    )
    epochs_per_rollout: int = Field(
        2,
        ge=1,
        description="Optimiser steps on each batch of sampled completions (PPO epochs); the clipped ratio keeps "
        "the later steps close to the policy that sampled them.",
    )
    clip_range: float = Field(
        0.2, gt=0, lt=1, description="PPO's epsilon: the probability ratio is clipped to 1 +- this."
    )
    eval_max_new_tokens: int | None = Field(
        None, gt=0, description="Greedy completion length for the before/after reward (default: max_completion_length)."
    )


class MtlConfig(Section):
    weighting: Literal["fixed", "uncertainty", "loss_proportional"] = Field(
        "fixed",
        description="How the per-task losses are combined: fixed (the `weights` below), uncertainty (Kendall et al. "
        "2018: a learned log-variance s per task, loss exp(-s) * L + s; noisy, high-loss tasks get less weight) or "
        "loss_proportional (weights follow each task's running mean loss, normalised to mean 1: the task the model "
        "has learned least gets the most weight).",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="weighting fixed: {task: weight}; tasks not named weigh 1.0. The training loss is the sum over "
        "the batch's tasks of weight x the task's token-mean loss.",
    )
    ema: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="weighting loss_proportional: momentum of each task's running mean loss (0: the last batch only).",
    )
    uncertainty_lr: float = Field(
        0.01,
        gt=0,
        description="weighting uncertainty: learning rate of the log-variances (they follow the lr schedule).",
    )

    @model_validator(mode="after")
    def _options_fit_the_weighting(self):
        own = {"fixed": {"weights"}, "uncertainty": {"uncertainty_lr"}, "loss_proportional": {"ema"}}[self.weighting]
        for option in ("weights", "ema", "uncertainty_lr"):
            if option in self.model_fields_set and option not in own:
                raise ValueError(f"`{option}` does not apply to weighting `{self.weighting}`")
        for task, weight in self.weights.items():
            if not weight >= 0:
                raise ValueError(f"weights.{task}: {weight} is negative; task weights must be >= 0")
        if self.weights and not sum(self.weights.values()) > 0:
            raise ValueError("weights: all task weights are 0; at least one task must have a positive weight")
        return self
