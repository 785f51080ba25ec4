"""Pairwise judge: a judge model compares two models' replies to the same prompts, in both orders.

    eval:
      judge:
        model: default                      # a local model folder, or http://127.0.0.1:8000/v1
        prompts: examples/data/judge_prompts.jsonl

Both models answer every prompt (greedy, `eval.max_new_tokens`; the replies are kept in each
result as `judge_replies`). The judge sees the question, the two replies as "Answer A" and
"Answer B" and answers `A`, `B` or `tie`. Every pair is judged twice, with the replies swapped,
to cancel order bias: the candidate wins only when both orders prefer it, loses only when both
prefer the other, and anything else (a tie, or the two orders disagreeing) is a tie.

- A local judge (any folder `load_for_inference` takes) reads its verdict from the next-token
  logits of the first tokens of "A", "B" and "tie" after its chat template's generation prompt:
  one forward per verdict, deterministic, nothing generated.
- An endpoint judge (any OpenAI-compatible `/v1/chat/completions`, `tunesmith serve` included) is
  asked for a short greedy reply with `logprobs`; the verdict is the most likely of the choice
  tokens among the first token's top log-probabilities, else the reply's first word; a reply that
  is neither counts as a tie and is counted in `judge_unreadable`. Plain HTTP (urllib): one POST per
  verdict needs no client library.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.rejects import parse_rows
from tunesmith.errors import ConfigError, ModelError

CHOICES = ("A", "B", "tie")
PLACEHOLDERS = ("{question}", "{answer_a}", "{answer_b}")

DEFAULT_TEMPLATE = """Please act as an impartial judge and compare the two answers below to the user's question. \
Choose the answer that follows the user's instructions and answers the question better: consider helpfulness, \
correctness, relevance and clarity. Do not let the order of the answers or their length influence you.
{reference_block}
[Question]
{question}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Reply with a single word: A if answer A is better, B if answer B is better, tie if they are equally good."""
REFERENCE_BLOCK = "\n[Reference answer]\n{reference}\n"


@dataclass
class JudgePrompt:
    messages: list[dict]  # ending with a user turn
    reference: str | None
    where: str


def is_endpoint(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


# --- inputs ---------------------------------------------------------------------------------------


def _prompt(row, where: str) -> JudgePrompt | str:
    if not isinstance(row, dict):
        return "row: expected a JSON object"
    text = row.get("prompt", row.get("question", row.get("instruction")))
    from tunesmith.eval.generate import prompt_messages

    messages = prompt_messages(row, text)
    if messages is None:
        return "prompt: missing or empty (give `prompt`, `question` or `messages` ending with a user turn)"
    reference = row.get("reference", row.get("output"))
    if reference is not None and not (isinstance(reference, str) and reference.strip()):
        return "reference: expected a non-empty string"
    return JudgePrompt(messages, reference, where)


def load_judge_prompts(path: str) -> list[JudgePrompt]:
    return parse_rows(path, _prompt, "judge prompt", "eval.judge.prompts")


def load_template(path: str | None) -> str | None:
    """The judge prompt of eval.judge.template (None: the built-in one)."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"eval.judge.template: cannot read `{path}` ({exc})") from None
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise ConfigError(
            f"eval.judge.template: `{path}` lacks {', '.join(missing)} (the judge prompt must hold "
            f"{', '.join(PLACEHOLDERS)}; {{reference}} is optional)"
        )
    return text


def check_judge(judge) -> None:
    """eval.judge's files read and validate (before any model loads)."""
    if judge.prompts:
        load_judge_prompts(judge.prompts)
    load_template(judge.template)
    ref = judge.model
    if not is_endpoint(ref) and "://" in ref:
        raise ConfigError(f"eval.judge.model: `{ref}`: an endpoint URL starts with http:// or https://")
    hub_id = ref.count("/") == 1 and not ref.startswith((".", "/", "~"))
    if not is_endpoint(ref) and ref != "default" and not hub_id and not Path(ref).exists():
        raise ConfigError(
            f"eval.judge.model: `{ref}` is neither a model folder, 'default', a hub id nor an "
            "endpoint URL (http://HOST:PORT/v1)"
        )


def question_text(messages: list[dict]) -> str:
    """What the judge is shown as the question: the user turn, or the whole conversation."""
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n".join(f"{m.get('role', 'user').capitalize()}: {m['content']}" for m in turns)


