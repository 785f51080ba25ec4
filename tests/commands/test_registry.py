"""`tunesmith registry` on a real MLflow SQLite store: register two versions with their lineage,
alias one champion, serve it by alias over HTTP, roll back; registered files are immutable."""

import json
import shutil

import pytest
import torch

from tunesmith.cli import main
from tunesmith.errors import ConfigError, ModelError
from tunesmith.export import export_model
from tunesmith.model_registry import Registry, resolve_reference
from tunesmith.models.tiny import build_tiny_model


def _trained_output(root, default_model_dir, name, seed, qa):
    """A finished output as `tunesmith train` leaves it (weights, run manifest, eval_results.json)."""
    folder = build_tiny_model(default_model_dir, root / name, hidden_size=32, num_layers=1, seed=seed)
    (folder / "config.yaml").write_text(f"stage: sft\nmethod: full\noutput_dir: {folder}\n")
    (folder / "tunesmith.json").write_text(
        json.dumps(
            {
                "stage": "sft",
                "method": "full",
                "base_model_ref": "default",
                "config_hash": f"hash-{name}",
                "data": {
                    "train": "facts.jsonl",
                    "train_fingerprint": f"train-{name}",
                    "validation_fingerprint": f"val-{name}",
                },
                "metrics": {"train_loss": 1.5},
                "finished_at": "2026-11-28T00:00:00",
            }
        )
    )
    (folder / "eval_results.json").write_text(
        json.dumps({"base": {"qa_accuracy": 0.0}, "fine_tuned": {"qa_accuracy": qa, "val_loss": 1.0 - qa}})
    )
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory, default_model_dir):
    """A tunesmith home (the default store lives in it) holding `facts` versions 1 and 2."""
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_HOME", str(root / "home"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for version, (seed, qa) in enumerate([(1, 0.5), (2, 0.75)], start=1):
            trained = _trained_output(root, default_model_dir, f"run{version}", seed, qa)
            merged = export_model(str(trained), str(root / f"merged{version}"))
            assert (
                main(["registry", "register", str(merged), "--name", "facts", "--description", f"run {version}"]) == 0
            )
        yield root


