"""The server's counters, in Prometheus' text format (`GET /metrics`).

    metrics.request_done("/v1/chat/completions", 200)
    metrics.text()                # tunesmith_requests_total{endpoint="...",status="200"} 1 ...

No client library: a few counters, two gauges read from the batcher and two histograms, written
in the exposition format (https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

from __future__ import annotations

import collections
import threading
import time

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{bound}"}} {count}' for bound, count in zip(self.buckets, self.counts)]
        return out + [
            f'{name}_bucket{{le="+Inf"}} {self.count}',
            f"{name}_sum {self.sum:.6f}",
            f"{name}_count {self.count}",
        ]


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()  # (endpoint, status) -> count
        # streams that began as HTTP 200 and ended with an error chunk: (endpoint, the error's status) -> count
        self.stream_errors: collections.Counter = collections.Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.latency = Histogram(LATENCY_BUCKETS)
        self.started = time.time()

    def request_done(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1

    def stream_failed(self, endpoint: str, status: int) -> None:
        """A stream already answered 200 that ended with an error chunk: counted as that error."""
        with self._lock:
            self.stream_errors[(endpoint, status)] += 1

    def tokens(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def finished(self, seconds: float) -> None:
        with self._lock:
            self.latency.observe(seconds)

    def text(self, queued: int, running: int, ready: bool) -> str:
        with self._lock:
            lines = [
                "# HELP tunesmith_requests_total HTTP requests answered, by endpoint and status.",
                "# TYPE tunesmith_requests_total counter",
            ]
            lines += [
                f'tunesmith_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.requests.items())
            ]
            lines += [
                "# HELP tunesmith_stream_errors_total Streams that answered 200 and then ended with an error "
                "chunk, by endpoint and the error's status.",
                "# TYPE tunesmith_stream_errors_total counter",
            ]
            lines += [
                f'tunesmith_stream_errors_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.stream_errors.items())
            ]
            errors = collections.Counter()
            for (_, status), n in [*self.requests.items(), *self.stream_errors.items()]:
                if status >= 400:
                    errors[status] += n
            lines += [
                "# HELP tunesmith_errors_total Requests answered with an error (a failed stream by its error), "
                "by status.",
                "# TYPE tunesmith_errors_total counter",
            ]
            lines += [f'tunesmith_errors_total{{status="{s}"}} {n}' for s, n in sorted(errors.items())]
            lines += [
                "# HELP tunesmith_queue_length Requests waiting for a place in the batch.",
                "# TYPE tunesmith_queue_length gauge",
                f"tunesmith_queue_length {queued}",
                "# HELP tunesmith_running Requests in the running batch.",
                "# TYPE tunesmith_running gauge",
                f"tunesmith_running {running}",
                "# HELP tunesmith_ready 1 once the model is loaded.",
                "# TYPE tunesmith_ready gauge",
                f"tunesmith_ready {int(ready)}",
                "# HELP tunesmith_prompt_tokens_total Prompt tokens read.",
                "# TYPE tunesmith_prompt_tokens_total counter",
                f"tunesmith_prompt_tokens_total {self.prompt_tokens}",
                "# HELP tunesmith_completion_tokens_total Tokens generated and returned.",
                "# TYPE tunesmith_completion_tokens_total counter",
                f"tunesmith_completion_tokens_total {self.completion_tokens}",
                "# HELP tunesmith_time_to_first_token_seconds From arrival to the first generated token.",
                "# TYPE tunesmith_time_to_first_token_seconds histogram",
                *self.ttft.lines("tunesmith_time_to_first_token_seconds"),
                "# HELP tunesmith_request_seconds From arrival to the last token.",
                "# TYPE tunesmith_request_seconds histogram",
                *self.latency.lines("tunesmith_request_seconds"),
                "# HELP tunesmith_uptime_seconds Seconds since the server started.",
                "# TYPE tunesmith_uptime_seconds gauge",
                f"tunesmith_uptime_seconds {time.time() - self.started:.1f}",
            ]
        return "\n".join(lines) + "\n"
