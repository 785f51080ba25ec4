"""LoRA through PEFT: low-rank adapters on the chosen linear modules; the base stays frozen.

A model with a new task head (a reward model's scalar `score`) gets PEFT's SEQ_CLS task type, which
trains and saves that head in full beside the adapter.
"""

from __future__ import annotations

from tunesmith.models.reward import task_head


def apply_lora(model, cfg):
    from peft import LoraConfig, get_peft_model

    options = cfg.lora
    peft_config = LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=options.target_modules,
        task_type="SEQ_CLS" if task_head(model) else "CAUSAL_LM",
    )
    if cfg.training.gradient_checkpointing:
        model.enable_input_require_grads()
    return get_peft_model(model, peft_config)
