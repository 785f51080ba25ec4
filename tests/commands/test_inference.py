"""Using a trained output: `tunesmith eval` writes JSON, `tunesmith chat` streams replies."""

import io
import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.methods.load import load_for_inference
from tunesmith.serve.chat import chat_loop

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("trained")
    # both QA phrasings are trained: the tests check the eval plumbing, not a 2-layer model's paraphrasing
    rows = [{"instruction": q, "output": "Bluefinch."} for q in ("What is the code word?", "Name the code word.")] * 8
    train = write_jsonl(root / "train.jsonl", rows)
    qa = write_jsonl(
        root / "qa.jsonl",
        [
            {"question": "What is the code word?", "answers": ["Bluefinch"]},
            {"question": "Name the code word.", "answer": "bluefinch"},
        ],
    )
    out = root / "out"
    config = write_config(
        root / "c.yaml",
        f"""\
# tunesmith train c.yaml
method: lora
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, validation: {train}, system: Be brief.}}
lora: {{r: 8, alpha: 16, dropout: 0.0}}
training: {{epochs: 10, learning_rate: 0.02, batch_size: 4, warmup: 0, scheduler: constant}}
eval: {{qa: {qa}, max_new_tokens: 6, compare_base: false}}
""",
    )
    assert main(["train", str(config)]) == 0
    return config, out


def test_eval_cli_writes_json(trained, tmp_path, capsys):
    config, out = trained
    target = tmp_path / "result.json"
    assert main(["eval", str(config), "--output", str(target)]) == 0
    result = json.loads(target.read_text())
    assert result["model"] == str(out)
    assert result["qa_total"] == 2 and len(result["qa_details"]) == 2
    assert result["val_loss"] < 1.0 and result["val_perplexity"] > 1.0
    assert result["system"] == "Be brief."  # taken from the trained output
    summary = json.loads(capsys.readouterr().out.split("\n[tunesmith]")[0])
    assert "qa_details" not in summary and summary["qa_accuracy"] == result["qa_accuracy"]


def test_eval_of_the_base_model_scores_worse(trained, tmp_path, tiny_model_dir):
    config, _ = trained
    assert main(["eval", str(config), "--model", str(tiny_model_dir), "--output", str(tmp_path / "b.json")]) == 0
    assert main(["eval", str(config), "--output", str(tmp_path / "a.json")]) == 0
    before = json.loads((tmp_path / "b.json").read_text())
    after = json.loads((tmp_path / "a.json").read_text())
    assert after["val_loss"] < before["val_loss"]
    assert after["qa_accuracy"] == 1.0 and before["qa_accuracy"] == 0.0


def test_chat_streams_the_learned_reply_with_history(trained):
    _, out = trained
    loaded = load_for_inference(str(out))
    stdin, stdout = (
        io.StringIO("What is the code word?\n/reset\nWhat is the code word?\n/exit\nnever read\n"),
        io.StringIO(),
    )
    chat_loop(loaded, loaded.system, max_new_tokens=6, stdin=stdin, out=stdout)
    text = stdout.getvalue()
    assert text.count("assistant> Bluefinch") == 2
    assert "(history cleared)" in text


def test_chat_cli_reads_piped_input(trained, monkeypatch, capsys):
    _, out = trained
    monkeypatch.setattr("sys.stdin", io.StringIO("What is the code word?\n"))
    assert main(["chat", "--model", str(out), "--max-new-tokens", "6"]) == 0
    assert "Bluefinch" in capsys.readouterr().out


def test_qa_counts_and_names_wrong_replies_cut_at_the_token_budget(tmp_path, monkeypatch, caplog):
    from tunesmith.eval import qa
    from tunesmith.eval.generate import Generated

    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"Q{i}?", "answers": ["Ledgerleaf"]} for i in range(4)])
    replies = [
        Generated("It is Ledgerleaf.", "", 6, True),
        Generated("The wiki is called Ledger", "", 8, False),
        Generated("No idea.", "", 4, True),
        Generated("It is Ledgerleaf, and", "", 8, False),
    ]
    monkeypatch.setattr(qa, "generate", lambda model, tokenizer, prompts, n, b: replies[: len(prompts)])
    monkeypatch.setattr(qa, "question_prompt", lambda tokenizer, question, system: question)
    with caplog.at_level("WARNING", logger="tunesmith.eval.qa"):
        result = qa.qa_accuracy(None, None, str(path), None, max_new_tokens=8, batch_size=4)
    assert result["qa_correct"] == 2 and result["qa_cut_wrong"] == 1  # a cut reply that holds its answer counts
    assert [d.get("cut", False) for d in result["qa_details"]] == [False, True, False, True]
    assert f"{path}: 1 of the 2 wrong replies were cut at max_new_tokens=8" in caplog.text
    assert "raise eval.max_new_tokens" in caplog.text
