"""`tunesmith export --quant gptq4|gptq8|awq4`: calibrated compressed-tensors weights through llm-compressor.

llm-compressor 0.14 pins transformers to 5.15-5.17, so it lives in its own environment
(`.venv-gptq`, made by `scripts/setup.sh --gptq`; scripts/test.sh runs this file there in its third
pass). In the main environment, without the package, the refusal is what is tested; with it, a
trained tiny LoRA output is quantised on the CPU, read back by transformers through the
compressed-tensors package, and checked as every export is.
"""

import importlib.util
import json

import pytest
import torch

from helpers.training import trained_output
from tunesmith.cli import main
from tunesmith.methods.load import load_for_inference

HAS_LLMC = importlib.util.find_spec("llmcompressor") is not None
needs_llmc = pytest.mark.skipif(not HAS_LLMC, reason="llm-compressor is in .venv-gptq (scripts/test.sh pass 3)")


def layer_errors(read, source, tokenizer) -> dict:
    """Relative error of quantised layers of `read` against the same layers of `source`, given the same input
    (what the quantised layer was given in a forward pass of `read`)."""
    seen, names = {}, ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj")
    for name in names:
        read.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: seen.update({name: (args[0], out)})
        )
    with torch.no_grad():
        read(torch.tensor([tokenizer("Is item 3 ready? The quick brown fox.")["input_ids"]]))
        wants = {name: source.get_submodule(name)(seen[name][0]) for name in names}
    return {name: float((seen[name][1] - want).norm() / want.norm()) for name, want in wants.items()}


@pytest.mark.skipif(HAS_LLMC, reason="the refusal is for installs without llm-compressor")
def test_gptq_without_llm_compressor_is_refused_before_anything_is_written(tmp_path, tiny_model_dir, capsys):
    for quant in ("gptq4", "gptq8", "awq4"):
        assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / quant), "--quant", quant]) == 2
        err = capsys.readouterr().err
        assert f"--quant {quant}: needs llm-compressor: pip install 'tunesmith[gptq]'" in err
        assert "pins transformers to 5.15-5.17" in err and "--format gguf" in err
    assert list(tmp_path.iterdir()) == []


def test_calibration_needs_a_calibrated_quant_and_a_compressed_folder_loads_on_the_cpu(
    tmp_path, tiny_model_dir, capsys
):
    from tunesmith.export.bnb import load_kwargs, quantization_method

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "hello"}\n')
    assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--calibration", str(rows)]) == 2
    assert "--calibration: only --quant gptq4, gptq8 or awq4 are calibrated" in capsys.readouterr().err
    folder = tmp_path / "ct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "compressed-tensors"}}))
    assert quantization_method(folder) == "compressed-tensors"
    if not torch.cuda.is_available():
        assert load_kwargs(folder) == {}  # compressed-tensors decompresses on the CPU; no device map


def test_group_size_is_the_largest_that_divides_every_layer():
    from tunesmith.errors import ModelError
    from tunesmith.export.calibrated import group_size

    def model(*widths):
        layers = torch.nn.ModuleDict({f"l{i}": torch.nn.Linear(w, 8) for i, w in enumerate(widths)})
        layers["lm_head"] = torch.nn.Linear(50, 8)  # not quantised: its width does not count
        return layers

    assert group_size(model(576, 1536)) == 64 and group_size(model(256, 1024)) == 128
    assert group_size(model(96)) == 32
    with pytest.raises(ModelError, match="--quant gptq8 quantises per output channel instead"):
        group_size(model(100))


