"""Edge-case probes: prompts a fine-tune commonly breaks on, and three checks of each reply.

    eval:
      edge_cases: examples/data/edge_cases.jsonl

Rows are `{"kind": str, "prompt": str}` (an empty or whitespace prompt is allowed here) or
`{"kind": str, "messages": [...]}`; `{"kind": ..., "fill": TEXT, "context_share": 0.9}` builds a
prompt of TEXT repeated up to that share of the model's context (`max_position_embeddings`, less
`eval.max_new_tokens`). Users add probes in the same format. Each probe gets one greedy reply:

- `crash`: generating raised an error (the message is kept);
- `no_stop`: the reply ran to `eval.max_new_tokens` without a stop (EOS) token;
- `special_tokens`: the reply, before its stop token, contains a special token of the tokenizer
  (`<|im_start|>`, `<|im_end|>` ...), i.e. the model writes its template's markers as text.

`edge_fail/CHECK` is the share of probes failing a check (`edge_fail/any`: failing any); the
report lists each failing probe with its reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.data.rejects import parse_rows
from tunesmith.eval.generate import Generated, generate, prompt_text, valid_unicode

CHECKS = ("crash", "no_stop", "special_tokens")


@dataclass
class Probe:
    kind: str
    messages: list[dict] | None  # None for a `fill` probe, built once the model's context is known
    fill: str | None
    share: float
    where: str


def _probe(row, where: str) -> Probe | str:
    if not isinstance(row, dict):
        return "row: expected a JSON object"
    kind = row.get("kind")
    if not isinstance(kind, str) or not kind.strip():
        return "kind: missing (a short name of the probe's kind, e.g. prompt_injection)"
    if "fill" in row:
        share = row.get("context_share", 0.9)
        if not isinstance(row["fill"], str) or not row["fill"].strip():
            return "fill: expected the non-empty text to repeat"
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            return "context_share: expected a number in (0, 1]"
        return Probe(kind, None, row["fill"], float(share), where)
    if isinstance(row.get("prompt"), str):
        return Probe(kind, [{"role": "user", "content": row["prompt"]}], None, 0.0, where)
    messages = row.get("messages")
    if (
        isinstance(messages, list)
        and messages
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        return Probe(kind, [{"role": m["role"], "content": m["content"]} for m in messages], None, 0.0, where)
    return "prompt: missing (give `prompt`, `messages` or `fill`)"


def load_probes(path: str) -> list[Probe]:
    return parse_rows(path, _probe, "probe row", "eval.edge_cases", noun="probes")


def context_limit(model, tokenizer) -> int:
    limit = getattr(model.config, "max_position_embeddings", None)
    return int(limit) if limit else min(int(tokenizer.model_max_length), 4096)


def filled_prompt(tokenizer, probe: Probe, budget: int, system: str | None) -> str:
    """The fill text repeated so the rendered prompt is about `probe.share * budget` tokens."""
    empty = len(
        tokenizer(prompt_text(tokenizer, [{"role": "user", "content": ""}], system), add_special_tokens=False)[
            "input_ids"
        ]
    )
    per = max(1, len(tokenizer(probe.fill, add_special_tokens=False)["input_ids"]))
    times = max(1, (int(probe.share * budget) - empty) // per)
    while True:
        text = prompt_text(tokenizer, [{"role": "user", "content": probe.fill * times}], system)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= budget or times == 1:
            return text
        times = max(1, int(times * 0.9))


def special_strings(tokenizer) -> list[str]:
    found = set(tokenizer.all_special_tokens)
    found |= {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return sorted(s for s in found if s)


def check(generated: Generated | None, error: str | None, specials: list[str]) -> dict[str, bool]:
    if generated is None:
        return {"crash": True, "no_stop": False, "special_tokens": False}
    return {
        "crash": False,
        "no_stop": not generated.stopped,
        "special_tokens": any(s in generated.raw or s in generated.text for s in specials),
    }


def edge_case_metrics(model, tokenizer, path: str, system: str | None, max_new_tokens: int, batch_size: int) -> dict:
    probes = load_probes(path)
    budget = context_limit(model, tokenizer) - max_new_tokens
    specials = special_strings(tokenizer)
    prompts: list[str | None] = []
    errors: list[str | None] = []
    for p in probes:
        try:
            prompts.append(
                filled_prompt(tokenizer, p, budget, system) if p.fill else prompt_text(tokenizer, p.messages, system)
            )
            errors.append(None)
        except Exception as exc:  # a probe that cannot even be rendered is a crash of that probe
            prompts.append(None)
            errors.append(f"{type(exc).__name__}: {exc}")
    replies: list[Generated | None] = [None] * len(probes)
    ready = [i for i, p in enumerate(prompts) if p is not None]
    try:
        for i, g in zip(
            ready,
            generate(model, tokenizer, [prompts[i] for i in ready], max_new_tokens, batch_size, desc="edge cases"),
        ):
            replies[i] = g
    except Exception:  # find the probe(s) that fail, one at a time
        for i in ready:
            try:
                replies[i] = generate(model, tokenizer, [prompts[i]], max_new_tokens, 1)[0]
            except Exception as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"
    details = []
    for probe, g, error in zip(probes, replies, errors):
        failed = check(g, error, specials)
        details.append(
            {
                "where": probe.where,
                "kind": probe.kind,
                "prompt": valid_unicode(probe.messages[-1]["content"] if probe.messages else f"{probe.fill} x N")[:300],
                "reply": g.text if g else None,
                "tokens": g.tokens if g else 0,
                "error": error,
                "failed": [name for name in CHECKS if failed[name]],
            }
        )
    n = len(details)
    result = {f"edge_fail/{name}": sum(name in d["failed"] for d in details) / n for name in CHECKS}
    result["edge_fail/any"] = sum(bool(d["failed"]) for d in details) / n
    result["edge_probes"] = n
    result["edge_details"] = details
    return result
