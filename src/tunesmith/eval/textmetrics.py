"""Generation metrics: corpus BLEU and chrF (sacrebleu), ROUGE-1/2/L F (rouge-score), exact match,
key match, and LLaMA-Factory's character BLEU-4 under its own name.

    eval:
      generation: examples/data/veltrano_val.json     # alpaca rows: output is the reference

Rows (JSONL/JSON/CSV/parquet) are `{"prompt": str}` or `{"messages": [...]}` with `"reference": str`
or `"references": [str, ...]`; a `messages` list that ends with an assistant turn uses that turn
as the reference, and an alpaca row (`instruction`, `input`, `output`) its `output`. An optional
`answers` list gives the keys for key match (default: the references).

- `gen_bleu`: sacrebleu's corpus BLEU with its standard `13a` tokenisation, or `zh` when any
  reference contains Chinese characters (`gen_bleu_tokenize` says which); the number sacrebleu's
  own command prints, comparable with published BLEU.
- `gen_chrf`: sacrebleu's corpus chrF (character n-grams, no tokenisation).
- `gen_rouge1/2/L`: mean over rows of rouge-score's F-measure (best reference per row); Chinese
  references and predictions are segmented into words with jieba first (rouge-score's own
  tokenizer keeps only a-z0-9 and would drop every Chinese character).
- `gen_exact_match`: the normalised prediction (NFKC, lower case, collapsed spaces) equals a
  normalised reference; `gen_key_match`: it contains a key.
- `bleu4_char_llamafactory`: what LLaMA-Factory's `predict` reports as `bleu-4`: nltk's
  `sentence_bleu([list(reference)], list(prediction), smoothing_function=method3)`, each row
  rounded to 4 decimals of x100, averaged. Characters, not words: not comparable with `gen_bleu`.

All scores are on a 0-100 scale except the matches (shares, 0-1).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from tunesmith.data.rejects import parse_rows
from tunesmith.eval.generate import generate, prompt_text, valid_unicode
from tunesmith.eval.qa import NO_SPACES, contains_key, normalise

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class GenerationRow:
    messages: list[dict]  # the prompt conversation, ending with a user turn
    references: list[str]
    keys: list[str]
    where: str

    @property
    def prompt(self) -> str:
        return self.messages[-1]["content"]


def _strings(value) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return value
    return None


def _row(row, where: str) -> GenerationRow | str:
    """The row, or the `field: problem` that makes it invalid."""
    if not isinstance(row, dict):
        return "row: expected a JSON object"
    references = _strings(row.get("references", row.get("reference")))
    if "messages" in row:
        messages = row["messages"]
        if not (
            isinstance(messages, list)
            and messages
            and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            return "messages: expected a non-empty list of {role, content} objects"
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        if messages[-1]["role"] == "assistant" and references is None:
            references = _strings(messages[-1]["content"])
            messages = messages[:-1]
        if not messages or messages[-1]["role"] != "user":
            return "messages: the prompt must end with a user turn"
    elif isinstance(row.get("prompt"), str) and row["prompt"].strip():
        messages = [{"role": "user", "content": row["prompt"]}]
    elif isinstance(row.get("instruction"), str) and row["instruction"].strip():  # alpaca: output is the reference
        extra = row.get("input")
        messages = [
            {
                "role": "user",
                "content": row["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra else ""),
            }
        ]
        references = references or _strings(row.get("output"))
    else:
        return "prompt: missing or empty (give `prompt`, `messages` or `instruction`)"
    if references is None:
        return "reference: missing (give `reference`, `references` or a final assistant turn)"
    keys = references
    if "answers" in row:
        keys = _strings(row["answers"])
        if keys is None:
            return "answers: expected a non-empty list of non-empty strings"
    return GenerationRow(messages, references, keys, where)


def load_generation_rows(path: str) -> list[GenerationRow]:
    """Every row of the file(s), or a DataError listing each invalid one as file:line: field: reason."""
    return parse_rows(path, _row, "generation row", "eval.generation")


# --- scores ---------------------------------------------------------------------------------------


def is_chinese(texts: list[str]) -> bool:
    return any(CJK.search(t) for t in texts)


class _Whitespace:
    """A rouge-score tokenizer for text already segmented by jieba (tokens joined by spaces)."""

    def tokenize(self, text: str) -> list[str]:
        return text.lower().split()


# one character of a script without spaces, or a run of other word characters
_PIECES = re.compile(rf"{NO_SPACES.pattern}|(?:(?!{NO_SPACES.pattern}).)+")


class _Words:
    """A rouge-score tokenizer for any script: words of letters and digits in every script (rouge-score's
    own keeps a-z and 0-9 only, so Russian, Korean or Arabic text scored 0 even against itself), each
    character a token in scripts written without spaces (Japanese kana, Thai ...)."""

    def tokenize(self, text: str) -> list[str]:
        tokens = []
        for word in re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower()):
            tokens += _PIECES.findall(word)
        return tokens


def segment(text: str) -> str:
    import jieba

    jieba.setLogLevel(60)  # jieba prints its dictionary loading at INFO
    return " ".join(t for t in jieba.cut(text) if t.strip())


def rouge_scores(prediction: str, references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F x100 of one prediction against its best reference: jieba words for Chinese,
    rouge-score's own tokens for ASCII text, words of any script otherwise (`_Words`)."""
    from rouge_score import rouge_scorer

    if is_chinese(references + [prediction]):
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Whitespace())
        prediction, references = segment(prediction), [segment(r) for r in references]
    elif all(t.isascii() for t in references + [prediction]):
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])  # its own tokenizer, as published
    else:
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Words())
    scores = scorer.score_multi(references, prediction)
    return {name: scores[name].fmeasure * 100 for name in ("rouge1", "rouge2", "rougeL")}


