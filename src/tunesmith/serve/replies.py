"""From a request's generated tokens to what the client receives: text pieces cut at stop strings,
logprobs in OpenAI's shapes, and the waiting that ties an HTTP request to its batcher jobs.

    choices = Choices(batcher, tokenizer, prompt_ids, sampling, n, stop, eos_ids, adapter, timeout, metrics)
    async for index, piece, end in choices.events(request.is_disconnected):
        ...   # piece: new text of choice `index`; end: (finish_reason, completion_tokens, tokens) at its end
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tunesmith.serve.batcher import AdapterGone, Batcher, Job, QueueFull, Sampling, Token
from tunesmith.serve.requests import ApiError


@dataclass
class ChoiceText:
    """One choice's text as its tokens arrive: decoded as a whole (so multi-token characters come out
    right), shown up to a stop string, holding back a tail that could still become one."""

    tokenizer: object
    stop: list[str]
    tokens: list[Token] = field(default_factory=list)
    sent: int = 0
    stopped: bool = False

    def feed(self, token: Token) -> str:
        self.tokens.append(token)
        text = self.tokenizer.decode([t.id for t in self.tokens], skip_special_tokens=True)
        cuts = [text.index(s) for s in self.stop if s in text]
        if cuts:
            self.stopped, text = True, text[: min(cuts)]
            safe = len(text)
        else:
            hold = max((len(s) - 1 for s in self.stop), default=0)
            safe = len(text) - hold
            if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
                safe = min(safe, len(text) - 1)
        piece = text[self.sent : safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        return piece

    def rest(self) -> str:
        """What was held back, once generation has ended without a stop string."""
        text = self.tokenizer.decode([t.id for t in self.tokens], skip_special_tokens=True)
        piece = "" if self.stopped else text[self.sent :]
        self.sent = len(text)
        return piece

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def chat_logprobs(self, tokens: list[Token]) -> dict:
        def entry(token_id, logprob):
            text = self.token_text(token_id)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

        return {
            "content": [dict(entry(t.id, t.logprob), top_logprobs=[entry(i, lp) for i, lp in t.top]) for t in tokens]
        }

    def text_logprobs(self, tokens: list[Token], start: int = 0) -> dict:
        texts = [self.token_text(t.id) for t in tokens]
        offsets, at = [], start
        for text in texts:
            offsets.append(at)
            at += len(text)
        return {
            "tokens": texts,
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{self.token_text(i): lp for i, lp in t.top} for t in tokens],
            "text_offset": offsets,
        }


def make_jobs(
    prompt_ids: list[int], sampling: Sampling, n: int, eos_ids: set[int], adapter: str | None, emit_for, constraint=None
) -> list[Job]:
    """n jobs for one request; seeded choices get seed, seed+1, ... so they differ and repeat.
    `constraint()` makes each choice's own token constraint (serve.json_mode), or None."""
    jobs = []
    for index in range(n):
        own = Sampling(**{**sampling.__dict__, "seed": None if sampling.seed is None else sampling.seed + index})
        jobs.append(
            Job(
                prompt_ids,
                own,
                eos_ids,
                emit_for(index),
                adapter,
                allowed=constraint() if constraint is not None else None,
            )
        )
    return jobs


class Choices:
    """The n jobs of one request. Creating it submits them (ApiError 429 when the queue is full), so
    a refusal is answered before a stream starts; `events()` yields (index, piece, None) as text
    comes, then (index, "", (finish_reason, completion_tokens, tokens)) when a choice ends, and raises
    ApiError 504 once `timeout` seconds have passed since submission. `cancel()` (idempotent, also
    run when `events()` is left early) frees the request's places in the batch."""

    def __init__(
        self,
        batcher: Batcher,
        tokenizer,
        prompt_ids: list[int],
        sampling: Sampling,
        n: int,
        stop: list[str],
        eos_ids: set[int],
        adapter: str | None,
        timeout: float | None,
        metrics,
        constraint=None,
    ):
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()

        def emitter(index: int):
            def emit(event):  # called from the scheduler thread
                try:
                    loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))
                except RuntimeError:  # the event loop is closed (the server stopped): nobody reads this
                    pass

            return emit

        self.jobs = make_jobs(prompt_ids, sampling, n, eos_ids, adapter, emitter, constraint)
        self.texts = [ChoiceText(tokenizer, stop) for _ in self.jobs]
        self.timeout, self.metrics = timeout, metrics
        self.started, self.ttft = time.monotonic(), None
        try:
            for job in self.jobs:
                batcher.submit(job)
        except QueueFull as exc:
            self.cancel()
            raise ApiError(
                429,
                f"the server is busy: {exc}; retry later",
                code="queue_full",
                kind="rate_limit_error",
                headers={"Retry-After": "1"},
            ) from None

    def generated(self) -> int:
        """Tokens generated so far over all choices (the whole count once every choice has ended)."""
        return sum(len(text.tokens) for text in self.texts)

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()  # a no-op for finished jobs

    async def events(self, disconnected=None):
        """`disconnected`: an async check (the HTTP request's), asked after every token (so a request
        whose client left stops within one decode step) and every second while no token comes."""
        deadline = None if self.timeout is None else self.started + self.timeout
        open_choices, first = set(range(len(self.jobs))), True
        try:
            while open_choices:
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    raise ApiError(
                        504,
                        f"the request took longer than the server's --request-timeout ({self.timeout:g} s)",
                        code="timeout",
                        kind="server_error",
                    )
                try:
                    index, event = await asyncio.wait_for(self.queue.get(), wait)
                except asyncio.TimeoutError:
                    if disconnected is not None and await disconnected():
                        return
                    continue
                text = self.texts[index]
                if isinstance(event, Token) and disconnected is not None and await disconnected():
                    return  # the client left: `finally` frees the batch places before the next step
                if isinstance(event, Token):
                    if first:
                        self.ttft = time.monotonic() - self.started
                        self.metrics.first_token(self.ttft)
                        first = False
                    if text.stopped:
                        continue  # generated after the stop string, before the job saw its cancel
                    piece = text.feed(event)
                    if piece:
                        yield index, piece, None
                    if text.stopped:
                        self.jobs[index].cancel()
                    continue
                kind, detail = event
                if kind == "error" and isinstance(detail, AdapterGone):
                    raise ApiError(404, str(detail), "model", "model_not_found")
                if kind == "error":
                    raise ApiError(
                        500,
                        f"generation failed: {type(detail).__name__}: {detail}",
                        kind="server_error",
                        code="generation_failed",
                    )
                open_choices.discard(index)
                piece = text.rest()
                if piece:
                    yield index, piece, None
                finish = "stop" if text.stopped or detail == "stop" else detail
                if finish == "cancelled":  # by the server's shutdown
                    raise ApiError(503, "the server is shutting down", code="shutting_down", kind="server_error")
                yield index, "", (finish, len(text.tokens), text.tokens)
            self.metrics.finished(time.monotonic() - self.started)
        finally:
            self.cancel()