def judge_prompt(template: str | None, question: str, reference: str | None, answer_a: str, answer_b: str) -> str:
    if template is None:
        block = REFERENCE_BLOCK.replace("{reference}", reference) if reference else ""
        template = DEFAULT_TEMPLATE.replace("{reference_block}", block)
    # one pass over the placeholders, so a reply that contains "{answer_b}" is not substituted again
    values = {"{question}": question, "{answer_a}": answer_a, "{answer_b}": answer_b, "{reference}": reference or ""}
    return re.sub("|".join(re.escape(k) for k in values), lambda m: values[m.group(0)], template)


# --- the replies judged ---------------------------------------------------------------------------


def judge_replies(model, tokenizer, path: str, system: str | None, max_new_tokens: int, batch_size: int) -> dict:
    """One model's greedy replies to the judge prompts (kept in the result for the pairwise judge)."""
    from tunesmith.eval.generate import generate, prompt_text, valid_unicode

    rows = load_judge_prompts(path)
    replies = generate(
        model,
        tokenizer,
        [prompt_text(tokenizer, r.messages, system) for r in rows],
        max_new_tokens,
        batch_size,
        desc="judge prompts",
    )
    return {
        "judge_replies": [
            {
                "where": r.where,
                "question": valid_unicode(question_text(r.messages)),
                "reference": r.reference,
                "reply": g.text,
            }
            for r, g in zip(rows, replies)
        ]
    }


# --- judges ---------------------------------------------------------------------------------------


@dataclass
class Verdict:
    choice: str  # "A", "B" or "tie"
    scores: dict  # the choices' probabilities (local) or log-probabilities (endpoint); the raw reply if read
    readable: bool = True


class LocalJudge:
    """A causal LM read through the logits of the choice tokens after its generation prompt."""

    def __init__(self, ref: str, cache_dir: str | None = None, batch_size: int = 8):
        from tunesmith.methods.load import load_for_inference

        self.name = ref
        self.loaded = load_for_inference(ref, cache_dir)
        self.batch_size = batch_size
        tokenizer = self.loaded.tokenizer
        if not tokenizer.chat_template:
            raise ModelError(f"eval.judge.model: `{ref}` has no chat template; use an instruction-tuned judge")
        firsts = [tokenizer.encode(c, add_special_tokens=False)[:1] for c in CHOICES]
        if any(not f for f in firsts) or len({f[0] for f in firsts}) < len(CHOICES):
            raise ModelError(
                f"eval.judge.model: `{ref}`: the tokenizer does not give A, B and tie distinct first tokens ({firsts})"
            )
        self.ids = [f[0] for f in firsts]

    def verdicts(self, texts: list[str]) -> list[Verdict]:
        import torch

        from tunesmith.eval.mcq import choice_logits

        tokenizer = self.loaded.tokenizer
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
            for t in texts
        ]
        out = []
        for logits in choice_logits(self.loaded.model, tokenizer, prompts, self.batch_size):
            probs = torch.softmax(logits[self.ids], dim=-1).tolist()
            best = max(range(len(CHOICES)), key=probs.__getitem__)
            out.append(Verdict(CHOICES[best], {c: round(p, 4) for c, p in zip(CHOICES, probs)}))
        return out


def endpoint_request(
    url: str, api_key: str | None, timeout: float, method: str, path: str, body: dict | None = None
) -> dict:
    """One JSON request to an OpenAI-compatible endpoint; failures as ModelError naming the URL."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise ModelError(f"eval.judge.model: {method} {url + path} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ModelError(
            f"eval.judge.model: cannot reach {url + path} ({exc}); is the endpoint running? "
            "(e.g. `tunesmith serve --model JUDGE`)"
        ) from None


class EndpointJudge:
    """An OpenAI-compatible chat endpoint, asked for a short greedy reply with log-probabilities."""

    def __init__(self, url: str, api_model: str | None = None, api_key: str | None = None, timeout: float = 120.0):
        self.url, self.api_key, self.timeout = url.rstrip("/"), api_key, timeout
        self.logprobs = True
        self.name = api_model or self._first_model()

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        return endpoint_request(self.url, self.api_key, self.timeout, method, path, body)

    def _first_model(self) -> str:
        models = self._call("GET", "/models").get("data") or []
        if not models or not models[0].get("id"):
            raise ModelError(f"eval.judge.model: {self.url}/models lists no model; set eval.judge.api_model")
        return models[0]["id"]

    def verdict(self, text: str) -> Verdict:
        body = {"model": self.name, "messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 4}
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=20)
        try:
            choice = self._call("POST", "/chat/completions", body)["choices"][0]
        except ModelError as exc:
            if not self.logprobs or "logprobs" not in str(exc):
                raise
            self.logprobs = False  # an endpoint without log-probabilities: read the reply alone
            return self.verdict(text)
        return read_verdict(choice)

    def verdicts(self, texts: list[str]) -> list[Verdict]:
        return [self.verdict(t) for t in texts]


def _canonical(token: str) -> str | None:
    word = token.strip().rstrip(".:!").lower()
    return {"a": "A", "b": "B", "tie": "tie"}.get(word)


def read_verdict(choice: dict) -> Verdict:
    """The verdict of one chat completion choice: the likeliest choice token among the first token's
    top log-probabilities, else the reply's first word."""
    reply = (choice.get("message") or {}).get("content") or ""
    content = (choice.get("logprobs") or {}).get("content") or []
    if content:
        found: dict[str, float] = {}
        for entry in content[0].get("top_logprobs") or [content[0]]:
            name = _canonical(entry.get("token", ""))
            if name and entry.get("logprob", -math.inf) > found.get(name, -math.inf):
                found[name] = entry["logprob"]
        if found:
            return Verdict(max(found, key=found.__getitem__), {**found, "reply": reply})
    match = re.match(r"\W*(A|B|tie)\b", reply, re.IGNORECASE)
    if match:
        return Verdict(_canonical(match.group(1)), {"reply": reply})
    return Verdict("tie", {"reply": reply}, readable=False)


