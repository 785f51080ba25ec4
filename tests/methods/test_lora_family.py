"""The LoRA family on a tiny model: rsLoRA, DoRA, PiSSA/OLoRA, LoRA+ and target presets.

Each variant trains through the real CLI (loss falls, base weights bit-identical when the saved
adapter is loaded with plain PEFT); PiSSA's converted adapter reproduces the trained model; LoRA+
gives the B matrices ratio x the learning rate in the optimiser the Trainer builds.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.checks import assert_loss_fell
from helpers.configs import load_config, method_config
from tunesmith.cli import main

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def load_adapter(out: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(out))


def assert_base_untouched(model, tiny_model_dir):
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    checked = 0
    for name, param in model.base_model.model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base[name.replace(".base_layer", "")]), name
            checked += 1
    assert checked == len(base)


@pytest.mark.parametrize(
    "name,section,check",
    [
        ("attention", "lora:\n  r: 8\n  target_modules: attention\n", "attention"),
        ("layers", "lora:\n  r: 8\n  layers: 1\n", "layers"),
        ("rslora", "lora:\n  r: 8\n  use_rslora: true\n", "rslora"),
        ("dora", "lora:\n  r: 8\n  use_dora: true\n", "dora"),
        ("pissa", "lora:\n  r: 8\n  init: pissa\n  dropout: 0\n", "pissa"),
        ("loraplus", "lora:\n  r: 8\n  loraplus_lr_ratio: 4\ntraining:\n  learning_rate: 0.003\n", "loraplus"),
    ],
)
def test_lora_variant_trains_and_leaves_base_untouched(tmp_path, tiny_model_dir, facts_data, name, section, check):
    config, out = method_config(tmp_path, tiny_model_dir, facts_data, "lora", name=name)
    text = config.read_text()
    if "training:\n  learning_rate: 0.003" in section:  # merge into the training section
        text = text.replace("learning_rate: 0.01", "learning_rate: 0.003")
        section = section.split("training:")[0]
    config.write_text(text + section)
    assert main(["train", str(config)]) == 0
    assert_loss_fell(out)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    weights = load_file(str(out / "adapter_model.safetensors"))
    model = load_adapter(out)
    assert_base_untouched(model, tiny_model_dir)
    if check == "attention":
        adapted = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in weights}
        assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}, adapted
    elif check == "layers":  # the last of the tiny model's 2 layers only, every linear module in it
        assert {k.split(".layers.")[1].split(".")[0] for k in weights} == {"1"}, sorted(weights)
        assert len({k.split(".lora_")[0] for k in weights}) == 7
    elif check == "rslora":
        assert adapter_config["use_rslora"] is True
        layer = model.base_model.model.model.layers[0].self_attn.q_proj
        assert layer.scaling["default"] == pytest.approx(32 / 8**0.5)
    elif check == "dora":
        magnitudes = {k: v for k, v in weights.items() if "lora_magnitude_vector" in k}
        assert magnitudes, "DoRA adapter has no magnitude vectors"
        # the magnitude starts as the base weight's row norms and must have trained away from them
        base = load_file(str(tiny_model_dir / "model.safetensors"))
        key = next(k for k in magnitudes if "q_proj" in k)
        module = key.split(".lora_magnitude_vector")[0].removeprefix("base_model.model.")
        assert not torch.allclose(magnitudes[key], base[module + ".weight"].norm(dim=1))
    elif check == "pissa":
        # converted for the unmodified base: rank 2r, applied as a plain LoRA
        assert adapter_config["r"] == 16 and adapter_config["init_lora_weights"] is True


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_saved_adapter_reproduces_the_trained_model(tmp_path, tiny_model_dir, init):
    """PiSSA/OLoRA rewrite the base in memory; the saved (converted) adapter on the original base
    must give the same logits as the trained in-memory model."""
    from transformers import AutoModelForCausalLM

    from tunesmith.methods import apply_method, save_trained

    cfg = load_config(None, [f"output_dir={tmp_path}/x", f"lora.init={init}", "lora.dropout=0", "lora.r=4"])
    model, _ = apply_method(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
    ids = torch.randint(0, 1000, (2, 12))
    for _ in range(5):  # a few real training steps move A and B away from their PiSSA init
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
    save_trained(model, cfg, tmp_path / "adapter")
    (tmp_path / "adapter" / "tunesmith.json").write_text("{}")
    reloaded = load_adapter(tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, trained, atol=1e-4)
    assert_base_untouched(reloaded, tiny_model_dir)


def test_loraplus_optimizer_gives_b_matrices_ratio_times_the_learning_rate(tmp_path, tiny_model_dir):
    """The seam train_and_save uses: the method's optimiser factory, built by the Trainer itself."""
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from tunesmith.methods import apply_method, method_optimizer

    cfg = load_config(None, [f"output_dir={tmp_path}/x", "lora.loraplus_lr_ratio=16"])
    model, _ = apply_method(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), cfg)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path / "w"), learning_rate=1e-3, use_cpu=True, report_to="none"),
    )
    trainer.optimizer_cls_and_kwargs = method_optimizer(cfg, trainer.args)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    b = [lr for n, lr in lr_of.items() if "lora_B" in n]
    a = [lr for n, lr in lr_of.items() if "lora_A" in n]
    assert b and a and set(b) == {1.6e-2} and set(a) == {1e-3}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(lr_of) == trainable  # every trainable parameter is in exactly one group
    assert method_optimizer(load_config(None, [f"output_dir={tmp_path}/y"]), trainer.args) is None


def test_lora_options_are_checked(tmp_path, tiny_model_dir, facts_data, capsys):
    config, _ = method_config(tmp_path, tiny_model_dir, facts_data, "lora")
    assert main(["train", str(config), "lora.target_modules=[q_proj,nonexistent]"]) == 2
    assert "['nonexistent'] not found in the model" in capsys.readouterr().err
    assert main(["train", str(config), "lora.init=pissa"]) == 2
    assert "lora.init=pissa needs lora.dropout=0" in capsys.readouterr().err
    assert main(["train", str(config), "lora.layers=3"]) == 2
    assert "lora.layers: 3 (the last N layers) must be between 1 and 2" in capsys.readouterr().err
    assert main(["train", str(config), "lora.layers=[0,5]"]) == 2
    assert "lora.layers: [5] out of range: the model has 2 decoder layers" in capsys.readouterr().err
    assert main(["train", str(config), "lora.loraplus_lr_ratio=0.5"]) == 2
    assert "loraplus_lr_ratio" in capsys.readouterr().err
