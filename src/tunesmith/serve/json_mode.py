"""JSON modes: `response_format` `json_object` / `json_schema`, by constrained decoding.

    {"response_format": {"type": "json_object"}}                                  # any JSON value
    {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {...}}}}

At every step, a request in a JSON mode may only take a token that keeps its reply a prefix of
JSON that the schema accepts (lm-format-enforcer's character-level JSON-schema parser walks the
tokenizer's vocabulary as a prefix tree); the end-of-turn token is allowed once the value is
complete, and runs of whitespace are bounded, so the reply ends. The mask is applied to the row's
logits in the batcher before sampling (temperature, top_p and penalties act on the allowed tokens
only); other rows of the batch are untouched. A reply cut by `max_tokens` is a JSON prefix with
`finish_reason: length`, as with OpenAI.

The vocabulary's table (each token's text, built once per tokenizer on its first JSON request)
is kept on the tokenizer object, which the server loads once per model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tunesmith.serve.requests import ApiError

_BUILDING = threading.Lock()
Constraint = Callable[[list[int]], list[int]]  # the whole sequence so far (prompt + reply) -> allowed ids


def response_constraint(body: dict, tokenizer, eos_ids: set[int]) -> Callable[[], Constraint] | None:
    """A factory of per-choice constraints for the request's `response_format`, or None (text)."""
    fmt = body.get("response_format")
    if fmt is None or fmt == {"type": "text"}:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        raise ApiError(400, "`response_format.type` must be text, json_object or json_schema", "response_format")
    schema = None
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise ApiError(
                400,
                '`response_format.json_schema` must be {"name": ..., "schema": {a JSON schema}}',
                "response_format.json_schema",
            )
        schema = spec["schema"]
    from lmformatenforcer import JsonSchemaParser, TokenEnforcer

    try:
        parser = JsonSchemaParser(schema)
    except Exception as exc:
        raise ApiError(
            400,
            f"`response_format.json_schema.schema` is not a schema this server can follow: {exc}",
            "response_format.json_schema.schema",
        ) from None
    data = _tokenizer_data(tokenizer, eos_ids)

    def constraint() -> Constraint:
        enforcer = TokenEnforcer(data, parser)  # one per choice: it keeps the parser state of its sequence
        return lambda sequence: enforcer.get_allowed_tokens(sequence).allowed_tokens

    return constraint


def _tokenizer_data(tokenizer, eos_ids: set[int]):
    """lm-format-enforcer's vocabulary table for `tokenizer` (built once, kept on the tokenizer).
    Built here with its public TokenEnforcerTokenizerData: its transformers integration imports a
    module that transformers 5 no longer has. Each regular token's text is decoded after a "0"
    token, so a token that starts a word keeps its leading space (the integration's own rule)."""
    data = getattr(tokenizer, "_tunesmith_json_vocabulary", None)
    if data is not None:
        return data
    with _BUILDING:  # two first JSON requests at once: one builds, the other waits and reuses it
        data = getattr(tokenizer, "_tunesmith_json_vocabulary", None)
        if data is None:
            data = _build_tokenizer_data(tokenizer, eos_ids)
            tokenizer._tunesmith_json_vocabulary = data
    return data


def _build_tokenizer_data(tokenizer, eos_ids: set[int]):
    from lmformatenforcer import TokenEnforcerTokenizerData

    size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    ids = [i for i in range(size) if i not in special]
    after_zero = tokenizer.batch_decode([[zero, i] for i in ids])
    alone = tokenizer.batch_decode([[i] for i in ids])
    regular = [(i, text[1:], len(text) - 1 > len(own)) for i, text, own in zip(ids, after_zero, alone)]

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens).rstrip("\ufffd")  # a partial multi-byte character is not text yet

    return TokenEnforcerTokenizerData(regular, decode, sorted(eos_ids), False, size)