@needs_llmc
def test_gptq4_export_is_calibrated_on_the_training_rows_and_checked(tmp_path, tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    out = trained_output(tmp_path, tiny_model_dir, tokenizer, ["lora.r=4"], "lora")
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps({"instruction": f"Is item {i} ready?", "output": "yes" if i % 2 else "no"}) + "\n"
            for i in range(24)
        )
    )
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Is item {i} ready?", "answers": ["yes"]}) + "\n" for i in range(4)))
    (out / "config.yaml").write_text(
        f"data:\n  train: {train}\n  system: Be brief.\neval:\n  qa: {qa}\n  max_new_tokens: 4\n"
    )
    target = tmp_path / "gptq4"
    assert main(["export", str(out), "--out", str(target), "--quant", "gptq4"]) == 0
    manifest = json.loads((target / "tunesmith.json").read_text())
    quantization = manifest["quantization"]
    assert manifest["format"] == "transformers-safetensors-compressed-tensors"
    assert quantization["quant"] == "gptq4" and quantization["calibration_rows"] == 24
    assert "GPTQ, 4-bit integer weights in groups of 64" in quantization["method"]
    config = json.loads((target / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["ignore"] == ["lm_head"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["strategy"]) == (4, 64, "group")
    assert not (target / ".merged").exists() and (target / "recipe.yaml").is_file()
    # the check read it back through transformers + compressed-tensors, and the after-export QA ran on it
    assert manifest["check"]["reader"] == "transformers from_pretrained"
    assert manifest["after_export"]["measure"] == "qa_accuracy" and manifest["after_export"]["qa_total"] == 4
    read = AutoModelForCausalLM.from_pretrained(target)
    packed = [name for name, _ in read.named_parameters() if name.endswith("weight_packed")]
    assert len(packed) == 7 * read.config.num_hidden_layers  # q k v o gate up down, in every layer
    # the 4-bit layers compute what the merged ones do, within 4-bit rounding (each weight within about half a
    # step of its group's 16-level grid); the tiny random model's logits move too much for its greedy tokens to
    # agree (they are measured on the embedded model in docs/export.md)
    errors = layer_errors(read, load_for_inference(str(out), merge=True, dtype="float32").model, tokenizer)
    assert all(0 < error < 0.25 for error in errors.values()), errors  # measured 0.05-0.15; a wrong weight: ~1.4


@needs_llmc
def test_gptq8_with_a_calibration_file_and_awq4_refused_on_a_cpu(tmp_path, tiny_model_dir, tokenizer, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"Line {i}: the quick brown fox."}) + "\n" for i in range(8)))
    target = tmp_path / "gptq8"
    assert (
        main(["export", str(tiny_model_dir), "--out", str(target), "--quant", "gptq8", "--calibration", str(rows)]) == 0
    )
    manifest = json.loads((target / "tunesmith.json").read_text())
    assert manifest["quantization"]["calibration_rows"] == 8
    weights = json.loads((target / "config.json").read_text())["quantization_config"]["config_groups"]["group_0"]
    assert (weights["weights"]["num_bits"], weights["weights"]["strategy"]) == (8, "channel")
    from transformers import AutoModelForCausalLM

    errors = layer_errors(
        AutoModelForCausalLM.from_pretrained(target), load_for_inference(str(tiny_model_dir)).model, tokenizer
    )
    assert all(0 < error < 0.03 for error in errors.values()), errors  # 8-bit per channel: near-lossless
    # a folder without training data needs --calibration, refused before anything is written
    assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "none"), "--quant", "gptq4"]) == 2
    assert "pass --calibration FILE" in capsys.readouterr().err
    # a calibration file with a bad row names its file and line, before anything is written
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"colour": "blue"}\n')
    assert (
        main(
            [
                "export",
                str(tiny_model_dir),
                "--out",
                str(tmp_path / "bad"),
                "--quant",
                "gptq4",
                "--calibration",
                str(bad),
            ]
        )
        == 2
    )
    assert f"{bad}:2" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert not (tmp_path / "bad.partial").exists()
    if not torch.cuda.is_available():
        assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "awq"), "--quant", "awq4"]) == 2
        assert "AWQ pins host memory" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() and not (tmp_path / "awq").exists()


def test_calibration_rows_are_what_the_model_saw_in_training(tmp_path, tokenizer):
    """Chat rows through the chat template with the run's system prompt; raw text rows as they are; at most
    CALIBRATION_ROWS, the same draw every time."""
    from tunesmith.export.calibrated import CALIBRATION_ROWS, calibration_texts

    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"instruction": "Is item 1 ready?", "output": "yes"})
        + "\n"
        + json.dumps({"text": "Plain handbook text."})
        + "\n"
    )
    texts = sorted(calibration_texts(tokenizer, [str(rows)], {"system": "Be brief."}))
    chat = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Is item 1 ready?"},
            {"role": "assistant", "content": "yes"},
        ],
        tokenize=False,
    )
    assert texts == sorted([chat, "Plain handbook text."])
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(CALIBRATION_ROWS + 40)))
    drawn = calibration_texts(tokenizer, [str(many)], {})
    assert len(drawn) == CALIBRATION_ROWS and drawn == calibration_texts(tokenizer, [str(many)], {})
    assert drawn != [f"row {i}" for i in range(CALIBRATION_ROWS)]  # drawn across the file, not its head
