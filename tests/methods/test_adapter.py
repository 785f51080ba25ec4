"""Bottleneck adapters on a tiny model: identity at the start, only adapter weights train and are
saved (no base weights), and the saved folder reloads onto its base with the same outputs."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.checks import assert_loss_fell
from helpers.configs import load_config, method_config
from tunesmith.cli import main
from tunesmith.methods import apply_method, save_trained
from tunesmith.methods.bottleneck import load_bottleneck
from tunesmith.methods.load import load_for_inference

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))


def test_adapter_trains_only_its_weights_and_reloads_through_the_loader(tmp_path, tiny_model_dir, facts_data):
    config, out = method_config(tmp_path, tiny_model_dir, facts_data, "adapter", "adapter:\n  r: 16\n")
    assert main(["train", str(config)]) == 0
    assert_loss_fell(out)
    weights = load_file(str(out / "bottleneck_adapters.safetensors"))
    # 2 layers x (attention, mlp) x (down, up) x (weight, bias); nothing of the base is saved
    assert len(weights) == 16 and all(
        k.split(".")[0] in {"0_attention", "0_mlp", "1_attention", "1_mlp"} for k in weights
    )
    assert weights["0_mlp.down.weight"].shape == (16, 64) and weights["0_mlp.up.weight"].abs().sum() > 0
    assert not (out / "model.safetensors").exists()
    config_saved = json.loads((out / "bottleneck_adapters.json").read_text())
    assert config_saved["mergeable"] is False and config_saved["placement"] == "both"

    loaded = load_for_inference(str(out))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for name, param in loaded.model.named_parameters():
        if not name.startswith("bottleneck_adapters."):
            assert torch.equal(param, base[name]), name
        else:
            assert torch.equal(param, weights[name.removeprefix("bottleneck_adapters.")]), name
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["val_loss"] < results["base"]["val_loss"]


def test_adapter_starts_as_identity_and_saved_adapters_reproduce_the_model(tmp_path, tiny_model_dir):
    cfg = load_config(None, [f"output_dir={tmp_path}/x", "method=adapter", "adapter.r=8", "adapter.placement=mlp"])
    ids = torch.randint(0, 1000, (2, 10))
    base = _tiny(tiny_model_dir).eval()
    model, report = apply_method(_tiny(tiny_model_dir), cfg)
    assert report.trainable == 2 * (64 * 8 + 8 + 8 * 64 + 64)  # mlp only, 2 layers
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base(input_ids=ids).logits)  # up = 0: identity
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        assert not torch.allclose(trained, base(input_ids=ids).logits)
    save_trained(model, cfg, tmp_path / "saved")
    reloaded = load_bottleneck(_tiny(tiny_model_dir), tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, trained, atol=1e-6)
