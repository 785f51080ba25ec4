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
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import Request  # at module level: FastAPI resolves the handlers' (string) annotations here
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from tunesmith.data.tokenize import render
from tunesmith.data.turns import with_system
from tunesmith.errors import ConfigError
from tunesmith.models.loader import LoadedModel
from tunesmith.serve.access import AccessLog, note, open_log
from tunesmith.serve.adapters import ROUTE as ADAPTERS_ROUTE
from tunesmith.serve.adapters import add_adapter_routes
from tunesmith.serve.batcher import Batcher
from tunesmith.serve.json_mode import response_constraint
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.replies import Choices, ChoiceText
from tunesmith.serve.tools import parse_reply, template_messages, tool_request
from tunesmith.serve.requests import (ApiError, Options, chat_messages, chat_options, model_name, read_json,
                                     text_options, unicode_text)

log = logging.getLogger(__name__)

__all__ = ["ApiError", "ModelHost", "create_app", "serve"]


class ModelHost:
    """What the server answers with: one loaded model, or a LoraSet (one base, many adapters), and
    the batcher that generates for every request on it."""

    def __init__(self, loaded: LoadedModel | None = None, name: str | None = None, adapters=None,
                 max_batch: int = 16, max_queue: int = 64):
        from peft import PeftModel

        if (loaded is None) == (adapters is None):
            raise ConfigError("serve: give either one model or a set of adapters")
        self.loaded, self.adapters, self.single_name = loaded, adapters, name
        self.created = int(time.time())
        model = adapters.model if adapters is not None else loaded.model
        tokenizer = self.loaded_for(self.names[0]).tokenizer
        virtual_tokens = isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning
        mixed = adapters is not None and adapters.mixed_batches
        self.batcher = Batcher(model, tokenizer.pad_token_id, max_batch, max_queue, mixed_adapters=mixed,
                               activate=adapters.activate if adapters is not None and not mixed else None,
                               recompute=virtual_tokens,
                               known=(lambda adapter: adapter in adapters.infos) if adapters is not None else None)

    @property
    def names(self) -> list[str]:
        return list(self.adapters.names) if self.adapters is not None else [self.single_name]

    def loaded_for(self, name: str) -> LoadedModel:
        return self.adapters.loaded(name) if self.adapters is not None else self.loaded

    def adapter_for(self, name: str) -> str | None:
        return self.adapters.adapter_name(name) if self.adapters is not None else None


# --- prompts ---------------------------------------------------------------------------------------


