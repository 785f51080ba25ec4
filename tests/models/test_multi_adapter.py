"""Several adapters on one base: listed, loaded side by side, switched per request, combined by weight."""

import io
import json
import shutil

import pytest
import torch

from helpers.training import train_adapter
from tunesmith.cli import main
from tunesmith.errors import ConfigError, ModelError, OutputError
from tunesmith.export import combine_adapters
from tunesmith.methods.load import load_for_inference
from tunesmith.models.loader import load_causal_lm
from tunesmith.models.lora_set import LoraSet, find_outputs, parse_named, parse_weighted
from tunesmith.serve.chat import chat_loop

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


@pytest.fixture(scope="module")
def two_adapters(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("adapters")
    return (
        train_adapter(root, tiny_model_dir, "birds", "Bluefinch.", "Be brief."),
        train_adapter(root, tiny_model_dir, "wolves", "Redwolf.", "Answer in one word."),
    )


def logits(model, tokenizer, text="What is the code word?"):
    batch = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_adapter_set_switches_per_request_and_equals_each_adapter_alone(two_adapters, tiny_model_dir):
    birds, wolves = two_adapters
    adapters = LoraSet({"birds": str(birds), "wolves": str(wolves)})
    assert adapters.names == ["base", "birds", "wolves"]
    alone = {name: load_for_inference(str(path), merge=False) for name, path in (("birds", birds), ("wolves", wolves))}
    base = load_causal_lm(str(tiny_model_dir)).eval()
    expected = {name: logits(loaded.model, loaded.tokenizer) for name, loaded in alone.items()}
    expected["base"] = logits(base, alone["birds"].tokenizer)
    assert not torch.allclose(expected["birds"], expected["wolves"], atol=1e-3)
    for name in ("birds", "wolves", "base", "wolves", "birds"):  # interleaved requests
        with adapters.use(name) as loaded:
            torch.testing.assert_close(logits(loaded.model, loaded.tokenizer), expected[name], atol=1e-5, rtol=0)
            assert loaded.system == {"birds": "Be brief.", "wolves": "Answer in one word.", "base": None}[name]
    with pytest.raises(ConfigError, match="unknown adapter `cats`; loaded: base, birds, wolves"):
        with adapters.use("cats"):
            pass


def test_chat_switches_adapter_per_turn(two_adapters, monkeypatch, capsys):
    birds, wolves = two_adapters
    monkeypatch.setattr(
        "sys.stdin",
        io.StringIO(
            "What is the code word?\n/adapter wolves\nWhat is the code word?\n/adapter cats\n/adapters\n"
            "/adapter birds\nName the code word.\n"
        ),
    )
    assert main(["chat", "--adapter", f"birds={birds}", "--adapter", str(wolves), "--max-new-tokens", "6"]) == 0
    text = capsys.readouterr().out
    assert "birds> Bluefinch" in text and "wolves> Redwolf" in text
    assert text.index("birds> Bluefinch") < text.index("wolves> Redwolf") < text.rindex("birds> Bluefinch")
    assert "(unknown adapter `cats`; loaded: base, birds, wolves)" in text
    assert "base, birds, [wolves]" in text


def test_chat_loop_starts_with_the_chosen_adapter(two_adapters):
    birds, wolves = two_adapters
    adapters = LoraSet(parse_named([str(birds), str(wolves)]))
    seen = []

    class Spy:
        def write(self, text):
            seen.append(text)

        def flush(self):
            pass

    chat_loop(
        None, None, 6, stdin=io.StringIO("What is the code word?\n"), out=Spy(), adapters=adapters, active="wolves"
    )
    assert "".join(seen).startswith("wolves> Redwolf")


def test_cat_combination_is_the_exact_weighted_sum_of_the_deltas(two_adapters, tmp_path, tiny_model_dir, capsys):
    birds, wolves = two_adapters
    out = tmp_path / "mix"
    assert main(["adapters", "combine", str(out), "--adapter", f"{birds}:0.25", "--adapter", f"{wolves}:0.75"]) == 0
    assert "combined adapter written to" in capsys.readouterr().out
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert [s["weight"] for s in manifest["combined_from"]] == [0.25, 0.75] and manifest["combination"] == "cat"
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16  # cat: ranks add up
    base = load_causal_lm(str(tiny_model_dir)).state_dict()
    merged = {
        name: load_for_inference(str(path)).model.state_dict()
        for name, path in (("birds", birds), ("wolves", wolves), ("mix", out))
    }
    changed = 0
    for key, weight in base.items():
        delta_b, delta_w = merged["birds"][key] - weight, merged["wolves"][key] - weight
        torch.testing.assert_close(merged["mix"][key] - weight, 0.25 * delta_b + 0.75 * delta_w, atol=1e-6, rtol=1e-4)
        changed += bool(delta_b.abs().max() > 1e-4)
    assert changed >= 14  # every LoRA-targeted linear layer of the 2-layer model moved


def test_svd_combination_at_full_rank_equals_cat(two_adapters, tmp_path):
    birds, wolves = two_adapters
    combine_adapters([(str(birds), 0.5), (str(wolves), 0.5)], str(tmp_path / "cat"))
    combine_adapters([(str(birds), 0.5), (str(wolves), 0.5)], str(tmp_path / "svd"), "svd", rank=16)
    combine_adapters([(str(birds), 0.5), (str(wolves), 0.5)], str(tmp_path / "ties"), "ties", density=0.5)
    cat, svd = (load_for_inference(str(tmp_path / n)).model.state_dict() for n in ("cat", "svd"))
    for key in cat:
        torch.testing.assert_close(svd[key], cat[key], atol=1e-5, rtol=1e-4)
    assert json.loads((tmp_path / "ties" / "tunesmith.json").read_text())["density"] == 0.5


def test_adapters_list_shows_every_finished_output(two_adapters, tmp_path, capsys):
    birds, wolves = two_adapters
    root = birds.parent
    (root / "broken.partial").mkdir(exist_ok=True)  # an unfinished run is not listed
    assert main(["adapters", "list", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["birds", "wolves"]
    assert all(r["kind"] == "lora" and r["rank"] == 8 and r["stage"] == "sft" and r["size_mb"] > 0 for r in rows)
    assert main(["adapters", "list", str(root)]) == 0
    table = capsys.readouterr().out
    assert "| birds | lora | lora | sft | 8 |" in table
    assert [a.name for a in find_outputs([str(birds)])] == ["birds"]  # a root that is itself an output


def test_bad_adapter_sets_and_combinations_are_refused(two_adapters, tmp_path, default_model_dir, capsys):
    birds, wolves = two_adapters
    other_base = tmp_path / "other_base"
    shutil.copytree(birds, other_base)
    config = json.loads((other_base / "adapter_config.json").read_text())
    (other_base / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": str(default_model_dir)})
    )
    with pytest.raises(ModelError, match="trained on different base models"):
        LoraSet({"birds": str(birds), "other": str(other_base)})

    dora = tmp_path / "dora"
    shutil.copytree(birds, dora)
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ModelError, match="DoRA adapter; its per-column magnitudes have no weighted sum"):
        combine_adapters([(str(birds), 1.0), (str(dora), 1.0)], str(tmp_path / "x"))

    wide = tmp_path / "wide"
    shutil.copytree(birds, wide)
    (wide / "adapter_config.json").write_text(json.dumps({**config, "r": 16}))
    with pytest.raises(ConfigError, match="linear needs adapters of one rank"):
        combine_adapters([(str(birds), 1.0), (str(wide), 1.0)], str(tmp_path / "x"), "linear")

    with pytest.raises(ConfigError, match="--density goes with the pruning combinations"):
        combine_adapters([(str(birds), 1.0), (str(wolves), 1.0)], str(tmp_path / "x"), "ties")
    with pytest.raises(ConfigError, match="--density has no meaning for --combination cat"):
        combine_adapters([(str(birds), 1.0), (str(wolves), 1.0)], str(tmp_path / "x"), density=0.5)
    with pytest.raises(ConfigError, match="at least two adapters"):
        combine_adapters([(str(birds), 1.0)], str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="the weight after ':' must be a number"):
        parse_weighted(["out/a:heavy"])
    with pytest.raises(ConfigError, match="`birds` is given twice"):
        parse_named([str(birds), f"birds={wolves}"])
    with pytest.raises(OutputError, match="incomplete output"):
        LoraSet({"raw": str(birds.parent)})  # a folder of runs, not a run
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()

    assert main(["chat", "--model", str(birds), "--adapter", str(wolves)]) == 2
    assert "--adapter loads the adapters' own base model; leave out --model" in capsys.readouterr().err
    assert (
        main(
            [
                "adapters",
                "combine",
                str(tmp_path / "y"),
                "--adapter",
                str(birds),
                "--adapter",
                str(wolves),
                "--combination",
                "average",
            ]
        )
        == 2
    )
    assert "--combination average: choose one of cat, linear, svd" in capsys.readouterr().err
