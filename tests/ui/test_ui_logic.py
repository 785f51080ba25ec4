"""The web page's logic without a browser: the Train form generated from the config schema, the run
registry (start, stop with a checkpoint, resume, found again by a new registry), typed paths, uploads
and the bind/auth rule. The page itself is driven by tests/ui/test_ui_browser.py."""

from __future__ import annotations

import time

import pytest
import yaml

from helpers.files import write_jsonl
from tunesmith.config import load_config
from tunesmith.config.schema import TunesmithConfig
from tunesmith.errors import ConfigError
from tunesmith.ui.runs import RunRegistry
from tunesmith.ui.safety import PathGuard, bind_check, parse_auth, store_upload
from tunesmith.ui.schema_form import config_from_form, field_specs, form_to_config, form_values, section_applies


def _values(specs, **changes):
    values = [s.shown(s.default) for s in specs]
    keys = [s.key for s in specs]
    for key, value in changes.items():
        values[keys.index(key.replace("__", "."))] = value
    return values


# --- the form from the schema ---------------------------------------------------------------------------


def test_every_config_key_has_a_field_with_its_description():
    from tunesmith.config.loader import all_keys

    specs = field_specs()
    sections = {k for k in all_keys() if any(s.key.startswith(k + ".") for s in field_specs())}
    assert {s.key for s in specs} == set(all_keys()) - sections  # a new key appears without UI code
    lr = next(s for s in specs if s.key == "training.learning_rate")
    assert (lr.widget, lr.parse, lr.default) == ("text", "float", 2e-4)
    assert (
        lr.description == TunesmithConfig.model_fields["training"].annotation.model_fields["learning_rate"].description
    )
    stage = next(s for s in specs if s.key == "stage")
    assert stage.widget == "choice" and "dpo" in stage.choices


def test_the_form_writes_only_what_differs_and_round_trips(tmp_path):
    specs = field_specs()
    values = _values(
        specs,
        output_dir="out/x",
        data__train="a.jsonl, b.jsonl",
        training__learning_rate="1e-3",
        training__report_to="tensorboard",
        lora__target_modules="q_proj, v_proj",
        data__packing=True,
    )
    raw, text = config_from_form(specs, values)
    assert raw == {
        "stage": "sft",
        "method": "lora",
        "output_dir": "out/x",
        "data": {"train": ["a.jsonl", "b.jsonl"], "packing": True},
        "lora": {"target_modules": ["q_proj", "v_proj"]},
        "training": {"learning_rate": 0.001, "report_to": ["tensorboard"]},
    }
    (tmp_path / "c.yaml").write_text(text)
    assert load_config(tmp_path / "c.yaml").training.learning_rate == 0.001  # the YAML is what train reads
    assert form_to_config(specs, form_values(specs, raw)) == raw


def test_sections_of_other_methods_and_stages_are_left_out():
    specs = field_specs()
    raw = form_to_config(
        specs, _values(specs, output_dir="o", method="full", lora__r="4", stage="dpo", dpo__beta="0.2", kto__beta="0.3")
    )
    assert "lora" not in raw and "kto" not in raw and raw["dpo"] == {"beta": 0.2}
    assert section_applies("lora", "sft", "qlora") and not section_applies("grpo", "sft", "lora")


def test_unreadable_and_invalid_values_name_their_keys():
    specs = field_specs()
    with pytest.raises(ConfigError) as err:
        form_to_config(specs, _values(specs, output_dir="o", training__epochs="three", lora__r="2.5"))
    assert "training.epochs: `three` is not a number" in str(err.value) and "lora.r:" in str(err.value)
    with pytest.raises(ConfigError, match="training.learning_rate"):
        config_from_form(specs, _values(specs, output_dir="o", training__learning_rate="-1"))


# --- the run registry ---------------------------------------------------------------------------------------


