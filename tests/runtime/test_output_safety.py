"""Nothing lost: a run replaces only its own output, and a checkpoint is never deleted silently."""

import json
from pathlib import Path

import pytest

from helpers.configs import tiny_run
from helpers.files import write_config, write_jsonl
from helpers.training import stop_when
from tunesmith.cli import main
from tunesmith.config import load_config, validate_config
from tunesmith.errors import ConfigError, OutputError
from tunesmith.runtime.checkpoints import checkpoints, choose_resume, write_manifest
from tunesmith.runtime.outputs import OutputFolder


def _finished_output(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "tunesmith.json").write_text(json.dumps({"stage": "sft", "finished_at": "2026-01-01T00:00:00"}))
    (folder / "adapter_model.safetensors").write_bytes(b"old weights")
    return folder


def _user_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    return folder


# --- overwrite replaces only a tunesmith output ---------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_tunesmith_output(tmp_path):
    user = _user_folder(tmp_path / "docs")
    with pytest.raises(OutputError, match="not a tunesmith output .* nothing was changed"):
        OutputFolder(user, overwrite=True)
    # a manifest that is not a finished run's does not count either
    (user / "tunesmith.json").write_text("{not json")
    with pytest.raises(OutputError, match="not a tunesmith output"):
        OutputFolder(user, overwrite=True)
    assert (user / "thesis.tex").read_text() == "years of work"
    # a file where the folder should be
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        OutputFolder(tmp_path / "afile", overwrite=True)


