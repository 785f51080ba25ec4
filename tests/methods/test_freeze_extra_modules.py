"""freeze.extra_modules: an entry that matches no parameter is an error naming what exists."""

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.config import validate_config
from tunesmith.errors import ConfigError
from tunesmith.methods.freeze import apply_freeze


def _model(tied: bool):
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


def _cfg(extra):
    return validate_config(
        {"output_dir": "out/freeze", "method": "freeze", "freeze": {"trainable_layers": 1, "extra_modules": extra}}
    )


def test_a_typo_is_an_error_naming_the_candidates():
    with pytest.raises(
        ConfigError,
        match=r"freeze.extra_modules: `embed_tokns` matches no parameter of this model; "
        r"did you mean embed_tokens\?.*module names that exist: .*lm_head.*q_proj",
    ):
        apply_freeze(_model(tied=False), _cfg(["embed_tokns"]))


def test_a_tied_head_names_the_weight_it_shares():
    with pytest.raises(
        ConfigError,
        match=r"`lm_head` has no weight of its own: lm_head shares it with "
        r"model.embed_tokens.weight .* name `embed_tokens`",
    ):
        apply_freeze(_model(tied=True), _cfg(["lm_head"]))


def test_fragments_that_exist_train_what_they_name():
    model = apply_freeze(_model(tied=True), _cfg(["embed_tokens", "norm"]))
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "model.embed_tokens.weight" in trained and "model.norm.weight" in trained
    assert "model.layers.0.self_attn.q_proj.weight" not in trained
    assert apply_freeze(_model(tied=False), _cfg(["lm_head"])).lm_head.weight.requires_grad
