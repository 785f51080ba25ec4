"""Multiple-choice benchmarks in the MMLU / C-Eval CSV layout: accuracy from the option letters' logits.

    eval:
      mcq: examples/data/mcq          # or one CSV file (zero-shot, its name is the subject)
      mcq_shots: 5

A benchmark folder holds `test/SUBJECT_test.csv` (the questions scored; a C-Eval folder, whose test
answers are withheld, is scored on `val/SUBJECT_val.csv`) and `dev/SUBJECT_dev.csv` (the n-shot
examples), with the columns `question,A,B,C,D,answer` (a header row, as C-Eval's, whose `id` and
`explanation` columns are ignored, or none, as MMLU's: question, the options, answer). More option
columns (E, F ...) are allowed. An optional `categories.json` (C-Eval's `subject_mapping.json`
layout `{subject: [name, chinese name, category]}`, or `{subject: category}`) groups subjects.

Each question is asked in the chat template: the first `mcq_shots` dev rows of its subject as
user/assistant turns (answer = the letter), then the question ending with "Answer:" ("答案：" for
Chinese). The prediction is the option letter whose token has the highest next-token logit after
the generation prompt, as LLaMA-Factory's and lm-eval's MMLU do; nothing is generated.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tunesmith.data.readers import RawRow
from tunesmith.data.rejects import Rejects, converted
from tunesmith.data.row_errors import RowError, raise_row_errors
from tunesmith.data.turns import with_system
from tunesmith.errors import DataError
from tunesmith.eval.textmetrics import is_chinese

LETTERS = "ABCDEFGHIJ"


@dataclass
class Question:
    subject: str
    question: str
    options: list[str]
    answer: str  # a letter
    where: str


@dataclass
class Benchmark:
    questions: list[Question]
    shots: dict[str, list[Question]]  # subject -> dev rows
    names: dict[str, tuple[str, str]]  # subject -> (name, chinese name)
    categories: dict[str, str]  # subject -> category (empty without categories.json)


def read_csv(path: Path, subject: str, need_answer: bool = True) -> list[Question]:
    try:
        text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    records = list(csv.reader(io.StringIO(text, newline="")))
    if not records:
        raise DataError(f"{path}: empty file (eval.mcq)")
    header = [h.strip().lower() for h in records[0]]
    if "question" in header:
        if "answer" not in header and need_answer:
            raise DataError(f"{path}:1: no `answer` column (header {records[0]})")
        q, a = header.index("question"), header.index("answer") if "answer" in header else None
        letters = [c for c in LETTERS if c.lower() in header]
        columns = [header.index(c.lower()) for c in letters]
        body, first_line = records[1:], 2
    else:  # MMLU: question, option columns, answer
        width = len(records[0])
        if width < 4:
            raise DataError(f"{path}:1: expected the columns question,A,B,C,D,answer (a header row or none)")
        q, a, columns, letters = 0, width - 1, list(range(1, width - 1)), list(LETTERS[: width - 2])
        body, first_line = records, 1
    if len(letters) < 2:
        raise DataError(f"{path}:1: expected at least two option columns A, B (header {records[0]})")
    width = max(c for c in (q, a, *columns) if c is not None) + 1

    def to_question(raw: RawRow) -> Question:
        record = raw.data
        if len(record) < width:
            raise RowError("row", f"expected {width} columns, found {len(record)}")
        answer = record[a].strip().upper() if a is not None else ""
        if not record[q].strip():
            raise RowError("question", "empty")
        if need_answer and answer not in letters:
            raise RowError("answer", f"`{record[a]}` is not one of {', '.join(letters)}")
        return Question(subject, record[q].strip(), [record[c].strip() for c in columns], answer, raw.where)

    rows = [
        RawRow(str(path), line, record)
        for line, record in enumerate(body, start=first_line)
        if any(cell.strip() for cell in record)
    ]
    rejects = Rejects()
    questions = list(converted(rows, to_question, rejects))
    raise_row_errors(rejects.messages(), "multiple-choice row", [path], found=True, source="eval.mcq")
    return questions


def _subject(path: Path, split: str) -> str:
    return path.stem.removesuffix(f"_{split}")


def _mapping(folder: Path) -> tuple[dict, dict]:
    for name in ("categories.json", "subject_mapping.json"):
        path = folder / name
        if path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise DataError(f"{path}: invalid JSON ({exc})") from None
            names, categories = {}, {}
            for subject, value in raw.items():
                if isinstance(value, str):
                    categories[subject] = value
                elif isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value):
                    names[subject], categories[subject] = (value[0], value[1]), value[2]
                else:
                    raise DataError(f"{path}: `{subject}`: expected a category or [name, chinese name, category]")
            return names, categories
    return {}, {}


def load_mcq(path: str) -> Benchmark:
    root = Path(path)
    if root.is_file():
        return Benchmark(read_csv(root, root.stem), {}, {}, {})
    if not root.is_dir():
        raise DataError(f"eval.mcq: `{path}` is neither a CSV file nor a benchmark folder (test/ and dev/)")
    split = next((s for s in ("test", "val") if sorted((root / s).glob("*.csv"))), None)
    if split is None:
        raise DataError(f"eval.mcq: `{path}` has no test/*.csv or val/*.csv (the MMLU / C-Eval layout)")
    files = sorted((root / split).glob("*.csv"))
    if (
        split == "test"
        and (root / "val").is_dir()
        and not all(q.answer != "" for f in files for q in read_csv(f, _subject(f, split), need_answer=False))
    ):
        split, files = "val", sorted((root / "val").glob("*.csv"))  # C-Eval: test answers withheld
    questions = [q for f in files for q in read_csv(f, _subject(f, split))]
    shots = {_subject(f, "dev"): read_csv(f, _subject(f, "dev")) for f in sorted((root / "dev").glob("*.csv"))}
    names, categories = _mapping(root)
    if not questions:
        raise DataError(f"eval.mcq: `{path}`: no questions in {split}/")
    return Benchmark(questions, shots, names, categories)


# --- prompts and scoring ------------------------------------------------------------------------


def _format(q: Question, chinese: bool) -> str:
    options = "\n".join(f"{letter}. {text}" for letter, text in zip(LETTERS, q.options))
    return f"{q.question}\n{options}\n" + ("答案：" if chinese else "Answer:")


def conversation(q: Question, bench: Benchmark, shots: int, system: str | None) -> list[dict]:
    examples = bench.shots.get(q.subject, [])[:shots]
    chinese = is_chinese([q.question] + q.options)
    name, name_zh = bench.names.get(q.subject, (q.subject.replace("_", " "), q.subject.replace("_", " ")))
    header = (
        f"以下是关于{name_zh}的单项选择题，请直接给出正确答案的选项。\n\n"
        if chinese
        else f"The following are multiple choice questions about {name}. Answer with the letter of the correct "
        f"option.\n\n"
    )
    messages = with_system([], system)
    for k, example in enumerate(examples + [q]):
        messages.append({"role": "user", "content": (header if k == 0 else "") + _format(example, chinese)})
        if example is not q:
            messages.append({"role": "assistant", "content": example.answer})
    return messages


def letter_ids(tokenizer, letters: str) -> list[int]:
    ids = []
    for letter in letters:
        encoded = tokenizer.encode(letter, add_special_tokens=False)
        if len(encoded) != 1:
            raise DataError(f"eval.mcq: the tokenizer splits option letter `{letter}` into {len(encoded)} tokens")
        ids.append(encoded[0])
    return ids


@torch.no_grad()
def choice_logits(model, tokenizer, prompts: list[str], batch_size: int) -> list[torch.Tensor]:
    """Next-token logits after each prompt text (right padding: each row's last real position)."""
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    out = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(
                prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            logits = model(**batch).logits[:, -batch["input_ids"].shape[1] :].float()  # drop virtual tokens
            last = batch["attention_mask"].sum(dim=1) - 1
            out += list(logits[torch.arange(len(last)), last].cpu())
    finally:
        tokenizer.padding_side = side
    return out


def mcq_accuracy(model, tokenizer, path: str, shots: int, system: str | None, batch_size: int) -> dict:
    bench = load_mcq(path)
    prompts = [
        tokenizer.apply_chat_template(conversation(q, bench, shots, system), tokenize=False, add_generation_prompt=True)
        for q in bench.questions
    ]
    details = []
    for q, logits in zip(bench.questions, choice_logits(model, tokenizer, prompts, batch_size)):
        letters = LETTERS[: len(q.options)]
        probs = torch.softmax(logits[letter_ids(tokenizer, letters)], dim=-1).tolist()
        predicted = letters[max(range(len(letters)), key=probs.__getitem__)]
        details.append(
            {
                "where": q.where,
                "subject": q.subject,
                "category": bench.categories.get(q.subject),
                "question": q.question,
                "answer": q.answer,
                "predicted": predicted,
                "correct": predicted == q.answer,
                "probs": dict(zip(letters, [round(p, 4) for p in probs])),
            }
        )
    result = {
        "mcq_accuracy": sum(d["correct"] for d in details) / len(details),
        "mcq_correct": sum(d["correct"] for d in details),
        "mcq_total": len(details),
        "mcq_shots": shots,
    }
    for field, prefix in (("subject", "mcq_subject/"), ("category", "mcq_category/")):
        for group in sorted({d[field] for d in details if d[field]}):
            marks = [d["correct"] for d in details if d[field] == group]
            result[prefix + group] = sum(marks) / len(marks)
    result["mcq_details"] = details
    return result
