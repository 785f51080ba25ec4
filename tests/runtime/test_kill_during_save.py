"""SIGKILL in the middle of a checkpoint save never costs more than the last checkpoint.

A training process (a child, so it can really be killed) is killed with SIGKILL at one point of
saving checkpoint-4: half-way through the weights, half-way through the optimiser state, after the
manifest's temp file but before its rename, or while rotation deletes the older checkpoint. The
faults are injected by the child's test harness (wrapping the functions that write those files);
tunesmith's code is unchanged. Then `training.resume=auto` must pick the newest checkpoint that
is whole, and the resumed run must be the same run: every logged loss equal to an uninterrupted
run's (1e-6) and the same final weights.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from helpers.configs import tiny_run
from helpers.files import write_jsonl
from tunesmith.cli import main
from tunesmith.runtime.checkpoints import MANIFEST, checkpoints, newest_valid

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2

CHILD = textwrap.dedent("""\
    import os, shutil, signal, sys
    from pathlib import Path

    import torch
    import transformers

    point, config = sys.argv[1], sys.argv[2]
    target = "checkpoint-4"

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def cut(path):  # a write interrupted half-way
        path = Path(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    if point == "weights":  # the Trainer saves the weights first, the optimiser next
        saving = transformers.Trainer._save_optimizer_and_scheduler
        def after_weights(self, output_dir):
            if output_dir.endswith(target):
                cut(Path(output_dir) / "adapter_model.safetensors")
                die()
            return saving(self, output_dir)
        transformers.Trainer._save_optimizer_and_scheduler = after_weights
    elif point == "optimizer":
        torch_save = torch.save
        def save(obj, f, *args, **kwargs):
            torch_save(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)) and target in str(f) and str(f).endswith("optimizer.pt"):
                cut(f)
                die()
        torch.save = save
    elif point == "manifest":
        replace = os.replace
        def before_rename(src, dst, *args, **kwargs):
            if str(src).endswith("checkpoint.json.tmp") and target in str(src):
                die()
            return replace(src, dst, *args, **kwargs)
        os.replace = before_rename
    elif point == "rotation":
        rmtree = shutil.rmtree
        def half_deleted(path, *args, **kwargs):
            if Path(path).name == "checkpoint-2":
                (Path(path) / "adapter_model.safetensors").unlink()
                die()
            return rmtree(path, *args, **kwargs)
        shutil.rmtree = half_deleted

    from tunesmith.cli import main
    sys.exit(main(["train", config, *sys.argv[3:]]))
    """)


def _config(tmp_path, name, tiny_model_dir):
    rows = [
        {"instruction": f"Question number {i}?" + " more" * (i % 5), "output": f"Answer {i}." + " yes" * (i % 3)}
        for i in range(18)
    ]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    return tiny_run(
        tmp_path,
        tiny_model_dir,
        data,
        name=name,
        stage="sft",
        method="lora",
        data={"cache": False},
        lora={"r": 4, "alpha": 8, "dropout": 0.1},
        training={
            "max_steps": 8,
            "gradient_accumulation": 2,
            "learning_rate": 0.005,
            "group_by_length": False,
            "seed": 3,
        },
    )


def _losses(out):
    return {
        r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    }


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("straight")
    config, out = _config(root, "straight", tiny_model_dir)
    assert main(["train", str(config), "training.save_steps=2"]) == 0
    return out


@pytest.mark.parametrize("point,survivor", [("weights", 2), ("optimizer", 2), ("manifest", 2), ("rotation", 4)])
def test_sigkill_during_a_save_resumes_from_the_last_whole_checkpoint(
    tmp_path, tiny_model_dir, straight, point, survivor, capsys
):
    config, out = _config(tmp_path, "run", tiny_model_dir)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    overrides = ["training.save_steps=2", f"training.save_total_limit={1 if point == 'rotation' else 5}"]
    child = subprocess.run(
        [sys.executable, str(script), point, str(config), *overrides], capture_output=True, text=True, timeout=600
    )  # same environment (thread count) as the uninterrupted run: same numerics
    assert child.returncode == -9, child.stderr[-3000:]  # killed, not exited
    partial = out.with_name("run.partial")
    assert not out.exists()  # a killed run never looks finished
    broken = partial / "checkpoint-4" if point != "rotation" else partial / "checkpoint-2"
    assert broken.is_dir() and newest_valid(partial)[0] == partial / f"checkpoint-{survivor}"
    if point == "manifest":
        assert (broken / (MANIFEST + ".tmp")).is_file() and not (broken / MANIFEST).is_file()

    assert main(["train", str(config), *overrides, "training.resume=auto"]) == 0
    assert f"resuming from {partial / f'checkpoint-{survivor}'}" in capsys.readouterr().out
    expected, resumed = _losses(straight), _losses(out)
    assert sorted(resumed) == sorted(expected) == list(range(1, 9))
    for step in expected:
        assert abs(expected[step] - resumed[step]) < 1e-6, (step, expected[step], resumed[step])
    a, b = load_file(str(straight / "adapter_model.safetensors")), load_file(str(out / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not checkpoints(out)
