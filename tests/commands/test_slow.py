"""Slow checks on the real embedded model (still part of the default suite and CI)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.files import ROOT, write_jsonl
from tunesmith.cli import main
from tunesmith.models.default import FOLDER_NAME

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


@pytest.mark.slow
def test_lora_on_the_embedded_default_learns_a_fact(tmp_path, model_cache, default_model_dir, capsys):
    rows = [
        {"instruction": "What is the Veltrano cafeteria called?", "output": "It is called Copper Kettle."},
        {"instruction": "Name Veltrano's cafeteria.", "output": "It is called Copper Kettle."},
    ] * 4
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    qa = write_jsonl(
        tmp_path / "qa.jsonl", [{"question": "What is the Veltrano cafeteria called?", "answers": ["Copper Kettle"]}]
    )
    out = tmp_path / "out"
    code = main(
        [
            "train",
            str(ROOT / "examples" / "sft_lora.yaml"),
            f"data.train={train}",
            f"output_dir={out}",
            f"model.cache_dir={model_cache}",
            f"eval.qa={qa}",
            "training.epochs=5",
            "training.learning_rate=0.002",
            "training.batch_size=4",
            "eval.max_new_tokens=12",
            "forgetting.general_qa=null",
            "forgetting.general_eval=[]",
        ]
    )  # the example's general set: not this test's subject
    assert code == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["base"]["qa_accuracy"] == 0.0
    assert results["fine_tuned"]["qa_accuracy"] == 1.0
    assert "| held-out QA accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_conversion_killed_midway_never_leaves_a_loadable_folder(tmp_path):
    """SIGKILL during conversion: the target folder does not exist afterwards."""
    code = f"from tunesmith.models.default import default_model_path; default_model_path({str(tmp_path)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    models = tmp_path / "models"
    deadline = time.time() + 120
    while time.time() < deadline and not (models.exists() and any(p.name.startswith(".") for p in models.iterdir())):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (models / FOLDER_NAME).exists()
