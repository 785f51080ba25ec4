"""`tunesmith serve`: an OpenAI-compatible HTTP API for a trained output or a set of adapters.

    tunesmith serve --model out/demo_veltrano                       # http://127.0.0.1:8000/v1
    tunesmith serve --adapter policy=out/policy --adapter out/routing --api-key $KEY

Endpoints (the subset of the OpenAI API that chat clients use):
- `GET /v1/models`: the served names. One model is served under its folder name (`default` for
  the embedded model); with `--adapter`, every adapter by name plus `base`;
- `POST /v1/chat/completions`: messages in, the assistant's reply out, rendered with the model's
  own chat template and its training system prompt when the request has none; `stream: true`
  sends server-sent events (`data: {chunk}` ... `data: [DONE]`);
- `POST /v1/completions`: raw text continuation of `prompt`, no template.
The request's `model` picks the model or adapter (models.lora_set.LoraSet switches per
request). Sampling: `temperature` (0 = greedy, the default), `top_p`, `max_tokens`
(`max_completion_tokens`), `stop`, `seed`. Requests are served one at a time on the one model.

Every bad request gets an OpenAI-style JSON error and a 4xx status: 400 with the offending
`param` (e.g. `messages[1].role`), 401 without the API key when one is set, 404 for an unknown
model. The server listens on 127.0.0.1 unless told otherwise, and refuses another address
without an API key.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any

import torch
from fastapi import Request  # at module level: FastAPI resolves the handlers' (string) annotations here

from tunesmith.errors import ConfigError
from tunesmith.models.loader import LoadedModel
from tunesmith.serve.streaming import Generation

ROLES = ("system", "user", "assistant", "tool")


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class ModelHost:
    """What the server answers with: one loaded model, or an LoraSet (one base, many adapters)."""

    def __init__(self, loaded: LoadedModel | None = None, name: str | None = None, adapters=None):
        if (loaded is None) == (adapters is None):
            raise ConfigError("serve: give either one model or a set of adapters")
        self.loaded, self.adapters = loaded, adapters
        self.single_name = name
        self._lock = threading.Lock()
        self.created = int(time.time())

    @property
    def names(self) -> list[str]:
        return list(self.adapters.names) if self.adapters is not None else [self.single_name]

    @contextmanager
    def use(self, name: str):
        if name not in self.names:
            raise ApiError(404, f"The model `{name}` does not exist; served: {', '.join(self.names)}", "model",
                           "model_not_found")
        if self.adapters is not None:
            with self.adapters.use(name) as loaded:
                yield loaded
        else:
            with self._lock:
                yield self.loaded


# --- request checking ------------------------------------------------------------------------------


def _number(body: dict, key: str, default, low: float, high: float, integer: bool = False):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ApiError(400, f"`{key}` must be {'an integer' if integer else 'a number'}", key)
    if not low <= value <= high:
        raise ApiError(400, f"`{key}` must be between {low} and {high}, got {value}", key)
    return value


def sampling(body: dict, max_cap: int) -> dict:
    key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop) and len(stop) <= 4):
        raise ApiError(400, "`stop` must be a string or a list of up to 4 non-empty strings", "stop")
    _number(body, "n", 1, 1, 1, integer=True)  # one choice per request
    return {"max_tokens": _number(body, key, max_cap, 1, max_cap, integer=True),
            "temperature": _number(body, "temperature", 0.0, 0.0, 2.0),
            "top_p": _number(body, "top_p", 1.0, 0.0, 1.0), "stop": stop,
            "seed": _number(body, "seed", None, 0, 2**63 - 1, integer=True), "stream": _flag(body, "stream")}


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"`{key}` must be true or false", key)
    return value


def _content(value: Any, where: str) -> str:
    """Message content: a string, or OpenAI's list of `{"type": "text", "text": ...}` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                                       for p in value):
        return "".join(p["text"] for p in value)
    raise ApiError(400, f"`{where}` must be a string or a list of text parts (this server handles text only)", where)


