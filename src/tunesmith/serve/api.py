"""`tunesmith serve`: an OpenAI-compatible HTTP API for a trained output or a set of adapters.

    tunesmith serve --model out/demo_veltrano                       # http://127.0.0.1:8000/v1
    tunesmith serve --adapter policy=out/policy --adapter out/routing --api-key $KEY --max-queue 64

Endpoints (the subset of the OpenAI API that chat clients use), documented in docs/serve.md:
- `GET /v1/models`; `POST /v1/chat/completions` (rendered with the model's own chat template and
  its training system prompt when the request has none); `POST /v1/completions` (raw text);
- `GET /health` (no key: 503 `loading` until the model is in memory, then 200 `ready`) and
  `GET /metrics` (Prometheus text);
- `GET/POST /v1/adapters`, `DELETE /v1/adapters/NAME` (admin key): adapters added and removed at
  run time (serve.adapters).
Every request is generated in one continuous batch (serve.batcher): requests join and leave it at
each step, several adapters of one base share it. A full queue answers 429 with Retry-After, a
request over `--request-timeout` 504, any request while the model loads 503. A client that
disconnects (before or during its stream) cancels its generation and frees its place.
Request fields are checked in serve.requests; a parameter the server does not implement is
refused with 400 naming it.

Here: the app (keys, 503 while loading, OpenAI error bodies, status routes) and `serve`. The model
and its batcher are serve.host; the completion routes serve.completions, over the two OpenAI
formats of serve.formats.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import Request  # at module level: FastAPI resolves the handlers' (string) annotations here

from tunesmith.errors import ConfigError
from tunesmith.serve.access import AccessLog, open_log
from tunesmith.serve.adapters import ROUTE as ADAPTERS_ROUTE
from tunesmith.serve.adapters import add_adapter_routes
from tunesmith.serve.completions import add_completion_routes
from tunesmith.serve.host import ModelHost, ServerState
from tunesmith.serve.requests import ApiError

__all__ = ["create_app", "serve"]


def create_app(
    host: ModelHost | None = None,
    api_key: str | None = None,
    max_tokens_cap: int = 1024,
    request_timeout: float | None = 600.0,
    state: ServerState | None = None,
    admin_key: str | None = None,
    cache_dir: str | None = None,
    access_log: logging.Logger | None = None,
):
    """The FastAPI app. Give `host`, or a `state` whose host a loader thread sets later (503 until then).
    `admin_key` enables /v1/adapters (serve.adapters: adapters added and removed at run time);
    `access_log` (serve.access.open_log) gets one JSON line per request."""
    from fastapi import FastAPI

    state = state or ServerState(host)

    @asynccontextmanager
    async def lifespan(app):
        yield
        if state.host is not None:  # after uvicorn's graceful shutdown: cancel what still runs
            state.host.batcher.stop()

    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.tunesmith = state
    _answer_errors_as_openai(app)
    app.add_middleware(_Gate, state=state, api_key=api_key, admin_key=admin_key)
    _add_status_routes(app, state)
    add_completion_routes(app, state, max_tokens_cap, request_timeout)
    add_adapter_routes(app, state, cache_dir)
    app.add_middleware(AccessLog, logger=access_log)  # added last: outermost, so it times and sees every response
    return app


def _error_response(exc: ApiError):
    from fastapi.responses import JSONResponse

    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _answer_errors_as_openai(app) -> None:
    """Every error, ours or the framework's, answered with OpenAI's error body."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return _error_response(ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return _error_response(ApiError(400, str(exc)))