def chat_prompt(loaded: LoadedModel, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    messages = with_system(messages, loaded.system)
    if tools or any(m.get("tool_calls") for m in messages):
        # rendered as training rendered rows with tools (data.tokenize.render): by the template where it
        # shows tools and calls, else the tools in the system turn and calls as <tool_call> text
        try:
            text = render(loaded.tokenizer, template_messages(messages), add_generation_prompt=True, tools=tools)
        except Exception as exc:  # noqa: BLE001 - the template's own checks
            raise ApiError(400, f"the model's chat template refused these messages: {exc}", "messages") from None
        return list(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
    try:
        encoded = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    except Exception as exc:  # the template's own checks (e.g. roles it does not allow)
        raise ApiError(400, f"the model's chat template refused these messages: {exc}", "messages") from None
    return list(encoded["input_ids"])


def text_prompt(loaded: LoadedModel, prompt) -> list[int]:
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "`prompt` must be a non-empty string", "prompt")
    return list(loaded.tokenizer(unicode_text(prompt, "prompt"))["input_ids"])


def check_context(loaded: LoadedModel, prompt_ids: list[int], options: Options, param: str) -> None:
    limit = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and len(prompt_ids) + options.sampling.max_tokens > limit:
        raise ApiError(400, f"the prompt is {len(prompt_ids)} tokens and asks for {options.sampling.max_tokens} more, "
                       f"over the model's context of {limit} tokens; shorten it or lower `max_tokens`", param,
                       "context_length_exceeded")


def eos_ids(loaded: LoadedModel) -> set[int]:
    ids = loaded.tokenizer.eos_token_id
    config_ids = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    found = {ids} if isinstance(ids, int) else set()
    for extra in config_ids if isinstance(config_ids, list) else [config_ids]:
        if isinstance(extra, int):
            found.add(extra)
    return found


# --- the app ---------------------------------------------------------------------------------------




class ServerState:
    """The host once loaded (None while loading) and the metrics; shared by app and loader thread."""

    def __init__(self, host: ModelHost | None = None):
        self.host, self.load_error, self.metrics = host, None, Metrics()


def create_app(host: ModelHost | None = None, api_key: str | None = None, max_tokens_cap: int = 1024,
               request_timeout: float | None = 600.0, state: ServerState | None = None, admin_key: str | None = None,
               cache_dir: str | None = None, access_log: logging.Logger | None = None):
    """The FastAPI app. Give `host`, or a `state` whose host a loader thread sets later (503 until then).
    `admin_key` enables /v1/adapters (serve.adapters: adapters added and removed at run time);
    `access_log` (serve.access.open_log) gets one JSON line per request."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    state = state or ServerState(host)
    metrics = state.metrics
    @asynccontextmanager
    async def lifespan(app):
        yield
        if state.host is not None:  # after uvicorn's graceful shutdown: cancel what still runs
            state.host.batcher.stop()

    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.tunesmith = state

    def error_response(exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return error_response(ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error_response(ApiError(400, str(exc)))

    @app.middleware("http")
    async def gate(request: Request, call_next):
        path = request.url.path
        if path in ("/health", "/metrics"):
            return await call_next(request)
        admin = path == ADAPTERS_ROUTE or path.startswith(ADAPTERS_ROUTE + "/")
        key = admin_key if admin else api_key
        if admin and not admin_key:
            response = error_response(ApiError(403, "adapter management is off: start the server with --admin-key "
                                                    "(or TUNESMITH_ADMIN_KEY)", kind="permission_error"))
        elif key and request.headers.get("authorization", "") != f"Bearer {key}":
            response = error_response(ApiError(401, "adapter management needs the admin key (send `Authorization: Bearer "
                                                    "ADMIN_KEY`)" if admin else "missing or wrong API key (send "
                                               "`Authorization: Bearer KEY`)", kind="authentication_error",
                                               code="invalid_api_key"))
        elif state.host is None:
            response = error_response(ApiError(503, "the model is still loading; retry shortly" if state.load_error is None
                                               else f"the model failed to load: {state.load_error}", code="loading",
                                               kind="server_error", headers={"Retry-After": "5"}))
        else:
            response = await call_next(request)
        if path.startswith("/v1/") and request.method == "POST":
            metrics.request_done(path, response.status_code)
        return response

    @app.get("/health")
    def health():
        if state.host is None:
            status = "loading" if state.load_error is None else "failed"
            return JSONResponse({"status": status}, status_code=503)
        return {"status": "ready", "models": state.host.names, "queued": state.host.batcher.queued,
                "running": state.host.batcher.active}

    @app.get("/metrics")
    def prometheus():
        host_ = state.host
        return PlainTextResponse(metrics.text(host_.batcher.queued if host_ else 0, host_.batcher.active if host_ else 0,
                                              host_ is not None), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": n, "object": "model", "created": state.host.created,
                                            "owned_by": "tunesmith"} for n in state.host.names]}

    async def respond(request: Request, name: str, options: Options, prompt_ids: list[int], kind: str,
                      tools: list[dict] | None = None, single_call: bool = False, constraint=None):
        host_ = state.host
        loaded = host_.loaded_for(name)
        ident, created = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
        usage = lambda completion: {"prompt_tokens": len(prompt_ids), "completion_tokens": completion,  # noqa: E731
                                    "total_tokens": len(prompt_ids) + completion}
        formatting = ChoiceText(loaded.tokenizer, [])

        def logprobs_of(tokens):
            if options.sampling.top_logprobs is None:
                return None
            return formatting.chat_logprobs(tokens) if kind == "chat" else formatting.text_logprobs(tokens)

        def reply_message(text: str, finish: str) -> tuple[dict, str]:
            """The assistant message of a chat reply (its tool calls parsed out when tools were offered)."""
            if not tools:
                return {"role": "assistant", "content": text}, finish
            content, calls = parse_reply(loaded.tokenizer, prompt_text, text, tools)
            calls = calls[:1] if single_call else calls
            if not calls:
                return {"role": "assistant", "content": text}, finish
            return {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"

        prompt_text = loaded.tokenizer.decode(prompt_ids) if tools else ""
        choices = Choices(host_.batcher, loaded.tokenizer, prompt_ids, options.sampling, options.n, options.stop,
                          eos_ids(loaded), host_.adapter_for(name), request_timeout, metrics, constraint)
        if not options.stream:
            texts, ends = [[] for _ in range(options.n)], [None] * options.n
            async for index, piece, end in choices.events(request.is_disconnected):
                texts[index].append(piece)
                ends[index] = end
            if any(end is None for end in ends):  # the client left: nobody reads this answer
                note(request, completion_tokens=choices.generated(), ttft_seconds=_rounded(choices.ttft))
                return JSONResponse({}, status_code=499)
            out = []
            for index, (finish, _, tokens) in enumerate(ends):
                logprobs = logprobs_of(tokens)
                text = "".join(texts[index])
                message, finish = reply_message(text, finish)
                out.append({"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}
                           if kind == "chat" else
                           {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish})
            completion = sum(end[1] for end in ends)
            metrics.tokens(len(prompt_ids) * options.n, completion)
            note(request, completion_tokens=completion, ttft_seconds=_rounded(choices.ttft),
                 finish_reasons=[choice_["finish_reason"] for choice_ in out])
            return {"id": ident, "object": "chat.completion" if kind == "chat" else "text_completion",
                    "created": created, "model": name, "choices": out, "usage": usage(completion)}

        chunk_object = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(choices_: list, **extra) -> str:
            body = {"id": ident, "object": chunk_object, "created": created, "model": name, "choices": choices_, **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        def choice(index: int, delta, finish=None, logprobs=None) -> dict:
            out = {"index": index, "finish_reason": finish, "logprobs": logprobs}
            out.update({"delta": delta} if kind == "chat" else {"text": delta})
            return out

        async def events():
            completion, finishes = 0, []
            try:
                if kind == "chat":
                    for index in range(options.n):
                        yield chunk([choice(index, {"role": "assistant", "content": ""})])
                held = [[] for _ in range(options.n)]  # with tools, a reply is sent once parsed
                async for index, piece, end in choices.events():
                    if end is None and tools:
                        held[index].append(piece)
                    elif end is None:
                        yield chunk([choice(index, {"content": piece} if kind == "chat" else piece)])
                    else:
                        completion += end[1]
                        finish = end[0]
                        finishes.append(finish)
                        if tools:
                            message, finish = reply_message("".join(held[index]), finish)
                            delta = {"content": message["content"]}
                            if "tool_calls" in message:
                                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                            yield chunk([choice(index, delta)])
                        yield chunk([choice(index, {} if kind == "chat" else "", finish, logprobs_of(end[2]))])
                if options.include_usage:
                    yield chunk([], usage=usage(completion))
                metrics.tokens(len(prompt_ids) * options.n, completion)
                note(request, finish_reasons=finishes, done=True)
                yield "data: [DONE]\n\n"
            except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes in it, never a cut stream
                if not isinstance(exc, ApiError):
                    log.exception("a streamed reply failed")
                    exc = ApiError(500, f"the reply failed: {type(exc).__name__}: {exc}", kind="server_error",
                                   code="internal_error")
                note(request, **{k: v for k, v in exc.body()["error"].items() if k in ("message", "param", "code")})
                yield f"data: {json.dumps(exc.body(), ensure_ascii=False)}\n\n"
            finally:
                choices.cancel()
                note(request, completion_tokens=choices.generated(), ttft_seconds=_rounded(choices.ttft))

        return _Stream(events(), on_close=choices.cancel, media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_json(request)
        name = model_name(body, state.host.names)
        note(request, model=name)
        options, messages, tools = chat_options(body, max_tokens_cap), chat_messages(body), tool_request(body)
        note(request, stream=options.stream, n=options.n)
        if tools and body.get("response_format") not in (None, {"type": "text"}):
            raise ApiError(400, "`response_format` JSON modes and `tools` cannot be combined: a JSON-constrained reply "
                                "cannot carry a tool call", "response_format")
        loaded = state.host.loaded_for(name)
        # off the event loop: the first JSON request builds the vocabulary's table (seconds for a 49k vocabulary),
        # and /health, /v1/models and the running streams must not wait for it
        constraint = await run_in_threadpool(response_constraint, body, loaded.tokenizer, eos_ids(loaded))
        prompt_ids = chat_prompt(loaded, messages, tools)
        note(request, prompt_tokens=len(prompt_ids))
        check_context(loaded, prompt_ids, options, "messages")
        single = body.get("parallel_tool_calls") is False
        return await respond(request, name, options, prompt_ids, "chat", tools, single, constraint)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_json(request)
        name = model_name(body, state.host.names)
        note(request, model=name)
        options = text_options(body, max_tokens_cap)
        note(request, stream=options.stream, n=options.n)
        loaded = state.host.loaded_for(name)
        prompt_ids = text_prompt(loaded, body.get("prompt"))
        note(request, prompt_tokens=len(prompt_ids))
        check_context(loaded, prompt_ids, options, "prompt")
        return await respond(request, name, options, prompt_ids, "text")

    add_adapter_routes(app, state, cache_dir)
    app.add_middleware(AccessLog, logger=access_log)  # added last: outermost, so it times and sees every response
    return app


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


def refuse_open_without_key(address: str, api_key: str | None) -> None:
    """A server on another address than loopback needs an API key (either engine)."""
    if address not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise ConfigError(f"serve: listening on {address} exposes the model to the network; set --api-key (or "
                          "TUNESMITH_API_KEY), or keep the default 127.0.0.1")


def serve(load: Callable[[], ModelHost], address: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_tokens_cap: int = 1024, request_timeout: float | None = 600.0, grace: float = 30.0,
          admin_key: str | None = None, cache_dir: str | None = None, access_log: str | None = "-") -> None:
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
    server = uvicorn.Server(uvicorn.Config(app, host=address, port=port, log_level="warning",
                                           timeout_graceful_shutdown=grace))

    def load_model():
        try:
            state.host = load()
        except Exception as exc:  # noqa: BLE001 - said on /health and in the log, then the server stops
            state.load_error = f"{type(exc).__name__}: {exc}"
            print(f"[tunesmith] the model failed to load: {state.load_error}", flush=True)
            server.should_exit = True
            return
        print(f"[tunesmith] serving {', '.join(state.host.names)} at http://{address}:{port}/v1 "
              f"({'API key required' if api_key else 'no API key'})", flush=True)

    threading.Thread(target=load_model, daemon=True, name="tunesmith-load").start()
    print(f"[tunesmith] listening at http://{address}:{port} (GET /health says when the model is ready)", flush=True)
    server.run()
    if state.load_error is not None:
        raise ConfigError(f"serve: the model failed to load: {state.load_error}")
