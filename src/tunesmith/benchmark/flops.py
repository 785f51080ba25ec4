"""Model-FLOPs utilisation: FLOPs per trained token, the model's size from its config, and the
GPU's peak bf16 FLOPs (MFU is reported on a GPU only)."""

from __future__ import annotations

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def flops_per_token(params: int, layers: int, hidden: int, seq_len: float, lora: bool) -> float:
    """Model FLOPs per trained token: 6N for full training (2N forward, 4N backward), about 4N with
    LoRA (no weight gradients for the frozen base), plus causal attention 6 * layers * hidden * seq
    (forward + backward of the score and value products, halved by the causal mask)."""
    return (4 if lora else 6) * params + 6 * layers * hidden * seq_len


def gpu_peak_flops() -> tuple[str, float] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return name, flops
    return name, float("nan")


def model_shape(model: str) -> dict:
    """Parameters (from the config alone), layers and hidden size of the base model."""
    from transformers import AutoConfig

    from tunesmith.models.loader import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(model))
    layers, hidden = config.num_hidden_layers, config.hidden_size
    # parameters without embeddings (tied head counted once), from the config alone
    inter, heads, kv = config.intermediate_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = hidden // heads
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter
    return {
        "model_params": layers * per_layer + config.vocab_size * hidden,
        "model_layers": layers,
        "model_hidden": hidden,
    }


def add_mfu(results: dict[str, dict], spec: dict) -> None:
    """Give each result its `mfu` on a GPU with a known peak (LoRA FLOPs at the job's mean length)."""
    peak = gpu_peak_flops()
    if peak:
        per_token = flops_per_token(
            spec["model_params"], spec["model_layers"], spec["model_hidden"], spec["mean_tokens"], lora=True
        )
        for r in results.values():
            r["mfu"] = r["tokens_per_second"] * per_token / peak[1]
