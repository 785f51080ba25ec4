"""Options that the chosen method would ignore are refused at config time, naming the key."""

import pytest

from helpers.files import write_config
from tunesmith.config import load_config, validate_config
from tunesmith.errors import ConfigError
from tunesmith.methods import check_method


@pytest.mark.parametrize(
    "method,prompt,message",
    [
        ("ptuning", {"init_text": "Answer politely."}, "prompt.init_text: applies to method prompt, not `ptuning`"),
        ("prefix", {"init_text": "Answer politely."}, "prompt.init_text: applies to method prompt, not `prefix`"),
        (
            "prompt",
            {"encoder_hidden_size": 64},
            "prompt.encoder_hidden_size: applies to method ptuning | prefix, not `prompt`",
        ),
        ("prompt", {"prefix_projection": True}, "prompt.prefix_projection: applies to method prefix, not `prompt`"),
        ("ptuning", {"prefix_projection": True}, "prompt.prefix_projection: applies to method prefix, not `ptuning`"),
        (
            "prefix",
            {"encoder_hidden_size": 64},
            "prompt.encoder_hidden_size: method prefix uses it only with prompt.prefix_projection: true",
        ),
    ],
)
def test_prompt_options_of_another_method_are_refused(method, prompt, message):
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        validate_config({"output_dir": "out/x", "method": method, "prompt": prompt})


@pytest.mark.parametrize(
    "method,prompt",
    [
        ("prompt", {"init_text": "Answer politely.", "num_virtual_tokens": 8}),
        ("ptuning", {"encoder_hidden_size": 64}),
        ("prefix", {"prefix_projection": True, "encoder_hidden_size": 64}),
    ],
)
def test_prompt_options_of_the_method_are_accepted(method, prompt):
    assert validate_config({"output_dir": "out/x", "method": method, "prompt": prompt}).prompt.model_fields_set == set(
        prompt
    )


def test_the_error_names_the_file_and_line(tmp_path):
    config = write_config(tmp_path / "p.yaml", "output_dir: out/x\nmethod: ptuning\nprompt:\n  init_text: hi\n")
    with pytest.raises(ConfigError, match=r"p.yaml:4: prompt.init_text: applies to method prompt"):
        load_config(config)


@pytest.mark.parametrize("method", ["prompt", "ptuning", "prefix"])
def test_packing_is_refused_for_virtual_token_methods(method):
    cfg = validate_config({"output_dir": "out/x", "method": method, "data": {"packing": True}})
    with pytest.raises(ConfigError, match=f"data.packing: method `{method}` cannot train packed rows: .*position ids"):
        check_method(cfg.method, cfg)
    check_method("lora", validate_config({"output_dir": "out/x", "data": {"packing": True}}))
