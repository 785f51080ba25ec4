"""The typed tunesmith config.

One YAML file maps onto `TunesmithConfig`. Each field's description is the documentation:
`tunesmith train --help` prints it, so it is never written twice. Sections are strict: an
unknown key or a wrong type is an error that names the key (see `config.loader`).

Every stage and method of the mission map has a name here; which ones are implemented is decided
by the registries in `tunesmith.stages` and `tunesmith.methods`, which refuse the others with a
clear message.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo")
METHODS = ("full", "freeze", "lora", "qlora", "adapter", "prompt", "ptuning", "prefix", "moe")
# Methods that own a config section of the same name; setting a section for another method is
# a contradiction (see TunesmithConfig._check_method_sections).
METHOD_SECTIONS = ("lora", "freeze")
# Stages that own a config section of the same name (same rule).
STAGE_SECTIONS = ("rm", "dpo", "kto", "grpo")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name_or_path: str = Field(
        "default",
        description="Base model: 'default' (the embedded SmolLM2-135M-Instruct), a local folder, "
        "or a Hugging Face hub id.",
    )
    cache_dir: str | None = Field(
        None,
        description="Where the embedded default is converted to safetensors once "
        "(default: $TUNESMITH_CACHE or ~/.cache/tunesmith).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype for training: auto = float32 on CPU, bfloat16 on GPUs that support it."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel passed to transformers."
    )
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub.")


class DataConfig(Section):
    train: list[str] = Field(
        default_factory=list,
        description="Training data files (.json array or .jsonl; alpaca or chat `messages` rows). "
        "A single path or a list.",
    )
    validation: list[str] = Field(
        default_factory=list, description="Validation files (same formats) for eval loss/perplexity."
    )
    format: Literal["auto", "alpaca", "messages", "sharegpt"] = Field(
        "auto", description="Row format; auto detects it per row from the keys present."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column mapping for files whose field names differ: {canonical: name in file}, e.g. "
        "{instruction: question, output: answer} or {messages: dialog}.",
    )
    system: str | None = Field(
        None,
        description="System prompt given to rows that have none. Saved with the output, so chat and "
        "eval use the same one.",
    )
    max_length: int = Field(1024, gt=8, description="Longest tokenised row; longer rows are truncated.")
    train_on_prompt: bool = Field(False, description="Also train on system/user tokens (default: assistant turns only).")
    max_samples: int | None = Field(None, gt=0, description="Use at most this many training rows (for quick trials).")

    @model_validator(mode="before")
    @classmethod
    def _paths_as_lists(cls, values):
        if isinstance(values, dict):
            for key in ("train", "validation"):
                if isinstance(values.get(key), str):
                    values = {**values, key: [values[key]]}
        return values


class LoraConfig(Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules to adapt: 'all-linear' or a list of module names (e.g. [q_proj, v_proj])."
    )


class FreezeConfig(Section):
    trainable_layers: int = Field(2, gt=0, description="Number of decoder layers left trainable.")
    position: Literal["last", "first"] = Field("last", description="Train the last or the first N layers.")
    extra_modules: list[str] = Field(
        default_factory=list,
        description="Other parameter-name fragments to train as well (e.g. [norm, embed_tokens]).",
    )


class TrainingConfig(Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(-1, description="Stop after this many optimiser steps (-1: use epochs).")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, gt=0, description="Rows per device per step.")
    gradient_accumulation: int = Field(1, gt=0, description="Micro-batches per optimiser step.")
    warmup: float = Field(0.05, ge=0, description="Warmup: a fraction of all steps if < 1, else a step count.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision. auto: bf16 on GPUs that support it and on CPUs with AVX512-BF16 "
        "or AMX (about 1.4x faster there), otherwise none (fp32). Use `no` for exact fp32.",
    )
    seed: int = Field(42, description="Seed for initialisation, shuffling and dropout.")
    logging_steps: int = Field(5, gt=0, description="Log loss and learning rate every N steps.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    group_by_length: bool = Field(True, description="Batch rows of similar length together (less padding).")
    num_threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")


class DpoConfig(Section):
    loss: Literal["sigmoid", "ipo", "orpo", "simpo"] = Field(
        "sigmoid",
        description="Preference loss: sigmoid (DPO), ipo (IPO), orpo (ORPO: SFT + odds-ratio term) or simpo "
        "(SimPO: length-normalised margin). orpo and simpo need no reference model.",
    )
    beta: float | None = Field(
        None, gt=0,
        description="Loss strength: DPO's beta / IPO's tau (pull toward the reference), ORPO's lambda (weight of "
        "the odds-ratio term), SimPO's beta (reward scale). Default: 0.1, and 2.0 for simpo (the papers' values).",
    )
    simpo_gamma: float = Field(
        0.5, ge=0, description="SimPO's target reward margin gamma (loss simpo only)."
    )
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
        None, ge=0,
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
    pattern: str | None = Field(None, description="regex_format only (required): a Python regular expression (re.search).")
    max_chars: int | None = Field(None, gt=0, description="length only (required): the longest full-reward completion.")

    @model_validator(mode="after")
    def _options_fit_the_name(self):
        own = {"exact_answer": {"match"}, "regex_format": {"pattern"}, "length": {"max_chars"}}[self.name]
        for option in ("match", "pattern", "max_chars"):
            if getattr(self, option) is not None and option not in own:
                raise ValueError(f"`{option}` does not apply to reward `{self.name}`")
        if self.name == "regex_format":
            if self.pattern is None:
                raise ValueError("reward regex_format needs `pattern`, e.g. {name: regex_format, pattern: '^Answer: \\d+$'}")
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
        4, ge=2,
        description="Completions sampled per prompt; each is scored against its group's mean. training.batch_size "
        "counts completions and (times gradient_accumulation) must be a multiple of it.",
    )
    max_completion_length: int = Field(64, gt=0, description="Longest sampled completion in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the completions.")
    beta: float = Field(
        0.0, ge=0,
        description="KL penalty toward the base model (0: none and no reference kept, TRL's default; DeepSeekMath "
        "used 0.04). With LoRA the reference is the base with the adapter off.",
    )
    eval_max_new_tokens: int | None = Field(
        None, gt=0, description="Greedy completion length for the before/after reward (default: max_completion_length)."
    )


class EvalConfig(Section):
    qa: str | None = Field(
        None,
        description="JSONL of {question, answers:[...]} rows; a reply is correct when it contains "
        "any answer (case-insensitive).",
    )
    compare_base: bool = Field(
        True, description="With `tunesmith train`: measure the base model first and print a before/after table."
    )
    max_new_tokens: int = Field(48, gt=0, description="Generation length for QA evaluation.")
    batch_size: int = Field(16, gt=0, description="Questions generated per batch.")


class TunesmithConfig(Section):
    stage: Literal[STAGES] = Field("sft", description=f"Training stage: {' | '.join(STAGES)}.")  # type: ignore[valid-type]
    method: Literal[METHODS] = Field("lora", description=f"Parameter strategy: {' | '.join(METHODS)}.")  # type: ignore[valid-type]
    output_dir: str = Field(..., description="Where the trained model, metrics and plots are written.")
    overwrite_output: bool = Field(False, description="Replace an existing finished output_dir.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training and validation data.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="Options of method lora.")
    freeze: FreezeConfig = Field(default_factory=FreezeConfig, description="Options of method freeze.")
    rm: RmConfig = Field(default_factory=RmConfig, description="Options of stage rm.")
    dpo: DpoConfig = Field(default_factory=DpoConfig, description="Options of stage dpo.")
    kto: KtoConfig = Field(default_factory=KtoConfig, description="Options of stage kto.")
    grpo: GrpoConfig = Field(default_factory=GrpoConfig, description="Options of stage grpo.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Optimisation.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")

    @model_validator(mode="after")
    def _check_method_sections(self):
        for section in METHOD_SECTIONS:
            if section in self.model_fields_set and section != self.method:
                raise ValueError(
                    f"section `{section}` is set but method is `{self.method}`: remove the "
                    f"`{section}:` section or set `method: {section}`"
                )
        for section in STAGE_SECTIONS:
            if section in self.model_fields_set and section != self.stage:
                raise ValueError(
                    f"section `{section}` is set but stage is `{self.stage}`: remove the "
                    f"`{section}:` section or set `stage: {section}`"
                )
        return self
