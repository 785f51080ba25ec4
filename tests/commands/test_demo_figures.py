"""The main demo, run as shipped on the embedded model: its domain and general figures against stated floors.

The README quotes what `tunesmith train examples/demo_veltrano.yaml` measures; this test runs that
command (about 13 minutes on 2 CPU cores) and holds it to floors set below the figures measured on
a 2-core AVX2-only EPYC (docs/benchmarks.md, issue 15), with room for other CPUs' kernels:

- held-out questions (72 unseen phrasings of 36 fictional facts): the base knows none of them, the
  fine-tuned model answers at least DOMAIN_FLOOR of them;
- general questions (38 simple ones, English and Chinese): the fine-tuned model answers at most
  GENERAL_SLACK fewer than the base it started from (the recipe's self-replay is meant to keep it);
- the validation loss falls to under a fifth of the base's.

Marked slow, not `trains`: scripts/test.sh's second pass (the `trains` tests again with the CPU
restricted to AVX2) does not run it a second time.
"""

import json

import pytest

from helpers.files import ROOT
from tunesmith.cli import main

DOMAIN_FLOOR = 50  # of 72 (measured: 55 and 58)
GENERAL_SLACK = 4  # questions of 38 (measured: 3 fewer and 1 more than the base)


@pytest.mark.slow
def test_the_demo_learns_the_facts_and_keeps_general_ability(tmp_path, model_cache, capsys):
    out = tmp_path / "demo"
    code = main(
        ["train", str(ROOT / "examples" / "demo_veltrano.yaml"), f"output_dir={out}", f"model.cache_dir={model_cache}"]
    )
    assert code == 0
    results = json.loads((out / "eval_results.json").read_text())
    base, tuned = results["base"], results["fine_tuned"]
    assert base["qa_total"] == tuned["qa_total"] == 72 and base["general_qa_total"] == 38
    assert base["qa_correct"] == 0
    assert tuned["qa_correct"] >= DOMAIN_FLOOR, tuned["qa_correct"]
    assert tuned["general_qa_correct"] >= base["general_qa_correct"] - GENERAL_SLACK, (
        base["general_qa_correct"],
        tuned["general_qa_correct"],
    )
    assert tuned["val_loss"] < base["val_loss"] / 5
    printed = capsys.readouterr().out
    assert "| held-out QA accuracy" in printed and "general QA" in printed
