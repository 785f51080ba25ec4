"""Continuous batching for the server: one scheduler thread generates every running request together.

    batcher = Batcher(model, pad_id=tokenizer.pad_token_id, max_batch=16, max_queue=64)
    job = Job(prompt_ids, Sampling(max_tokens=32), eos_ids={2}, emit=print)
    batcher.submit(job)           # raises QueueFull when max_queue requests already wait
    job.cancel()                  # a client that left: the job leaves the batch at the next step

The loop, one step at a time: requests that wait join the running batch (their prompts are run
together, left-padded, and their KV caches appended to the batch's, padded on the left to one
length); otherwise every running request gets its next token from one forward pass; finished or
cancelled requests leave the batch at once (their rows of the cache are dropped, and cache columns
no row uses any more are cut). Position ids come from each row's attention mask, so a request's
tokens see the same positions and the same keys as when it runs alone: greedy results equal
`model.generate` on the request alone (tests/serve/test_serve_batching.py).

Each request keeps its own sampling options (temperature, top_p, seed through its own
torch.Generator, presence/frequency penalties, logprobs). Several LoRA adapters of one base share a
batch through PEFT's mixed-adapter forward (`adapter_names`, one name per row); where PEFT cannot
mix them (DoRA), requests are grouped: a request for another adapter joins once the batch is empty.

Why not transformers' `ContinuousBatchingManager`: it runs on a CPU (checked with SmolLM2-135M on
5.24), but takes one generation config for all requests (no per-request seed or stop strings),
swaps the model's attention to its paged variant, and cannot mix PEFT adapters in one batch.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from tunesmith.models.compat import cache_kwargs

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


class QueueFull(Exception):
    """max_queue requests already wait; the caller answers 429."""


@dataclass
class Sampling:
    max_tokens: int = 16
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int | None = None  # None: no logprobs; 0..20: the chosen token's and this many alternatives


@dataclass
class Token:
    """One generated token, as emitted to the job's reader."""

    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


class Job:
    """One sequence to generate. `emit` is called from the scheduler thread with a Token per token,
    then once with ("end", reason) -- reason "stop" (an end-of-sequence token), "length" or
    "cancelled" -- or ("error", exception)."""

    def __init__(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        eos_ids: set[int],
        emit: Callable,
        adapter: str | None = None,
        allowed: Callable[[list[int]], list[int]] | None = None,
    ):
        if not prompt_ids:
            raise ValueError("a job needs at least one prompt token")
        self.prompt_ids, self.sampling, self.eos_ids, self.emit, self.adapter = (
            prompt_ids,
            sampling,
            eos_ids,
            emit,
            adapter,
        )
        self.allowed = allowed  # constrained decoding (serve.json_mode): the sequence so far -> the ids it may take
        self.tokens: list[int] = []
        self.counts: collections.Counter = collections.Counter()
        self.generator = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class AdapterGone(LookupError):
    """A job's adapter was removed (DELETE /v1/adapters) after its request was checked, before it joined."""


