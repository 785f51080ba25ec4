"""Section `training:`: optimisation, precision, distributed engines, checkpoints and resume."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.section import Section


class TrainingConfig(Section):
    @model_validator(mode="before")
    @classmethod
    def _no_is_not_false(cls, values):
        # YAML reads an unquoted `no` (`mixed_precision: no`, `--set training.mixed_precision=no`) as false
        if isinstance(values, dict) and values.get("mixed_precision") is False:
            values = {**values, "mixed_precision": "no"}
        return values

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
    neftune_alpha: float | None = Field(
        None,
        gt=0,
        description="NEFTune: uniform noise of scale alpha / sqrt(length x hidden) added to the input embeddings "
        "while training (transformers' neftune_noise_alpha; the paper uses 5-15). Regularises instruction "
        "tuning; off by default.",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision. auto: bf16 on GPUs that support it and on CPUs with native bf16 "
        "(AVX512-BF16 or AMX, about 1.4x faster there, unless ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA restrict "
        "the CPU below it), otherwise none (fp32). bf16/fp16 on a CPU without native support is emulated and "
        "far slower (a warning says how much). Use `no` for exact fp32.",
    )
    seed: int = Field(42, description="Seed for initialisation, shuffling and dropout.")
    logging_steps: int = Field(5, gt=0, description="Log loss and learning rate every N steps.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    group_by_length: bool = Field(True, description="Batch rows of similar length together (less padding).")
    compile: bool = Field(
        False,
        description="torch.compile the model (the Trainer's torch_compile, inductor backend). The first steps are "
        "slower while it compiles; measure it on your hardware with `tunesmith bench --variants tunesmith,compiled`.",
    )
    liger: bool = Field(
        False,
        description="Liger's Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) through the Trainer's "
        "use_liger_kernel. Needs a CUDA GPU and `pip install liger-kernel`.",
    )
    num_threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="Also log to TensorBoard (OUTPUT/runs/, `tensorboard --logdir OUTPUT/runs`) and/or MLflow "
        "(local ./mlruns unless MLFLOW_TRACKING_URI is set). No server is needed.",
    )
    live_plot_seconds: float = Field(
        30.0,
        ge=0,
        description="Redraw OUTPUT.partial/loss.png during training at most this often (seconds), so the curve "
        "can be watched while the run goes on; 0 draws it only at the end.",
    )
    nan: Literal["error", "skip"] = Field(
        "error",
        description="A NaN/inf gradient: error (stop, naming the step and parameter) or skip (drop that step: "
        "weights, optimiser and scheduler untouched; counted as nan_skipped in the logs).",
    )
    nproc: int = Field(
        1,
        ge=1,
        description="Training processes on this machine: >1 launches them through torchrun (DDP; gloo on CPU, "
        "nccl on GPUs). batch_size is per process.",
    )
    engine: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp",
        description="Distributed engine: ddp (every process holds the whole model; CPU or GPU), fsdp (PyTorch FSDP2 "
        "shards weights, gradients and optimiser state; GPUs) or deepspeed (DeepSpeed ZeRO; GPUs, pip install "
        "deepspeed). The engine's config is built from zero_stage and offload.",
    )
    zero_stage: Literal[2, 3] = Field(
        3,
        description="fsdp/deepspeed: 3 shards weights too (FSDP reshards after forward; ZeRO-3), 2 shards gradients "
        "and optimiser state only (FSDP keeps weights gathered between forward and backward; ZeRO-2).",
    )
    offload: bool = Field(
        False,
        description="fsdp/deepspeed: keep the optimiser state (and with zero_stage 3 the weights) in CPU memory "
        "(fits larger models on fewer GPUs, slower).",
    )
    eval_steps: int | None = Field(
        None,
        gt=0,
        description="Measure the validation loss every N steps instead of at the end of every epoch: fewer passes "
        "over the validation set on a slow machine, more points on a long epoch (the fine-tuned model's measurement "
        "after training is made either way).",
    )
    save_steps: int = Field(
        0,
        ge=0,
        description="Save a checkpoint (weights, optimiser, scheduler, RNG, data position; manifest last) every N "
        "steps into OUTPUT.partial/checkpoint-N; 0 = only on SIGTERM/SIGUSR1.",
    )
    save_total_limit: int | None = Field(
        2, gt=0, description="Keep the newest N checkpoints (older ones are deleted only after a new one is committed)."
    )
    resume: str | None = Field(
        None,
        description="Where training starts. Unset or auto: from the newest checkpoint that verifies in "
        "OUTPUT.partial (left by a stopped or crashed run of this config), else from step 0. restart: from step 0, "
        "deleting OUTPUT.partial and its checkpoints. A checkpoint folder: from it. A checkpoint of a changed "
        "config or dataset is refused unless resume_changed is true.",
    )
    resume_changed: bool = Field(False, description="Resume even though the config or training data changed.")

    @model_validator(mode="after")
    def _sharding_options_need_an_engine(self):
        for key in ("zero_stage", "offload"):
            if key in self.model_fields_set and self.engine == "ddp":
                raise ValueError(
                    f"training.{key} applies to engine fsdp or deepspeed, but engine is ddp: set "
                    f"training.engine or remove training.{key}"
                )
        return self
