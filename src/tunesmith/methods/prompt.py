"""Virtual-token methods through PEFT: the base stays frozen, learned vectors go before every input.

- `prompt`  (prompt tuning): `num_virtual_tokens` trained input embeddings, optionally initialised
  from the embeddings of `prompt.init_text`;
- `ptuning` (P-tuning): the virtual tokens come out of a small trained MLP prompt encoder;
- `prefix`  (prefix tuning): trained key/value prefixes in every attention layer.
PEFT's model wrapper prepends the virtual tokens itself (attention mask ones, labels -100), so the
usual collators and `generate` work unchanged. These adapters cannot be merged into the base.
"""

from __future__ import annotations

from tunesmith.errors import ConfigError
from tunesmith.models.reward import task_head


def _base_path(model) -> str:
    return model.name_or_path


def _refuse_task_head(model, name: str) -> None:
    # PEFT's CAUSAL_LM wrapper would freeze a new task head (a reward model's `score`) at its random start
    if task_head(model):
        raise ConfigError(
            f"method `{name}` cannot train a new task head (a reward model's scalar score); use "
            "method lora, freeze, full or adapter"
        )


def check_virtual_tokens(cfg) -> None:
    """Config-time refusals of the virtual-token methods (before any model loads)."""
    if cfg.data.packing:
        raise ConfigError(
            f"data.packing: method `{cfg.method}` cannot train packed rows: PEFT's virtual-token "
            "forward drops the per-row position ids that keep packed rows apart, so every row would "
            "attend to the rows packed before it; set data.packing: false"
        )


def apply_prompt_tuning(model, cfg):
    _refuse_task_head(model, "prompt")
    from peft import PromptTuningConfig, get_peft_model

    options = cfg.prompt
    text_init = (
        dict(
            prompt_tuning_init="TEXT",
            prompt_tuning_init_text=options.init_text,
            tokenizer_name_or_path=_base_path(model),
        )
        if options.init_text
        else {}
    )
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=options.num_virtual_tokens, **text_init)
    return get_peft_model(model, config)


def apply_ptuning(model, cfg):
    _refuse_task_head(model, "ptuning")
    from peft import PromptEncoderConfig, get_peft_model

    options = cfg.prompt
    config = PromptEncoderConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=options.num_virtual_tokens,
        encoder_hidden_size=options.encoder_hidden_size,
        encoder_reparameterization_type="MLP",
    )
    return get_peft_model(model, config)


def apply_prefix(model, cfg):
    _refuse_task_head(model, "prefix")
    from peft import PrefixTuningConfig, get_peft_model

    options = cfg.prompt
    config = PrefixTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=options.num_virtual_tokens,
        prefix_projection=options.prefix_projection,
        encoder_hidden_size=options.encoder_hidden_size,
    )
    return get_peft_model(model, config)
