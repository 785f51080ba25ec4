"""NaN policy: `error` names the step; `skip` leaves weights, optimiser and scheduler untouched."""

import copy
import json

import pytest
import torch
from transformers import TrainerControl, TrainerState, get_cosine_schedule_with_warmup

from helpers.configs import tiny_run
from helpers.files import write_config
from tunesmith.cli import main
from tunesmith.runtime.nan_guard import NonFiniteGuard, NonFiniteLoss

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


def _step(model, optimizer, scheduler, guard, state, poison):
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()
    if poison:
        model.weight.grad[0, 0] = float("nan")
    guard.on_pre_optimizer_step(None, state, TrainerControl(), model=model, optimizer=optimizer, lr_scheduler=scheduler)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    guard.on_step_end(None, state, TrainerControl())
    state.global_step += 1


def test_skip_leaves_weights_optimiser_and_scheduler_untouched():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 2, 10)
    guard, state = NonFiniteGuard("skip"), TrainerState()
    state.epoch = 0.0
    _step(model, optimizer, scheduler, guard, state, poison=False)
    before = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), scheduler.state_dict())
    _step(model, optimizer, scheduler, guard, state, poison=True)
    assert guard.skipped == [2]
    assert all(torch.equal(v, before[0][k]) for k, v in model.state_dict().items())
    after_opt = optimizer.state_dict()
    for key, value in before[1]["state"].items():
        assert all(torch.equal(value[k], after_opt["state"][key][k]) for k in value)
    assert scheduler.state_dict() == before[2]
    _step(model, optimizer, scheduler, guard, state, poison=False)  # training goes on
    assert not torch.equal(model.weight, before[0]["weight"]) and torch.isfinite(model.weight).all()
    logs = {}
    guard.on_log(None, state, TrainerControl(), logs=logs)
    assert logs == {"nan_skipped": 1}


def test_error_names_the_step_and_parameter():
    model = torch.nn.Linear(8, 8)
    state = TrainerState()
    state.global_step, state.epoch = 6, 1.5
    model(torch.randn(2, 8)).sum().backward()
    model.bias.grad[0] = float("inf")
    with pytest.raises(NonFiniteLoss, match=r"non-finite gradient at optimiser step 7 \(epoch 1.50\), first in `bias`"):
        NonFiniteGuard("error").on_pre_optimizer_step(None, state, TrainerControl(), model=model)


def test_a_diverging_run_stops_with_the_step_named(tmp_path, tiny_model_dir, facts_data, capsys):
    config, out = tiny_run(
        tmp_path,
        tiny_model_dir,
        facts_data["train"],
        name="out",
        stage="sft",
        method="full",
        training={
            "max_steps": 8,
            "batch_size": 4,
            "learning_rate": 1.0e30,
            "max_grad_norm": 1.0e30,
            "logging_steps": None,
        },
    )
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "non-finite gradient at optimiser step" in err and "training.nan=skip" in err
    assert not out.exists()


def _four_logged_steps(tmp_path, out, tiny_model_dir, facts_data, report: str):
    """A 4-step LoRA run on the facts data that logs every step to `report`."""
    config, _ = tiny_run(
        tmp_path,
        tiny_model_dir,
        facts_data["train"],
        name=report,
        output_dir=str(out),
        stage="sft",
        method="lora",
        training={"batch_size": 4, "report_to": [report], "mixed_precision": None},
    )
    return config


def test_tensorboard_logging(tmp_path, tiny_model_dir, facts_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    config = _four_logged_steps(tmp_path, out, tiny_model_dir, facts_data, "tensorboard")
    assert main(["train", str(config)]) == 0
    (run,) = (out / "runs").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 4 and all(v > 0 for v in losses)


def test_a_missing_logger_is_a_config_error(tmp_path, tiny_model_dir, facts_data, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec  # this machine has mlflow: make it look absent
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    config = write_config(
        tmp_path / "m.yaml",
        f"""\
output_dir: {tmp_path / "m"}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {facts_data["train"]}
training:
  report_to: [mlflow]
""",
    )
    assert main(["train", str(config)]) == 2
    assert "training.report_to: `mlflow` is not installed; pip install 'tunesmith[mlflow]'" in capsys.readouterr().err


def test_mlflow_logging_to_a_local_store_beside_the_output(tmp_path, tiny_model_dir, facts_data, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # restored (unset) after the test
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    out = tmp_path / "runs" / "mlf"
    config = _four_logged_steps(tmp_path, out, tiny_model_dir, facts_data, "mlflow")
    assert main(["train", str(config)]) == 0
    import os

    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert str(tmp_path / "runs") in uri  # the store sits beside the output folder, not in the working directory
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_name == "mlf" and run.info.status == "FINISHED"
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
    logged = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 4 and losses == pytest.approx(logged)
