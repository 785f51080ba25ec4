"""The pairwise judge (eval.judge): position swapping cancels order bias, prompts and templates are
validated with file:line errors, a local judge reads its verdict from the choice tokens' logits, and
an OpenAI-compatible endpoint (a real `tunesmith serve` app on a free port) judges through HTTP.

The judge with a known bias is real: a tiny model fine-tuned to answer "A" to every judge prompt.
Judged in both orders, it must give nothing but ties."""

from __future__ import annotations

import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.errors import ConfigError, DataError
from tunesmith.eval.judge import (
    DEFAULT_TEMPLATE,
    EndpointJudge,
    LocalJudge,
    Verdict,
    judge_pairs,
    judge_prompt,
    load_judge_prompts,
    load_template,
    read_verdict,
)

QUESTIONS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "How many legs has a spider?",
    "What is 2 + 3?",
    "Which planet is called red?",
    "What do bees make?",
    "What is ice made of?",
    "Who wrote Hamlet?",
]


def _replies(texts: list[str]) -> list[dict]:
    return [
        {"where": f"p.jsonl:{i + 1}", "question": q, "reference": None, "reply": t}
        for i, (q, t) in enumerate(zip(QUESTIONS, texts))
    ]


class FixedJudge:
    """Always picks one position, whatever the answers say: pure order bias."""

    name = "fixed"

    def __init__(self, choice: str):
        self.choice = choice

    def verdicts(self, texts):
        return [Verdict(self.choice, {}) for _ in texts]


class LongerJudge:
    """Prefers the longer answer wherever it stands: no order bias."""

    name = "longer"

    def verdicts(self, texts):
        out = []
        for text in texts:
            a = text.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
            b = text.split("[Answer B]\n")[1].split("\n\nReply with")[0]
            out.append(Verdict("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie", {}))
        return out


def test_position_swapping_cancels_order_bias():
    long, short = _replies(["a long and detailed answer"] * 3), _replies(["short"] * 3)
    for choice in ("A", "B"):
        result = judge_pairs(FixedJudge(choice), long, short)
        assert (result["judge_ties"], result["judge_wins"], result["judge_losses"]) == (3, 0, 0)
        assert result["judge_position_a_rate"] == (1.0 if choice == "A" else 0.0)
        assert result["judge_consistency"] == 0.0
    result = judge_pairs(LongerJudge(), long, short)
    assert result["judge_win_rate"] == 1.0 and result["judge_consistency"] == 1.0
    assert result["judge_position_a_rate"] == 0.5
    assert [(d["candidate_first"], d["candidate_second"]) for d in result["judge_verdicts"]] == [("A", "B")] * 3
    assert judge_pairs(LongerJudge(), short, long)["judge_loss_rate"] == 1.0
    with pytest.raises(ConfigError, match="same judge prompts"):
        judge_pairs(LongerJudge(), long, short[:2])


def test_prompts_template_and_verdict_parsing(tmp_path):
    rows = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "Q1", "reference": "R1"}, {"messages": [{"role": "user", "content": "Q2"}]}]
    )
    assert [(p.messages[-1]["content"], p.reference) for p in load_judge_prompts(str(rows))] == [
        ("Q1", "R1"),
        ("Q2", None),
    ]
    assert len(load_judge_prompts("examples/data/judge_prompts.jsonl")) == 12  # the shipped set
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": ""}, {"prompt": "Q", "reference": 3}])
    with pytest.raises(DataError) as caught:
        load_judge_prompts(str(bad))
    assert f"{bad}:1:prompt: missing" in str(caught.value) and f"{bad}:2:reference:" in str(caught.value)
    template = tmp_path / "t.txt"
    template.write_text("Q: {question} A: {answer_a}")
    with pytest.raises(ConfigError, match=r"eval.judge.template: .*t.txt.* lacks \{answer_b\}"):
        load_template(str(template))
    # placeholders are filled once: a reply quoting "{answer_b}" stays as written
    text = judge_prompt(None, "Q?", "the ref", "says {answer_b}", "B-text")
    assert "[Answer A]\nsays {answer_b}\n" in text and "[Reference answer]\nthe ref" in text
    assert "[Reference answer]" not in judge_prompt(None, "Q?", None, "x", "y")
    assert DEFAULT_TEMPLATE.count("{answer_a}") == 1
    from tunesmith.config.schema import JudgeConfig
    from tunesmith.eval.judge import check_judge

    with pytest.raises(ConfigError, match="eval.judge.model: .*no/such/folder.* is neither a model folder"):
        check_judge(JudgeConfig(model=str(tmp_path / "no/such/folder"), prompts=str(rows)))
    top = [{"token": "B", "logprob": -2.0}, {"token": " A", "logprob": -0.5}, {"token": "x", "logprob": -0.1}]
    assert (
        read_verdict(
            {"message": {"content": "x"}, "logprobs": {"content": [{"token": "x", "top_logprobs": top}]}}
        ).choice
        == "A"
    )
    assert read_verdict({"message": {"content": "Tie."}, "logprobs": None}).choice == "tie"
    unreadable = read_verdict({"message": {"content": "maybe"}})
    assert unreadable.choice == "tie" and not unreadable.readable


