"""Method options checked without training: freeze by named modules, qlora's refusal on a machine
without CUDA + bitsandbytes, and which config sections belong to which method."""

import pytest
import torch

from helpers.configs import load_config, method_config
from tunesmith.cli import main
from tunesmith.errors import ConfigError
from tunesmith.methods import apply_method, check_method


def _trainable(tiny_model_dir, overrides):
    from transformers import AutoModelForCausalLM

    cfg = load_config(None, ["output_dir=/tmp/unused", "method=freeze", *overrides])
    model, report = apply_method(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), cfg)
    return {n for n, p in model.named_parameters() if p.requires_grad}, report


def test_freeze_by_named_modules_only(tiny_model_dir):
    names, report = _trainable(tiny_model_dir, ["freeze.trainable_layers=0", "freeze.extra_modules=[self_attn]"])
    assert names and all(".self_attn." in n for n in names) and len(names) == 2 * 4
    names, _ = _trainable(tiny_model_dir, ["freeze.trainable_layers=0", "freeze.extra_modules=[embed_tokens]"])
    assert names == {"model.embed_tokens.weight"}  # the head is tied to it here
    with pytest.raises(ConfigError, match="left no parameter trainable"):
        _trainable(tiny_model_dir, ["freeze.trainable_layers=0"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a CUDA GPU")
def test_qlora_is_refused_at_config_time_without_a_gpu(tmp_path, tiny_model_dir, facts_data, capsys):
    with pytest.raises(
        ConfigError, match=r"needs a CUDA GPU and bitsandbytes \(no CUDA GPU is visible\); use `method: lora`"
    ):
        check_method("qlora")
    config, out = method_config(tmp_path, tiny_model_dir, facts_data, "qlora", "qlora:\n  bits: 4\nlora:\n  r: 8\n")
    assert main(["train", str(config)]) == 2
    assert "use `method: lora`" in capsys.readouterr().err
    assert not out.with_name(out.name + ".partial").exists()


def test_method_sections_belong_to_their_methods(tmp_path):
    load_config(None, ["output_dir=x", "method=qlora", "lora.r=4", "qlora.bits=8"])  # qlora reads `lora:`
    load_config(None, ["output_dir=x", "method=prefix", "prompt.num_virtual_tokens=4"])
    for overrides, message in [
        (["method=lora", "qlora.bits=8"], "section `qlora` is set but method is `lora`"),
        (["method=lora", "prompt.num_virtual_tokens=4"], "set `method: prompt | ptuning | prefix`"),
        (["method=full", "adapter.r=4"], "section `adapter` is set but method is `full`"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
            load_config(None, ["output_dir=x", *overrides])
