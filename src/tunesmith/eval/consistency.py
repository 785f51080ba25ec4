"""Consistency: the same question in several phrasings, each sampled several times; do the answers agree?

    eval:
      consistency: examples/data/consistency.jsonl
      consistency_samples: 5          # replies sampled per row
      consistency_temperature: 0.7

Rows are `{"id": GROUP, "prompt" | "question": str | "messages": [...], "answers": [keys]?}`; rows
sharing an `id` are phrasings of one question. Every row is sampled `consistency_samples` times
(seeded by `training.seed`). Each reply gets a label: with `answers`, the first key it contains
(a reply with none of the keys is a label of its own, so wrong answers never agree with each
other); without, the normalised reply (NFKC, lower case, punctuation and spaces removed). A group's
agreement is the share of its replies that carry the group's most common label; the reported
`consistency_agreement` is the mean over groups (1.0: every phrasing, every draw gave the same
answer). With keys, `consistency_key_rate` is the share of replies that carry one.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

import torch

from tunesmith.data.rejects import parse_rows
from tunesmith.eval.generate import generate, prompt_messages, prompt_text, valid_unicode
from tunesmith.eval.qa import contains_key, normalise


@dataclass
class Phrasing:
    group: str
    messages: list[dict]
    keys: list[str] | None
    where: str


def _phrasing(row, where: str) -> Phrasing | str:
    if not isinstance(row, dict):
        return "row: expected a JSON object"
    group = row.get("id")
    if isinstance(group, bool) or not isinstance(group, (str, int)) or str(group).strip() == "":
        return "id: missing (rows sharing an `id` are phrasings of one question)"
    text = row.get("prompt", row.get("question"))
    messages = prompt_messages(row, text)
    if messages is None:
        return "prompt: missing or empty (give `prompt`, `question` or `messages` ending with a user turn)"
    keys = row.get("answers", row.get("answer"))
    if isinstance(keys, str):
        keys = [keys]
    if keys is not None and not (
        isinstance(keys, list) and keys and all(isinstance(k, str) and k.strip() for k in keys)
    ):
        return "answers: expected a non-empty list of non-empty strings"
    return Phrasing(str(group), messages, keys, where)


def load_consistency(path: str) -> list[Phrasing]:
    return parse_rows(path, _phrasing, "consistency row", "eval.consistency")


def label(reply: str, keys: list[str] | None, index: int) -> str:
    if keys:
        found = next((k for k in keys if contains_key(reply, k)), None)
        return f"key:{normalise(found)}" if found else f"none:{index}"
    text = unicodedata.normalize("NFKC", reply).lower()
    return "text:" + re.sub(r"[\W_]+", "", text)


def agreement(labels: list[str]) -> float:
    return Counter(labels).most_common(1)[0][1] / len(labels)


def consistency_metrics(
    model,
    tokenizer,
    path: str,
    system: str | None,
    max_new_tokens: int,
    batch_size: int,
    samples: int,
    temperature: float,
    seed: int,
) -> dict:
    rows = load_consistency(path)
    prompts = [prompt_text(tokenizer, r.messages, system) for r in rows for _ in range(samples)]
    torch.manual_seed(seed)
    replies = [
        g.text
        for g in generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens,
            batch_size,
            sample=True,
            temperature=temperature,
            desc="consistency",
        )
    ]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.group, []).append(i)
    details, keyed = [], []
    for group, members in groups.items():
        group_replies, labels = [], []
        for i in members:
            for k in range(samples):
                reply = replies[i * samples + k]
                group_replies.append({"prompt": valid_unicode(rows[i].messages[-1]["content"]), "reply": reply})
                labels.append(label(reply, rows[i].keys, len(labels)))
        has_keys = all(rows[i].keys for i in members)
        if has_keys:
            keyed += [lab.startswith("key:") for lab in labels]
        top = Counter(labels).most_common(1)[0][0]
        details.append(
            {
                "id": group,
                "phrasings": len(members),
                "replies": len(labels),
                "agreement": agreement(labels),
                "answer": top.split(":", 1)[1] if not top.startswith("none:") else None,
                "samples": group_replies,
            }
        )
    result = {
        "consistency_agreement": sum(d["agreement"] for d in details) / len(details),
        "consistency_groups": len(details),
        "consistency_samples": samples,
    }
    if keyed:
        result["consistency_key_rate"] = sum(keyed) / len(keyed)
    result["consistency_details"] = details
    return result
