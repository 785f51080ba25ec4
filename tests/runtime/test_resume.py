"""Checkpoints and resume: a resumed run is the same run; broken checkpoints are never used."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.files import write_config, write_jsonl
from helpers.training import stop_when
from tunesmith.cli import main
from tunesmith.runtime.checkpoints import MANIFEST, checkpoints, newest_valid

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _data(tmp_path):
    # variable lengths, 18 rows: with batch 2 x accumulation 2 an epoch is 5 steps (the last one short),
    # so 12 steps cross two epoch boundaries with a reshuffle each time
    rows = [
        {"instruction": f"Question number {i}?" + " more" * (i % 5), "output": f"Answer {i}." + " yes" * (i % 3)}
        for i in range(18)
    ]
    return write_jsonl(tmp_path / "train.jsonl", rows)


def _config(tmp_path, name, data, extra=""):
    out = tmp_path / name
    text = f"""\
stage: sft
method: lora
output_dir: {out}
model:
  name_or_path: MODEL
data:
  train: {data}
  max_length: 64
  cache: false
training:
  max_steps: 12
  batch_size: 2
  gradient_accumulation: 2
  learning_rate: 0.005
  logging_steps: 1
  mixed_precision: "no"
  group_by_length: false
  seed: 3
eval:
  compare_base: false
{extra}"""
    return text, out


def _losses(out):
    return {
        r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    }


def test_sigterm_saves_and_resume_is_exact(tmp_path, tiny_model_dir, capsys):
    data = _data(tmp_path)
    text, straight = _config(tmp_path, "straight", data)
    assert main(["train", str(write_config(tmp_path / "a.yaml", text.replace("MODEL", str(tiny_model_dir))))]) == 0

    text, resumed = _config(tmp_path, "resumed", data)
    config = write_config(tmp_path / "b.yaml", text.replace("MODEL", str(tiny_model_dir)))
    stop_when(resumed, 4)
    assert main(["train", str(config)]) == 3
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at step" in err and "training.resume=auto" in err
    partial = resumed.with_name("resumed.partial")
    assert not resumed.exists()
    ((stop_step, ckpt),) = checkpoints(partial)
    assert 4 <= stop_step < 12 and (ckpt / MANIFEST).is_file()
    assert main(["train", str(config), "training.resume=auto"]) == 0
    assert f"resuming from {ckpt}" in capsys.readouterr().out

    a, b = _losses(straight), _losses(resumed)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-6, (step, a[step], b[step])
    wa = load_file(str(straight / "adapter_model.safetensors"))
    wb = load_file(str(resumed / "adapter_model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not checkpoints(resumed)  # resume points are not part of the result


def test_periodic_checkpoints_rotate_and_broken_ones_are_skipped(tmp_path, tiny_model_dir, capsys):
    data = _data(tmp_path)
    text, out = _config(tmp_path, "run", data)
    config = write_config(tmp_path / "c.yaml", text.replace("MODEL", str(tiny_model_dir)))
    stop_when(out, 9)
    assert main(["train", str(config), "training.save_steps=2", "training.save_total_limit=2"]) == 3
    partial = out.with_name("run.partial")
    steps = [s for s, _ in checkpoints(partial)]
    assert len(steps) == 2 and steps[-1] >= 9, steps  # the newest two: rotation kept K
    newest = partial / f"checkpoint-{steps[-1]}"
    # a save cut short (bytes changed after the manifest) is skipped; auto takes the previous one
    weights = newest / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert newest_valid(partial)[0] == partial / f"checkpoint-{steps[0]}"
    # a changed config is refused; with resume_changed it goes on
    assert (
        main(["train", str(config), "training.save_steps=2", "training.resume=auto", "training.learning_rate=0.001"])
        == 2
    )
    assert "the config changed since" in capsys.readouterr().err
    assert main(["train", str(config), "training.save_steps=2", "training.resume=auto"]) == 0
    assert f"resuming from {partial / f'checkpoint-{steps[0]}'}" in capsys.readouterr().out
    assert sorted(_losses(out)) == list(range(1, 13))


def test_resume_of_a_missing_checkpoint_path_is_refused(tmp_path, tiny_model_dir, capsys):
    text, _ = _config(tmp_path, "x", _data(tmp_path))
    config = write_config(tmp_path / "d.yaml", text.replace("MODEL", str(tiny_model_dir)))
    assert main(["train", str(config), f"training.resume={tmp_path / 'nowhere'}"]) == 2
    assert "is not a complete checkpoint (missing or failing checkpoint.json)" in capsys.readouterr().err


def test_gradient_accumulation_is_token_weighted(tmp_path, tiny_model_dir):
    """batch 8 x accumulation 1 and batch 2 x accumulation 4 take the same optimiser step on rows
    of very different lengths: same first loss, same gradient norm, same loss after the step."""
    data = _data(tmp_path)
    logs = {}
    for batch, accum in ((8, 1), (2, 4)):
        text, out = _config(tmp_path, f"b{batch}", data)
        text = text.replace("method: lora", "method: full").replace("max_steps: 12", "max_steps: 2")
        text = text.replace("batch_size: 2", f"batch_size: {batch}").replace(
            "gradient_accumulation: 2", f"gradient_accumulation: {accum}"
        )
        assert (
            main(["train", str(write_config(tmp_path / f"g{batch}.yaml", text.replace("MODEL", str(tiny_model_dir))))])
            == 0
        )
        logs[batch] = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    a, b = logs[8], logs[2]
    assert abs(a[0]["loss"] - b[0]["loss"]) < 1e-5 and abs(a[1]["loss"] - b[1]["loss"]) < 1e-5, (a, b)
    assert abs(a[0]["grad_norm"] - b[0]["grad_norm"]) < 1e-4 * a[0]["grad_norm"], (a[0], b[0])


def test_loss_png_is_redrawn_while_training(tmp_path, tiny_model_dir):
    """With training.live_plot_seconds, OUTPUT.partial/loss.png exists before the run ends (here: a
    run stopped by SIGTERM, which never reaches the final plot) and is a whole PNG."""
    text, out = _config(tmp_path, "live", _data(tmp_path))
    config = write_config(tmp_path / "e.yaml", text.replace("MODEL", str(tiny_model_dir)))
    stop_when(out, 3)
    assert main(["train", str(config), "training.live_plot_seconds=0.001"]) == 3
    partial = out.with_name("live.partial")
    png = (partial / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    assert not list(partial.glob(".loss.png.tmp*"))


def test_loss_png_is_not_drawn_during_training_when_live_plot_is_off(tmp_path, tiny_model_dir):
    text, out = _config(tmp_path, "quiet", _data(tmp_path))
    config = write_config(tmp_path / "f.yaml", text.replace("MODEL", str(tiny_model_dir)))
    stop_when(out, 3)
    assert main(["train", str(config), "training.live_plot_seconds=0"]) == 3
    assert not (out.with_name("quiet.partial") / "loss.png").exists()
