"""Question/answer accuracy: a reply is correct when it contains any accepted answer.

The QA file is JSONL, one `{"question": str, "answers": [str, ...]}` per line (`answer`: str is
accepted too), optionally with a `task` name: accuracy is then also reported per task
(`qa_accuracy/TASK`). Matching is case-insensitive on whitespace-normalised text.

A reply that has not ended within `max_new_tokens` is cut and may stop before its answer (a Chinese
sentence takes 2-3 tokens a character in a small English tokenizer): such wrong replies are
counted (`qa_cut_wrong`), marked `"cut": true` in the details, and named in a warning.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

from tunesmith.data.readers import RawRow
from tunesmith.data.rejects import collect_rows
from tunesmith.data.row_errors import RowError
from tunesmith.eval.generate import generate, question_prompt

log = logging.getLogger(__name__)
# scripts written without spaces between words: a key in them is matched as a substring
NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")


@dataclass
class QAItem:
    question: str
    answers: list[str]
    where: str
    task: str | None = None


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


def _spaced_letter(char: str) -> bool:
    """A letter of a script that separates words with spaces (not Chinese, Japanese kana, Thai ...)."""
    return char.isalpha() and not NO_SPACES.match(char)


def _joins(left: str, right: str, beyond: str) -> bool:
    """Whether `left` and `right`, side by side, belong to one number or one word: digits with digits
    (also across a decimal point or thousands separator: `beyond` is the character past it), letters
    of a spaced script with such letters. Chinese characters join nothing: they have no spaces."""
    if left.isdigit() and right.isdigit():
        return True
    if right in ".," and left.isdigit() and beyond.isdigit():  # 3 | .5
        return True
    return _spaced_letter(left) and _spaced_letter(right)


def contains_key(text: str, key: str) -> bool:
    """`key` occurs in `text` as a whole number or word, both normalised: "3" is not found in "13" or
    "3.5", "Paris" not in "Parisian", while "北京" is found in "答案是北京" and "30" in "30GB"."""
    text, key = normalise(text), normalise(key)
    if not key:
        return False
    start = text.find(key)
    while start != -1:
        end = start + len(key)
        before, after = text[start - 1 : start], text[end : end + 1]
        before_far, after_far = text[start - 2 : start - 1], text[end + 1 : end + 2]
        joined_left = bool(before) and (
            _joins(before, key[0], "") or (before in ".," and _joins(before_far, key[0], ""))
        )
        joined_right = bool(after) and _joins(key[-1], after, after_far)
        if not (joined_left or joined_right):
            return True
        start = text.find(key, start + 1)
    return False


def is_correct(reply: str, answers: list[str]) -> bool:
    return any(contains_key(reply, a) for a in answers)


def to_qa_item(raw: RawRow) -> QAItem:
    row = raw.data
    if not isinstance(row, dict):
        raise RowError("row", "expected a JSON object")
    question = row.get("question")
    answers = row.get("answers", [row["answer"]] if "answer" in row else None)
    if not isinstance(question, str) or not question.strip():
        raise RowError("question", "missing or empty")
    if isinstance(answers, str):
        answers = [answers]
    if not (isinstance(answers, list) and answers and all(isinstance(a, str) and a.strip() for a in answers)):
        raise RowError("answers", "expected a non-empty list of non-empty strings")
    task = row.get("task")
    if task is not None and not (isinstance(task, str) and task.strip()):
        raise RowError("task", "expected a non-empty string")
    return QAItem(question, answers, raw.where, task)


def load_qa(path: str) -> list[QAItem]:
    """Every question of the file; one DataError lists each invalid row (file:line:field: reason)."""
    return collect_rows([path], to_qa_item, "QA row", noun="questions")


def qa_accuracy(model, tokenizer, path: str, system: str | None, max_new_tokens: int, batch_size: int) -> dict:
    items = load_qa(path)
    prompts = [question_prompt(tokenizer, i.question, system) for i in items]
    replies = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    details = []
    for i, r in zip(items, replies):
        detail = {
            "question": i.question,
            "answers": i.answers,
            "reply": r.text,
            "correct": is_correct(r.text, i.answers),
        }
        if not r.stopped:
            detail["cut"] = True
        details.append(detail)
    correct = sum(d["correct"] for d in details)
    cut_wrong = sum(1 for d in details if d.get("cut") and not d["correct"])
    if cut_wrong:
        log.warning(
            "%s: %d of the %d wrong replies were cut at max_new_tokens=%d before they ended (they may stop "
            "before their answer); raise eval.max_new_tokens to judge them whole",
            path,
            cut_wrong,
            len(items) - correct,
            max_new_tokens,
        )
    per_task = {}
    for task in sorted({i.task for i in items if i.task is not None}):
        marks = [d["correct"] for i, d in zip(items, details) if i.task == task]
        per_task[f"qa_accuracy/{task}"] = sum(marks) / len(marks)
    return {
        "qa_accuracy": correct / len(items),
        "qa_correct": correct,
        "qa_total": len(items),
        **per_task,
        "qa_cut_wrong": cut_wrong,
        "qa_details": details,
    }
