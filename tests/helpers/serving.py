"""A real HTTP server for the serve tests: uvicorn in a thread on a free loopback port, plain HTTP
requests to it, and a reader for the batcher's jobs."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def post(url: str, body, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until(check, seconds=20):
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.02)


class Collect:
    """A batcher job's reader: its tokens and how it ended."""

    def __init__(self):
        self.events, self.done = queue.Queue(), threading.Event()

    def __call__(self, event):
        from tunesmith.serve.batcher import Token

        self.events.put(event)
        if not isinstance(event, Token):
            self.done.set()

    def result(self, timeout=60):
        from tunesmith.serve.batcher import Token

        assert self.done.wait(timeout), "the job did not end"
        events = list(self.events.queue)
        return [e.id for e in events if isinstance(e, Token)], events[-1]
