"""Two training processes (DDP over gloo, launched by `training.nproc=2`) take the same steps as
one process with the same global batch."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.configs import tiny_run
from helpers.files import write_jsonl
from tunesmith.cli import main

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, tiny_model_dir, capsys):
    # 8 rows of different lengths; every step uses all of them (global batch 8), so the order
    # in which the processes receive rows cannot matter, only how the gradient is combined
    rows = [
        {"instruction": f"Question {i}?" + " more" * i, "output": f"Answer {i}." + " yes" * (i % 3)} for i in range(8)
    ]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    outs = {}
    for nproc, batch in ((1, 8), (2, 4)):
        config, out = tiny_run(
            tmp_path,
            tiny_model_dir,
            data,
            name=f"p{nproc}",
            stage="sft",
            method="full",
            training={
                "max_steps": 3,
                "batch_size": batch,
                "nproc": nproc,
                "learning_rate": 0.001,
                "group_by_length": False,
            },
        )
        assert main(["train", str(config)]) == 0, capsys.readouterr()
        outs[nproc] = out
    printed = capsys.readouterr().out
    assert "launching 2 training processes" in printed
    manifest = json.loads((outs[2] / "tunesmith.json").read_text())
    assert manifest["stage"] == "sft"
    one = load_file(str(outs[1] / "model.safetensors"))
    two = load_file(str(outs[2] / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for name, tensor in one.items():
        moved = (tensor - base[name]).abs().max().item()
        assert torch.allclose(tensor, two[name], atol=1e-5, rtol=0), (
            name,
            (tensor - two[name]).abs().max().item(),
            moved,
        )
    assert any(not torch.equal(one[k], base[k]) for k in one)
