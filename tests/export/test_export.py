"""`tunesmith export --merge`: LoRA and DoRA adapters folded into the base give the same logits as
the unmerged adapter; the folder is a plain transformers model; unmergeable methods are refused."""

import json

import pytest
import torch

from helpers.training import trained_output
from tunesmith.cli import main
from tunesmith.methods.load import load_for_inference


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("lora", ["lora.r=4"]),
        ("dora", ["lora.r=4", "lora.use_dora=true"]),
    ],
)
def test_merged_export_gives_the_same_logits(tmp_path, tiny_model_dir, tokenizer, name, overrides):
    from transformers import AutoModelForCausalLM

    source = trained_output(tmp_path, tiny_model_dir, tokenizer, overrides, name)
    exported = tmp_path / f"{name}_merged"
    assert main(["export", str(source), "--out", str(exported), "--merge"]) == 0
    assert (exported / "model.safetensors").is_file() and not (exported / "adapter_config.json").exists()
    assert (exported / "chat_template.jinja").is_file() and not exported.with_name(exported.name + ".partial").exists()
    manifest = json.loads((exported / "tunesmith.json").read_text())
    assert manifest["merged_adapter"] is True and manifest["system"] == "Be brief."

    ids = torch.randint(0, 1000, (2, 12))
    unmerged = load_for_inference(str(source), merge=False).model
    merged = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    with torch.no_grad():
        expected = unmerged(input_ids=ids).logits
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)
        assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-3)  # the adapter did something


def test_export_refuses_what_cannot_be_merged(tmp_path, tiny_model_dir, tokenizer, capsys):
    lora = trained_output(tmp_path, tiny_model_dir, tokenizer, ["lora.r=4"], "lora")
    assert main(["export", str(lora), "--out", str(tmp_path / "x")]) == 2
    assert "pass --merge" in capsys.readouterr().err
    adapter = trained_output(tmp_path, tiny_model_dir, tokenizer, ["method=adapter", "adapter.r=4"], "adapter")
    assert main(["export", str(adapter), "--out", str(tmp_path / "y"), "--merge"]) == 2
    assert "bottleneck adapters cannot be merged" in capsys.readouterr().err
    prompt = trained_output(
        tmp_path, tiny_model_dir, tokenizer, ["method=prompt", "prompt.num_virtual_tokens=4"], "prompt"
    )
    assert main(["export", str(prompt), "--out", str(tmp_path / "z"), "--merge"]) == 2
    assert "prompt_tuning adapter (virtual tokens) cannot be merged" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_full_model_export_copies_the_weights(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    out = tmp_path / "copy"
    assert main(["export", str(tiny_model_dir), "--out", str(out)]) == 0
    original, copied = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(original) == set(copied) and all(torch.equal(original[k], copied[k]) for k in original)
    assert json.loads((out / "tunesmith.json").read_text())["merged_adapter"] is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a CUDA GPU")
def test_bitsandbytes_weights_are_refused_without_a_cuda_gpu_before_anything_is_written(
    tmp_path, tiny_model_dir, capsys
):
    """bnb4/bnb8 write bitsandbytes-quantised safetensors for GPU serving; their kernels are CUDA's, so a
    CPU machine gets the reason and the CPU formats that do the same job, and no folder, not even .partial."""
    for quant, bits in (("bnb4", "4-bit (NF4)"), ("bnb8", "8-bit (LLM.int8())")):
        assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / quant), "--quant", quant]) == 2
        err = capsys.readouterr().err
        assert f"--quant {quant}: bitsandbytes {bits} weights are made and served by CUDA kernels" in err
        assert "--format gguf --quant q8_0 or q4_0" in err and "--format onnx --quant q8_0 or q4_0" in err
    # a quant of another format on a transformers export names the ones it takes
    assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "q"), "--quant", "q8_0"]) == 2
    assert "--quant q8_0: --format transformers takes bnb4, bnb8" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_quantised_folder_loads_back_on_the_gpu_and_a_plain_one_in_fp32(tmp_path):
    """How the export's check and after-export QA load a transformers folder back (export/bnb.py)."""
    from tunesmith.export.bnb import is_quantised, load_kwargs

    plain, quantised = tmp_path / "plain", tmp_path / "quantised"
    plain.mkdir(), quantised.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (quantised / "config.json").write_text(
        json.dumps(
            {"model_type": "llama", "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}
        )
    )
    assert not is_quantised(plain) and is_quantised(quantised) and not is_quantised(tmp_path)
    assert load_kwargs(plain) == {"dtype": torch.float32}


def test_the_bitsandbytes_staging_copy_is_half_precision_and_leaves_the_model_as_it_was(tmp_path, tiny_model_dir):
    """export/bnb.py writes the merged weights in the compute dtype for bitsandbytes to load; the model
    itself stays fp32, because the export's check and QA then compare the quantised folder with it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.export.bnb import stage_in

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    stage_in(model, AutoTokenizer.from_pretrained(str(tiny_model_dir)), tmp_path / "staging", torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    staged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "staging"), dtype=torch.bfloat16)
    for name, tensor in staged.state_dict().items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, before[name].to(torch.bfloat16)), name
    assert (tmp_path / "staging" / "tokenizer_config.json").is_file()