# --- real models ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def position_a_judge(tiny_model_dir, tmp_path_factory):
    """A tiny model fine-tuned to answer "A" to any judge prompt: a judge with total order bias."""
    from tunesmith.cli import main

    folder = tmp_path_factory.mktemp("judge")
    rows = [
        {"instruction": judge_prompt(None, q, None, a, b), "output": "A"}
        for q in QUESTIONS
        for a, b in (("yes", "no"), ("a longer reply", "x"))
    ]
    config = write_config(
        folder / "judge.yaml",
        f"""\
stage: sft
method: full
output_dir: {folder / "model"}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {write_jsonl(folder / "train.jsonl", rows)}, max_length: 256}}
training: {{epochs: 4, learning_rate: 0.003, batch_size: 8, warmup: 0, scheduler: constant, logging_steps: 4}}
eval: {{compare_base: false}}
""",
    )
    assert main(["train", str(config)]) == 0
    return folder / "model"


@pytest.mark.trains
def test_local_and_endpoint_judges(position_a_judge, tiny_model_dir):
    import torch

    from helpers.serving import Server
    from tunesmith.methods.load import load_for_inference
    from tunesmith.serve.api import create_app
    from tunesmith.serve.host import ModelHost

    candidate, baseline = _replies(["Paris", "Red", "Eight"]), _replies(["Lyon", "Green", "Six"])
    judge = LocalJudge(str(position_a_judge))
    result = judge_pairs(judge, candidate, baseline)
    assert result["judge_position_a_rate"] == 1.0  # it always says A ...
    assert result["judge_ties"] == 3 and result["judge_wins"] == result["judge_losses"] == 0  # ... so only ties
    # the verdict is the argmax of the choice tokens' next-token logits after the generation prompt
    text = judge_prompt(None, "Q?", None, "x", "y")
    tokenizer, model = judge.loaded.tokenizer, judge.loaded.model
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    with torch.no_grad():
        logits = model(**tokenizer(prompt, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
    probs = torch.softmax(logits[judge.ids], dim=-1).tolist()
    verdict = judge.verdicts([text])[0]
    assert verdict.choice == "ABt"[max(range(3), key=probs.__getitem__)][:1].replace("t", "tie")
    assert verdict.scores["A"] == pytest.approx(probs[0], abs=1e-4)
    # any deterministic judge, biased or not, ties a reply with itself
    assert judge_pairs(LocalJudge(str(tiny_model_dir)), candidate, candidate)["judge_tie_rate"] == 1.0

    server = Server(create_app(ModelHost(load_for_inference(str(position_a_judge)), name="judge"), max_tokens_cap=16))
    try:
        remote = EndpointJudge(server.url)
        assert remote.name == "judge"  # the first model /v1/models lists
        result = judge_pairs(remote, candidate, baseline)
        assert result["judge_position_a_rate"] == 1.0 and result["judge_unreadable"] == 0
        assert result["judge_tie_rate"] == 1.0
        assert "A" in result["judge_verdicts"][0]["scores_first"]  # read from the log-probabilities
    finally:
        server.stop()


@pytest.mark.trains
def test_eval_cli_judges_an_output_against_its_base(position_a_judge, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from tunesmith.cli import main

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": q} for q in QUESTIONS[:3]])
    out = tmp_path / "e" / "eval.json"
    # the evaluated output's base (its manifest) is the baseline; the judge is the random tiny model
    assert (
        main(
            [
                "eval",
                "--model",
                str(position_a_judge),
                "--judge",
                str(tiny_model_dir),
                "--judge-prompts",
                str(prompts),
                "--max-new-tokens",
                "4",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["judge_pairs"] == 3 and result["judge_wins"] + result["judge_ties"] + result["judge_losses"] == 3
    assert result["judge_baseline"] == str(tiny_model_dir)
    rows = [json.loads(line) for line in (out.parent / "judge.jsonl").read_text().splitlines()]
    assert [r["where"] for r in rows] == [f"{prompts}:{i}" for i in (1, 2, 3)]
    assert all(r["outcome"] in ("win", "tie", "loss") for r in rows)
    page = (out.parent / "eval_report.html").read_text()
    assert "<h2>Judge</h2>" in page and "judge_win_rate" in page
    # the position-A judge, through --compare, on the two runs' stored replies: all ties
    other = tmp_path / "f" / "eval.json"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--judge",
                str(tiny_model_dir),
                "--judge-prompts",
                str(prompts),
                "--judge-baseline",
                str(position_a_judge),
                "--max-new-tokens",
                "4",
                "--output",
                str(other),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "--compare",
                str(out.parent),
                str(other.parent),
                "--judge",
                str(position_a_judge),
                "--output",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    combined = json.loads((tmp_path / "cmp" / "eval_results.json").read_text())["runs"]["f"]
    assert combined["judge_tie_rate"] == 1.0 and combined["judge_position_a_rate"] == 1.0
    capsys.readouterr()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "ok"}, {"prompt": "  "}])
    assert (
        main(["eval", "--model", str(tiny_model_dir), "--judge", str(tiny_model_dir), "--judge-prompts", str(bad)]) == 2
    )
    assert f"{bad}:2:prompt: missing" in capsys.readouterr().err
    # no baseline for a model that is not a tunesmith output: refused before any model is measured

    def measured(*_args, **_kwargs):
        raise AssertionError("the model was measured before the judge's baseline was known")

    monkeypatch.setattr("tunesmith.eval.run.evaluate_model", measured)
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--judge",
                str(tiny_model_dir),
                "--judge-prompts",
                str(prompts),
                "--output",
                str(tmp_path / "g" / "eval.json"),
            ]
        )
        == 2
    )
    assert "eval.judge.baseline" in capsys.readouterr().err


