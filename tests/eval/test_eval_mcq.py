"""Multiple-choice benchmarks (eval.mcq): the MMLU / C-Eval layouts load with file:line errors, the
prediction is the option letter with the highest logit (batched = one at a time), and accuracy is
aggregated per subject and per category."""

from __future__ import annotations

import csv

import pytest
import torch

from helpers.files import ROOT
from tunesmith.errors import DataError
from tunesmith.eval.mcq import LETTERS, choice_logits, conversation, letter_ids, load_mcq, mcq_accuracy

SHIPPED = ROOT / "examples/data/mcq"


def test_shipped_set_loads_with_subjects_categories_and_shots():
    bench = load_mcq(str(SHIPPED))
    subjects = {q.subject for q in bench.questions}
    assert subjects == {"arithmetic", "world_facts", "chinese_common_sense", "chinese_math"}
    assert len(bench.questions) == 36 and all(len(bench.shots[s]) == 2 for s in subjects)
    assert bench.categories["chinese_math"] == "STEM"
    zh = next(q for q in bench.questions if q.subject == "chinese_math")
    messages = conversation(zh, bench, 5, "Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"].startswith("以下是关于中文算术的单项选择题") and messages[-1]["content"].endswith(
        "答案："
    )
    assert messages[2]["content"] == bench.shots["chinese_math"][0].answer
    en = conversation(bench.questions[0], bench, 0, None)
    assert len(en) == 1 and en[0]["content"].endswith("D. 22\nAnswer:")


def test_layouts_and_errors(tmp_path):
    mmlu = tmp_path / "mmlu.csv"  # MMLU: no header row
    mmlu.write_text('"What is 1+1?",1,2,3,4,B\n"Sky colour?",red,blue,green,pink,B\n', encoding="utf-8")
    assert [q.answer for q in load_mcq(str(mmlu)).questions] == ["B", "B"]
    ceval = tmp_path / "ceval"  # C-Eval: header with id/explanation, test answers withheld -> val
    for split in ("test", "val", "dev"):
        (ceval / split).mkdir(parents=True)
        with open(ceval / split / f"law_{split}.csv", "w", newline="", encoding="utf-8") as f:
            answer = ["answer", "explanation"] if split != "test" else []  # C-Eval's test has no answer column
            csv.writer(f).writerows(
                [
                    ["id", "question", "A", "B", "C", "D"] + answer,
                    ["0", "问题？", "甲", "乙", "丙", "丁"] + (["A", ""] if answer else []),
                ]
            )
    bench = load_mcq(str(ceval))
    assert [q.where.split("/")[-1] for q in bench.questions] == ["law_val.csv:2"] and bench.shots["law"][
        0
    ].answer == "A"
    bad = tmp_path / "bad.csv"
    bad.write_text("question,A,B,C,D,answer\nQ1,a,b,c,d,E\n,a,b,c,d,A\nQ3,a,b\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_mcq(str(bad))
    text = str(info.value)
    assert f"{bad}:2:answer: `E` is not one of A, B, C, D" in text and f"{bad}:3:question: empty" in text
    assert f"{bad}:4:row: expected 6 columns, found 3" in text
    with pytest.raises(DataError, match="neither a CSV file nor a benchmark folder"):
        load_mcq(str(tmp_path / "missing"))


class AlwaysLetter(torch.nn.Module):
    """A stand-in model whose next-token logits always favour one token."""

    def __init__(self, vocab: int, token: int):
        super().__init__()
        self.vocab, self.token = vocab, token
        self.device = torch.device("cpu")

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = 5.0
        return type("Out", (), {"logits": logits})()


def test_accuracy_per_subject_and_category(tokenizer):
    """A model that always answers C scores, per subject, the share of questions whose answer is C."""
    bench = load_mcq(str(SHIPPED))
    model = AlwaysLetter(len(tokenizer), letter_ids(tokenizer, "C")[0])
    result = mcq_accuracy(model, tokenizer, str(SHIPPED), 2, None, 8)
    share = lambda qs: sum(q.answer == "C" for q in qs) / len(qs)  # noqa: E731
    assert result["mcq_total"] == 36 and result["mcq_accuracy"] == pytest.approx(share(bench.questions))
    for subject in ("arithmetic", "chinese_math"):
        assert result[f"mcq_subject/{subject}"] == pytest.approx(
            share([q for q in bench.questions if q.subject == subject])
        )
    stem = [q for q in bench.questions if bench.categories[q.subject] == "STEM"]
    assert result["mcq_category/STEM"] == pytest.approx(share(stem))
    assert all(d["predicted"] == "C" for d in result["mcq_details"])


@pytest.mark.trains
def test_batched_logits_equal_one_at_a_time(tiny_model_dir):
    from tunesmith.methods.load import load_for_inference

    loaded = load_for_inference(str(tiny_model_dir))
    bench = load_mcq(str(SHIPPED))
    prompts = [
        loaded.tokenizer.apply_chat_template(
            conversation(q, bench, 2, None), tokenize=False, add_generation_prompt=True
        )
        for q in bench.questions[::6]
    ]
    ids = letter_ids(loaded.tokenizer, LETTERS[:4])
    batched = choice_logits(loaded.model, loaded.tokenizer, prompts, 4)
    single = [choice_logits(loaded.model, loaded.tokenizer, [p], 1)[0] for p in prompts]
    for b, s in zip(batched, single):
        assert torch.allclose(b[ids], s[ids], atol=1e-4)