class _Gate:
    """The middleware every request passes: the API or admin key, then 503 while the model loads;
    /health and /metrics are open. Counts the POSTs to /v1/ by status. Plain ASGI: Starlette's
    BaseHTTPMiddleware (`app.middleware("http")`) hides the client's disconnect from the endpoints,
    so a reply whose client left would run to its end."""

    def __init__(self, app, state: ServerState, api_key: str | None, admin_key: str | None):
        self.app, self.state, self.api_key, self.admin_key = app, state, api_key, admin_key

    def refusal(self, request: Request):
        """The error response for a request that may not pass, or None."""
        path = request.url.path
        if path in ("/health", "/metrics"):
            return None
        admin = path == ADAPTERS_ROUTE or path.startswith(ADAPTERS_ROUTE + "/")
        key = self.admin_key if admin else self.api_key
        if admin and not self.admin_key:
            return _error_response(
                ApiError(
                    403,
                    "adapter management is off: start the server with --admin-key (or TUNESMITH_ADMIN_KEY)",
                    kind="permission_error",
                )
            )
        if key and request.headers.get("authorization", "") != f"Bearer {key}":
            return _error_response(
                ApiError(
                    401,
                    "adapter management needs the admin key (send `Authorization: Bearer ADMIN_KEY`)"
                    if admin
                    else "missing or wrong API key (send `Authorization: Bearer KEY`)",
                    kind="authentication_error",
                    code="invalid_api_key",
                )
            )
        if self.state.host is None:
            return _error_response(
                ApiError(
                    503,
                    "the model is still loading; retry shortly"
                    if self.state.load_error is None
                    else f"the model failed to load: {self.state.load_error}",
                    code="loading",
                    kind="server_error",
                    headers={"Retry-After": "5"},
                )
            )
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        status = None

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        refusal = self.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send_status)
        else:
            await self.app(scope, receive, send_status)
        if request.url.path.startswith("/v1/") and request.method == "POST" and status is not None:
            self.state.metrics.request_done(request.url.path, status)


def _add_status_routes(app, state: ServerState) -> None:
    """GET /health, /metrics (Prometheus text) and /v1/models."""
    from fastapi.responses import JSONResponse, PlainTextResponse

    @app.get("/health")
    def health():
        if state.host is None:
            status = "loading" if state.load_error is None else "failed"
            return JSONResponse({"status": status}, status_code=503)
        return {
            "status": "ready",
            "models": state.host.names,
            "queued": state.host.batcher.queued,
            "running": state.host.batcher.active,
        }

    @app.get("/metrics")
    def prometheus():
        host = state.host
        queued, running = (host.batcher.queued, host.batcher.active) if host else (0, 0)
        return PlainTextResponse(
            state.metrics.text(queued, running, host is not None), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/models")
    def models():
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": state.host.created, "owned_by": "tunesmith"}
                for n in state.host.names
            ],
        }


def refuse_open_without_key(address: str, api_key: str | None) -> None:
    """A server on another address than loopback needs an API key (either engine)."""
    if address not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise ConfigError(
            f"serve: listening on {address} exposes the model to the network; set --api-key (or "
            "TUNESMITH_API_KEY), or keep the default 127.0.0.1"
        )


def serve(
    load: Callable[[], ModelHost],
    address: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_tokens_cap: int = 1024,
    request_timeout: float | None = 600.0,
    grace: float = 30.0,
    admin_key: str | None = None,
    cache_dir: str | None = None,
    access_log: str | None = "-",
) -> None:
    """Listen at once (503 while `load()` runs in a thread); SIGTERM stops accepting, lets running
    requests finish for `grace` seconds, then cancels what is left. `access_log`: `-` (stderr), a
    file, or `off` (serve.access)."""
    import uvicorn

    refuse_open_without_key(address, api_key)
    try:
        logger = open_log(access_log)
    except OSError as exc:
        raise ConfigError(f"serve --access-log: cannot open {access_log}: {exc.strerror or exc}") from None
    state = ServerState()
    app = create_app(None, api_key, max_tokens_cap, request_timeout, state, admin_key, cache_dir, logger)
    server = uvicorn.Server(
        uvicorn.Config(app, host=address, port=port, log_level="warning", timeout_graceful_shutdown=grace)
    )

    def load_model():
        try:
            state.host = load()
        except Exception as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            print(f"[tunesmith] the model failed to load: {state.load_error}", flush=True)
            server.should_exit = True
            return
        print(
            f"[tunesmith] serving {', '.join(state.host.names)} at http://{address}:{port}/v1 "
            f"({'API key required' if api_key else 'no API key'})",
            flush=True,
        )

    threading.Thread(target=load_model, daemon=True, name="tunesmith-load").start()
    print(f"[tunesmith] listening at http://{address}:{port} (GET /health says when the model is ready)", flush=True)
    server.run()
    if state.load_error is not None:
        raise ConfigError(f"serve: the model failed to load: {state.load_error}")
