"""lm-evaluation-harness (eval.lm_eval / --lm-eval): the shipped local task runs offline (the hub
switched off) through lm-eval's Python API on the loaded model; `tunesmith train` reports it for the
base and the LoRA output side by side, and each figure equals an independent recomputation of the
option letters' log-likelihoods."""

from __future__ import annotations

import json

import pytest

from helpers.files import ROOT, write_config
from tunesmith.errors import ConfigError

TASKS = ROOT / "examples" / "lm_eval"

pytest.importorskip("lm_eval", reason="lm-evaluation-harness not installed (pip install 'tunesmith[lm-eval]')")


def test_shipped_task_data_equals_the_mcq_csvs():
    from tunesmith.eval.mcq import load_mcq

    bench = load_mcq(str(ROOT / "examples" / "data" / "mcq"))
    rows = [json.loads(line) for line in (TASKS / "data" / "mcq_test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["question"], [r[c] for c in "ABCD"], r["answer"]) for r in rows] == [
        (q.question, q.options, q.answer) for q in bench.questions
    ]
    dev = [
        json.loads(line)["question"]
        for line in (TASKS / "data" / "mcq_dev.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert dev == [q.question for s in sorted(bench.shots) for q in bench.shots[s]]


def test_task_errors(tmp_path):
    from tunesmith.config.schema import LmEvalConfig
    from tunesmith.eval.lm_eval import check_lm_eval

    broken = tmp_path / "t.yaml"
    broken.write_text("task: broken\ndataset_path: json\ndataset_kwargs: {data_files: {test: missing.jsonl}}\n")
    with pytest.raises(ConfigError, match=r"t.yaml: dataset_kwargs.data_files: .*missing.jsonl. matches no file"):
        check_lm_eval(LmEvalConfig(tasks=["broken"], include_path=str(tmp_path)))
    with pytest.raises(ConfigError, match="eval.lm_eval.include_path: .* is not a folder"):
        check_lm_eval(LmEvalConfig(tasks=["x"], include_path=str(tmp_path / "none")))


def _letter_accuracy(ref: str) -> float:
    """lm-eval's `acc` for the task, zero-shot, recomputed: the option whose continuation " X" is
    likeliest after the question text."""
    import torch

    from tunesmith.methods.load import load_for_inference

    loaded = load_for_inference(ref)
    tok, model = loaded.tokenizer, loaded.model
    ids = [tok.encode(f" {c}", add_special_tokens=False)[0] for c in "ABCD"]
    rows = [json.loads(line) for line in (TASKS / "data" / "mcq_test.jsonl").read_text(encoding="utf-8").splitlines()]
    correct = 0
    with torch.no_grad():
        for r in rows:
            text = f"{r['question'].strip()}\nA. {r['A']}\nB. {r['B']}\nC. {r['C']}\nD. {r['D']}\nAnswer:"
            logits = model(torch.tensor([tok.encode(text, add_special_tokens=False)])).logits[0, -1]
            correct += "ABCD"[int(torch.argmax(logits[ids]))] == r["answer"]
    return correct / len(rows)


@pytest.mark.trains
def test_train_reports_lm_eval_for_base_and_lora_output_offline(
    tiny_model_dir, facts_data, tmp_path, monkeypatch, capsys
):
    import datasets
    import huggingface_hub

    from tunesmith.cli import main

    # the hub switched off: any download would raise
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "c.yaml",
        f"""\
stage: sft
method: lora
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {facts_data["train"]}, max_length: 64}}
lora: {{r: 8, alpha: 16, dropout: 0.0}}
training: {{epochs: 2, learning_rate: 0.02, batch_size: 8, warmup: 0}}
eval: {{lm_eval: {{tasks: [tunesmith_mcq], include_path: {TASKS}, num_fewshot: 0}}}}
""",
    )
    assert main(["train", str(config)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "eval_results.json").read_text())
    base, tuned = results["base"], results["fine_tuned"]
    assert base["lm_eval/tunesmith_mcq/samples"] == tuned["lm_eval/tunesmith_mcq/samples"] == 36
    assert base["lm_eval/tunesmith_mcq/acc"] == pytest.approx(_letter_accuracy(str(tiny_model_dir)))
    assert tuned["lm_eval/tunesmith_mcq/acc"] == pytest.approx(_letter_accuracy(str(out)))
    assert "lm-eval tunesmith_mcq/acc" in printed
    page = (out / "eval_report.html").read_text()
    assert "lm-evaluation-harness" in page and "lm_eval/tunesmith_mcq/acc" in page
    # the same task from the command line, no config
    assert (
        main(
            [
                "eval",
                "--model",
                str(out),
                "--lm-eval",
                "tunesmith_mcq",
                "--lm-eval-tasks",
                str(TASKS),
                "--lm-eval-limit",
                "8",
                "--output",
                str(tmp_path / "e" / "eval.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "e" / "eval.json").read_text())["lm_eval/tunesmith_mcq/samples"] == 8
