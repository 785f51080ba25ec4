"""GGUF export: written with the gguf package, read back by another reader (transformers' GGUF
loader), equal to the model it came from (exactly in F32; within rounding when quantised), with
the metadata llama.cpp needs, an Ollama Modelfile, and clear refusals."""

import json

import gguf
import pytest
import torch

from tunesmith.cli import main
from tunesmith.errors import ModelError
from tunesmith.export import export_model
from tunesmith.models.tiny import build_tiny_model

# Not marked `trains`: every comparison is between two models on the same CPU in one process, so it
# does not depend on which kernels the CPU has.


@pytest.fixture(scope="module")
def gqa_model(default_model_dir, tmp_path_factory):
    """A tiny Llama with grouped-query attention (4 query heads, 2 key/value heads): the RoPE row
    reordering must use each projection's own head count."""
    return build_tiny_model(
        default_model_dir, tmp_path_factory.mktemp("gqa") / "model", num_heads=4, num_kv_heads=2, initializer_range=0.3
    )


def _manifest(out):
    return json.loads((out / "tunesmith.json").read_text())


def test_f32_gguf_reads_back_identical_and_carries_llama_metadata(tmp_path, gqa_model):
    out = export_model(str(gqa_model), str(tmp_path / "f32"), format="gguf", quant="f32")
    check = _manifest(out)["check"]
    assert check["same_token_ids"] == check["tokenizer_texts"] == 5
    assert check["max_logit_diff"] < 1e-4  # same weights, same layout: only float summation order differs
    assert check["same_greedy_tokens"] == check["prompts"] == 4

    reader = gguf.GGUFReader(out / "model-f32.gguf")
    fields = {
        name: field.contents()
        for name, field in reader.fields.items()
        if not name.startswith("tokenizer.ggml.") or name in ("tokenizer.ggml.pre", "tokenizer.ggml.model")
    }
    assert fields["general.architecture"] == "llama"
    assert fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
    assert fields["llama.block_count"] == 2 and fields["llama.embedding_length"] == 64
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "smollm"
    assert "<|im_start|>" in fields["tokenizer.chat_template"]
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names  # tied head: llama.cpp reuses token_embd
    assert {"token_embd.weight", "blk.1.attn_k.weight", "output_norm.weight"} <= names


def test_quantised_weights_read_back_within_their_rounding(tmp_path, gqa_model):
    # Each weight as llama.cpp's dequantiser gives it back (here transformers', with the RoPE order
    # undone) is within the quant's rounding of the original: Q8_0 to about
    # half a step of its 32-value block (step max|block| / 127), Q4_0 to a step (max|block| / 8).
    from transformers import AutoModelForCausalLM

    source = AutoModelForCausalLM.from_pretrained(gqa_model).state_dict()
    sizes = {}
    for quant in ("q8_0", "q4_0"):
        out = export_model(str(gqa_model), str(tmp_path / quant), format="gguf", quant=quant)
        name = f"model-{quant}.gguf"
        reader = gguf.GGUFReader(out / name)
        types = {t.name: t.tensor_type.name for t in reader.tensors}
        assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == quant.upper()
        assert types["blk.0.attn_norm.weight"] == "F32"  # vectors stay F32
        sizes[quant] = sum(int(t.n_bytes) for t in reader.tensors)
        read = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32).state_dict()
        for key in (
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.self_attn.k_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.embed_tokens.weight",
        ):
            original, back = source[key], read[key]
            # step d = max|block| / 127 (Q8_0) or / 8 (Q4_0), stored as F16: rounding error <= d/2 plus
            # the F16 scale's error over up to 127 steps; Q4_0's 16 levels also clip one end to d
            blocks = original.reshape(-1, 32).abs().amax(dim=1, keepdim=True)
            step = blocks / 127 if quant == "q8_0" else blocks / 8
            bound = (step * (0.6 if quant == "q8_0" else 1.1) + 1e-6).expand(-1, 32).reshape(original.shape)
            assert ((back - original).abs() <= bound).all(), (quant, key)
        check = _manifest(out)["check"]
        assert check["same_token_ids"] == 5 and check["max_abs_logit"] > 0
    f32_bytes = sum(t.numel() * 4 for k, t in source.items() if k != "lm_head.weight")
    assert sizes["q8_0"] < 0.3 * f32_bytes and sizes["q4_0"] < 0.6 * sizes["q8_0"]  # 8.5 and 4.5 bits per weight


def test_a_lora_output_is_merged_into_the_gguf(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    torch.manual_seed(1)
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)  # a trained-looking adapter: the merge must change the logits
    adapter = tmp_path / "adapter"
    peft.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter)  # as a tunesmith output holds it
    with pytest.raises(ModelError, match="pass --merge"):
        export_model(str(adapter), str(tmp_path / "plain"))  # the transformers format still asks
    out = export_model(str(adapter), str(tmp_path / "gguf"), format="gguf", quant="f32")
    manifest = _manifest(out)
    assert manifest["merged_adapter"] is True
    assert manifest["check"]["max_logit_diff"] < 1e-4 and manifest["check"]["same_greedy_tokens"] == 4
    from transformers import AutoModelForCausalLM as Auto

    read = Auto.from_pretrained(out, gguf_file="model-f32.gguf", dtype=torch.float32)
    plain = Auto.from_pretrained(tiny_model_dir)  # (get_peft_model changed `base` in place)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert (read(ids).logits - plain(ids).logits).abs().max() > 1e-2  # not the base: the adapter is in it


def test_modelfile_has_the_chatml_template_system_and_stop(tmp_path, gqa_model):
    out = export_model(str(gqa_model), str(tmp_path / "m"), format="gguf", quant="q8_0")
    text = (out / "Modelfile").read_text()
    assert "FROM ./model-q8_0.gguf" in text
    assert "TEMPLATE" in text and "{{ .System }}" in text and "<|im_start|>assistant" in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in text  # the template's own default


def test_unsupported_models_and_unknown_tokenizers_are_refused(tmp_path, default_model_dir, gqa_model, monkeypatch):
    from helpers.models import tiny_qwen2

    qwen = tiny_qwen2(tmp_path / "qwen", default_model_dir)
    with pytest.raises(ModelError, match="model_type `llama`.*this model is `qwen2`"):
        export_model(str(qwen), str(tmp_path / "q"), format="gguf")
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.partial").exists()

    from tunesmith.export import gguf as writer

    empty = tmp_path / "known.json"
    empty.write_text("{}")
    monkeypatch.setattr(writer, "PRE_TABLE", empty)
    with pytest.raises(ModelError, match="--gguf-pre NAME"):
        export_model(str(gqa_model), str(tmp_path / "u"), format="gguf")
    code = main(
        [
            "export",
            str(gqa_model),
            "--out",
            str(tmp_path / "named"),
            "--format",
            "gguf",
            "--quant",
            "q4_0",
            "--gguf-pre",
            "smollm",
        ]
    )
    assert code == 0 and _manifest(tmp_path / "named")["gguf"]["pre_tokenizer"] == "smollm"
