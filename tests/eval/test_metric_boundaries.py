"""Metrics that must be able to fail: a key matches whole numbers and words only, and ROUGE scores
text in any script (rouge-score's own tokenizer keeps a-z0-9, so other scripts scored 0 even against
themselves)."""

from __future__ import annotations

import pytest

from tunesmith.eval.consistency import label
from tunesmith.eval.qa import contains_key, is_correct
from tunesmith.eval.textmetrics import generation_scores, rouge_scores


@pytest.mark.parametrize(
    "text,key,found",
    [
        ("The answer is 13.", "3", False),  # a number inside a longer number
        ("It takes 3.5 days.", "3", False),
        ("1,300 seats", "300", False),
        ("about 3 days", "3", True),
        ("30GB of storage", "30", True),  # a unit after the number
        ("Parisian cooking", "Paris", False),  # a word inside a longer word
        ("Paris!", "paris", True),
        ("Okonjo's idea", "Okonjo", True),
        ("23个", "23天", False),
        ("一共123天", "23天", False),
        ("一共23天", "23天", True),
        ("答案是北京。", "北京", True),  # Chinese has no spaces: found inside a sentence
        ("Цена 120 рублей", "120", True),
        ("Цена 1200 рублей", "120", False),
    ],
)
def test_a_key_is_found_as_a_whole_number_or_word(text, key, found):
    assert contains_key(text, key) is found


def test_qa_generation_and_consistency_use_the_same_key_rule():
    assert not is_correct("Room 13 on the third floor", ["3"]) and is_correct("Room 3", ["3"])
    metrics, rows = generation_scores(["Floor 13", "Floor 3"], [["Floor 3"], ["Floor 3"]], [["3"], ["3"]])
    assert [r["key_match"] for r in rows] == [False, True] and metrics["gen_key_match"] == 0.5
    assert label("Room 13", ["3"], 0) == "none:0" and label("Room 3", ["3"], 0) == "key:3"


@pytest.mark.parametrize(
    "text,other",
    [
        ("Привет, как дела сегодня?", "Совсем другой ответ здесь"),  # Russian
        ("안녕하세요 만나서 반갑습니다", "전혀 다른 대답입니다"),  # Korean
        ("こんにちは、げんきですか", "さようなら"),  # Japanese kana
        ("مرحبا بالعالم الجميل", "وداعا يا صديقي"),  # Arabic
        ("สวัสดีครับ", "ลาก่อน"),  # Thai
        ("Le café est très bon", "Une réponse différente"),  # Latin with accents
    ],
)
def test_rouge_scores_any_script(text, other):
    assert rouge_scores(text, [text]) == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    assert rouge_scores(text, [other])["rouge1"] < 30.0


def test_rouge_of_ascii_text_is_rouge_scores_own():
    from rouge_score import rouge_scorer

    own = rouge_scorer.RougeScorer(["rougeL"]).score("the cat sat on the mat", "a cat sat on a mat")["rougeL"].fmeasure
    assert rouge_scores("a cat sat on a mat", ["the cat sat on the mat"])["rougeL"] == pytest.approx(own * 100)
