"""`tunesmith serve --engine vllm`: what it asks vLLM to serve, and what it refuses, on any machine.

vLLM itself needs a CUDA GPU, so these tests check the command tunesmith builds (the model, LoRA
modules, rank, name, address, key, batch size) and the refusals that come before anything starts;
serving through vLLM is the GPU check's step."""

import json

import pytest
import torch

from tunesmith.cli import main
from tunesmith.errors import ConfigError, ModelError
from tunesmith.serve.vllm_engine import shown, vllm_command


def _lora_output(folder, base, rank=32, dora=False, peft_type="LORA"):
    folder.mkdir(parents=True)
    (folder / "tunesmith.json").write_text(json.dumps({"stage": "sft", "method": "lora"}))
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": peft_type, "r": rank, "use_dora": dora, "base_model_name_or_path": str(base)})
    )
    return folder


def _option(command, flag):
    return command[command.index(flag) + 1]


def test_a_lora_output_is_served_as_a_lora_module_of_its_base(tmp_path, tiny_model_dir):
    out = _lora_output(tmp_path / "veltrano", tiny_model_dir, rank=32)
    command = vllm_command(str(out), "veltrano", {}, "0.0.0.0", 8001, "secret", 16)
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert _option(command, "--model") == str(tiny_model_dir)
    assert _option(command, "--served-model-name") == "base"  # clients send `veltrano` for the adapter
    assert "--enable-lora" in command and _option(command, "--lora-modules") == f"veltrano={out.resolve()}"
    assert _option(command, "--max-lora-rank") == "32" and _option(command, "--max-loras") == "1"
    assert (_option(command, "--host"), _option(command, "--port")) == ("0.0.0.0", "8001")
    assert _option(command, "--api-key") == "secret" and "secret" not in shown(command)
    assert _option(command, "--max-num-seqs") == "16"


def test_several_adapters_share_their_base_and_the_rank_rounds_up_to_one_vllm_takes(tmp_path, tiny_model_dir):
    a = _lora_output(tmp_path / "a", tiny_model_dir, rank=8)
    b = _lora_output(tmp_path / "b", tiny_model_dir, rank=48)
    command = vllm_command("default", "default", {"policies": str(a), "tickets": str(b)}, "127.0.0.1", 8000, None, 4)
    start = command.index("--lora-modules") + 1
    assert command[start : start + 2] == [f"policies={a.resolve()}", f"tickets={b.resolve()}"]
    assert _option(command, "--max-lora-rank") == "64" and _option(command, "--max-loras") == "2"
    assert "--api-key" not in command


def test_a_whole_model_is_served_as_it_is_under_its_name(tmp_path, tiny_model_dir):
    command = vllm_command(str(tiny_model_dir), "tiny", {}, "127.0.0.1", 8000, None, 16)
    assert _option(command, "--model") == str(tiny_model_dir) and _option(command, "--served-model-name") == "tiny"
    assert "--enable-lora" not in command


def test_what_vllm_cannot_serve_is_refused_with_the_reason(tmp_path, tiny_model_dir):
    dora = _lora_output(tmp_path / "dora", tiny_model_dir, dora=True)
    with pytest.raises(ConfigError, match="is a DoRA adapter, which vLLM does not serve"):
        vllm_command(str(dora), "dora", {}, "127.0.0.1", 8000, None, 16)
    prompt = _lora_output(tmp_path / "prompt", tiny_model_dir, peft_type="PROMPT_TUNING")
    with pytest.raises(ConfigError, match="is a prompt_tuning output; vLLM serves LoRA adapters and whole models"):
        vllm_command(str(prompt), "prompt", {}, "127.0.0.1", 8000, None, 16)
    a = _lora_output(tmp_path / "a", tiny_model_dir)
    b = _lora_output(tmp_path / "b", "someorg/another-base")  # a hub id: not resolved, compared by name
    with pytest.raises(ModelError, match="trained on different base models and cannot share one"):
        vllm_command("default", "default", {"a": str(a), "b": str(b)}, "127.0.0.1", 8000, None, 16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a CUDA GPU")
def test_the_cli_refuses_vllm_without_a_gpu_an_admin_key_or_an_open_address_without_key(tiny_model_dir, capsys):
    assert main(["serve", "--engine", "vllm", "--model", str(tiny_model_dir)]) == 2
    assert "vLLM serves on a CUDA GPU and this machine has none; --engine transformers" in capsys.readouterr().err
    assert main(["serve", "--engine", "vllm", "--model", str(tiny_model_dir), "--admin-key", "k"]) == 2
    assert "--admin-key (adapters added at run time) is the transformers engine's" in capsys.readouterr().err
    assert main(["serve", "--engine", "vllm", "--model", str(tiny_model_dir), "--host", "0.0.0.0"]) == 2
    assert "exposes the model to the network; set --api-key" in capsys.readouterr().err


def test_vllm_renders_an_output_as_the_default_engine_does(tmp_path, tiny_model_dir, tokenizer):
    """The output's own template (its base has another) and its run's system prompt reach vLLM as
    --chat-template; rendered, it gives the default engine's prompt text, with and without a system turn."""
    from tunesmith.data.templates import apply_template
    from tunesmith.data.turns import with_system

    system = "You are {{ the }} Veltrano help desk."  # Jinja syntax: the template must not run it
    out = _lora_output(tmp_path / "veltrano", tiny_model_dir)
    trained = type(tokenizer).from_pretrained(str(tiny_model_dir))
    apply_template(trained, "chatml")  # the run's own template
    trained.save_pretrained(out)
    manifest = json.loads((out / "tunesmith.json").read_text())
    (out / "tunesmith.json").write_text(json.dumps({**manifest, "system": system}))
    command = vllm_command(str(out), "veltrano", {}, "127.0.0.1", 8000, None, 4)
    served = type(tokenizer).from_pretrained(str(out))
    served.chat_template = open(_option(command, "--chat-template"), encoding="utf-8").read()
    asks = [
        [{"role": "user", "content": "Where is lunch?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    ]
    for messages in asks:
        default = trained.apply_chat_template(with_system(messages, system), tokenize=False, add_generation_prompt=True)
        assert served.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == default
    # adapters trained with different system prompts cannot share vLLM's one template
    other = _lora_output(tmp_path / "other", tiny_model_dir)
    trained.save_pretrained(other)
    (other / "tunesmith.json").write_text(json.dumps({**manifest, "system": "Another."}))
    with pytest.raises(ConfigError, match="different chat templates or system prompts"):
        vllm_command("default", "default", {"a": str(out), "b": str(other)}, "127.0.0.1", 8000, None, 4)
