"""Text streamed from a generation thread that can neither hang its reader nor outlive it.

    generation = Generation(model, tokenizer, inputs, max_new_tokens=64)
    for piece in generation:      # text as it is generated
        print(piece, end="")
    generation.ids                # prompt + completion ids, once the loop has ended

transformers' `TextIteratorStreamer` hands text from `model.generate`, running in a thread, to the
reader. Left alone, a reader waits forever when generate raises (out of memory, a too-long
input), because the streamer's end-of-stream mark never comes; and a generation goes on after
its reader left (a closed HTTP stream). Here:
- the thread closes the stream whatever happens, and its exception is raised in the reader;
- the reader waits on the streamer's queue with a timeout and, each time it expires, checks that
  the thread is still alive, so a stream can never outlast its thread;
- when the reader stops early (breaks, is closed, raises), a stopping criterion ends the
  generation at its next token, and the thread is joined.
"""

from __future__ import annotations

import queue
import threading

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

POLL_SECONDS = 0.25  # how often a waiting reader checks that the generation thread is alive
JOIN_SECONDS = 30.0  # how long a reader that left waits for the generation to notice


class _Cancelled(StoppingCriteria):
    """Stops generation once the reader has left (an Event set from the reader's thread)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class Generation:
    """`model.generate(**inputs, **kwargs)` in a thread; iterate for its text (once)."""

    def __init__(self, model, tokenizer, inputs: dict, /, poll: float = POLL_SECONDS, **kwargs):
        # positional-only: generate's own keywords (e.g. `tokenizer` for stop_strings) go through **kwargs
        self.streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=poll)
        self.cancelled = threading.Event()
        criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
        criteria.append(_Cancelled(self.cancelled))
        self.ids = None
        self.error: BaseException | None = None
        self._model, self._kwargs = model, dict(inputs, streamer=self.streamer, stopping_criteria=criteria, **kwargs)
        self._thread = threading.Thread(target=self._run, daemon=True, name="tunesmith-generate")

    def _run(self) -> None:
        try:
            with torch.no_grad():
                self.ids = self._model.generate(**self._kwargs)
        except BaseException as exc:
            self.error = exc
            self.streamer.end()  # the end-of-stream mark generate did not send

    def __iter__(self):
        self._thread.start()
        finished = False
        try:
            while True:
                try:
                    piece = next(self.streamer)
                except StopIteration:
                    break
                except queue.Empty:
                    if self._thread.is_alive():
                        continue
                    # the thread is gone without closing the stream: take what it left, then stop
                    yield from self._drain()
                    break
                yield piece
            finished = True
        finally:
            if not finished:
                self.cancelled.set()  # the reader left: end the generation at its next token
            self._thread.join(None if finished else JOIN_SECONDS)
        if self.error is not None:
            raise self.error

    def _drain(self):
        while True:
            try:
                piece = self.streamer.text_queue.get_nowait()
            except queue.Empty:
                return
            if piece == self.streamer.stop_signal:
                return
            yield piece