def bleu4_char_llamafactory(prediction: str, references: list[str]) -> float:
    """LLaMA-Factory's per-row `bleu-4` (src/llamafactory/train/sft/metric.py, ComputeSimilarity)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    score = sentence_bleu(
        [list(r) for r in references], list(prediction), smoothing_function=SmoothingFunction().method3
    )
    return round(score * 100, 4)


def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: one stream per reference position, None where a row has fewer."""
    width = max(len(r) for r in references)
    return [[r[k] if k < len(r) else None for r in references] for k in range(width)]


def generation_scores(
    predictions: list[str], references: list[list[str]], keys: list[list[str]]
) -> tuple[dict, list[dict]]:
    """(corpus metrics, per-row scores) of predictions against their references."""
    import sacrebleu

    tokenize = "zh" if is_chinese([r for refs in references for r in refs]) else "13a"
    streams = reference_streams(references)
    rows = []
    for prediction, refs, row_keys in zip(predictions, references, keys):
        rows.append(
            {
                "bleu": sacrebleu.sentence_bleu(prediction, refs, tokenize=tokenize).score,
                "chrf": sacrebleu.sentence_chrf(prediction, refs).score,
                **rouge_scores(prediction, refs),
                "exact_match": normalise(prediction) in {normalise(r) for r in refs},
                "key_match": any(contains_key(prediction, k) for k in row_keys),
                "bleu4_char_llamafactory": bleu4_char_llamafactory(prediction, refs),
            }
        )
    n = len(rows)
    metrics = {
        "gen_bleu": sacrebleu.corpus_bleu(predictions, streams, tokenize=tokenize).score,
        "gen_bleu_tokenize": tokenize,
        "gen_chrf": sacrebleu.corpus_chrf(predictions, streams).score,
        **{f"gen_{name}": sum(r[name] for r in rows) / n for name in ("rouge1", "rouge2", "rougeL")},
        "gen_exact_match": sum(r["exact_match"] for r in rows) / n,
        "gen_key_match": sum(r["key_match"] for r in rows) / n,
        "bleu4_char_llamafactory": sum(r["bleu4_char_llamafactory"] for r in rows) / n,
        "gen_rows": n,
    }
    return metrics, rows


def generation_metrics(model, tokenizer, path: str, system: str | None, max_new_tokens: int, batch_size: int) -> dict:
    """Generate a greedy reply to every row of `path` and score it. `gen_predictions` holds the rows
    written to predictions.jsonl (prompt, reference(s), prediction, per-row scores)."""
    rows = load_generation_rows(path)
    prompts = [prompt_text(tokenizer, r.messages, system) for r in rows]
    predictions = [g.text for g in generate(model, tokenizer, prompts, max_new_tokens, batch_size, desc="generation")]
    metrics, scores = generation_scores(predictions, [r.references for r in rows], [r.keys for r in rows])
    details = [
        {
            "where": r.where,
            "prompt": valid_unicode(r.prompt),
            "reference": r.references[0],
            "references": r.references,
            "prediction": p,
            "scores": s,
        }
        for r, p, s in zip(rows, predictions, scores)
    ]
    return {**metrics, "gen_predictions": details}
