"""KTO stage: labelled completions are validated; training raises desirable over undesirable."""

import json

import pytest

from helpers.checks import assert_only_last_layer_trained
from helpers.files import write_config, write_jsonl
from tunesmith.cli import main
from tunesmith.data.preference import load_kto
from tunesmith.errors import DataError

pytestmark = pytest.mark.trains  # trains or samples: scripts/test.sh runs it again with the CPU restricted to AVX2

GOOD, BAD = "Certainly, here is a careful answer.", "No. Figure it out."


def _rows(questions):
    return [
        row
        for q in questions
        for row in ({"prompt": q, "completion": GOOD, "label": True}, {"prompt": q, "completion": BAD, "label": False})
    ]


def test_kto_rows_are_validated(tmp_path):
    rows = [
        {"prompt": "q", "completion": "a", "label": True},
        {"prompt": "q", "completion": "a", "label": "maybe"},
        {"prompt": "q", "label": False},
        {"prompt": "q", "completion": "b", "label": "false"},
    ]
    path = write_jsonl(tmp_path / "k.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_kto([path])
    assert f"{path}:2:label: expected true (desirable) or false (undesirable), got 'maybe'" in str(err.value)
    assert f"{path}:3:completion: missing required field" in str(err.value)
    only_good = write_jsonl(tmp_path / "g.jsonl", [rows[0]])
    with pytest.raises(DataError, match=r"no undesirable \(label false\) row"):
        load_kto([only_good])
    good = load_kto([write_jsonl(tmp_path / "ok.jsonl", [rows[0], rows[3]])])
    assert [r["label"] for r in good] == [True, False]
    assert good[0]["completion"] == [{"role": "assistant", "content": "a"}]


KTO_METHODS = {  # method: (its section, learning rate, epochs)
    "lora": ("lora: {r: 8, alpha: 16, dropout: 0.0}", 0.01, 3),
    "full": ("", 0.001, 2),
    "freeze": ("freeze: {trainable_layers: 1}", 0.005, 2),
}


@pytest.mark.parametrize("method", list(KTO_METHODS))
def test_kto_raises_the_held_out_margin(tmp_path, tiny_model_dir, method, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", _rows([f"Question {i}: how do I do task {i}?" for i in range(8)]))
    val = write_jsonl(tmp_path / "val.jsonl", _rows(["Can you explain photosynthesis?", "How do tides work?"]))
    out = tmp_path / "out"
    section, lr, epochs = KTO_METHODS[method]
    config = write_config(
        tmp_path / "kto.yaml",
        f"""\
stage: kto
method: {method}
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {train}, validation: {val}, max_length: 64}}
{section}
training: {{epochs: {epochs}, learning_rate: {lr}, batch_size: 4, logging_steps: 1, warmup: 0, scheduler: constant}}
""",
    )
    assert main(["train", str(config)]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["fine_tuned"]["kto_margin"] > results["base"]["kto_margin"] + 1.0, results
    assert results["fine_tuned"]["kto_margin"] > 0
    if method == "freeze":
        assert_only_last_layer_trained(out, tiny_model_dir)
    if method != "lora":
        return
    capsys.readouterr()
    assert main(["train", str(config), "training.batch_size=1", f"output_dir={tmp_path / 'o2'}"]) == 2
    assert "training.batch_size: KTO needs at least 2 rows per batch" in capsys.readouterr().err
