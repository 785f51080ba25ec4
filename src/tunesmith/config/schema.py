"""The typed tunesmith config: the root model `TunesmithConfig` and the checks that span sections.

One YAML file maps onto `TunesmithConfig`. Each field's description is the documentation:
`tunesmith train --help` prints it, so it is never written twice. Sections are strict: an
unknown key or a wrong type is an error that names the key (see `config.loader`).

Each section family has its own module: `config.model`, `config.data` (with `data.clean` and
`data.augment`), `config.training`, `config.evaluation` (`eval` and `forgetting`), `config.search`,
`config.methods` (the methods' sections and names) and `config.stages` (the stages' sections and
names). A section's own rules are its class's; a rule that reads two sections is here.

Every stage and method has a name in `STAGE_NAMES` or `METHOD_NAMES`. What a stage or method
does with a config, and which options it supports, is its record's (`tunesmith.stages.registry`,
`tunesmith.methods`): the pre-flight check refuses, naming the key, what a stage cannot use.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from tunesmith.config.data import AugmentConfig, CleanConfig, DataConfig
from tunesmith.config.evaluation import EvalConfig, ForgettingConfig, JudgeConfig, LmEvalConfig
from tunesmith.config.methods import (
    METHOD_NAMES,
    METHOD_SECTIONS,
    PROMPT_OPTIONS,
    AdapterConfig,
    FreezeConfig,
    LoraConfig,
    MoeConfig,
    PromptConfig,
    QloraConfig,
)
from tunesmith.config.model import ModelConfig
from tunesmith.config.paths import inputs_inside, unsafe_output_dir
from tunesmith.config.search import SearchConfig
from tunesmith.config.section import Section
from tunesmith.config.stages import (
    STAGE_NAMES,
    DpoConfig,
    GrpoConfig,
    KtoConfig,
    MtlConfig,
    PpoConfig,
    RmConfig,
)
from tunesmith.config.training import TrainingConfig

# The names code imports from here; each section class is defined in its family's module.
__all__ = [
    "METHOD_NAMES",
    "METHOD_SECTIONS",
    "STAGE_NAMES",
    "AugmentConfig",
    "CleanConfig",
    "DataConfig",
    "JudgeConfig",
    "LmEvalConfig",
    "MtlConfig",
    "Section",
    "TunesmithConfig",
]


class TunesmithConfig(Section):
    stage: Literal[STAGE_NAMES] = Field("sft", description=f"Training stage: {' | '.join(STAGE_NAMES)}.")  # type: ignore[valid-type]
    method: Literal[METHOD_NAMES] = Field("lora", description=f"Parameter strategy: {' | '.join(METHOD_NAMES)}.")  # type: ignore[valid-type]
    output_dir: str = Field(..., description="Where the trained model, metrics and plots are written.")
    overwrite_output: bool = Field(False, description="Replace an existing finished output_dir.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training and validation data.")

    lora: LoraConfig = Field(default_factory=LoraConfig, description="Options of method lora.")
    freeze: FreezeConfig = Field(default_factory=FreezeConfig, description="Options of method freeze.")
    qlora: QloraConfig = Field(
        default_factory=QloraConfig, description="Options of method qlora (quantised base; LoRA options from `lora`)."
    )
    prompt: PromptConfig = Field(
        default_factory=PromptConfig, description="Options of methods prompt, ptuning, prefix."
    )
    adapter: AdapterConfig = Field(default_factory=AdapterConfig, description="Options of method adapter.")
    moe: MoeConfig = Field(default_factory=MoeConfig, description="Options of method moe.")
    rm: RmConfig = Field(default_factory=RmConfig, description="Options of stage rm.")
    dpo: DpoConfig = Field(default_factory=DpoConfig, description="Options of stage dpo.")
    kto: KtoConfig = Field(default_factory=KtoConfig, description="Options of stage kto.")
    grpo: GrpoConfig = Field(default_factory=GrpoConfig, description="Options of stage grpo.")
    ppo: PpoConfig = Field(default_factory=PpoConfig, description="Options of stage ppo.")
    mtl: MtlConfig = Field(default_factory=MtlConfig, description="Options of stage mtl (multi-task learning).")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Optimisation.")
    forgetting: ForgettingConfig = Field(
        default_factory=ForgettingConfig,
        description="Guard against catastrophic forgetting: general-data replay, an L2 pull toward the starting "
        "weights, a before/after measure on general held-out data.",
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    search: SearchConfig | None = Field(None, description="Hyper-parameter search (`tunesmith search CONFIG`).")
    # the YAML file this config was loaded from (set by config.loader.load_config; not a key)
    _source: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_output_dir(self):
        why = unsafe_output_dir(self.output_dir) or inputs_inside(self.output_dir, self)
        if why:
            raise ValueError(f"output_dir: {why}")
        return self

    @model_validator(mode="after")
    def _check_method_sections(self):
        for section, methods in METHOD_SECTIONS.items():
            if section in self.model_fields_set and self.method not in methods:
                raise ValueError(
                    f"section `{section}` is set but method is `{self.method}`: remove the "
                    f"`{section}:` section or set `method: {' | '.join(methods)}`"
                )
        for section in STAGE_NAMES:  # a stage's options live in the section named after it (dpo:, grpo: ...)
            if section in type(self).model_fields and section in self.model_fields_set and section != self.stage:
                raise ValueError(
                    f"section `{section}` is set but stage is `{self.stage}`: remove the "
                    f"`{section}:` section or set `stage: {section}`"
                )
        return self

    @model_validator(mode="after")
    def _check_prompt_options(self):
        if self.method not in PROMPT_OPTIONS["num_virtual_tokens"]:
            return self  # the whole section is refused by _check_method_sections
        for option in sorted(self.prompt.model_fields_set):
            methods = PROMPT_OPTIONS[option]
            if self.method not in methods:
                raise ValueError(
                    f"prompt.{option}: applies to method {' | '.join(methods)}, not `{self.method}` "
                    f"(which would ignore it); remove prompt.{option}"
                )
        if (
            self.method == "prefix"
            and "encoder_hidden_size" in self.prompt.model_fields_set
            and not self.prompt.prefix_projection
        ):
            raise ValueError(
                "prompt.encoder_hidden_size: method prefix uses it only with prompt.prefix_projection: "
                "true (the MLP it sizes); set that or remove prompt.encoder_hidden_size"
            )
        return self

    @model_validator(mode="after")
    def _check_streaming_replay(self):
        # which stages support which data options is the stage record's (stages.registry.check_stage)
        if self.data.streaming and self.forgetting.replay:
            raise ValueError(
                "forgetting.replay: mixing general rows in draws from the whole set in memory; it does "
                "not work with data.streaming: true (remove forgetting.replay or set data.streaming: false)"
            )
        return self
