"""Generation metrics (eval.generation): the numbers equal sacrebleu's and rouge-score's own on the
written predictions, Chinese is tokenised/segmented, LLaMA-Factory's character BLEU-4 is reproduced,
and bad rows are named by file:line."""

from __future__ import annotations

import json

import pytest

from helpers.files import write_config, write_jsonl
from tunesmith.errors import DataError
from tunesmith.eval.textmetrics import bleu4_char_llamafactory, generation_scores, load_generation_rows

PREDICTIONS = ["The code word is Bluefinch.", "Dr. Okonjo runs the lab today", "It is in Room 9.", "它叫青梧坊。"]
REFERENCES = [
    ["The code word is Bluefinch."],
    ["Dr. Okonjo runs the lab.", "The lab is run by Dr. Okonjo."],
    ["The archive is in Room 7B."],
    ["维特拉诺的咖啡角叫青梧坊。"],
]


def _independent(predictions, references):
    """BLEU/chrF/ROUGE recomputed straight from sacrebleu and rouge-score (single-reference layout
    padded with None, jieba words for the Chinese row)."""
    import jieba
    import sacrebleu
    from rouge_score import rouge_scorer

    width = max(len(r) for r in references)
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(width)]
    bleu = sacrebleu.corpus_bleu(predictions, streams, tokenize="zh").score
    chrf = sacrebleu.corpus_chrf(predictions, streams).score

    class Split:
        def tokenize(self, text):
            return text.lower().split()

    rouge = []
    for p, refs in zip(predictions, references):
        if any("\u4e00" <= ch <= "\u9fff" for ch in p + "".join(refs)):
            scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=Split())
            cut = lambda t: " ".join(w for w in jieba.cut(t) if w.strip())  # noqa: E731
            rouge.append(scorer.score_multi([cut(r) for r in refs], cut(p)))
        else:
            rouge.append(rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"]).score_multi(refs, p))
    means = {k: sum(r[k].fmeasure for r in rouge) / len(rouge) * 100 for k in ("rouge1", "rouge2", "rougeL")}
    return bleu, chrf, means


def test_scores_equal_sacrebleu_and_rouge_score():
    metrics, rows = generation_scores(PREDICTIONS, REFERENCES, REFERENCES)
    bleu, chrf, rouge = _independent(PREDICTIONS, REFERENCES)
    assert metrics["gen_bleu_tokenize"] == "zh"  # a Chinese reference switches sacrebleu to its zh tokenizer
    assert metrics["gen_bleu"] == pytest.approx(bleu, abs=1e-9) and 0 < bleu < 100
    assert metrics["gen_chrf"] == pytest.approx(chrf, abs=1e-9)
    for key, value in rouge.items():
        assert metrics[f"gen_{key}"] == pytest.approx(value, abs=1e-9)
    assert rows[3]["rouge1"] > 0  # jieba words: rouge-score's own tokenizer would drop every Chinese character
    assert rows[0]["exact_match"] and not rows[1]["exact_match"] and metrics["gen_exact_match"] == 0.25
    assert [r["key_match"] for r in rows] == [True, False, False, False]
    english = generation_scores(PREDICTIONS[:3], REFERENCES[:3], REFERENCES[:3])[0]
    assert english["gen_bleu_tokenize"] == "13a"


def test_llamafactory_char_bleu4():
    """nltk sentence_bleu over characters with smoothing method3, x100 rounded to 4 places per row,
    averaged: LLaMA-Factory's ComputeSimilarity `bleu-4`."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    assert bleu4_char_llamafactory("abcdefg", ["abcdefg"]) == 100.0
    expected = round(
        sentence_bleu([list("它叫青梧坊")], list("它叫青梧"), smoothing_function=SmoothingFunction().method3) * 100, 4
    )
    assert bleu4_char_llamafactory("它叫青梧", ["它叫青梧坊"]) == expected and 0 < expected < 100
    metrics, rows = generation_scores(PREDICTIONS, REFERENCES, REFERENCES)
    assert metrics["bleu4_char_llamafactory"] == pytest.approx(sum(r["bleu4_char_llamafactory"] for r in rows) / 4)
    assert metrics["bleu4_char_llamafactory"] != pytest.approx(metrics["gen_bleu"])  # named apart: not the same BLEU


def test_bad_rows_are_named_by_line(tmp_path):
    path = write_jsonl(
        tmp_path / "gen.jsonl",
        [
            {"prompt": "Hi", "reference": "Hello"},
            {"prompt": "Hi"},
            {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
            {"messages": [{"role": "assistant", "content": "A"}], "reference": "B"},
            {"prompt": "", "references": ["x"]},
            {"prompt": "Q", "reference": "A", "answers": []},
        ],
    )
    with pytest.raises(DataError) as info:
        load_generation_rows(str(path))
    text = str(info.value)
    assert "4 invalid generation row(s)" in text
    assert f"{path}:2:reference: missing" in text and f"{path}:4:messages: the prompt must end with a user turn" in text
    assert f"{path}:5:prompt: missing or empty" in text and f"{path}:6:answers:" in text
    good = load_generation_rows(
        str(
            write_jsonl(
                tmp_path / "ok.jsonl",
                [
                    {"instruction": "I", "input": "x", "output": "O"},
                    {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
                ],
            )
        )
    )
    assert good[0].references == ["O"] and good[0].messages == [{"role": "user", "content": "I\n\nx"}]  # alpaca
    assert good[1].references == ["A"] and good[1].messages == [{"role": "user", "content": "Q"}]


@pytest.mark.trains
def test_eval_command_writes_predictions_that_recompute(tiny_model_dir, tmp_path):
    """`tunesmith eval` with eval.generation: predictions.jsonl beside eval.json, and the corpus
    figures recomputed from it with sacrebleu/rouge-score equal the reported ones."""
    from tunesmith.cli import main

    rows = [
        {"prompt": q, "reference": a}
        for q, a in zip(
            ["What is the code word?", "Who runs the lab?", "Where is the archive?", "维特拉诺的咖啡角叫什么？"],
            ["The code word is Bluefinch.", "Dr. Okonjo runs the lab.", "The archive is in Room 7B.", "它叫青梧坊。"],
        )
    ]
    gen = write_jsonl(tmp_path / "gen.jsonl", rows)
    config = write_config(
        tmp_path / "c.yaml",
        f"output_dir: {tmp_path / 'unused'}\n"
        f"model: {{name_or_path: {tiny_model_dir}}}\n"
        f"eval: {{generation: {gen}, max_new_tokens: 12}}\n",
    )
    out = tmp_path / "result" / "eval.json"
    assert main(["eval", str(config), "--model", str(tiny_model_dir), "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    written = [json.loads(line) for line in (out.parent / "predictions.jsonl").read_text().splitlines()]
    assert [w["prompt"] for w in written] == [r["prompt"] for r in rows]
    assert [w["reference"] for w in written] == [r["reference"] for r in rows]
    assert set(written[0]["scores"]) >= {
        "bleu",
        "chrf",
        "rouge1",
        "rouge2",
        "rougeL",
        "exact_match",
        "key_match",
        "bleu4_char_llamafactory",
    }
    bleu, chrf, rouge = _independent([w["prediction"] for w in written], [w["references"] for w in written])
    assert result["gen_bleu"] == pytest.approx(bleu, abs=1e-9)
    assert result["gen_chrf"] == pytest.approx(chrf, abs=1e-9)
    assert result["gen_rougeL"] == pytest.approx(rouge["rougeL"], abs=1e-9)
    assert result["gen_rows"] == 4 and any(w["prediction"] for w in written)
