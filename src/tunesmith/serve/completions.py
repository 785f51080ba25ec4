"""The completion endpoints: from a request body to its reply, whole or streamed, in either OpenAI
format (serve.formats).

    add_completion_routes(app, state, max_tokens_cap=1024, request_timeout=600.0)

A request is checked, rendered to prompt ids and checked against the model's context before its
choices are submitted (serve.replies.Choices: 429 when the queue is full), so every refusal is an
HTTP status. Once a stream has begun, an error is sent in it as an event, never as a cut stream. A
client that leaves cancels its generation: 499 for a whole reply, the stream closed for a stream.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from fastapi import Request  # at module level: FastAPI resolves the handlers' (string) annotations here
from starlette.responses import JSONResponse, StreamingResponse

from tunesmith.serve.access import note
from tunesmith.serve.formats import FORMATS, Completion
from tunesmith.serve.host import ModelHost, ServerState, check_context, eos_ids
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.replies import Choices, ChoiceText
from tunesmith.serve.requests import ApiError, model_name, read_json

log = logging.getLogger(__name__)


def add_completion_routes(app, state: ServerState, max_tokens_cap: int, request_timeout: float | None) -> None:
    """POST /v1/chat/completions and /v1/completions on `app`."""
    for format_ in FORMATS:
        app.post(format_.route)(_route(state, format_, max_tokens_cap, request_timeout))


def _route(state: ServerState, format_: type[Completion], max_tokens_cap: int, request_timeout: float | None):
    async def completion_route(request: Request):
        body = await read_json(request)
        name = model_name(body, state.host.names)
        note(request, model=name)
        completion = format_(body, max_tokens_cap)
        note(request, stream=completion.options.stream, n=completion.options.n)
        loaded = state.host.loaded_for(name)
        constraint = await completion.constraint(loaded)
        prompt_ids = completion.prompt_ids(loaded)
        note(request, prompt_tokens=len(prompt_ids))
        check_context(loaded, prompt_ids, completion.options, completion.param)
        return await respond(
            request, state.host, state.metrics, name, completion, prompt_ids, constraint, request_timeout
        )

    return completion_route


class Reply:
    """What every part of one request's reply shares: its id, creation time, model and shapes."""

    def __init__(self, completion: Completion, name: str, prompt_ids: list[int], tokenizer):
        self.completion, self.name, self.prompt_tokens = completion, name, len(prompt_ids)
        self.ident, self.created = f"{completion.id_prefix}-{uuid.uuid4().hex[:24]}", int(time.time())
        self.tokens_text = ChoiceText(tokenizer, [])

    def body(self, object_: str, choices: list, **extra) -> dict:
        return {
            "id": self.ident,
            "object": object_,
            "created": self.created,
            "model": self.name,
            "choices": choices,
            **extra,
        }

    def usage(self, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def logprobs(self, tokens: list) -> dict | None:
        if self.completion.options.sampling.top_logprobs is None:
            return None
        return self.completion.logprobs(self.tokens_text, tokens)


async def respond(
    request: Request,
    host: ModelHost,
    metrics: Metrics,
    name: str,
    completion: Completion,
    prompt_ids: list[int],
    constraint,
    request_timeout: float | None,
):
    """Submit the request's choices, then answer with the whole reply or a stream of server-sent events."""
    loaded, options = host.loaded_for(name), completion.options
    reply = Reply(completion, name, prompt_ids, loaded.tokenizer)
    choices = Choices(
        host.batcher,
        loaded.tokenizer,
        prompt_ids,
        options.sampling,
        options.n,
        options.stop,
        eos_ids(loaded),
        host.adapter_for(name),
        request_timeout,
        metrics,
        constraint,
    )
    if not options.stream:
        return await _whole(request, reply, choices, metrics)
    return _Stream(_events(request, reply, choices, metrics), on_close=choices.cancel, media_type="text/event-stream")


async def _whole(request: Request, reply: Reply, choices: Choices, metrics: Metrics):
    completion, n = reply.completion, reply.completion.options.n
    texts, ends = [[] for _ in range(n)], [None] * n
    async for index, piece, end in choices.events(request.is_disconnected):
        texts[index].append(piece)
        ends[index] = end
    if any(end is None for end in ends):  # the client left: nobody reads this answer
        note(request, completion_tokens=choices.generated(), ttft_seconds=_rounded(choices.ttft))
        return JSONResponse({}, status_code=499)
    out = [
        completion.choice(index, "".join(texts[index]), finish, reply.logprobs(tokens))
        for index, (finish, _, tokens) in enumerate(ends)
    ]
    generated = sum(end[1] for end in ends)
    metrics.tokens(reply.prompt_tokens * n, generated)
    note(
        request,
        completion_tokens=generated,
        ttft_seconds=_rounded(choices.ttft),
        finish_reasons=[choice["finish_reason"] for choice in out],
    )
    return reply.body(completion.object, out, usage=reply.usage(generated))


async def _events(request: Request, reply: Reply, choices: Choices, metrics: Metrics):
    completion, n = reply.completion, reply.completion.options.n

    def chunk(choices_: list, **extra) -> str:
        return f"data: {json.dumps(reply.body(completion.chunk_object, choices_, **extra), ensure_ascii=False)}\n\n"

    generated, finishes = 0, []
    try:
        if completion.first_delta is not None:
            for index in range(n):
                yield chunk([completion.chunk_choice(index, completion.first_delta)])
        held = [[] for _ in range(n)]  # the text of choices sent once whole
        async for index, piece, end in choices.events():
            if end is None and completion.holds_text:
                held[index].append(piece)
            elif end is None:
                yield chunk([completion.chunk_choice(index, completion.delta(piece))])
            else:
                generated += end[1]
                finish = end[0]
                finishes.append(finish)
                if completion.holds_text:
                    delta, finish = completion.whole_delta("".join(held[index]), finish)
                    yield chunk([completion.chunk_choice(index, delta)])
                yield chunk([completion.chunk_choice(index, completion.end_delta(), finish, reply.logprobs(end[2]))])
        if completion.options.include_usage:
            yield chunk([], usage=reply.usage(generated))
        metrics.tokens(reply.prompt_tokens * n, generated)
        note(request, finish_reasons=finishes, done=True)
        yield "data: [DONE]\n\n"
    except Exception as exc:
        if not isinstance(exc, ApiError):
            log.exception("a streamed reply failed")
            exc = ApiError(
                500, f"the reply failed: {type(exc).__name__}: {exc}", kind="server_error", code="internal_error"
            )
        note(request, **{k: v for k, v in exc.body()["error"].items() if k in ("message", "param", "code")})
        metrics.stream_failed(request.url.path, exc.status)
        yield f"data: {json.dumps(exc.body(), ensure_ascii=False)}\n\n"
    finally:
        choices.cancel()
        note(request, completion_tokens=choices.generated(), ttft_seconds=_rounded(choices.ttft))


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


class _Stream(StreamingResponse):
    """A StreamingResponse whose generation is cancelled however the response ends, even when the
    client leaves before the body's first chunk (its generator then never starts, so its own
    `finally` would never run)."""

    def __init__(self, content, on_close: Callable, **kwargs):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
