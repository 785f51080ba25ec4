"""Precision policy (runtime/precision.py) and the run-time estimate (runtime/eta.py).

`auto` picks bf16 only where it is native and honours an instruction-set restriction
(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA); an explicit bf16/fp16 on a CPU without native support
warns with the measured cost and the fix; a run prints its device, precision and reason, then an
estimate of its training time; no shipped example forces a precision.
"""

import logging
from types import SimpleNamespace

import pytest
import torch
import yaml

from helpers.files import ROOT, write_config
from tunesmith.cli import main
from tunesmith.runtime import precision
from tunesmith.runtime.eta import TrainingTimeEstimate
from tunesmith.runtime.precision import choose_precision, cpu_has_native_bf16, resolve_precision

BF16_CPU = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
AVX2_CPU = {"avx2", "fma"}
CPU = torch.device("cpu")


@pytest.fixture()
def cpu_flags(monkeypatch):
    """Pretend to run on a CPU with the given /proc/cpuinfo flags, with no ISA restriction set."""
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def use(flags):
        monkeypatch.setattr(precision, "_cpu_flags", lambda: set(flags))

    return use


@pytest.mark.parametrize(
    "env,native",
    [
        ({}, True),
        ({"ATEN_CPU_CAPABILITY": "avx2"}, False),
        ({"ATEN_CPU_CAPABILITY": "default"}, False),
        ({"ATEN_CPU_CAPABILITY": "avx512"}, True),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
        ({"ONEDNN_MAX_CPU_ISA": "avx512_core_amx"}, True),
        ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    ],
)
def test_auto_honours_an_instruction_set_restriction(cpu_flags, monkeypatch, env, native):
    # On a CPU with AVX512-BF16/AMX, auto is bf16 autocast, unless the instruction set is capped below
    # it: then torch and oneDNN run bf16 emulated, and auto must mean fp32 ("no").
    cpu_flags(BF16_CPU)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cpu_has_native_bf16() is native
    assert resolve_precision("auto", torch.float32) == ("bf16" if native else "no")
    choice = choose_precision("auto", torch.float32, CPU)
    assert choice.warning is None
    assert ("no native bf16" in choice.reason) is not native and "(auto)" in choice.reason, choice.reason
    if not native:
        assert f"restricted by {next(iter(env.items()))[0]}" in choice.reason, choice.reason


def test_auto_is_fp32_on_an_avx2_cpu(cpu_flags):
    cpu_flags(AVX2_CPU)
    assert not cpu_has_native_bf16() and resolve_precision("auto", torch.float32) == "no"
    choice = choose_precision("auto", torch.float32, CPU)
    assert choice.reason.startswith("device cpu (") and "AVX2, no native bf16" in choice.reason
    assert choice.reason.endswith("precision fp32 (auto)") and choice.warning is None
    # weights loaded in bf16 keep bf16 autocast; that too is emulated here, so it warns (naming model.dtype)
    assert "model.dtype" in choose_precision("auto", torch.bfloat16, CPU).warning


@pytest.mark.parametrize("asked", ["bf16", "fp16"])
def test_explicit_half_precision_on_a_cpu_without_it_warns(cpu_flags, asked):
    cpu_flags(AVX2_CPU)
    choice = choose_precision(asked, torch.float32, CPU)
    assert choice.precision == asked  # the user's choice is kept, with a warning that says what it costs
    warning = choice.warning
    assert warning.startswith(f"training.mixed_precision: {asked} on this CPU (")
    assert "emulated" in warning and f"took {precision.EMULATED_SLOWDOWN[asked]} the time of fp32" in warning
    assert precision.EMULATED_MEASURED_ON in warning
    assert "Use training.mixed_precision=auto" in warning
    cpu_flags(BF16_CPU)
    assert (choose_precision("bf16", torch.float32, CPU).warning is None) is True
    assert choose_precision("fp16", torch.float32, CPU).warning is not None  # AVX512-BF16 has no fp16 kernels
    assert choose_precision("no", torch.float32, CPU).warning is None


def test_eta_callback_prints_an_estimate(capsys, monkeypatch):
    clock = iter([100.0, 102.0, 104.0, 106.0, 108.0, 110.0])  # train begins at 100; steps take 2 s
    monkeypatch.setattr("tunesmith.runtime.eta.time.monotonic", lambda: next(clock))
    estimate = TrainingTimeEstimate(steps=3)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=61)
    estimate.on_train_begin(None, state, None)
    for step in range(1, 6):
        state.global_step = step
        estimate.on_step_end(None, state, None)
    lines = capsys.readouterr().out.splitlines()
    # steps 2-4 took 6 s: 2 s/step; 57 steps left = 1.9 min; 8 s so far + 114 s = 2.0 min in all
    assert lines == ["[tunesmith] ~2.0 s/step (steps 2-4), estimated training time 2.0 min for 61 steps (1.9 min left)"]


@pytest.mark.trains
def test_a_run_prints_device_precision_reason_and_estimate(
    tmp_path, tiny_model_dir, facts_data, cpu_flags, capsys, caplog
):
    # Through the real CLI, on a CPU pretended to have no native bf16: training.mixed_precision=bf16 is kept
    # but warned about; the precision line and the time estimate are printed before and during training.
    cpu_flags(AVX2_CPU)
    config = write_config(
        tmp_path / "c.yaml",
        f"""\
stage: sft
method: lora
output_dir: {tmp_path / "out"}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {facts_data["train"]}, max_length: 96}}
lora: {{r: 4}}
training: {{max_steps: 6, batch_size: 2, logging_steps: 1, mixed_precision: bf16}}
""",
    )
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        assert main(["train", str(config)]) == 0
    out = capsys.readouterr().out
    assert "[tunesmith] device cpu (" in out and "no native bf16" in out
    assert "precision bf16 (training.mixed_precision=bf16)" in out
    assert "estimated training time" in out and "for 6 steps" in out, out
    assert any("emulated" in r.getMessage() and "training.mixed_precision" in r.getMessage() for r in caplog.records)


def test_no_example_forces_a_precision():
    # `auto` decides: a forced bf16 made the demo ~30x slower on CPUs without native bf16 (issue 14).
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert "mixed_precision" not in (config.get("training") or {}), path.name