def chat_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list of {role, content} objects", "messages")
    clean = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"`{where}` must be an object with `role` and `content`", where)
        role = message.get("role")
        if role == "developer":  # the newer name of the system role
            role = "system"
        if role not in ROLES:
            raise ApiError(400, f"`{where}.role` must be one of {', '.join(ROLES)} (got {role!r})", f"{where}.role")
        clean.append({"role": role, "content": _content(message.get("content", ""), f"{where}.content")})
    if clean[-1]["role"] == "assistant":
        raise ApiError(400, "the last message is the assistant's: nothing to reply to", f"messages[{len(clean) - 1}].role")
    return clean


def _model_name(body: dict, host: ModelHost) -> str:
    name = body.get("model")
    if name is None and len(host.names) == 1:
        return host.names[0]
    if not isinstance(name, str) or not name:
        raise ApiError(400, f"`model` is required; served: {', '.join(host.names)}", "model")
    return name


# --- generation ------------------------------------------------------------------------------------


def _generate_kwargs(tokenizer, options: dict) -> dict:
    kwargs = {"max_new_tokens": options["max_tokens"], "pad_token_id": tokenizer.pad_token_id}
    if options["stop"]:  # generation ends at a stop string (transformers' StopStringCriteria); the text is cut there
        kwargs.update(stop_strings=options["stop"], tokenizer=tokenizer)
    if options["temperature"] > 0:
        kwargs.update(do_sample=True, temperature=options["temperature"], top_p=options["top_p"])
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def stream_text(loaded: LoadedModel, inputs: dict, options: dict):
    """Yield (piece, None) while generating, then (None, (finish_reason, prompt_tokens, completion_tokens)).

    A generation that raises ends the stream with its error; a reader that leaves (a closed HTTP
    stream closes this generator) stops the generation at its next token (serve.streaming)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    if options["seed"] is not None:
        torch.manual_seed(options["seed"])
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    generation = Generation(model, tokenizer, inputs, **_generate_kwargs(tokenizer, options))
    pieces = iter(generation)
    text, sent, stopped = "", 0, False
    try:
        for piece in pieces:
            text += piece
            shown, stopped = _cut_at_stop(text, options["stop"])
            # hold back a tail that could still become a stop string
            safe = len(shown) if stopped else max(sent, len(shown) - max((len(s) - 1 for s in options["stop"]), default=0))
            if safe > sent:
                yield shown[sent:safe], None
                sent = safe
            if stopped:
                break
        if stopped:  # generation stops at the stop string too: drain what it produced up to there
            for _ in pieces:
                pass
    finally:
        pieces.close()  # a reader that left ends the generation
    if not stopped and len(text) > sent:
        yield text[sent:], None
    prompt_tokens = int(inputs["input_ids"].shape[1])
    completion = generation.ids[0][prompt_tokens:].tolist()
    ended = tokenizer.eos_token_id in completion or stopped
    yield None, ("stop" if ended or len(completion) < options["max_tokens"] else "length", prompt_tokens,
                 len(completion))


def generation_failed(exc: Exception) -> ApiError:
    """The error reply for a generation that raised (out of memory, an input the model cannot take)."""
    return ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", kind="server_error",
                    code="generation_failed")


def chat_inputs(loaded: LoadedModel, messages: list[dict]) -> dict:
    if messages[0]["role"] != "system" and loaded.system:
        messages = [{"role": "system", "content": loaded.system}] + messages
    try:
        return loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)
    except Exception as exc:  # the template's own checks (e.g. roles it does not allow)
        raise ApiError(400, f"the model's chat template refused these messages: {exc}", "messages") from None


def text_inputs(loaded: LoadedModel, prompt: Any) -> dict:
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "`prompt` must be a non-empty string", "prompt")
    return loaded.tokenizer(prompt, return_tensors="pt")


# --- the app ---------------------------------------------------------------------------------------


def create_app(host: ModelHost, api_key: str | None = None, max_tokens_cap: int = 1024):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return JSONResponse(ApiError(exc.status_code, str(exc.detail)).body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return JSONResponse(ApiError(400, str(exc)).body(), status_code=400)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            return JSONResponse(ApiError(401, "missing or wrong API key (send `Authorization: Bearer KEY`)",
                                         kind="authentication_error", code="invalid_api_key").body(), status_code=401)
        return await call_next(request)

    async def json_body(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": n, "object": "model", "created": host.created, "owned_by": "tunesmith"}
                                           for n in host.names]}

    def respond(name: str, options: dict, make_inputs, kind: str):
        """Non-streamed: one JSON object. Streamed: SSE chunks, generated while the model is held."""
        ident, created = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
        chunk_object = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(delta: dict | str, finish: str | None) -> str:
            choice = {"index": 0, "finish_reason": finish}
            choice.update({"delta": delta} if kind == "chat" else {"text": delta, "logprobs": None})
            return f"data: {json.dumps({'id': ident, 'object': chunk_object, 'created': created, 'model': name, 'choices': [choice]}, ensure_ascii=False)}\n\n"

        if options["stream"]:
            context = host.use(name)
            loaded = context.__enter__()  # raises ApiError (404) before the response starts
            try:
                inputs = make_inputs(loaded)
            except BaseException:
                context.__exit__(None, None, None)
                raise

            def events():
                try:
                    if kind == "chat":
                        yield chunk({"role": "assistant", "content": ""}, None)
                    for piece, end in stream_text(loaded, inputs, options):
                        if piece:
                            yield chunk({"content": piece} if kind == "chat" else piece, None)
                        elif end:
                            yield chunk({} if kind == "chat" else "", end[0])
                except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes in it
                    yield f"data: {json.dumps(generation_failed(exc).body(), ensure_ascii=False)}\n\n"
                else:
                    yield "data: [DONE]\n\n"
                finally:
                    context.__exit__(None, None, None)

            return StreamingResponse(events(), media_type="text/event-stream")

        with host.use(name) as loaded:
            pieces, end = [], None
            inputs = make_inputs(loaded)
            try:
                for piece, done in stream_text(loaded, inputs, options):
                    if piece:
                        pieces.append(piece)
                    elif done:
                        end = done
            except Exception as exc:  # noqa: BLE001 - out of memory, input too long ...: an error reply
                raise generation_failed(exc) from None
        text = "".join(pieces)
        finish, prompt_tokens, completion_tokens = end
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                  if kind == "chat" else {"index": 0, "text": text, "logprobs": None, "finish_reason": finish})
        return {"id": ident, "object": "chat.completion" if kind == "chat" else "text_completion", "created": created,
                "model": name, "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await json_body(request)
        name, options, messages = _model_name(body, host), sampling(body, max_tokens_cap), chat_messages(body)
        return await _threaded(respond, name, options, lambda loaded: chat_inputs(loaded, messages), "chat")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await json_body(request)
        name, options = _model_name(body, host), sampling(body, max_tokens_cap)
        prompt = body.get("prompt")
        return await _threaded(respond, name, options, lambda loaded: text_inputs(loaded, prompt), "text")

    return app


async def _threaded(fn, *args):
    """Run generation off the event loop, so other requests (and /v1/models) are still answered."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def serve(host: ModelHost, address: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_tokens_cap: int = 1024) -> None:
    import uvicorn

    if address not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise ConfigError(f"serve: listening on {address} exposes the model to the network; set --api-key (or "
                          "TUNESMITH_API_KEY), or keep the default 127.0.0.1")
    print(f"[tunesmith] serving {', '.join(host.names)} at http://{address}:{port}/v1 "
          f"({'API key required' if api_key else 'no API key'})", flush=True)
    uvicorn.run(create_app(host, api_key, max_tokens_cap), host=address, port=port, log_level="warning")