def _wait(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.trains
def test_a_run_is_stopped_with_a_checkpoint_found_again_and_resumed(tiny_model_dir, tmp_path):
    rows = [{"instruction": f"Is item {i} ready?", "output": "yes"} for i in range(8)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    config = {
        "output_dir": "out/run",
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": ["train.jsonl"], "max_length": 48},
        "training": {"max_steps": 3000, "batch_size": 4, "logging_steps": 1, "save_steps": 100000},
        "eval": {"compare_base": False},
    }
    registry = RunRegistry(tmp_path / "home", tmp_path)
    run = registry.start(yaml.safe_dump(config))
    try:
        assert _wait(lambda: registry.progress(run)["step"] >= 2 or registry.status(run) == "failed")
        assert registry.status(run) == "running", registry.log_tail(run)
        with pytest.raises(ConfigError, match="is being written by run"):
            registry.start(yaml.safe_dump(config))
        again = RunRegistry(tmp_path / "home", tmp_path)  # a restarted UI server: no process handle, found by pid
        assert [r.id for r in again.runs()] == [run.id] and again.status(again.get(run.id)) == "running"
        again.stop(run.id)
        assert _wait(lambda: again.status(again.get(run.id)) == "stopped"), again.log_tail(run)
        stopped = again.progress(again.get(run.id))["step"]
        assert again.resumable(again.get(run.id)) and 2 <= stopped < 3000
        resumed = again.resume(run.id)
        assert resumed.attempts == 2 and resumed.history[0]["stopped"]
        assert _wait(lambda: again.progress(resumed)["step"] > stopped + 1), again.log_tail(resumed)
        steps = [r["step"] for r in again.metrics(resumed) if "loss" in r]
        assert steps == list(range(1, steps[-1] + 1))  # continued from the checkpoint, not from step 0
        again.stop(run.id)
        assert _wait(lambda: again.status(again.get(run.id)) == "stopped")
        assert [p["series"] for p in again.loss_points(resumed)][:1] == ["train"]
    finally:
        for reg in (registry,):
            current = reg.get(run.id)
            if reg.alive(current):
                import os
                import signal

                os.killpg(current.pid, signal.SIGKILL)


def test_a_config_without_output_dir_is_refused_before_anything_starts(tmp_path):
    registry = RunRegistry(tmp_path / "home", tmp_path)
    with pytest.raises(ConfigError, match="needs `output_dir`"):
        registry.start("stage: sft\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        registry.start("a: [\n")
    assert registry.runs() == []


# --- safety ------------------------------------------------------------------------------------------------------


def test_typed_paths_must_stay_inside_the_roots(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data.jsonl").write_text("{}\n")
    (tmp_path / "secret").write_text("x")
    (tmp_path / "work" / "link").symlink_to(tmp_path / "secret")
    guard = PathGuard([tmp_path / "work"])
    assert guard.resolve("data.jsonl", "data file", kind="file") == (tmp_path / "work" / "data.jsonl").resolve()
    for typed in ("../secret", str(tmp_path / "secret"), "link", "/etc/passwd"):
        with pytest.raises(ConfigError, match="outside the folders this page may use"):
            guard.resolve(typed, "data file")
    with pytest.raises(ConfigError, match="does not exist"):
        guard.resolve("missing.jsonl", "data file")
    assert (
        guard.model_ref("default") == "default"
        and guard.model_ref("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    )
    with pytest.raises(ConfigError, match="outside"):
        guard.model_ref("/etc")


def test_uploads_land_in_the_ui_folder_under_their_base_name(tmp_path):
    source = tmp_path / "tmp" / "..evil name.jsonl"
    source.parent.mkdir()
    source.write_text("{}\n")
    first = store_upload(source, tmp_path / "uploads")
    second = store_upload(source, tmp_path / "uploads")
    assert first.parent == second.parent == tmp_path / "uploads" and first != second
    assert first.name == "evil_name.jsonl" and second.read_text() == "{}\n"


def test_another_address_than_loopback_needs_a_password():
    bind_check("127.0.0.1", None)
    bind_check("::1", None)
    with pytest.raises(ConfigError, match="needs a password"):
        bind_check("0.0.0.0", None)
    bind_check("0.0.0.0", parse_auth("alice:pw"))
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(ConfigError, match="USER:PASSWORD"):
            parse_auth(bad)


def test_the_cli_refuses_an_open_bind_without_auth(capsys):
    from tunesmith.cli import main

    assert main(["ui", "--host", "0.0.0.0"]) == 2
    assert "needs a password" in capsys.readouterr().err
