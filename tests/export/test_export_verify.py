"""Checked after export: the output's eval.qa questions answered by the trained model and by the
artifact in its own runtime, written into the export's manifest; bad QA settings refused."""

import json

import pytest

from tunesmith.errors import ModelError
from tunesmith.export import export_model
from tunesmith.export.compare import chat_ids, torch_greedy
from tunesmith.models.tiny import build_tiny_model


@pytest.fixture()
def trained(tmp_path, default_model_dir):
    """A finished full-model output whose config has eval.qa: one question the model answers (its own
    greedy reply holds the answer) and one it cannot."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model(default_model_dir, tmp_path / "run", hidden_size=32, num_layers=1, initializer_range=0.3)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    reply = tokenizer.decode(
        torch_greedy(model, tokenizer)(chat_ids(tokenizer, "Who runs the lab?", None), 48), skip_special_tokens=True
    ).strip()
    assert reply, "the tiny model's greedy reply is empty; choose another question"
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        json.dumps({"question": "Who runs the lab?", "answers": [reply[:4]]})
        + "\n"
        + json.dumps({"question": "Where is the archive?", "answers": ["Room 7B"]})
        + "\n"
    )
    (folder / "config.yaml").write_text(f"stage: sft\nmethod: full\neval:\n  qa: {qa}\n  max_new_tokens: 48\n")
    (folder / "tunesmith.json").write_text(json.dumps({"stage": "sft", "method": "full", "finished_at": "now"}))
    return folder, qa


def test_the_configs_qa_is_rerun_on_the_export(trained, tmp_path):
    folder, qa = trained
    out = export_model(str(folder), str(tmp_path / "merged"), max_drop=0.0)
    after = json.loads((out / "tunesmith.json").read_text())["after_export"]
    assert after["measure"] == "qa_accuracy" and after["qa_file"] == str(qa) and after["qa_total"] == 2
    # the same weights loaded back: the same replies, so the same marks
    assert after["trained_qa_accuracy"] == after["artifact_qa_accuracy"] == 0.5
    assert after["drop"] == 0 and after["changed_questions"] == []


def test_qa_settings_are_checked_before_anything_is_written(trained, tmp_path):
    folder, qa = trained
    with pytest.raises(ModelError, match="--qa `missing.jsonl` is not a file"):
        export_model(str(folder), str(tmp_path / "a"), qa="missing.jsonl")
    (folder / "config.yaml").write_text("eval:\n  qa: data/elsewhere.jsonl\n")
    with pytest.raises(ModelError, match=r"config.yaml: eval.qa `data/elsewhere.jsonl` is not a file.*--qa FILE"):
        export_model(str(folder), str(tmp_path / "b"))
    with pytest.raises(ModelError, match="--max-drop 1.5: a fraction between 0 and 1"):
        export_model(str(folder), str(tmp_path / "c"), qa=str(qa), max_drop=1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa.jsonl", "run"]  # nothing written
