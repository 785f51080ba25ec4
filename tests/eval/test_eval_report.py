"""The evaluation report: `tunesmith eval` without a config runs every suite against a model folder
and writes eval.json, the per-row files and a self-contained eval_report.html; `--compare` puts
several outputs in one report; the before/after table gains the suites' rows."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from helpers.files import ROOT, write_jsonl
from tunesmith.eval.report import render_report
from tunesmith.eval.run import compare_table

EXAMPLES = ROOT / "examples/data"


class Tables(HTMLParser):
    """Collects the text of every table cell, and any reference to another file."""

    def __init__(self):
        super().__init__()
        self.cells, self.external, self._in = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("td", "th"):
            self._in = True
            self.cells.append("")
        if tag in ("script", "link", "img", "iframe") or attrs.get("src"):
            self.external.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.cells[-1] += data


def _result(bleu, mcq, fail, prediction):
    return {
        "model": "m",
        "gen_bleu": bleu,
        "gen_chrf": 40.0,
        "mcq_accuracy": mcq,
        "mcq_category/STEM": mcq,
        "edge_fail/no_stop": fail,
        "edge_fail/any": fail,
        "consistency_agreement": 0.5,
        "gen_predictions": [
            {
                "where": "g.jsonl:1",
                "prompt": "Q <b>",
                "reference": "R & S",
                "references": ["R & S"],
                "prediction": prediction,
                "scores": {"chrf": 10.0, "bleu": 1.0},
            }
        ],
        "edge_details": [
            {
                "kind": "empty",
                "prompt": "",
                "reply": "loop",
                "error": None,
                "tokens": 48,
                "failed": ["no_stop"] if fail else [],
            }
        ],
        "consistency_details": [
            {"id": "g1", "agreement": 0.5, "answer": "paris", "phrasings": 2, "replies": 4, "samples": []}
        ],
    }


def test_report_tables_escape_and_change():
    page = render_report(
        [("base", _result(10.0, 0.25, 1.0, "<script>x</script>")), ("tuned", _result(20.0, 0.75, 0.0, "R & S"))]
    )
    parser = Tables()
    parser.feed(page)
    assert parser.external == []  # self-contained: no script, stylesheet or image to load
    cells = parser.cells
    row = cells.index("gen_bleu")
    assert cells[row + 1 : row + 4] == ["10.0000", "20.0000", "+10"]
    row = cells.index("edge_fail/any")
    assert cells[row + 1 : row + 4] == ["100.0%", "0.0%", "-1"]
    assert 'class="num better">-1<' in page  # fewer failures is better
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Failing probes: base (1 of 1)" in page and "Failing probes: tuned (0 of 1)" in page
    assert "g1" in cells and "Accuracy per category" in page


def test_before_after_table_has_suite_rows():
    table = compare_table(_result(10.0, 0.25, 1.0, "a"), _result(20.0, 0.75, 0.0, "b"))
    assert re.search(r"\| BLEU \(sacreBLEU, corpus\)\s*\| 10.00 \| 20.00 \|", table)
    assert re.search(r"\| multiple-choice accuracy\s*\| 25.0% \| 75.0% \|", table)
    assert re.search(r"\| edge-case probes failing\s*\| 100.0% \| 0.0% \|", table)


@pytest.mark.trains
def test_eval_without_config_and_compare(tiny_model_dir, tmp_path):
    from tunesmith.cli import main

    gen = write_jsonl(tmp_path / "gen.jsonl", [{"prompt": "Who runs the lab?", "reference": "Dr. Okonjo."}])
    cons = write_jsonl(tmp_path / "cons.jsonl", [{"id": "a", "prompt": "Hi"}, {"id": "a", "prompt": "Hello"}])
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    for out in (out_a, out_b):
        assert (
            main(
                [
                    "eval",
                    "--model",
                    str(tiny_model_dir),
                    "--generation",
                    str(gen),
                    "--mcq",
                    str(EXAMPLES / "mcq"),
                    "--mcq-shots",
                    "1",
                    "--consistency",
                    str(cons),
                    "--edge-cases",
                    str(EXAMPLES / "edge_cases.jsonl"),
                    "--max-new-tokens",
                    "4",
                    "eval.consistency_samples=2",
                    "--output",
                    str(out / "eval.json"),
                ]
            )
            == 0
        )
    result = json.loads((out_a / "eval.json").read_text())
    assert result["mcq_total"] == 36 and result["gen_rows"] == 1 and result["consistency_groups"] == 1
    assert result["edge_probes"] == 18 and "edge_fail/special_tokens" in result
    for name in (
        "predictions.jsonl",
        "mcq_predictions.jsonl",
        "consistency.jsonl",
        "edge_cases.jsonl",
        "eval_report.html",
    ):
        assert (out_a / name).is_file(), name
    assert main(["eval", "--compare", str(out_a), str(out_b), "--output", str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / "eval_report.html").read_text()
    parser = Tables()
    parser.feed(page)
    row = parser.cells.index("mcq_accuracy")
    assert parser.cells[row + 1] == parser.cells[row + 2] == f"{result['mcq_accuracy']:.1%}"  # same model twice
    assert json.loads((tmp_path / "cmp" / "eval_results.json").read_text())["runs"].keys() == {"a", "b"}
    assert main(["eval"]) == 2  # nothing to measure: a clear error, no traceback


@pytest.mark.trains
def test_train_writes_the_report_for_the_configured_suites(tiny_model_dir, facts_data, tmp_path, capsys):
    from helpers.files import write_config
    from tunesmith.cli import main

    gen = write_jsonl(
        tmp_path / "gen.jsonl", [{"prompt": "What is the code word?", "reference": "The code word is Bluefinch."}]
    )
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "c.yaml",
        f"""\
stage: sft
method: full
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}}}
data: {{train: {facts_data["train"]}, max_length: 96}}
training: {{epochs: 1, batch_size: 8, logging_steps: 1}}
eval: {{generation: {gen}, mcq: {EXAMPLES / "mcq" / "test" / "arithmetic_test.csv"}, max_new_tokens: 4,
       judge: {{model: {tiny_model_dir}, prompts: {gen}}}}}
""",
    )
    assert main(["train", str(config)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\| BLEU \(sacreBLEU, corpus\)\s*\| \d+\.\d\d \| \d+\.\d\d \|", printed)
    assert re.search(r"\| multiple-choice accuracy\s*\| \d+\.\d% \| \d+\.\d% \|", printed)
    for part in ("base", "fine_tuned"):
        assert (out / "eval" / part / "predictions.jsonl").is_file() and (
            out / "eval" / part / "mcq_predictions.jsonl"
        ).is_file()
    page = (out / "eval_report.html").read_text()
    assert "out (base)" in page and "mcq_subject/arithmetic" in page
    assert re.search(r"\| judge: wins against the base\s*\| - \| \d+\.\d% \|", printed)  # fine-tuned vs base
    assert "<h2>Judge</h2>" in page and (out / "eval" / "fine_tuned" / "judge.jsonl").is_file()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q"}])
    assert (
        main(["train", str(config), f"eval.generation={bad}", "overwrite_output=true"]) == 2
    )  # refused before training
    assert f"{bad}:1:reference: missing" in capsys.readouterr().err
