"""The structured access log: one JSON object per HTTP request, written once its response has ended.

    tunesmith serve --model out/demo --access-log -                 # to stderr (the default)
    tunesmith serve --model out/demo --access-log /var/log/ts.jsonl # appended to a file (logrotate-safe)
    tunesmith serve --model out/demo --access-log off

    {"time": "2026-11-28T10:31:02.114Z", "request_id": "9c1e...", "client": "127.0.0.1:53422",
     "method": "POST", "path": "/v1/chat/completions", "status": 200, "seconds": 1.234, "bytes": 2210,
     "model": "demo", "stream": true, "n": 1, "prompt_tokens": 31, "completion_tokens": 40,
     "ttft_seconds": 0.212, "finish_reasons": ["stop"], "outcome": "ok"}

A line is written when the response has ended, so a stream's line has its whole duration and token
counts, and a stream the client dropped says so (`"outcome": "client_closed"`, with the tokens sent
until then). `outcome` is `ok`, `error` (status >= 400, or an error sent inside a stream; the line
then has the error's `message`, `param` and `code`) or `client_closed` (499, or a stream that ended
before `[DONE]`). Successful `GET /health` and `/metrics` (probes, scrapers) are not logged.

Every response carries `X-Request-ID`: the client's own when it sent a sane one (1-128 of
`A-Za-z0-9._:-`), else a new one; the same id is in the log line, so a user's report can be found.
Prompts, replies and keys are never logged.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import time
import uuid
from datetime import datetime, timezone

LOGGER = "tunesmith.serve.access"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
QUIET = ("/health", "/metrics")  # not logged when they succeed: probes and scrapers call them every few seconds
ERROR_BODY_LIMIT = 4096


def open_log(destination: str | None) -> logging.Logger | None:
    """`-`: stderr; `off` or None: no log; anything else: a file, appended to (reopened when rotated)."""
    if destination is None or destination == "off":
        return None
    logger = logging.Logger(LOGGER, logging.INFO)  # not registered: one per server, no global state (tests run several)
    handler = (
        logging.StreamHandler(sys.stderr)
        if destination == "-"
        else logging.handlers.WatchedFileHandler(destination, encoding="utf-8")
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


def note(request, **fields) -> None:
    """Add fields to the request's access-log line (a no-op when the server keeps no log)."""
    record = request.scope.get("state", {}).get("access")
    if record is not None:
        record.update(fields)


def _error(body: bytes) -> dict:
    try:
        error = json.loads(body.decode("utf-8", "replace")).get("error")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(error, dict):
        return {}
    return {k: error[k] for k in ("message", "param", "code") if error.get(k) is not None}


class AccessLog:
    """ASGI middleware (outermost): times each request, sets X-Request-ID, writes the line at the end."""

    def __init__(self, app, logger: logging.Logger | None):
        self.app, self.logger = app, logger

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.logger is None:
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        record: dict = {}
        scope.setdefault("state", {})["access"] = record
        status, sent, error_body = None, 0, bytearray()

        async def send_logged(message):
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                sent += len(body)
                if status is not None and status >= 400 and len(error_body) < ERROR_BODY_LIMIT:
                    error_body.extend(body[: ERROR_BODY_LIMIT - len(error_body)])
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except BaseException:
            status = status or 500
            raise
        finally:
            self._write(scope, request_id, status, sent, time.monotonic() - started, record, bytes(error_body))

    def _write(self, scope, request_id, status, sent, seconds, record, error_body) -> None:
        path = scope.get("path", "")
        if path in QUIET and status is not None and status < 400:
            return
        client = scope.get("client")
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": request_id,
            "client": f"{client[0]}:{client[1]}" if client else None,
            "method": scope.get("method"),
            "path": path,
            "status": status,
            "seconds": round(seconds, 4),
            "bytes": sent,
        }
        done = record.pop("done", None)
        line.update(record)
        if status is None or status >= 400:
            line.update({k: v for k, v in _error(error_body).items() if k not in line})
        if status == 499 or (record.get("stream") and status == 200 and not done and "message" not in record):
            outcome = "client_closed"
        elif status is None or status >= 400 or "message" in record:
            outcome = "error"
        else:
            outcome = "ok"
        line["outcome"] = outcome
        try:
            self.logger.info(json.dumps(line, ensure_ascii=False, default=str))
        except Exception:
            pass
