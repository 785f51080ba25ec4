"""Hyper-parameter search: trials run as ordinary outputs, the best config is written."""

import json

import pytest
import yaml

from helpers.files import write_config
from tunesmith.cli import main

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _config(tmp_path, tiny_model_dir, facts_data, space):
    return write_config(
        tmp_path / "s.yaml",
        f"""\
stage: sft
method: lora
output_dir: {tmp_path / "search"}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {facts_data["train"]}
  validation: {facts_data["validation"]}
  max_length: 64
training:
  epochs: 2
  batch_size: 8
  mixed_precision: "no"
search:
  trials: 3
  seed: 1
  space:
{space}""",
    )


def test_search_finds_the_better_learning_rate(tmp_path, tiny_model_dir, facts_data, capsys):
    space = (
        "    training.learning_rate: {type: categorical, choices: [0.00001, 0.02]}\n"
        "    lora.r: {type: int, low: 2, high: 8}\n"
    )
    config = _config(tmp_path, tiny_model_dir, facts_data, space)
    assert main(["search", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "| trial | training.learning_rate | lora.r | eval_loss | state |" in printed
    summary = json.loads((tmp_path / "search" / "search_results.json").read_text())
    assert len(summary["trials"]) == 3
    assert summary["best_params"]["training.learning_rate"] == 0.02  # 1e-5 barely moves in 2 epochs
    assert summary["best_value"] == min(t["eval_loss"] for t in summary["trials"] if t["eval_loss"] is not None)
    for trial in summary["trials"]:
        assert (tmp_path / "search" / f"trial-{trial['trial']}" / "tunesmith.json").is_file()
    best = yaml.safe_load((tmp_path / "search" / "best.yaml").read_text())
    assert best["training"]["learning_rate"] == 0.02 and best["output_dir"].endswith("best") and best["search"] is None


def test_search_refuses_unknown_keys_before_any_trial(tmp_path, tiny_model_dir, facts_data, capsys):
    config = _config(tmp_path, tiny_model_dir, facts_data, "    training.lr: {low: 0.001, high: 0.01}\n")
    assert main(["search", str(config)]) == 2
    assert "training.lr: unknown key (did you mean training.learning_rate?)" in capsys.readouterr().err
    assert not (tmp_path / "search").exists()


def test_a_search_whose_trials_all_fail_ends_with_what_happened_to_each(tmp_path, tiny_model_dir, facts_data, capsys):
    # max_length 9-10 leaves no room for any reply: every trial fails on its data, before a model loads
    space = "    data.max_length: {type: int, low: 9, high: 10}\n"
    config = _config(tmp_path, tiny_model_dir, facts_data, space).read_text().replace("trials: 3", "trials: 2")
    config = write_config(tmp_path / "fail.yaml", config)
    assert main(["search", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # a searched data key that changes how validation rows are tokenised is named before the first trial
    assert err.index("warning: search.space: data.max_length can change the validation rows") < err.index("trial 0")
    assert "search: none of the 2 trials completed, so there is no best config" in err
    for trial in (0, 1):
        assert f"  trial {trial} (data.max_length=" in err
    assert err.count("): failed: DataError: ") == 2 and "cuts the trained reply to nothing" in err
    summary = json.loads((tmp_path / "search" / "search_results.json").read_text())
    assert summary["best_trial"] is None and [t["state"] for t in summary["trials"]] == ["failed", "failed"]


def test_the_message_of_a_search_whose_trials_were_all_pruned():
    from pathlib import Path

    from tunesmith.search import no_trial_completed

    rows = [
        {
            "trial": 0,
            "lora.r": 4,
            "state": "pruned",
            "reason": "at epoch 1, eval_loss 2.5000 was worse than the median of earlier trials",
        },
        {"trial": 1, "lora.r": 8, "state": "pruned"},
    ]
    message = no_trial_completed(rows, ["lora.r"], Path("out/search_results.json"))
    assert "  trial 0 (lora.r=4): pruned: at epoch 1, eval_loss 2.5000 was worse than the median" in message
    assert "  trial 1 (lora.r=8): pruned" in message and "Every trial was pruned" in message


def test_pruning_reports_the_first_evaluation_of_each_epoch_once():
    """Evaluations several times an epoch: Optuna gets one value per epoch (the first at or past its
    start), never a second value for a step it already has (which it would ignore with a warning)."""
    import warnings
    from types import SimpleNamespace

    import optuna
    from transformers import TrainerControl

    from tunesmith.search import _Report

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    report = _Report(trial, enabled=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch, loss in [(0.34, 3.0), (0.67, 2.8), (1.0, 2.5), (1.34, 2.4), (1.67, 2.3), (2.0, 2.1)]:
            report.on_evaluate(None, SimpleNamespace(epoch=epoch), TrainerControl(), metrics={"eval_loss": loss})
    study.tell(trial, 2.1)
    assert study.trials[0].intermediate_values == {0: 3.0, 1: 2.5, 2: 2.1}
    assert report.last == (2, 2.1) and not report.pruned