def reach_judge(judge) -> None:
    """An endpoint judge answers `GET /models` (before any training or measuring: a judge that is
    down is found before the work, not after it). A local judge is only checked for its files."""
    if not is_endpoint(judge.model):
        return
    answer = endpoint_request(
        judge.model.rstrip("/"), os.environ.get(judge.api_key_env) or None, min(judge.timeout, 15.0), "GET", "/models"
    )
    models = [m.get("id") for m in answer.get("data") or []]
    if judge.api_model and judge.api_model not in models:
        raise ModelError(
            f"eval.judge.api_model: `{judge.api_model}` is not served by {judge.model} (it lists "
            f"{models or 'no model'})"
        )


def open_judge(judge, cache_dir: str | None, batch_size: int):
    if is_endpoint(judge.model):
        return EndpointJudge(judge.model, judge.api_model, os.environ.get(judge.api_key_env) or None, judge.timeout)
    return LocalJudge(judge.model, cache_dir, batch_size)


# --- pairwise comparison ----------------------------------------------------------------------------


def judge_pairs(judge, candidate: list[dict], baseline: list[dict], template: str | None = None) -> dict:
    """Win/tie/loss of `candidate`'s replies against `baseline`'s (both `judge_replies` lists, matched
    by `where`), each pair judged with the candidate as answer A and again as answer B."""
    others = {r["where"]: r for r in baseline}
    missing = [r["where"] for r in candidate if r["where"] not in others]
    if missing or not candidate:
        raise ConfigError(
            f"eval.judge: the two runs did not answer the same judge prompts (missing: {missing[:5]}); "
            "measure both with the same eval.judge.prompts"
        )
    texts = []
    for row in candidate:
        other = others[row["where"]]["reply"]
        texts.append(judge_prompt(template, row["question"], row["reference"], row["reply"], other))
        texts.append(judge_prompt(template, row["question"], row["reference"], other, row["reply"]))
    verdicts = judge.verdicts(texts)
    details, counts = [], {"win": 0, "tie": 0, "loss": 0}
    for k, row in enumerate(candidate):
        first, swapped = verdicts[2 * k], verdicts[2 * k + 1]  # candidate is A, then B
        if first.choice == "A" and swapped.choice == "B":
            outcome = "win"
        elif first.choice == "B" and swapped.choice == "A":
            outcome = "loss"
        else:
            outcome = "tie"
        counts[outcome] += 1
        details.append(
            {
                "where": row["where"],
                "question": row["question"],
                "reference": row["reference"],
                "candidate": row["reply"],
                "baseline": others[row["where"]]["reply"],
                "candidate_first": first.choice,
                "candidate_second": swapped.choice,
                "outcome": outcome,
                "scores_first": first.scores,
                "scores_second": swapped.scores,
            }
        )
    n = len(candidate)
    singles = [v.choice for v in verdicts]
    consistent = sum(d["outcome"] != "tie" or (d["candidate_first"] == d["candidate_second"] == "tie") for d in details)
    return {
        "judge_win_rate": counts["win"] / n,
        "judge_tie_rate": counts["tie"] / n,
        "judge_loss_rate": counts["loss"] / n,
        "judge_wins": counts["win"],
        "judge_ties": counts["tie"],
        "judge_losses": counts["loss"],
        "judge_pairs": n,
        "judge_consistency": consistent / n,
        "judge_position_a_rate": singles.count("A") / len(singles),
        "judge_unreadable": sum(not v.readable for v in verdicts),
        "judge_model": str(judge.name),
        "judge_verdicts": details,
    }
