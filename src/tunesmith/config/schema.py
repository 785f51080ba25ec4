"""The typed tunesmith config.

One YAML file maps onto `TunesmithConfig`. Each field's description is the documentation:
`tunesmith train --help` prints it, so it is never written twice. Sections are strict: an
unknown key or a wrong type is an error that names the key (see `config.loader`).

Every stage and method of the mission map has a name here. What a stage or method does with a
config, and which options it supports, is its record's (`tunesmith.stages.registry`,
`tunesmith.methods`): the pre-flight check refuses, naming the key, what a stage cannot use.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from tunesmith.config.paths import inputs_inside, unsafe_output_dir

STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo", "mtl")
METHODS = ("full", "freeze", "lora", "qlora", "adapter", "prompt", "ptuning", "prefix", "moe")
# Config sections owned by methods -> the methods that read them; setting a section for another
# method is a contradiction (see TunesmithConfig._check_method_sections).
METHOD_SECTIONS = {"lora": ("lora", "qlora"), "freeze": ("freeze",), "qlora": ("qlora",),
                   "prompt": ("prompt", "ptuning", "prefix"), "adapter": ("adapter",), "moe": ("moe",)}


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


class CleanConfig(Section):
    normalise: bool = Field(True, description="Unicode NFKC, control characters removed, runs of spaces collapsed.")
    dedup: bool = Field(True, description="Drop rows whose normalised text is identical to an earlier row.")
    near_dup_threshold: float | None = Field(
        0.9, gt=0, le=1,
        description="Drop rows whose MinHash-estimated Jaccard similarity (word 3-grams; character 4-grams for "
        "CJK) to an earlier row is at least this; null turns near-dedup off.",
    )
    num_perm: int = Field(128, ge=16, description="MinHash permutations (more: more exact, slower).")
    min_chars: int = Field(1, ge=0, description="Drop rows whose reply (or document) is shorter than this.")
    max_chars: int | None = Field(None, gt=0, description="Drop rows whose reply (or document) is longer than this.")
    languages: list[str] = Field(
        default_factory=list,
        description="Keep rows mostly written in these languages' scripts (e.g. [en, zh]); cheap script check, empty = all.",
    )


class AugmentConfig(Section):
    system_prompts: list[str] = Field(
        default_factory=list,
        description="System prompts to vary: each training row without a system prompt of its own (data.system "
        "counts as none) gets one of these, drawn by a seeded RNG per row and copy; with copies <= the number of "
        "prompts, the copies of a row all get different ones.",
    )
    shuffle_examples: bool = Field(
        False,
        description="Put the few-shot `examples` of alpaca/multitask rows ({input, output} objects, rendered as "
        "prior user/assistant turns) in a seeded random order, drawn anew for every copy.",
    )
    question_frames: list[str] | Literal["builtin"] = Field(
        default_factory=list,
        description="Reword the last user turn of copies 2.. of each row (copy 1 stays as written): each copy puts "
        "the question into one of these frames, e.g. 'Quick question: {question}' (each must contain {question}); "
        "'builtin' takes tunesmith's own English and Chinese frames (data.augment module), by the question's script.",
    )
    word_dropout: float = Field(
        0.0, ge=0.0, le=0.5,
        description="In copies 2.. of each row, leave out each word of the last user turn with this probability "
        "(EDA's random deletion; Chinese split into words by jieba; at least half the words are kept), so that the "
        "answer is tied to every cue of the question, not one wording.",
    )
    copies: int = Field(
        1, ge=1, le=64,
        description="Training rows written per source row, each with its own draw (system prompt, example order, "
        "question frame, dropped words).",
    )
    seed: int = Field(0, description="Seed of the augmentation draws (same seed, same rows; part of the cache key).")

    @model_validator(mode="after")
    def _does_something(self):
        if any(not isinstance(p, str) or not p.strip() for p in self.system_prompts):
            raise ValueError("data.augment.system_prompts: every prompt must be a non-empty string")
        if self.question_frames != "builtin" and any("{question}" not in f for f in self.question_frames):
            raise ValueError("data.augment.question_frames: every frame must be a string containing {question} "
                             "(or write question_frames: builtin)")
        rewords = bool(self.question_frames) or self.word_dropout > 0
        if not self.system_prompts and not self.shuffle_examples and not rewords:
            raise ValueError("data.augment: set system_prompts, shuffle_examples: true, question_frames and/or "
                             "word_dropout (or remove the section)")
        if rewords and self.copies < 2:
            raise ValueError("data.augment.copies: question_frames and word_dropout reword copies 2.. of each row "
                             "(copy 1 stays as written); set copies to 2 or more")
        return self


class DataConfig(Section):
    train: list[str] = Field(
        default_factory=list,
        description="Training data files (.json array or .jsonl; alpaca or chat `messages` rows). "
        "A single path or a list.",
    )
    validation: list[str] = Field(
        default_factory=list, description="Validation files (same formats) for eval loss/perplexity."
    )
    registry: str | None = Field(
        None,
        description="YAML file of named datasets ({name: {path, format, columns, system}}); train and "
        "validation entries may then be names instead of paths.",
    )
    weights: list[float] | None = Field(
        None,
        description="Mixing ratios, one per data.train entry: source i makes up weight_i/sum of the mixed "
        "training set (small sources are repeated, large ones sampled; seeded).",
    )
    format: Literal["auto", "alpaca", "messages", "sharegpt", "multitask", "prompt_completion"] = Field(
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
    max_length: int = Field(1024, gt=8, description="Longest tokenised row (and pack length with packing).")
    overlength: Literal["truncate", "drop", "error"] = Field(
        "truncate",
        description="Rows longer than max_length: truncate (keep the start; a row left with no trained token "
        "is dropped and counted), drop (leave out, counted), error (an invalid row).",
    )
    template: Literal["auto", "chatml", "plain"] = Field(
        "auto",
        description="Chat template: auto = the tokenizer's own (refused if it has none); chatml or plain = a "
        "shipped template for base models. The template used is saved with the trained model.",
    )
    train_on_prompt: bool = Field(False, description="Also train on system/user tokens (default: assistant turns only).")
    last_turn_only: bool = Field(False, description="Train only the last assistant turn of each conversation.")
    max_samples: int | None = Field(None, gt=0, description="Use at most this many rows of each training source (for quick trials).")
    val_split: float = Field(
        0.0, ge=0, lt=0.5,
        description="With no validation files: hold out this fraction of the training rows (seeded by training.seed).",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="Invalid rows: fail (refuse to start, listing the first 20 with file:line:field) or skip "
        "(leave them out; reasons are written to OUTPUT/rejects.jsonl).",
    )
    max_reject_fraction: float = Field(
        0.1, ge=0, le=1, description="With on_error: skip, still fail when more than this fraction of rows is invalid."
    )
    packing: bool = Field(
        False,
        description="Pack several rows into each max_length sequence (per-row position ids, no attention across "
        "rows, no padding waste); batch_size then counts packs.",
    )
    clean: CleanConfig | None = Field(
        None, description="Clean rows before tokenising: normalise, dedup, MinHash near-dedup, length and script "
        "filters (removed rows are listed in rejects.jsonl)."
    )
    cache: bool = Field(
        True, description="Reuse tokenised data from the cache (CACHE/tokenized) when files, tokenizer and options are unchanged."
    )
    streaming: bool = Field(
        False,
        description="For sets larger than memory (stages sft, pt): read rows one at a time, tokenise in batches into "
        "on-disk arrays in the cache, and train from them memory-mapped. Not with .json arrays (use .jsonl), "
        "data.weights, clean dedup, forgetting.replay.",
    )
    augment: AugmentConfig | None = Field(
        None,
        description="Augmentation without a model, on training rows only (validation stays as written): system-prompt "
        "variation, few-shot example order shuffling, question frames and word dropout (copies 2..), several copies "
        "per row; seeded, applied before tokenising; forgetting.replay rows are never augmented.",
    )

    @model_validator(mode="after")
    def _weights_match_sources(self):
        if self.weights is not None:
            if len(self.weights) != len(self.train):
                raise ValueError(f"data.weights has {len(self.weights)} values for {len(self.train)} data.train entries")
            if any(w < 0 for w in self.weights) or not sum(self.weights) > 0:
                raise ValueError("data.weights must be non-negative with a positive sum")
        return self

    @model_validator(mode="after")
    def _streaming_options(self):
        if not self.streaming:
            return self
        if self.weights is not None:
            raise ValueError("data.weights: mixing draws rows from every source at random, which needs them all in "
                             "memory; with data.streaming: true the sources are concatenated (remove data.weights, or "
                             "set data.streaming: false)")
        if self.clean is not None and (self.clean.dedup or self.clean.near_dup_threshold is not None):
            raise ValueError("data.clean: dedup and near-dedup compare each row with every earlier one, which needs "
                             "them in memory; with data.streaming: true set clean.dedup: false and "
                             "clean.near_dup_threshold: null (normalisation and the length/script filters stream), "
                             "or set data.streaming: false")
        return self

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
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r; alpha / sqrt(r) with use_rslora).")
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
        None, ge=1,
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
    double_quant: bool = Field(True, description="Also quantise the 4-bit quantisation constants (saves ~0.4 bit/weight).")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype of the 4-bit matmuls (bfloat16 needs an Ampere or newer GPU)."
    )


# Which of the virtual-token methods reads each `prompt.*` option (TunesmithConfig refuses the others).
PROMPT_OPTIONS = {"num_virtual_tokens": ("prompt", "ptuning", "prefix"), "init_text": ("prompt",),
                  "encoder_hidden_size": ("ptuning", "prefix"), "prefix_projection": ("prefix",)}


class PromptConfig(Section):
    num_virtual_tokens: int = Field(20, gt=0, description="Trained virtual tokens put before every input.")
    init_text: str | None = Field(
        None,
        description="method prompt: initialise the virtual tokens from this text's embeddings (e.g. a task "
        "description) instead of random vectors.",
    )
    encoder_hidden_size: int = Field(
        128, gt=0, description="method ptuning: hidden size of the MLP prompt encoder that produces the virtual tokens; method prefix "
        "with prefix_projection: hidden size of its MLP."
    )
    prefix_projection: bool = Field(
        False, description="method prefix: produce the per-layer prefixes through a 2-layer MLP (more parameters)."
    )


class AdapterConfig(Section):
    r: int = Field(64, gt=0, description="Bottleneck width: hidden -> r -> hidden.")
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field("relu", description="Non-linearity inside the bottleneck.")
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
        0.01, ge=0,
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
                raise ValueError(f"{', '.join(lora_only)} apply to train: lora only (the MoE base keeps its own "
                                 f"experts and routing), not train: {self.train}")
        return self


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
        None, gt=0,
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
        30.0, ge=0,
        description="Redraw OUTPUT.partial/loss.png during training at most this often (seconds), so the curve "
        "can be watched while the run goes on; 0 draws it only at the end.",
    )
    nan: Literal["error", "skip"] = Field(
        "error",
        description="A NaN/inf gradient: error (stop, naming the step and parameter) or skip (drop that step: "
        "weights, optimiser and scheduler untouched; counted as nan_skipped in the logs).",
    )
    nproc: int = Field(
        1, ge=1,
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
        None, gt=0,
        description="Measure the validation loss every N steps instead of at the end of every epoch: fewer passes "
        "over the validation set on a slow machine, more points on a long epoch (the fine-tuned model's measurement "
        "after training is made either way).",
    )
    save_steps: int = Field(
        0, ge=0,
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
                raise ValueError(f"training.{key} applies to engine fsdp or deepspeed, but engine is ddp: set "
                                 f"training.engine or remove training.{key}")
        return self


class ForgettingConfig(Section):
    replay: list[str] = Field(
        default_factory=list,
        description="General data (paths or data.registry names, same formats as data.train) replayed during "
        "training so the model keeps its general ability (stages sft and pt).",
    )
    replay_ratio: float = Field(
        0.2, gt=0, lt=1,
        description="Fraction of the built training set taken from `replay`: round(ratio / (1 - ratio) x domain "
        "rows) general rows are mixed in (sampled, repeated if too few; seeded by training.seed). Unused without replay.",
    )
    replay_answers: Literal["data", "model"] = Field(
        "data",
        description="Whose answers the replay rows carry: `data` trains the answers written in the replay files; "
        "`model` has the starting model answer their prompts first (greedy, cached; replies that do not end "
        "within replay_max_new_tokens are left out), so replay keeps the model's own behaviour instead of "
        "teaching new answers (self-synthesised rehearsal; chat replay, stage sft).",
    )
    replay_max_new_tokens: int = Field(
        96, ge=1, le=4096,
        description="With replay_answers: model, the longest reply generated for a replay prompt (in tokens).",
    )
    l2: float = Field(
        0.0, ge=0,
        description="L2 pull toward the starting weights: coef x sum ||theta - theta_0||^2 over the trainable "
        "parameters is added to every stage's loss (theta_0 = the base weights for full/freeze, the "
        "initialisation of the adapter weights for lora/adapter/prompt methods). Logged as l2_penalty.",
    )
    general_eval: list[str] = Field(
        default_factory=list,
        description="General held-out data (chat/alpaca rows, or raw text: .txt or `text` rows): its loss and "
        "perplexity are measured before and after training and reported next to the other results.",
    )
    general_qa: str | None = Field(
        None,
        description="General questions with key answers (JSONL of {question, answers, task?}, as eval.qa; shipped: "
        "examples/data/general_qa.jsonl, 38 simple questions in English and Chinese): answered with the run's "
        "system prompt before and after training, so a fine-tune that learns its domain but loses general "
        "ability shows it (`general QA accuracy` in the before/after table).",
    )
    warn_general_drop: float = Field(
        0.03, ge=0, le=1,
        description="Warn after training when the general QA accuracy fell by more than this fraction of its "
        "questions (0.03 of 38 questions: more than one), naming the options that reduce forgetting.",
    )
    warn_perplexity_rise: float = Field(
        0.25, ge=0,
        description="Warn after training when the general perplexity (general_eval) rose by more than this "
        "fraction (0.25: +25%).",
    )

    @model_validator(mode="before")
    @classmethod
    def _paths_as_lists(cls, values):
        if isinstance(values, dict):
            for key in ("replay", "general_eval"):
                if isinstance(values.get(key), str):
                    values = {**values, key: [values[key]]}
        return values


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
        2, ge=1,
        description="Completions sampled per prompt. With 2 or more, each completion's baseline is the mean score "
        "of its prompt's other completions (leave-one-out); with 1, the mean of the rest of the batch.",
    )
    max_completion_length: int = Field(64, gt=0, description="Longest sampled completion in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (log-probabilities use the same).")
    kl_coef: float = Field(
        0.05, ge=0,
        description="Weight beta of the per-token KL penalty toward the reference model (the base; with LoRA the "
        "base with the adapter off). The starting value when target_kl is set.",
    )
    target_kl: float | None = Field(
        None, gt=0,
        description="Adaptive KL control (Ziegler et al. 2019): move beta so that the completions' KL (nats, summed "
        "over tokens) approaches this. Default: beta stays fixed.",
    )
    kl_horizon: int = Field(
        10000, gt=0,
        description="Adaptive KL only: beta changes by up to 20% x (completions per rollout / kl_horizon) per rollout.",
    )
    epochs_per_rollout: int = Field(
        2, ge=1,
        description="Optimiser steps on each batch of sampled completions (PPO epochs); the clipped ratio keeps "
        "the later steps close to the policy that sampled them.",
    )
    clip_range: float = Field(0.2, gt=0, lt=1, description="PPO's epsilon: the probability ratio is clipped to 1 +- this.")
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
        0.9, ge=0, lt=1,
        description="weighting loss_proportional: momentum of each task's running mean loss (0: the last batch only).",
    )
    uncertainty_lr: float = Field(
        0.01, gt=0, description="weighting uncertainty: learning rate of the log-variances (they follow the lr schedule)."
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


class JudgeConfig(Section):
    model: str = Field(
        ..., description="The judge: a local model folder ('default', a tunesmith output, a hub id already cached) "
        "read through the logits of its choice tokens, or an OpenAI-compatible endpoint URL (http://HOST:PORT/v1, "
        "`tunesmith serve` included).",
    )
    prompts: str | None = Field(
        None, description="Rows {prompt | question | messages, reference?}: both models answer each one (greedy, "
        "eval.max_new_tokens) and the judge compares the two replies in both orders.",
    )
    baseline: str | None = Field(
        None, description="With `tunesmith eval`: the model the evaluated one is compared with (default: the base "
        "model of a tunesmith output). `tunesmith train` always compares the fine-tuned model with its base.",
    )
    template: str | None = Field(
        None, description="A text file with the judge prompt, holding {question}, {answer_a}, {answer_b} (and "
        "optionally {reference}); default: the built-in pairwise prompt (docs/eval.md).",
    )
    api_model: str | None = Field(
        None, description="Endpoint judge: the model name sent (default: the first one the endpoint's /models lists).",
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Endpoint judge: the environment variable holding the API key (unset: no key)."
    )
    timeout: float = Field(120.0, gt=0, description="Endpoint judge: seconds to wait for one verdict.")


class LmEvalConfig(Section):
    tasks: list[str] = Field(
        ..., min_length=1, description="lm-evaluation-harness task names (from include_path or lm-eval's own tasks)."
    )
    include_path: str | None = Field(
        None, description="A folder of task YAMLs (local datasets: `dataset_path: json` with "
        "`dataset_kwargs: {data_files: ...}`); see examples/lm_eval/.",
    )
    num_fewshot: int | None = Field(None, ge=0, description="Few-shot examples per question (default: the task's).")
    limit: int | None = Field(None, gt=0, description="Score at most this many documents per task.")


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
    generation: str | None = Field(
        None, description="Rows {prompt | messages, reference | references, answers?}: corpus BLEU and chrF "
        "(sacrebleu), ROUGE-1/2/L (rouge-score; jieba for Chinese), exact/key match, LLaMA-Factory's character "
        "BLEU-4; predictions.jsonl is written beside the results (docs/eval.md).",
    )
    mcq: str | None = Field(
        None, description="Multiple-choice benchmark in the MMLU/C-Eval CSV layout (a folder with test/ and dev/ "
        "SUBJECT_*.csv of question,A,B,C,D,answer, or one CSV): accuracy from the option letters' logits, "
        "per subject and category.",
    )
    mcq_shots: int = Field(5, ge=0, description="Dev rows of the same subject shown before each question (n-shot).")
    consistency: str | None = Field(
        None, description="Rows {id, prompt | question | messages, answers?}: each group of phrasings sharing an "
        "`id` is sampled `consistency_samples` times; agreement rate per group.",
    )
    consistency_samples: int = Field(5, gt=0, description="Replies sampled per consistency row.")
    consistency_temperature: float = Field(0.7, gt=0, description="Sampling temperature of the consistency replies.")
    edge_cases: str | None = Field(
        None, description="Probe rows {kind, prompt} (examples/data/edge_cases.jsonl): checks that each reply "
        "comes without a crash, stops before max_new_tokens and emits no template special token.",
    )
    judge: JudgeConfig | None = Field(
        None, description="Pairwise judge: {model: FOLDER_OR_URL, prompts: FILE, ...}; the fine-tuned model's "
        "replies against its base's, each pair judged in both orders (docs/eval.md).",
    )
    lm_eval: LmEvalConfig | None = Field(
        None, description="lm-evaluation-harness tasks run on the model: {tasks: [...], include_path: DIR}; offline.",
    )


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


class TunesmithConfig(Section):
    stage: Literal[STAGES] = Field("sft", description=f"Training stage: {' | '.join(STAGES)}.")  # type: ignore[valid-type]
    method: Literal[METHODS] = Field("lora", description=f"Parameter strategy: {' | '.join(METHODS)}.")  # type: ignore[valid-type]
    output_dir: str = Field(..., description="Where the trained model, metrics and plots are written.")
    overwrite_output: bool = Field(False, description="Replace an existing finished output_dir.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training and validation data.")

    lora: LoraConfig = Field(default_factory=LoraConfig, description="Options of method lora.")
    freeze: FreezeConfig = Field(default_factory=FreezeConfig, description="Options of method freeze.")
    qlora: QloraConfig = Field(
        default_factory=QloraConfig, description="Options of method qlora (quantised base; LoRA options from `lora`)."
    )
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Options of methods prompt, ptuning, prefix.")
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
        for section in STAGES:  # a stage's options live in the section named after it (dpo:, grpo: ...)
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
                raise ValueError(f"prompt.{option}: applies to method {' | '.join(methods)}, not `{self.method}` "
                                 f"(which would ignore it); remove prompt.{option}")
        if (self.method == "prefix" and "encoder_hidden_size" in self.prompt.model_fields_set
                and not self.prompt.prefix_projection):
            raise ValueError("prompt.encoder_hidden_size: method prefix uses it only with prompt.prefix_projection: "
                             "true (the MLP it sizes); set that or remove prompt.encoder_hidden_size")
        return self

    @model_validator(mode="after")
    def _check_streaming_replay(self):
        # which stages support which data options is the stage record's (stages.registry.check_stage)
        if self.data.streaming and self.forgetting.replay:
            raise ValueError("forgetting.replay: mixing general rows in draws from the whole set in memory; it does "
                             "not work with data.streaming: true (remove forgetting.replay or set data.streaming: false)")
        return self
