"""scripts/gpu_check.sh's parts that run on a CPU: the model builder, the plan of steps, running a
step (ok, failed, timeout, skipped), the report and the argument checks. The GPU figures
themselves come only from a lent GPU machine (docs/benchmarks.md)."""

import json
import sys

import pytest
import torch

from tunesmith.benchmark.gpu_check import Outcome, Step, build_shape, main, plan, report, run_step


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
    assert list(steps) == ["bench-135m", "bench-1b", "flash-attention", "qlora", "liger", "fsdp", "deepspeed",
                           "export-bnb4", "export-gptq4", "export-awq4", "vllm"]
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


def test_a_step_is_ok_failed_timed_out_or_skipped_and_reported(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "bench.json").write_text(json.dumps({"results": {
        "baseline": {"precision": "bf16", "tokens_per_second": 1000.0, "peak_memory_mb": 2048, "mfu": 0.2},
        "tunesmith": {"precision": "bf16", "tokens_per_second": 1800.0, "peak_memory_mb": 1024, "mfu": 0.36,
                      "speed_ratio": 1.8}}}))
    py = [sys.executable, "-c"]
    outcomes = [run_step(Step("good", py + ["print('done')"], 30, result_file="r/bench.json"), tmp_path),
                run_step(Step("bad", py + ["import sys; print('boom'); sys.exit(3)"], 30), tmp_path),
                run_step(Step("slow", py + ["import time; time.sleep(30)"], 1), tmp_path),
                run_step(Step("absent", py + ["pass"], 30, needs="no_such_package_xyz"), tmp_path)]
    assert [o.status for o in outcomes] == ["ok", "failed", "timeout", "skipped"]
    assert outcomes[1].detail.startswith("exit 3: boom") and (tmp_path / "bad.log").read_text().strip() == "boom"
    table = report(outcomes, {"gpu": "NVIDIA H100", "torch": "2.13", "cuda": "13.0"})
    assert "GPU check on NVIDIA H100 (torch 2.13, CUDA 13.0)" in table
    assert ("| good | ok |" in table and "baseline (bf16): 1000 tok/s, MFU 20.0%, peak 2.0 GiB; "
            "tunesmith (bf16): 1800 tok/s, MFU 36.0%, peak 1.0 GiB, 1.80x |" in table)
    assert "| absent | skipped | 0 | `no_such_package_xyz` is not installed (carry its wheel) |" in table
    assert isinstance(Outcome("x", "ok").metrics, dict)


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
    from tunesmith.benchmark.gpu_check import vllm_probe

    assert vllm_probe(str(tiny_model_dir), port=8097, timeout=120) == 1
    assert "the server exited with 2 before answering" in capsys.readouterr().out
