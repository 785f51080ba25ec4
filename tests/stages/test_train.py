"""Training through the real CLI on a tiny model: loss falls, the right weights change, outputs load."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.configs import method_config
from tunesmith.cli import main

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _config(tmp_path, tiny_model_dir, data, method, extra=""):
    """The shared small SFT config, 10 epochs, measured on the facts' QA file."""
    qa = f"eval:\n  qa: {data['qa']}\n  max_new_tokens: 8\n"
    return method_config(tmp_path, tiny_model_dir, data, method, qa + extra, epochs=10)


def _losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def _base_weights(tiny_model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(tiny_model_dir / "model.safetensors"))


def _assert_common_outputs(out: Path):
    for name in (
        "tunesmith.json",
        "config.yaml",
        "metrics.jsonl",
        "loss.png",
        "tokenizer.json",
        "chat_template.jinja",
        "eval_results.json",
    ):
        assert (out / name).is_file(), name
    assert not out.with_name(out.name + ".partial").exists()
    losses = _losses(out)
    assert len(losses) >= 8
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["val_loss"] < results["base"]["val_loss"]
    assert 0.0 <= results["fine_tuned"]["qa_accuracy"] <= 1.0
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["system"] == "You are a test assistant."


def test_lora_trains_adapter_only_and_loads_with_plain_peft(tmp_path, tiny_model_dir, facts_data, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config, out = _config(tmp_path, tiny_model_dir, facts_data, "lora", "lora:\n  r: 8\n  alpha: 16\n")
    assert main(["train", str(config)]) == 0
    _assert_common_outputs(out)
    printed = capsys.readouterr().out
    assert "held-out QA accuracy" in printed and "trainable parameters:" in printed

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert Path(adapter_config["base_model_name_or_path"]) == tiny_model_dir.resolve()
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # B starts at zero

    base = AutoModelForCausalLM.from_pretrained(adapter_config["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, str(out))
    base_weights = _base_weights(tiny_model_dir)
    for name, param in model.base_model.model.named_parameters():
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(param, base_weights[key]), name


def test_full_changes_every_weight(tmp_path, tiny_model_dir, facts_data):
    config, out = _config(tmp_path, tiny_model_dir, facts_data, "full", "")
    assert main(["train", str(config), "training.learning_rate=0.001"]) == 0
    _assert_common_outputs(out)
    trained, base = load_file(str(out / "model.safetensors")), _base_weights(tiny_model_dir)
    assert set(trained) == set(base)
    changed = [k for k in base if not torch.equal(trained[k], base[k])]
    assert len(changed) == len(base), set(base) - set(changed)


def test_freeze_trains_only_the_last_layer(tmp_path, tiny_model_dir, facts_data):
    config, out = _config(tmp_path, tiny_model_dir, facts_data, "freeze", "freeze:\n  trainable_layers: 1\n")
    assert main(["train", str(config)]) == 0
    _assert_common_outputs(out)
    trained, base = load_file(str(out / "model.safetensors")), _base_weights(tiny_model_dir)
    for key in base:
        if key.startswith("model.layers.1."):
            assert not torch.equal(trained[key], base[key]), key
        else:
            assert torch.equal(trained[key], base[key]), key


def test_existing_output_is_not_overwritten_by_default(tmp_path, tiny_model_dir, facts_data, capsys):
    config, out = _config(tmp_path, tiny_model_dir, facts_data, "lora")
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["train", str(config)]) == 2
    assert "output folder exists" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


def test_bad_data_fails_before_any_model_work(tmp_path, tiny_model_dir, facts_data, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n')
    config, out = _config(tmp_path, tiny_model_dir, facts_data, "lora")
    assert main(["train", str(config), f"data.train={bad}"]) == 2
    assert f"{bad}:2:output: missing required field" in capsys.readouterr().err
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


@pytest.mark.parametrize(
    "override,message",
    [
        ("stage=ppo", "ppo: no reward given"),
        ("method=qlora", "needs a CUDA GPU"),
        ("moe.experts=8", "section `moe` is set but method is `lora`"),
        ("freeze.trainable_layers=1", "section `freeze` is set but method is `lora`"),
    ],
)
def test_unavailable_or_contradictory_choices_fail_at_config_time(
    tmp_path, tiny_model_dir, facts_data, capsys, override, message
):
    config, _ = _config(tmp_path, tiny_model_dir, facts_data, "lora")
    assert main(["train", str(config), override]) == 2
    assert message in capsys.readouterr().err


def test_neftune_adds_noise_to_the_embeddings_while_training(tmp_path, tiny_model_dir, facts_data):
    # The same seeded 2-step run twice without noise and once with training.neftune_alpha: the
    # plain runs' first losses agree exactly (the run is deterministic), the NEFTune run's differs
    # (the same batch, seen through noisy embeddings).
    path, _ = _config(tmp_path, tiny_model_dir, facts_data, "full")
    text = (
        path.read_text()
        .replace("  epochs: 10\n", "  max_steps: 2\n")
        .replace("eval:\n", "eval:\n  compare_base: false\n")
    )
    losses = {}
    for name, extra in (("plain", ""), ("again", ""), ("neftune", "  neftune_alpha: 15\n")):
        out = tmp_path / name
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            text.replace(f"output_dir: {tmp_path / 'out_full'}", f"output_dir: {out}").replace(
                "  max_steps: 2\n", "  max_steps: 2\n" + extra
            )
        )
        assert main(["train", str(config)]) == 0
        losses[name] = _losses(out)[0]
    assert losses["plain"] == losses["again"], losses
    assert abs(losses["plain"] - losses["neftune"]) > 1e-4, losses