class Batcher:
    """The scheduler thread and its bounded queue. `mixed_adapters`: the model is a PEFT model that
    takes `adapter_names` (one adapter per row); `activate(name)`: switch a model that cannot mix
    (called with the batch empty). Neither given: one model, no adapters. `known(adapter)`: whether
    an adapter is still loaded; a job for one that is not ends with AdapterGone instead of joining
    (and failing the whole step for the jobs beside it)."""

    def __init__(
        self,
        model,
        pad_id: int,
        max_batch: int = 16,
        max_queue: int = 64,
        mixed_adapters: bool = False,
        activate: Callable[[str | None], None] | None = None,
        recompute: bool = False,
        known: Callable[[str], bool] | None = None,
    ):
        if max_batch < 1 or max_queue < 0:
            raise ValueError("serve: --max-batch must be at least 1 and --max-queue at least 0")
        # recompute: a model whose forward owns the cache and positions (PEFT's virtual-token methods
        # prepend tokens or a prefix cache): one request at a time, the whole sequence run each step
        self.recompute = recompute
        max_batch = 1 if recompute else max_batch
        self.model, self.pad_id, self.max_batch, self.max_queue = model, pad_id, max_batch, max_queue
        self.mixed_adapters, self.activate, self.known = mixed_adapters, activate, known
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (rows, columns) 1 where a row has a token
        self._last: torch.Tensor | None = None  # (rows,) each row's newest token, not yet run through the model
        self._active_adapter: str | None = None
        self._wake = threading.Condition()
        self._tasks: list[Callable[[], None]] = []  # run by the loop between two steps (between_steps)
        self._stopping = False
        self.steps = 0
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tunesmith-batcher")
        self._thread.start()

    # --- the public side: submit, counts, stop ----------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._wake:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) >= self.max_queue + max(0, self.max_batch - len(self.running)):
                raise QueueFull(f"{len(self.waiting)} requests are waiting (--max-queue {self.max_queue})")
            self.waiting.append(job)
            self._wake.notify()

    @property
    def queued(self) -> int:
        return len(self.waiting)

    @property
    def active(self) -> int:
        return len(self.running)

    def between_steps(self, task: Callable[[], Any], timeout: float = 300.0) -> Any:
        """Run `task` on the scheduler thread between two steps, so no forward pass runs while it
        changes the model (an adapter loaded or removed at run time); wait for it and return its
        result, or raise its exception."""
        done, box = threading.Event(), {}

        def run():
            try:
                box["value"] = task()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        with self._wake:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            self._tasks.append(run)
            self._wake.notify()
        if not done.wait(timeout):
            raise TimeoutError(f"the generation loop did not reach a step boundary within {timeout:.0f} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def uses(self, adapter: str | None) -> int:
        """How many waiting or running requests are for `adapter`."""
        with self._wake:
            return sum(job.adapter == adapter for job in list(self.waiting) + self.running if not job.cancelled)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what waits and what runs, and end the thread."""
        with self._wake:
            self._stopping = True
            for job in list(self.waiting) + list(self.running):
                job.cancel()
            self._wake.notify()
        self._thread.join(timeout)

    # --- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self.waiting and not self.running and not self._tasks:
                    self._wake.wait()
                tasks, self._tasks = self._tasks, []
            for task in tasks:  # between two steps: nothing is in a forward pass
                task()
            with self._wake:
                if self._stopping and not self.running and not self.waiting:
                    return
                joining = self._take_waiting()
            try:
                with torch.no_grad():
                    if joining:
                        self._prefill(joining)
                    elif self.running:
                        self._decode()
            except Exception as exc:
                for job in self.running + joining:
                    job.emit(("error", exc))
                self.running, self._cache, self._mask, self._last = [], None, None, None
                continue
            self._retire()

    def _take_waiting(self) -> list[Job]:
        """Jobs that join the batch now (called under the lock); cancelled waiting jobs are ended."""
        joining, kept = [], collections.deque()
        while self.waiting:
            job = self.waiting.popleft()
            if job.cancelled:
                job.emit(("end", "cancelled"))
            elif job.adapter is not None and self.known is not None and not self.known(job.adapter):
                job.emit(("error", AdapterGone(f"the adapter `{job.adapter}` was removed before this request ran")))
            elif len(self.running) + len(joining) < self.max_batch and self._fits(job, joining):
                joining.append(job)
            else:
                kept.append(job)
        self.waiting = kept
        return joining

    def _fits(self, job: Job, joining: list[Job]) -> bool:
        if self.mixed_adapters or self.activate is None:
            return True
        group = (self.running or joining or [job])[0].adapter
        return job.adapter == group

    def _adapter_names(self, jobs: list[Job]) -> dict:
        return {"adapter_names": [job.adapter or BASE_ADAPTER for job in jobs]} if self.mixed_adapters else {}

    def _prefill(self, jobs: list[Job]) -> None:
        if (
            not self.mixed_adapters
            and self.activate is not None
            and jobs[0].adapter != self._active_adapter
            and not self.running
        ):
            self.activate(jobs[0].adapter)
            self._active_adapter = jobs[0].adapter
        width = max(len(job.prompt_ids) for job in jobs)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, job in enumerate(jobs):
            ids[row, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids)
            mask[row, width - len(job.prompt_ids) :] = 1
        device = self._device()
        if self.recompute:
            out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=1)
            self._join(jobs, None, mask, self._sample(jobs, out.logits[:, -1, :]))
            return
        cache = DynamicCache()
        out = self.model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
            **cache_kwargs(cache),
            use_cache=True,
            logits_to_keep=1,
            **self._adapter_names(jobs),
        )
        last = self._sample(jobs, out.logits[:, -1, :])
        self._join(jobs, cache, mask, last)  # the model filled `cache` in place

    def _decode(self) -> None:
        device = self._device()
        mask = torch.cat([self._mask, torch.ones((len(self.running), 1), dtype=torch.long)], dim=1)
        if self.recompute:  # one job: its prompt and every token so far
            job = self.running[0]
            ids = torch.tensor([job.prompt_ids + job.tokens], device=device)
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1)
            self._mask, self._last = mask, self._sample(self.running, out.logits[:, -1, :])
            self.steps += 1
            return
        out = self.model(
            input_ids=self._last[:, None].to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.sum(-1, keepdim=True) - 1).to(device),
            **cache_kwargs(self._cache),
            use_cache=True,
            **self._adapter_names(self.running),
        )
        self._mask = mask  # the model appended this step's keys and values to self._cache
        self._last = self._sample(self.running, out.logits[:, -1, :])
        self.steps += 1

    def _device(self):
        return next(self.model.parameters()).device

    # --- sampling --------------------------------------------------------------------------------

    def _sample(self, jobs: list[Job], logits: torch.Tensor) -> torch.Tensor:
        """One token per row with that row's options; emits it. Returns the tokens (rows,)."""
        logits = logits.float().cpu()
        chosen = torch.empty(len(jobs), dtype=torch.long)
        for row, job in enumerate(jobs):
            s, scores = job.sampling, logits[row]
            if job.counts and (s.presence_penalty or s.frequency_penalty):
                seen = torch.tensor(list(job.counts))
                counts = torch.tensor([job.counts[t] for t in job.counts], dtype=scores.dtype)
                scores = scores.clone()
                scores[seen] -= s.frequency_penalty * counts + s.presence_penalty
            if job.allowed is not None:
                allowed = job.allowed(job.prompt_ids + job.tokens)
                masked = torch.full_like(scores, float("-inf"))
                masked[allowed] = scores[allowed]
                scores = masked
            if s.temperature < torch.finfo(scores.dtype).tiny:
                # 0 is greedy, and so is the limit: a temperature the scores' dtype rounds to 0 would divide
                # the best score by 0 (NaN), failing the step of every request in the batch
                token = int(scores.argmax())
            else:
                # shifted so that the best score is 0: a tiny temperature (1e-40) overflows scores / t to inf and
                # softmax to NaN, and the failed step would end every request in the batch
                probs = torch.softmax((scores - scores.max()) / s.temperature, dim=-1)
                if s.top_p < 1.0:
                    probs = _top_p(probs, s.top_p)
                token = int(torch.multinomial(probs, 1, generator=job.generator))
            chosen[row] = token
            job.tokens.append(token)
            job.counts[token] += 1
            job.emit(_token(token, logits[row], s.top_logprobs))
        return chosen

    # --- the batch's cache -----------------------------------------------------------------------

    def _join(self, jobs: list[Job], cache, mask: torch.Tensor, last: torch.Tensor) -> None:
        if not self.running:
            self.running, self._cache, self._mask, self._last = list(jobs), cache, mask, last
            return
        old_width, new_width = self._mask.shape[1], mask.shape[1]
        width = max(old_width, new_width)
        layers = []
        for (k0, v0, s0), (k1, v1, _) in zip(self._cache, cache):
            if s0 is not None:
                raise RuntimeError("serve: joining a running batch is not supported for sliding-window caches")
            layers.append(
                (
                    torch.cat([_pad_left(k0, width), _pad_left(k1, width)]),
                    torch.cat([_pad_left(v0, width), _pad_left(v1, width)]),
                )
            )
        self._cache = DynamicCache(ddp_cache_data=layers)
        self._mask = torch.cat([_pad_left_mask(self._mask, width), _pad_left_mask(mask, width)])
        self._last = torch.cat([self._last, last])
        self.running = self.running + list(jobs)

    def _retire(self) -> None:
        """Drop finished and cancelled rows, and cache columns that no row uses any more."""
        keep = []
        for row, job in enumerate(self.running):
            if job.cancelled:
                job.emit(("end", "cancelled"))
            elif job.tokens and job.tokens[-1] in job.eos_ids:
                job.emit(("end", "stop"))
            elif len(job.tokens) >= job.sampling.max_tokens:
                job.emit(("end", "length"))
            else:
                keep.append(row)
        if len(keep) == len(self.running):
            return
        if not keep:
            self.running, self._cache, self._mask, self._last = [], None, None, None
            return
        index = torch.tensor(keep)
        mask = self._mask[index]
        first = int((mask.sum(0) > 0).nonzero()[0])  # columns left of this are padding in every kept row
        device_index = index.to(self._device())
        self._cache = DynamicCache(
            ddp_cache_data=[(k[device_index, :, first:], v[device_index, :, first:]) for k, v, _ in self._cache]
        )
        self._mask, self._last = mask[:, first:], self._last[index]
        self.running = [self.running[row] for row in keep]


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """(rows, heads, columns, dim) -> `width` columns, zeros on the left (masked out)."""
    missing = width - tensor.shape[-2]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[-2] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)


def _pad_left_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([mask.new_zeros((mask.shape[0], width - mask.shape[1])), mask], dim=1)


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches top_p (at least one)."""
    ordered, order = probs.sort(descending=True)
    outside = ordered.cumsum(-1) - ordered > top_p
    ordered[outside] = 0
    kept = torch.zeros_like(probs).scatter(0, order, ordered)
    return kept / kept.sum()


def _token(token: int, logits: torch.Tensor, top: int | None) -> Token:
    if top is None:
        return Token(token)
    logprobs = torch.log_softmax(logits, dim=-1)
    alternatives = []
    if top:
        values, ids = logprobs.topk(top)
        alternatives = list(zip(ids.tolist(), values.tolist()))
    return Token(token, float(logprobs[token]), alternatives)
