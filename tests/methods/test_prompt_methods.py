"""Prompt tuning, P-tuning and prefix tuning through the CLI on a tiny model: only the virtual-token
parameters train, the loss falls, and the saved adapter reloads (tunesmith's loader) and generates."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.checks import assert_loss_fell
from helpers.configs import method_config
from tunesmith.cli import main
from tunesmith.methods.load import load_for_inference

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


@pytest.mark.parametrize(
    "method,section,lr",
    [
        ("prompt", "prompt:\n  num_virtual_tokens: 8\n  init_text: Answer the question about the lab.\n", 0.05),
        ("ptuning", "prompt:\n  num_virtual_tokens: 8\n  encoder_hidden_size: 64\n", 0.05),
        ("prefix", "prompt:\n  num_virtual_tokens: 8\n", 0.2),
    ],
)
def test_virtual_token_method_trains_only_its_tokens(tmp_path, tiny_model_dir, facts_data, capsys, method, section, lr):
    config, out = method_config(
        tmp_path,
        tiny_model_dir,
        facts_data,
        method,
        section + f"eval:\n  qa: {facts_data['qa']}\n  max_new_tokens: 6\n",
        epochs=6,
    )
    assert main(["train", str(config), f"training.learning_rate={lr}"]) == 0
    assert "trainable parameters:" in capsys.readouterr().out
    assert_loss_fell(out, factor=0.8)

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert (
        adapter_config["peft_type"]
        == {"prompt": "PROMPT_TUNING", "ptuning": "P_TUNING", "prefix": "PREFIX_TUNING"}[method]
    )
    weights = load_file(str(out / "adapter_model.safetensors"))
    # only the virtual tokens are saved: no base weight travels with the adapter
    assert set(weights) == {"prompt_embeddings"}, set(weights)
    width = 64 if method != "prefix" else 2 * 2 * 64  # prefix: key+value for each of 2 layers
    assert weights["prompt_embeddings"].shape == (8, width)

    loaded = load_for_inference(str(out))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for name, param in loaded.model.base_model.named_parameters():
        assert torch.equal(param, base[name]), name
    batch = loaded.tokenizer(["What is the code word?"], return_tensors="pt")
    generated = loaded.model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 5
    results = json.loads((out / "eval_results.json").read_text())
    assert len(results["fine_tuned"]["qa_details"]) == 4  # the CLI generated with the reloaded adapter
