"""LoRA through PEFT: low-rank adapters on the chosen linear modules; the base stays frozen."""

from __future__ import annotations


def apply_lora(model, cfg):
    from peft import LoraConfig, get_peft_model

    options = cfg.lora
    peft_config = LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=options.target_modules,
        task_type="CAUSAL_LM",
    )
    if cfg.training.gradient_checkpointing:
        model.enable_input_require_grads()
    return get_peft_model(model, peft_config)
