"""scripts/gpu_check.py's parts that run on a CPU: the model builder, the plan of steps, running a
step (ok, failed, timeout, skipped), the summary and its exit code, the report and the argument
checks. The GPU figures themselves come only from a lent GPU machine (docs/benchmarks.md). The
script is not part of the package, so it is loaded from its path."""

import ast
import importlib.util
import json
import sys

import pytest
import torch

from helpers.files import ROOT

_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up while the script loads
_spec.loader.exec_module(gpu_check)
Outcome, Step, build_shape, main, plan, report, run_step, summary = (
    gpu_check.Outcome,
    gpu_check.Step,
    gpu_check.build_shape,
    gpu_check.main,
    gpu_check.plan,
    gpu_check.report,
    gpu_check.run_step,
    gpu_check.summary,
)


def test_build_shape_gives_a_random_model_of_the_shape_with_the_tokenizer(tmp_path, default_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = build_shape(default_model_dir, tmp_path / "tiny", "tiny")
    config = AutoConfig.from_pretrained(out)
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (64, 2, 2)
    assert config.vocab_size == len(AutoTokenizer.from_pretrained(out)) == 49152
    model = AutoModelForCausalLM.from_pretrained(out)
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(SystemExit, match="unknown shape `huge`"):
        build_shape(default_model_dir, tmp_path / "x", "huge")


def test_the_plan_names_every_step_with_its_overrides(tmp_path):
    steps = {s.name: s for s in plan(tmp_path, {"smollm2-135m": tmp_path / "m135", "llama-1b": tmp_path / "m1b"})}
    assert list(steps) == [
        "bench-135m",
        "bench-1b",
        "flash-attention",
        "qlora",
        "liger",
        "fsdp",
        "deepspeed",
        "export-bnb4",
        "export-gptq4",
        "export-awq4",
        "vllm",
    ]
    assert steps["export-bnb4"].argv[3:5] == ["export", str(tmp_path / "m135")]
    assert steps["export-bnb4"].argv[-2:] == ["--quant", "bnb4"] and steps["export-bnb4"].needs == "bitsandbytes"
    assert steps["export-awq4"].argv[-4:] == ["--quant", "awq4", "--calibration", str(tmp_path / "rows.jsonl")]
    assert steps["export-gptq4"].needs == steps["export-awq4"].needs == "llmcompressor"
    assert steps["bench-1b"].argv[3:6] == ["bench", "--model", str(tmp_path / "m1b")]
    assert steps["qlora"].argv[-1] == "method=qlora" and steps["qlora"].needs == "bitsandbytes"
    assert steps["flash-attention"].argv[-1] == "model.attn_implementation=flash_attention_2"
    assert steps["liger"].argv[-1] == "training.liger=true" and steps["fsdp"].argv[-1] == "training.engine=fsdp"
    config = steps["fsdp"].argv[4]
    assert "model: {name_or_path: " + str(tmp_path / "m135") + "}" in open(config).read()
    assert steps["vllm"].argv[-2:] == ["--vllm-probe", str(tmp_path / "m135")] and steps["vllm"].needs == "vllm"
    assert steps["vllm"].argv[1] == str(ROOT / "scripts" / "gpu_check.py")  # the probe runs this script again
    assert {name for name, step in steps.items() if step.required} == {"bench-135m", "bench-1b", "fsdp"}


def test_a_step_is_ok_failed_timed_out_or_skipped_and_reported(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "bench.json").write_text(
        json.dumps(
            {
                "results": {
                    "baseline": {"precision": "bf16", "tokens_per_second": 1000.0, "peak_memory_mb": 2048, "mfu": 0.2},
                    "tunesmith": {
                        "precision": "bf16",
                        "tokens_per_second": 1800.0,
                        "peak_memory_mb": 1024,
                        "mfu": 0.36,
                        "speed_ratio": 1.8,
                    },
                }
            }
        )
    )
    py = [sys.executable, "-c"]
    outcomes = [
        run_step(Step("good", py + ["print('done')"], 30, result_file="r/bench.json"), tmp_path),
        run_step(Step("bad", py + ["import sys; print('boom'); sys.exit(3)"], 30), tmp_path),
        run_step(Step("slow", py + ["import time; time.sleep(30)"], 1), tmp_path),
        run_step(Step("absent", py + ["pass"], 30, needs="no_such_package_xyz"), tmp_path),
    ]
    assert [o.status for o in outcomes] == ["ok", "failed", "timeout", "skipped"]
    assert outcomes[1].detail.startswith("exit 3: boom") and (tmp_path / "bad.log").read_text().strip() == "boom"
    table = report(outcomes, {"gpu": "NVIDIA H100", "torch": "2.13", "cuda": "13.0"})
    assert "GPU check on NVIDIA H100 (torch 2.13, CUDA 13.0)" in table
    assert (
        "| good | ok |" in table
        and "baseline (bf16): 1000 tok/s, MFU 20.0%, peak 2.0 GiB; "
        "tunesmith (bf16): 1800 tok/s, MFU 36.0%, peak 1.0 GiB, 1.80x |"
        in table
    )
    assert "| absent | skipped | 0 | `no_such_package_xyz` is not installed (carry its wheel) |" in table
    assert "1 passed, 0 skipped, 3 failed (of 4 steps)" in table  # `absent` is a required step that did not run
    assert isinstance(Outcome("x", "ok").metrics, dict)


def test_the_summary_counts_what_ran_and_fails_when_a_required_step_did_not(tmp_path):
    """A skipped optional step leaves the check passing, with its reason; a required step whose
    package is missing (or that is not implemented) fails it, as a failed step does."""
    py = [sys.executable, "-c"]
    good = run_step(Step("bench", py + ["pass"], 30), tmp_path)
    optional = run_step(Step("qlora", py + ["pass"], 30, needs="no_such_package_xyz", required=False), tmp_path)
    text, code = summary([good, optional])
    assert code == 0 and text.splitlines() == [
        "1 passed, 1 skipped, 0 failed (of 2 steps)",
        "- skipped: qlora (optional): `no_such_package_xyz` is not installed (carry its wheel)",
    ]

    required = run_step(Step("fsdp", py + ["pass"], 30, needs="no_such_package_xyz"), tmp_path)
    unwritten = run_step(Step("later", [], 30, note="written later", required=True), tmp_path)
    text, code = summary([good, optional, required, unwritten])
    assert code == 1 and text.splitlines()[0] == "1 passed, 1 skipped, 2 failed (of 4 steps)"
    assert (
        "- failed: fsdp: a required step did not run (skipped: `no_such_package_xyz` is not installed "
        "(carry its wheel))"
    ) in text
    assert "- failed: later: a required step did not run (not implemented: written later)" in text

    failed = run_step(Step("bench-1b", py + ["import sys; sys.exit(4)"], 30), tmp_path)
    text, code = summary([good, failed, optional])
    assert code == 1 and text.splitlines()[:2] == [
        "1 passed, 1 skipped, 1 failed (of 3 steps)",
        "- failed: bench-1b: failed, exit 4: ",
    ]


def test_the_check_is_a_script_that_nothing_in_the_package_imports():
    package = ROOT / "src" / "tunesmith"
    assert not list(package.rglob("gpu_check.py"))
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""] + [a.name for a in node.names]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any("gpu_check" in n for n in names), f"{path.relative_to(ROOT)} imports the GPU check script"


def test_arguments_are_checked_before_anything_is_built(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--tokenizer", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert "--tokenizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--tokenizer", str(tmp_path), "--shapes", "huge", "--out", str(tmp_path / "o")])
    assert "unknown huge" in capsys.readouterr().err
    assert not (tmp_path / "o" / "models").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the probe's failure path on a machine without a GPU")
def test_the_vllm_probe_reports_a_server_that_never_answered(tmp_path, tiny_model_dir, capsys):
    """The `vllm` step's own process: here `serve --engine vllm` refuses (no CUDA GPU) and exits, and the
    probe says so instead of waiting out its time limit."""
    assert gpu_check.vllm_probe(str(tiny_model_dir), port=8097, timeout=120) == 1
    assert "the server exited with 2 before answering" in capsys.readouterr().out
