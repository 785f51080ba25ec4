"""The Chat tab's LoRA set without a browser (ui/chat_models.py): two LoRA outputs of one tiny base
loaded together, the base loaded once, each adapter (and `base`) replying exactly as that model
does when loaded alone, and the refusals the page shows (another base, a full fine-tune, paths
outside the page's folders)."""

import json
import shutil

import pytest
import torch

import tunesmith.models.lora_set as lora_set_module
from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.errors import ConfigError, ModelError
from tunesmith.methods.load import load_for_inference
from tunesmith.ui.chat_models import ChatModels, adapter_names, set_refs
from tunesmith.ui.safety import PathGuard

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2

QUESTION = [{"role": "user", "content": "What is the code word?"}]


def train(root, tiny_model_dir, name: str, answer: str, system: str, method: str = "lora", steps: int = 24):
    rows = write_jsonl(root / f"{name}.jsonl", [{"instruction": "What is the code word?", "output": answer}] * 8)
    lora = "lora: {r: 8, alpha: 16, dropout: 0.0}" if method == "lora" else ""
    config = write_config(
        root / f"{name}.yaml",
        f"""\
method: {method}
output_dir: {root / "out" / name}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {rows}, system: {system}}}
{lora}
training: {{max_steps: {steps}, learning_rate: 0.02, batch_size: 4, warmup: 0, scheduler: constant}}
""",
    )
    assert main(["train", str(config)]) == 0
    return root / "out" / name


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("chatset")
    return root, {
        "birds": train(root, tiny_model_dir, "birds", "Bluefinch.", "Be brief."),
        "wolves": train(root, tiny_model_dir, "wolves", "Redwolf.", "Answer in one word."),
        "whole": train(root, tiny_model_dir, "whole", "Greyowl.", "Be brief.", method="full", steps=1),
    }


@pytest.fixture()
def base_loads(monkeypatch):
    """How many times a LoRA set loaded its base model."""
    calls = []
    load = lora_set_module.load_causal_lm
    monkeypatch.setattr(lora_set_module, "load_causal_lm", lambda *a, **k: calls.append(a[0]) or load(*a, **k))
    return calls


def reply(stream) -> str:
    *_, text = stream
    return text


def test_a_lora_set_loads_its_base_once_and_each_adapter_replies_as_it_does_alone(outputs, base_loads, tiny_model_dir):
    root, out = outputs
    guard = PathGuard([root])
    # a typed relative path and a repeat: checked by the page's guard, resolved, the repeat dropped
    refs = set_refs(guard, [str(out["birds"]), "out/wolves", "out/birds"])
    assert refs == [str(out["birds"].resolve()), str(out["wolves"].resolve())]
    models = ChatModels()
    assert models.lora_set(refs).names == ["base", "birds", "wolves"]
    got = {name: [] for name in ("birds", "wolves", "base")}
    for name in ("birds", "wolves", "base", "wolves", "birds"):  # switched back and forth, never reloaded
        got[name].append(reply(models.stream_adapter(refs, name, QUESTION, max_new_tokens=6)))
    assert len(base_loads) == 1 and models.lora_set(refs) is models.lora_set(refs)

    alone = ChatModels()  # each model the normal way: the output loaded on its own (LoRA merged), the plain base
    expected = {name: reply(alone.stream(str(out[name]), QUESTION, max_new_tokens=6)) for name in ("birds", "wolves")}
    expected["base"] = reply(alone.stream(str(tiny_model_dir), QUESTION, max_new_tokens=6))
    assert "Bluefinch" in expected["birds"] and "Redwolf" in expected["wolves"]
    assert expected["base"] not in (expected["birds"], expected["wolves"])
    assert got == {name: [text] * len(got[name]) for name, text in expected.items()}

    # and the logits behind them (each output alone, unmerged: the same arithmetic), on the chat prompt
    adapters = models.lora_set(refs)
    for name in ("wolves", "base", "birds"):
        single = load_for_inference(str(out[name]) if name != "base" else str(tiny_model_dir), merge=False)
        with adapters.use(name) as loaded:
            prompt = ([{"role": "system", "content": loaded.system}] if loaded.system else []) + QUESTION
            ids = loaded.tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.no_grad():
                torch.testing.assert_close(loaded.model(**ids).logits, single.model(**ids).logits, atol=1e-5, rtol=0)
    assert len(base_loads) == 1


def test_outputs_that_cannot_share_a_base_are_refused_before_loading(outputs, base_loads, default_model_dir, tmp_path):
    root, out = outputs
    guard, models = PathGuard([root, tmp_path]), ChatModels()
    other = tmp_path / "other"  # an adapter of another base: its config names the default model
    shutil.copytree(out["wolves"], other)
    settings = other / "adapter_config.json"
    config = json.loads(settings.read_text())
    settings.write_text(json.dumps({**config, "base_model_name_or_path": str(default_model_dir)}))
    with pytest.raises(ModelError, match="trained on different base models") as refused:  # both bases named
        models.lora_set(set_refs(guard, [str(out["birds"]), str(other)]))
    assert "birds" in str(refused.value) and "other" in str(refused.value)
    assert str(default_model_dir) in str(refused.value) and config["base_model_name_or_path"] in str(refused.value)

    with pytest.raises(ModelError, match=r"whole.*a whole model \(full fine-tuning\), not an adapter"):
        models.lora_set(set_refs(guard, [str(out["birds"]), str(out["whole"])]))
    assert base_loads == []  # refused before the base was loaded

    with pytest.raises(ConfigError, match="is outside the folders this page may use"):
        set_refs(PathGuard([root]), [str(out["birds"]), str(other)])
    with pytest.raises(ConfigError, match="is not a folder"):
        set_refs(guard, [str(root / "birds.jsonl")])
    with pytest.raises(ConfigError, match="pick at least one LoRA output"):
        set_refs(guard, [])
    with pytest.raises(ConfigError, match="unknown adapter `cats`; loaded: base, birds"):
        reply(models.stream_adapter(set_refs(guard, [str(out["birds"])]), "cats", QUESTION))


def test_adapters_are_named_after_their_folders_without_clashes():
    assert adapter_names(["/a/policy", "/b/policy", "/c/base", "/d/policy"]) == {
        "policy": "/a/policy",
        "policy-2": "/b/policy",
        "base-2": "/c/base",
        "policy-3": "/d/policy",
    }
