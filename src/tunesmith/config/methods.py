"""The sections of the methods with options: `lora`, `freeze`, `qlora`, `prompt`, `adapter`, `moe`;
the method names and which methods read each section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.section import Section

METHOD_NAMES = ("full", "freeze", "lora", "qlora", "adapter", "prompt", "ptuning", "prefix", "moe")
# Config sections owned by methods -> the methods that read them; setting a section for another
# method is a contradiction (see TunesmithConfig._check_method_sections).
METHOD_SECTIONS = {
    "lora": ("lora", "qlora"),
    "freeze": ("freeze",),
    "qlora": ("qlora",),
    "prompt": ("prompt", "ptuning", "prefix"),
    "adapter": ("adapter",),
    "moe": ("moe",),
}


class LoraConfig(Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: float = Field(
        32, gt=0, description="LoRA scaling numerator (scale = alpha / r; alpha / sqrt(r) with use_rslora)."
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear", "attention"] = Field(
        "all-linear",
        description="Modules to adapt: 'all-linear' (every linear layer but the head), 'attention' (the linear "
        "layers inside attention blocks, e.g. q/k/v/o_proj), or a list of module names (e.g. [q_proj, v_proj]).",
    )
    layers: int | list[int] | None = Field(
        None,
        description="Decoder layers to adapt: unset (all), a number N (the last N layers) or a list of layer "
        "indices (0 = the first; -1 = the last). The backward pass stops at the lowest adapted layer, so "
        "adapting the top layers only makes a step cheaper (docs/benchmarks.md: main demo).",
    )
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha / sqrt(r), which keeps high ranks stable.")
    use_dora: bool = Field(
        False, description="DoRA: learn a per-output magnitude vector besides the low-rank direction (slower per step)."
    )
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default",
        description="Initialisation of A and B: default (B = 0, A Kaiming), gaussian, pissa (principal singular "
        "vectors of each weight; the saved adapter is converted to plain LoRA for the unmodified base), olora "
        "(QR-based, converted the same way).",
    )
    loraplus_lr_ratio: float | None = Field(
        None,
        ge=1,
        description="LoRA+: train the B matrices with learning_rate x this ratio (the paper suggests 16); "
        "unset: one learning rate.",
    )


class FreezeConfig(Section):
    trainable_layers: int = Field(
        2, ge=0, description="Number of decoder layers left trainable (0: only the modules in extra_modules)."
    )
    position: Literal["last", "first"] = Field("last", description="Train the last or the first N layers.")
    extra_modules: list[str] = Field(
        default_factory=list,
        description="Other parameter-name fragments to train as well, e.g. [embed_tokens, lm_head] for the "
        "embeddings and head, [norm], or [self_attn] for every attention block.",
    )


class QloraConfig(Section):
    bits: Literal[4, 8] = Field(4, description="Bits per base weight (bitsandbytes): 4 (NF4/FP4) or 8 (LLM.int8).")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; nf4 is the QLoRA paper's.")
    double_quant: bool = Field(
        True, description="Also quantise the 4-bit quantisation constants (saves ~0.4 bit/weight)."
    )
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype of the 4-bit matmuls (bfloat16 needs an Ampere or newer GPU)."
    )


# Which of the virtual-token methods reads each `prompt.*` option (TunesmithConfig refuses the others).
PROMPT_OPTIONS = {
    "num_virtual_tokens": ("prompt", "ptuning", "prefix"),
    "init_text": ("prompt",),
    "encoder_hidden_size": ("ptuning", "prefix"),
    "prefix_projection": ("prefix",),
}


class PromptConfig(Section):
    num_virtual_tokens: int = Field(20, gt=0, description="Trained virtual tokens put before every input.")
    init_text: str | None = Field(
        None,
        description="method prompt: initialise the virtual tokens from this text's embeddings (e.g. a task "
        "description) instead of random vectors.",
    )
    encoder_hidden_size: int = Field(
        128,
        gt=0,
        description="method ptuning: hidden size of the MLP prompt encoder that produces the virtual tokens; "
        "method prefix with prefix_projection: hidden size of its MLP.",
    )
    prefix_projection: bool = Field(
        False, description="method prefix: produce the per-layer prefixes through a 2-layer MLP (more parameters)."
    )


class AdapterConfig(Section):
    r: int = Field(64, gt=0, description="Bottleneck width: hidden -> r -> hidden.")
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "relu", description="Non-linearity inside the bottleneck."
    )
    placement: Literal["both", "attention", "mlp"] = Field(
        "both", description="Insert an adapter after the attention block, the MLP block, or both (Houlsby)."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the bottleneck output.")


class MoeConfig(Section):
    train: Literal["lora", "routers", "experts", "routers+experts"] = Field(
        "lora",
        description="lora: add a mixture of LoRA experts with a top-k router to each target layer (any model). "
        "routers / experts / routers+experts: the base is already a mixture of experts (Mixtral, Qwen2/3-MoE, "
        "OLMoE ...); train only its routers and/or expert weights, everything else frozen.",
    )
    experts: int = Field(4, ge=2, description="LoRA experts per target layer (train: lora).")
    top_k: int = Field(2, ge=1, description="Experts the router picks per token; their gates sum to 1 (train: lora).")
    rank: int = Field(8, gt=0, description="Rank r of each LoRA expert (train: lora).")
    alpha: float = Field(16, gt=0, description="Expert scaling numerator: scale = alpha / rank (train: lora).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the experts' input (train: lora).")
    targets: list[str] | Literal["all-linear", "attention", "mlp"] = Field(
        "all-linear",
        description="Linear layers that get experts: all-linear (all but the head), attention, mlp, or a list of "
        "module names, e.g. [gate_proj, up_proj, down_proj] (train: lora).",
    )
    balance_coef: float = Field(
        0.01,
        ge=0,
        description="Weight of the load-balancing loss E * sum_e f_e * P_e (Switch/Mixtral; 1.0 = balanced) added to "
        "the training loss; logged as moe_balance_loss. 0 turns it off (train: lora).",
    )
    router_jitter: float = Field(
        0.0, ge=0, lt=1, description="While training, multiply the router's input by U(1-j, 1+j) noise (train: lora)."
    )

    @model_validator(mode="after")
    def _lora_options(self):
        if self.top_k > self.experts:
            raise ValueError(f"top_k={self.top_k} is more than experts={self.experts}")
        if self.train != "lora":
            lora_only = sorted(self.model_fields_set - {"train"})
            if lora_only:
                raise ValueError(
                    f"{', '.join(lora_only)} apply to train: lora only (the MoE base keeps its own "
                    f"experts and routing), not train: {self.train}"
                )
        return self
