"""Continued pre-training: raw text in, lower perplexity on held-out domain text out."""

import json

import pytest

from helpers.checks import assert_only_last_layer_trained
from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.data.formats import load_conversations
from tunesmith.data.text import load_documents, tokenize_documents
from tunesmith.errors import DataError

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2

DOMAIN = [
    "The Veltrano cafeteria is called Copper Kettle and opens at seven.",
    "Veltrano engineers are on call for shifts of forty-one hours.",
    "Visitors to Veltrano park on Level 4-Gamma of the garage.",
    "The Veltrano annual all-hands meeting is called Driftwood Summit.",
]


def test_documents_from_txt_files_and_text_rows(tmp_path, tokenizer):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("first document\nsecond line", encoding="utf-8")
    write_jsonl(folder / "b.jsonl", [{"body": "from a row"}])
    docs = load_documents([folder], columns={"text": "body"})
    assert docs == [(f"{folder / 'a.txt'}:1", "first document\nsecond line"), (f"{folder / 'b.jsonl'}:1", "from a row")]
    long_text = " ".join(["word"] * 50)
    rows = tokenize_documents(tokenizer, [("x:1", long_text), ("y:1", "short")], max_length=16)
    eos = tokenizer.eos_token_id
    assert all(len(r.input_ids) <= 16 and r.labels == r.input_ids for r in rows)
    assert [r.where for r in rows].count("y:1") == 1  # a block never mixes documents
    assert rows[-1].input_ids[-1] == eos and sum(r.input_ids.count(eos) for r in rows) == 2


def test_bad_text_rows_and_stage_mismatch_are_named(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "ok"}, {"text": ""}, {"instruction": "q", "output": "a"}])
    with pytest.raises(DataError) as err:
        load_documents([path])
    assert f"{path}:2:text: empty" in str(err.value)
    assert f"{path}:3:text: missing or not a string" in str(err.value)
    with pytest.raises(DataError, match=rf"{path}:1:text: a raw-text row: it trains with `stage: pt`"):
        load_conversations([path])


PT_METHODS = {  # method: (its section, learning rate)
    "lora": ("lora: {r: 8, alpha: 16, dropout: 0.0}", 0.01),
    "full": ("", 0.002),
    "freeze": ("freeze: {trainable_layers: 1}", 0.003),
}


@pytest.mark.parametrize("method", list(PT_METHODS))
def test_pt_lowers_held_out_perplexity(tmp_path, tiny_model_dir, method):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(DOMAIN * 3):
        (docs / f"{i:02d}.txt").write_text(text)
    val = write_jsonl(tmp_path / "val.jsonl", [{"text": t} for t in DOMAIN[:2]])
    out = tmp_path / "out"
    section, lr = PT_METHODS[method]
    config = write_config(
        tmp_path / "pt.yaml",
        f"""\
stage: pt
method: {method}
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {docs}, validation: {val}, max_length: 32}}
{section}
training: {{epochs: 8, learning_rate: {lr}, batch_size: 4, warmup: 0, scheduler: constant, logging_steps: 1}}
""",
    )
    assert main(["train", str(config)]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["val_perplexity"] < 0.5 * results["base"]["val_perplexity"], results
    manifest = json.loads((out / "tunesmith.json").read_text())
    assert manifest["stage"] == "pt" and manifest["data"]["train_rows"] == 12
    if method == "freeze":
        assert_only_last_layer_trained(out, tiny_model_dir)


def test_pt_trains_a_base_model_without_a_chat_template(tmp_path, tiny_model_dir, capsys):
    """Continued pre-training is mostly done on bases with no chat template (gpt2, most pre-trained
    models): raw text needs none, so the run goes through and saves none; measuring chats (eval.qa) on
    such a base is refused before anything trains, naming the key."""
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    config_file = base / "tokenizer_config.json"
    settings = json.loads(config_file.read_text())
    settings.pop("chat_template", None)
    config_file.write_text(json.dumps(settings))
    for name in ("chat_template.jinja", "chat_template.json"):
        (base / name).unlink(missing_ok=True)
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in DOMAIN * 2])
    val = write_jsonl(tmp_path / "val.jsonl", [{"text": t} for t in DOMAIN[:2]])
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Where do visitors park?", "answer": "4-Gamma"}])
    text = f"""\
stage: pt
method: lora
output_dir: {tmp_path / "out"}
model: {{name_or_path: {base}}}
data: {{train: {docs}, validation: {val}, max_length: 32}}
training: {{max_steps: 2, batch_size: 4, mixed_precision: "no"}}
"""
    assert main(["data", "check", str(write_config(tmp_path / "pt.yaml", text))]) == 0
    assert main(["train", str(tmp_path / "pt.yaml"), "eval.compare_base=false"]) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["fine_tuned"]["val_perplexity"] > 0
    assert (
        main(
            [
                "train",
                str(write_config(tmp_path / "qa.yaml", text + f"eval: {{qa: {qa}}}\n")),
                "output_dir=" + str(tmp_path / "out2"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "eval.qa: asked as chats, but the tokenizer of" in err and "has no chat template" in err
    assert not (tmp_path / "out2").exists()
    mcq = tmp_path / "mcq"
    assert main(["train", str(tmp_path / "qa.yaml"), "output_dir=" + str(tmp_path / "out3"), f"eval.mcq={mcq}"]) == 2
    assert "eval.qa, eval.mcq: asked as chats" in capsys.readouterr().err
