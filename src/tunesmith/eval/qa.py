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

from tunesmith.data.readers import read_rows
from tunesmith.errors import DataError
from tunesmith.eval.generate import chat_prompt, generate

log = logging.getLogger(__name__)


@dataclass
class QAItem:
    question: str
    answers: list[str]
    where: str
    task: str | None = None


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


def is_correct(reply: str, answers: list[str]) -> bool:
    reply = normalise(reply)
    return any(normalise(a) in reply for a in answers)


def load_qa(path: str) -> list[QAItem]:
    items, errors = [], []
    for raw in read_rows(path):
        row = raw.data
        if raw.error:
            errors.append(f"{raw.where}:{raw.error[0]}: {raw.error[1]}")
            continue
        if not isinstance(row, dict):
            errors.append(f"{raw.where}:row: expected a JSON object")
            continue
        question = row.get("question")
        answers = row.get("answers", [row["answer"]] if "answer" in row else None)
        if not isinstance(question, str) or not question.strip():
            errors.append(f"{raw.where}:question: missing or empty")
            continue
        if isinstance(answers, str):
            answers = [answers]
        if not (isinstance(answers, list) and answers and all(isinstance(a, str) and a.strip() for a in answers)):
            errors.append(f"{raw.where}:answers: expected a non-empty list of non-empty strings")
            continue
        task = row.get("task")
        if task is not None and not (isinstance(task, str) and task.strip()):
            errors.append(f"{raw.where}:task: expected a non-empty string")
            continue
        items.append(QAItem(question, answers, raw.where, task))
    if errors:
        raise DataError(f"{len(errors)} invalid QA row(s):\n  " + "\n  ".join(errors[:20]))
    if not items:
        raise DataError(f"{path}: no questions")
    return items


def qa_accuracy(model, tokenizer, path: str, system: str | None, max_new_tokens: int, batch_size: int) -> dict:
    items = load_qa(path)
    prompts = [chat_prompt(tokenizer, i.question, system) for i in items]
    replies = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    details = []
    for i, r in zip(items, replies):
        detail = {"question": i.question, "answers": i.answers, "reply": r.text, "correct": is_correct(r.text, i.answers)}
        if not r.stopped:
            detail["cut"] = True
        details.append(detail)
    correct = sum(d["correct"] for d in details)
    cut_wrong = sum(1 for d in details if d.get("cut") and not d["correct"])
    if cut_wrong:
        log.warning("%s: %d of the %d wrong replies were cut at max_new_tokens=%d before they ended (they may stop "
                    "before their answer); raise eval.max_new_tokens to judge them whole", path, cut_wrong,
                    len(items) - correct, max_new_tokens)
    per_task = {}
    for task in sorted({i.task for i in items if i.task is not None}):
        marks = [d["correct"] for i, d in zip(items, details) if i.task == task]
        per_task[f"qa_accuracy/{task}"] = sum(marks) / len(marks)
    return {"qa_accuracy": correct / len(items), "qa_correct": correct, "qa_total": len(items), **per_task,
            "qa_cut_wrong": cut_wrong, "qa_details": details}