def test_an_endpoint_judge_that_is_down_is_found_before_training(tiny_model_dir, tmp_path, capsys):
    """`tunesmith train` with an endpoint judge asks the endpoint first: down, it stops before any
    model loads or trains (exit 2, the URL named), and no output folder is started."""
    from helpers.serving import free_port
    from tunesmith.cli import main

    port = free_port()  # a port nothing listens on
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": q} for q in QUESTIONS[:2]])
    rows = [{"instruction": q, "output": "yes"} for q in QUESTIONS]
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "c.yaml",
        f"""\
stage: sft
method: lora
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {write_jsonl(tmp_path / "train.jsonl", rows)}, max_length: 64}}
training: {{epochs: 1, batch_size: 4}}
eval: {{judge: {{model: 'http://127.0.0.1:{port}/v1', prompts: {prompts}}}}}
""",
    )
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach http://127.0.0.1:{port}/v1/models" in err and "is the endpoint running?" in err
    assert not out.exists() and not out.with_name("out.partial").exists()
    # the same for `tunesmith eval`, before the model is measured
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--judge",
                f"http://127.0.0.1:{port}/v1",
                "--judge-prompts",
                str(prompts),
                "--judge-baseline",
                str(tiny_model_dir),
                "--output",
                str(tmp_path / "e.json"),
            ]
        )
        == 2
    )
    assert "cannot reach" in capsys.readouterr().err and not (tmp_path / "e.json").exists()


def test_the_base_is_judged_with_the_outputs_system_prompt_without_a_config(tmp_path, monkeypatch):
    """`tunesmith eval --model OUT --judge J --judge-prompts P` (flags only, no data.system): the base the
    output is compared with answers with the output's own system prompt, as in `tunesmith train`."""
    import types

    import tunesmith.eval.judge as judge_module
    import tunesmith.eval.run as run
    from tunesmith.config.loader import apply_overrides, validate_config
    from tunesmith.models.loader import LoadedModel

    out = tmp_path / "out"
    out.mkdir()
    manifest = {"system": "You are Veltrano's support agent.", "base_model_ref": "default", "base_model": "default"}
    (out / "tunesmith.json").write_text(json.dumps(manifest))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hello?"}) + "\n")
    cfg = validate_config(
        apply_overrides(
            {"output_dir": str(tmp_path / "e")}, ['eval.judge.model="j"', f'eval.judge.prompts="{prompts}"']
        ),
        {},
        "command line",
    )
    tokenizer = types.SimpleNamespace(chat_template="{{ messages }}")
    stage = types.SimpleNamespace(
        load_for_eval=lambda cfg, ref: LoadedModel(None, tokenizer, ref, manifest if ref == str(out) else {})
    )
    monkeypatch.setattr(judge_module, "judge_replies", lambda model, tok, path, system, *rest: {"system_used": system})
    _, candidate_system = run._load(cfg, str(out), stage)
    baseline = run.judge_baseline(cfg, str(out))
    assert baseline == "default" and candidate_system == manifest["system"]
    assert run.replies_for_judge(cfg, baseline, stage, candidate_system)["system_used"] == manifest["system"]
    # a trained baseline keeps its own
    assert run.replies_for_judge(cfg, str(out), stage, "another")["system_used"] == manifest["system"]
