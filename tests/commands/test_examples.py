"""The shipped examples: every method and every stage has one, each passes the pre-flight check
as written (or, for what needs a GPU, is refused with the reason on a machine without CUDA), and
the virtual-token examples really train a few steps on a tiny model.

test_config.py checks that every example parses, opens with its command and names existing data.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from helpers.files import ROOT
from tunesmith.config import load_config
from tunesmith.config.schema import METHOD_NAMES, STAGE_NAMES
from tunesmith.errors import ConfigError
from tunesmith.stages.registry import check_stage, run_stage

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def gpu_package(cfg) -> str | None:
    """The package an example that runs on CUDA GPUs only needs (qlora, fsdp/deepspeed engines);
    None for the examples that run anywhere."""
    if cfg.method == "qlora":
        return "bitsandbytes"
    return {"fsdp": "torch", "deepspeed": "deepspeed"}.get(cfg.training.engine)


def refusal_without_cuda(cfg) -> str:
    """What the pre-flight check says for such an example on a machine without CUDA."""
    if cfg.method == "qlora":
        return r"method `qlora` needs a CUDA GPU and bitsandbytes \(no CUDA GPU is visible\)"
    if cfg.training.engine == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        # the missing package is named first (runtime/engines.py), with its CUDA build as the reason to install it
        return "training.engine=deepspeed needs the deepspeed package.*CUDA"
    return f"training.engine={cfg.training.engine} needs CUDA GPUs and none is visible here"


@pytest.fixture()
def in_repository(monkeypatch, default_model_dir):
    """Run from the repository root (the examples' data paths are relative to it), with the embedded
    default model already converted into the session's cache (the examples name `default`)."""
    monkeypatch.chdir(ROOT)


def test_every_method_and_every_stage_has_an_example():
    configs = [load_config(path) for path in EXAMPLES]
    assert set(METHOD_NAMES) - {cfg.method for cfg in configs} == set()
    assert set(STAGE_NAMES) - {cfg.stage for cfg in configs} == set()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_the_preflight_check(path, in_repository):
    cfg = load_config(path.relative_to(ROOT))
    package = gpu_package(cfg)
    if package and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=refusal_without_cuda(cfg)):
            check_stage(cfg)
        return
    if package:
        pytest.importorskip(package)
    check_stage(cfg)


@pytest.mark.trains
@pytest.mark.parametrize("name", ["sft_ptuning", "sft_prefix"])
def test_virtual_token_example_trains_on_a_tiny_model(name, in_repository, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    cfg = load_config(
        f"examples/{name}.yaml",
        [
            f"model.name_or_path={tiny_model_dir}",
            "training.max_steps=2",
            "training.logging_steps=1",
            "eval.qa=null",
            f"output_dir={out}",
        ],
    )
    check_stage(cfg)
    result = run_stage(cfg)

    assert result.output_dir == out and out.is_dir() and not out.with_name("out.partial").exists()
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert (manifest["stage"], manifest["method"]) == ("sft", name.removeprefix("sft_"))
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["peft_type"] == {"sft_ptuning": "P_TUNING", "sft_prefix": "PREFIX_TUNING"}[name]
    assert adapter["num_virtual_tokens"] == cfg.prompt.num_virtual_tokens
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in steps) == 2