def test_register_alias_serve_by_alias_and_roll_back(store, capsys):
    from transformers import AutoModelForCausalLM

    from helpers.serving import Server
    from tunesmith.methods.load import load_for_inference
    from tunesmith.serve.api import create_app
    from tunesmith.serve.host import ModelHost

    registry = Registry()
    assert registry.uri == f"sqlite:///{store / 'home' / 'registry' / 'mlflow.db'}"  # the default store
    second = registry.describe(registry.version("facts", version="2"))
    # lineage: the trained run behind the export, its data, metrics and the version it follows
    assert second["base_model"] == "default" and second["stage"] == "sft" and second["method"] == "full"
    assert second["train_fingerprint"] == "train-run2" and second["config_hash"] == "hash-run2"
    assert second["exported_from"] == str(store / "run2") and second["parent_version"] == "1"
    assert second["metrics"]["qa_accuracy"] == 0.75 and second["description"] == "run 2"
    run_files = registry.client.list_artifacts(second["run_id"], "lineage")
    assert {f.path for f in run_files} == {"lineage/eval_results.json", "lineage/config.yaml"}

    assert main(["registry", "alias", "facts", "1", "champion"]) == 0
    assert main(["registry", "alias", "facts", "2", "champion"]) == 0
    capsys.readouterr()
    assert main(["registry", "show", "facts@champion"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "2"
    assert main(["registry", "compare", "facts", "--json"]) == 0
    assert {v: m["qa_accuracy"] for v, m in json.loads(capsys.readouterr().out).items()} == {"1": 0.5, "2": 0.75}
    assert main(["registry", "list", "facts"]) == 0
    listing = capsys.readouterr().out
    assert "champion" in listing.splitlines()[2] and "transformers-safetensors" in listing

    # serve by alias: what `tunesmith serve --model registry:facts@champion` loads, over HTTP
    path = resolve_reference("registry:facts@champion")
    server = Server(create_app(ModelHost(load_for_inference(path), "facts@champion")))
    try:
        import urllib.request

        request = urllib.request.Request(
            f"{server.url}/chat/completions",
            headers={"Content-Type": "application/json"},
            data=json.dumps(
                {
                    "model": "facts@champion",
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": "Who runs the lab?"}],
                }
            ).encode(),
        )
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert reply["model"] == "facts@champion" and reply["usage"]["completion_tokens"] > 0
    finally:
        server.stop()
    served = AutoModelForCausalLM.from_pretrained(path).state_dict()
    run2 = AutoModelForCausalLM.from_pretrained(store / "run2").state_dict()
    assert all(torch.equal(served[k], run2[k]) for k in run2)  # version 2's weights, byte for byte

    assert main(["registry", "rollback", "facts"]) == 0
    assert "version 2 -> version 1" in capsys.readouterr().out
    back = AutoModelForCausalLM.from_pretrained(resolve_reference("registry:facts@champion")).state_dict()
    run1 = AutoModelForCausalLM.from_pretrained(store / "run1").state_dict()
    assert all(torch.equal(back[k], run1[k]) for k in run1)
    assert main(["registry", "rollback", "facts"]) == 2  # nothing earlier than version 1
    assert "no earlier version to roll back to" in capsys.readouterr().err


def test_registered_files_are_a_hash_checked_copy(store, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(store / "home"))
    registry = Registry()
    (store / "merged1" / "extra.txt").write_text("added after registration")  # the source is not the version
    path = registry.resolve("facts:1")
    assert not (path / "extra.txt").exists()
    weights = path / "model.safetensors"
    assert not weights.stat().st_mode & 0o222  # the registry's copy is read-only on disk
    original = weights.read_bytes()
    weights.chmod(0o644)
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        with pytest.raises(ModelError, match="differs from what was registered.*model.safetensors"):
            resolve_reference("registry:facts:1")
        assert main(["serve", "--model", "registry:facts:1", "--port", "1"]) == 2  # refused before listening
    finally:
        weights.write_bytes(original)
    assert registry.resolve("facts:1") == path


def test_a_remote_stores_download_is_taken_whole_or_not_at_all(store, tmp_path, monkeypatch):
    """A store whose artifacts are not local files (an MLflow server) is downloaded into the tunesmith
    home; a download cut off half-way leaves nothing that a later resolve takes for the copy."""
    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'home' / 'registry' / 'mlflow.db'}")
    registry = Registry(f"sqlite:///{store / 'home' / 'registry' / 'mlflow.db'}")
    monkeypatch.setattr(registry, "_local_artifacts", lambda run_id: None)  # as for a remote artifact store
    download = registry.client.download_artifacts

    def cut_off(run_id, path, dst):
        if path == "files.json":
            raise ConnectionError("connection reset")
        return download(run_id, path, dst)

    monkeypatch.setattr(registry.client, "download_artifacts", cut_off)
    with pytest.raises(ConnectionError):
        registry.resolve("facts:2")
    cache = tmp_path / "home" / "registry-cache" / "facts"
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(registry.client, "download_artifacts", download)
    path = registry.resolve("facts:2")
    assert path == cache / "2" / "model" and (path / "model.safetensors").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["2"]  # no partial download left beside it
    assert registry.resolve("facts:2") == path


def test_bad_references_and_unfinished_folders_are_refused(store, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(store / "home"))
    registry = Registry()
    with pytest.raises(ConfigError, match="no model named `nope` \\(registered: facts\\)"):
        registry.resolve("nope@champion")
    with pytest.raises(ConfigError, match="`facts` has no version 9 \\(versions 1, 2"):
        registry.resolve("facts:9")
    with pytest.raises(ConfigError, match="`facts` has no alias `staging`"):
        registry.resolve("registry:facts@staging")
    with pytest.raises(ConfigError, match="the version after `:` is a number"):
        registry.resolve("facts:latest")
    shutil.copytree(store / "run1", tmp_path / "unfinished")
    (tmp_path / "unfinished" / "tunesmith.json").unlink()
    with pytest.raises(ModelError, match="not a finished tunesmith output"):
        registry.register(tmp_path / "unfinished", "facts")
    with pytest.raises(ConfigError, match="name `facts@2`: use letters"):
        registry.register(store / "merged1", "facts@2")
    assert [str(v.version) for v in registry.versions("facts")] == ["1", "2"]  # nothing half-registered

    onnx = tmp_path / "onnx"  # what `export --format onnx` leaves, as far as the registry looks
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"graph")
    (onnx / "tunesmith.json").write_text(json.dumps({"format": "onnx", "finished_at": "now"}))
    registry.register(onnx, "facts-onnx")
    assert (registry.resolve("facts-onnx") / "model.onnx").read_bytes() == b"graph"
    with pytest.raises(ConfigError, match="is an ONNX export: it runs in its own runtime"):
        resolve_reference("registry:facts-onnx")  # what serve/chat/eval call