def test_overwrite_replaces_a_tunesmith_output_and_nothing_beside_it(tmp_path):
    old = _finished_output(tmp_path / "run")
    neighbour = _user_folder(tmp_path / "run.old")  # the name the replaced output used to be parked under
    output = OutputFolder(old, overwrite=True)
    work = output.open()
    (work / "adapter_model.safetensors").write_bytes(b"new weights")
    assert output.commit({"stage": "sft"}) == old
    assert (old / "adapter_model.safetensors").read_bytes() == b"new weights"
    assert not (old / ".tunesmith-run").exists()
    assert (neighbour / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.old"]


def test_a_folder_that_changed_while_training_is_not_replaced(tmp_path):
    output = OutputFolder(tmp_path / "run", overwrite=True)
    output.open()
    _user_folder(tmp_path / "run")  # someone put their files there in the meantime
    with pytest.raises(OutputError, match="not a tunesmith output"):
        output.commit({})
    assert (tmp_path / "run" / "thesis.tex").is_file() and checkpoints(tmp_path / "run.partial") == []


@pytest.mark.parametrize("where", [".", "/", "~", "..", "sub/..", "cwd-parent"])
def test_places_that_hold_more_than_a_run_are_never_output_folders(tmp_path, monkeypatch, where):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    path = {"~": str(Path.home()), "cwd-parent": str(tmp_path)}.get(where, where)
    with pytest.raises(OutputError):
        OutputFolder(path, overwrite=True)
    with pytest.raises(ConfigError, match="output_dir: "):
        validate_config({"output_dir": path})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_an_output_folder_holding_the_config_or_data_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _finished_output(tmp_path / "out")
    data = write_jsonl(out / "train.jsonl", [{"instruction": "q", "output": "a"}])
    config = write_config(tmp_path / "c.yaml", f"output_dir: out\noverwrite_output: true\ndata:\n  train: {data}\n")
    with pytest.raises(ConfigError, match=r"c.yaml:1: output_dir: data.train: .*train.jsonl.* lies inside output_dir"):
        load_config(config)
    inside = write_config(out / "config.yaml", "output_dir: out\noverwrite_output: true\n")
    cfg = load_config(inside)  # a config may be read from an output (eval), but a run would replace it
    with pytest.raises(OutputError, match="holds .*config.yaml.*, which this run reads"):
        OutputFolder(cfg.output_dir, cfg.overwrite_output, protect=[cfg._source])
    assert data.is_file() and inside.is_file()


def test_export_and_combine_overwrite_refuse_a_users_folder(tmp_path, tiny_model_dir, capsys):
    user = _user_folder(tmp_path / "mine")
    assert main(["export", str(tiny_model_dir), "--out", str(user), "--overwrite"]) == 2
    assert "not a tunesmith output" in capsys.readouterr().err
    exported = tmp_path / "exported"
    assert main(["export", str(tiny_model_dir), "--out", str(exported), "--overwrite"]) == 0
    assert main(["export", str(exported), "--out", str(exported), "--overwrite"]) == 2
    assert "which this run reads" in capsys.readouterr().err
    assert (
        main(
            [
                "adapters",
                "combine",
                str(user),
                "--adapter",
                str(tmp_path / "a"),
                "--adapter",
                str(tmp_path / "b"),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "not a tunesmith output" in capsys.readouterr().err
    assert (user / "thesis.tex").read_text() == "years of work" and (exported / "tunesmith.json").is_file()


# --- OUTPUT.partial: cleared only when it holds no work ---------------------------------------------


def _checkpoint(partial: Path, step: int, identity: dict) -> Path:
    folder = partial / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"paid for")
    write_manifest(folder, step, identity)
    return folder


def test_a_partial_folder_with_a_checkpoint_is_continued_or_refused_never_deleted(tmp_path):
    identity = {"config_hash": "aaa", "data_fingerprint": "d1"}
    output = OutputFolder(tmp_path / "run")
    ckpt = _checkpoint(output.partial, 4, identity)
    # unset or auto: the same run continues from it
    assert choose_resume(None, output.partial, identity, False) == ckpt
    assert choose_resume("auto", output.partial, identity, False) == ckpt
    # a changed config: refused, naming both ways on
    with pytest.raises(ConfigError, match="config changed .* training.resume_changed=true.* training.resume=restart"):
        choose_resume(None, output.partial, {**identity, "config_hash": "bbb"}, False)
    assert choose_resume(None, output.partial, {**identity, "config_hash": "bbb"}, True) == ckpt
    # opening it without resuming is refused too; only restart discards it
    with pytest.raises(OutputError, match="holds the checkpoint checkpoint-4 .* training.resume=restart"):
        output.open()
    assert ckpt.is_dir()
    assert choose_resume("restart", output.partial, identity, False) is None
    assert output.open(discard=True) == output.partial and not ckpt.exists()


def test_a_partial_folder_is_cleared_only_when_a_run_wrote_it(tmp_path):
    output = OutputFolder(tmp_path / "run")
    output.partial.mkdir()
    (output.partial / "metrics.jsonl").write_text("{}\n")  # a run that crashed before its first checkpoint
    (output.partial / "checkpoint-2").mkdir()  # ... and a save cut short (no manifest)
    output.open()
    assert sorted(p.name for p in output.partial.iterdir()) == [".tunesmith-run"]
    user = _user_folder(tmp_path / "notes.partial")
    with pytest.raises(OutputError, match="files a tunesmith run did not write"):
        OutputFolder(tmp_path / "notes").open()
    assert (user / "thesis.tex").is_file()


# --- through the CLI: rerunning a stopped run continues it --------------------------------------------


@pytest.mark.trains
def test_rerunning_a_stopped_run_continues_from_its_checkpoint(tmp_path, tiny_model_dir, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": f"Q {i}?", "output": f"A {i}."} for i in range(8)])
    config, out = tiny_run(
        tmp_path, tiny_model_dir, data, data={"max_length": 96, "cache": False}, training={"max_steps": 6}
    )
    partial = out.with_name("run.partial")
    stop_when(out, 2)
    assert main(["train", str(config)]) == 3
    ((step, ckpt),) = checkpoints(partial)
    capsys.readouterr()
    # a changed config: refused, the checkpoint kept
    assert main(["train", str(config), "training.learning_rate=0.5"]) == 2
    err = capsys.readouterr().err
    assert "training.resume_changed=true" in err and "training.resume=restart" in err and ckpt.is_dir()
    # the same command again: continues from the checkpoint, and says so
    assert main(["train", str(config)]) == 0
    assert f"resuming from {ckpt} (left by an earlier run of this config" in capsys.readouterr().out
    steps = [
        json.loads(line)["step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == list(range(1, 7))
