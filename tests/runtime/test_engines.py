"""`training.engine` builds the engine's configuration from one key, and refuses at config time
what cannot run here (FSDP/DeepSpeed without a GPU, DeepSpeed without its package)."""

import importlib.util
import json

import pytest
import torch
from transformers import TrainingArguments

from helpers.files import write_config, write_jsonl
from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.runtime.engines import engine_arguments
from tunesmith.stages.registry import check_stage

GPU = torch.device("cuda")  # only its type is read: what the options would be on a GPU machine


def _cfg(tmp_path, tiny_model_dir, training: str, method: str = "full"):
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": "Hi?", "output": "Hello."}] * 4)
    path = write_config(
        tmp_path / "c.yaml",
        f"""\
stage: sft
method: {method}
output_dir: {tmp_path / "out"}
model:
  name_or_path: {tiny_model_dir}
data:
  train: {data}
training:
{training}""",
    )
    return load_config(path)


@pytest.mark.parametrize("stage,offload", [(3, False), (2, True)])
def test_fsdp_options_are_accepted_by_the_trainer_arguments(tmp_path, tiny_model_dir, stage, offload):
    cfg = _cfg(tmp_path, tiny_model_dir, f"  engine: fsdp\n  zero_stage: {stage}\n  offload: {str(offload).lower()}\n")
    options = engine_arguments(cfg, tmp_path, GPU)
    assert options["fsdp"] is True
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **options)
    plugin = args.fsdp_plugin_args  # what accelerate's FSDP plugin is built from
    assert plugin["fsdp_version"] == 2
    assert plugin["reshard_after_forward"] is (stage == 3)  # 3: full shard; 2: shard grads + optimiser only
    assert plugin.get("cpu_offload", False) is offload
    assert plugin["state_dict_type"] == "FULL_STATE_DICT"


def test_deepspeed_config_is_built_and_written(tmp_path, tiny_model_dir, monkeypatch):
    from tunesmith.runtime import engines

    cfg = _cfg(tmp_path, tiny_model_dir, "  engine: deepspeed\n  zero_stage: 3\n  offload: true\n")
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match="pip install deepspeed"):
            engine_arguments(cfg, tmp_path, GPU)
        # the config it would write, were the package there
        monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: object())
    options = engine_arguments(cfg, tmp_path / "work", GPU)
    written = json.loads((tmp_path / "work" / "deepspeed_config.json").read_text())
    assert written == options["deepspeed"]
    zero = written["zero_optimization"]
    assert (
        zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    )
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert written["train_micro_batch_size_per_gpu"] == "auto" and written["optimizer"]["params"]["lr"] == "auto"
    two = engines.deepspeed_config(cfg.training.model_copy(update={"zero_stage": 2, "offload": False}))
    assert two["zero_optimization"]["stage"] == 2 and "offload_optimizer" not in two["zero_optimization"]
    assert "optimizer" not in two  # without offload the Trainer's own optimiser is used


def test_engines_are_refused_at_config_time_with_the_reason(tmp_path, tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = _cfg(tmp_path, tiny_model_dir, "  engine: fsdp\n  nproc: 2\n")
    with pytest.raises(ConfigError, match="training.engine=fsdp needs CUDA GPUs.*silently train plain DDP"):
        check_stage(cfg)
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match="pip install deepspeed"):
            check_stage(_cfg(tmp_path, tiny_model_dir, "  engine: deepspeed\n"))
    with pytest.raises(ConfigError, match="training.zero_stage applies to engine fsdp or deepspeed"):
        _cfg(tmp_path, tiny_model_dir, "  zero_stage: 2\n")
    adapter = _cfg(tmp_path, tiny_model_dir, "  engine: fsdp\n", method="adapter")
    with pytest.raises(ConfigError, match="does not support method `adapter`"):
        engine_arguments(adapter, tmp_path, GPU)
    with pytest.raises(ConfigError, match="forgetting.l2 is not available with training.engine=fsdp"):
        from tunesmith.runtime.forgetting import check_l2

        check_l2(
            cfg.model_copy(update={"forgetting": cfg.forgetting.model_copy(update={"l2": 0.1})}),
            TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without a GPU")
def test_gpu_speed_options_are_refused_without_a_gpu(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, "  liger: true\n")
    with pytest.raises(ConfigError, match="training.liger: Liger kernels are Triton GPU kernels and need a CUDA GPU"):
        check_stage(cfg)
    cfg = _cfg(tmp_path, tiny_model_dir, "  epochs: 1\n").model_copy(deep=True)
    cfg.model.attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="flash_attention_2 needs a CUDA GPU .* use sdpa"):
        check_stage(cfg)


def test_compile_and_liger_reach_the_trainer_arguments(tmp_path, tiny_model_dir):
    from tunesmith.runtime.arguments import training_arguments

    cfg = _cfg(tmp_path, tiny_model_dir, "  compile: true\n")
    check_stage(cfg)  # inductor is part of the CPU build
    args = training_arguments(cfg, tmp_path, torch.device("cpu"), torch.float32, False)
    assert args.torch_compile is True and args.use_liger_kernel is False


def test_eval_steps_replaces_the_per_epoch_validation(tmp_path, tiny_model_dir):
    from tunesmith.runtime.arguments import training_arguments

    per_epoch = training_arguments(
        _cfg(tmp_path, tiny_model_dir, "  epochs: 1\n"), tmp_path, torch.device("cpu"), torch.float32, True
    )
    assert per_epoch.eval_strategy == "epoch"
    every = training_arguments(
        _cfg(tmp_path, tiny_model_dir, "  eval_steps: 40\n"), tmp_path, torch.device("cpu"), torch.float32, True
    )
    assert every.eval_strategy == "steps" and every.eval_steps == 40
    assert (
        training_arguments(
            _cfg(tmp_path, tiny_model_dir, "  eval_steps: 40\n"), tmp_path, torch.device("cpu"), torch.float32, False
        ).eval_strategy
        == "no"
    )  # no validation set
