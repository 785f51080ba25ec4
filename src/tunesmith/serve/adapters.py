"""Hot adapters: add and remove LoRA outputs while the server runs.

    tunesmith serve --adapter policy=out/policy --admin-key $ADMIN
    curl -H "Authorization: Bearer $ADMIN" localhost:8000/v1/adapters                          # list
    curl -H "Authorization: Bearer $ADMIN" -d '{"name": "routing", "path": "out/routing"}' \\
         localhost:8000/v1/adapters                                                           # add: 201
    curl -X DELETE -H "Authorization: Bearer $ADMIN" localhost:8000/v1/adapters/policy          # remove

Only a server started with `--adapter` (a LoraSet: one base, many adapters) takes adapters at run
time, and only with an admin key (`--admin-key` or TUNESMITH_ADMIN_KEY; without one these routes
answer 403). An added output must be a finished LoRA-family output of the same base; it is checked
and its tokenizer read first, then loaded into the shared model between two generation steps, so
no request sees a half-loaded adapter and running requests go on. A removal is refused (409) while
requests for that adapter wait or run.
"""

from __future__ import annotations

from fastapi import Request  # at module level: FastAPI resolves the handlers' (string) annotations here

from tunesmith.errors import ConfigError, ModelError
from tunesmith.serve.batcher import QueueFull
from tunesmith.serve.requests import ApiError, read_json

ROUTE = "/v1/adapters"


def add_adapter_routes(app, state, cache_dir: str | None = None) -> None:
    """GET/POST /v1/adapters and DELETE /v1/adapters/NAME on `app` (the gate checks the admin key)."""
    from fastapi.responses import JSONResponse

    def lora_set():
        host = state.host
        if host.adapters is None:
            raise ApiError(
                400,
                "this server runs one model (--model); start it with --adapter NAME=PATH (one or "
                "more) to add and remove adapters at run time",
                code="no_adapter_set",
            )
        return host, host.adapters

    def row(adapters, name: str) -> dict:
        info = adapters.infos[name]
        return {
            "id": name,
            "object": "adapter",
            "path": str(info.path),
            "base": adapters.base_path,
            "method": info.method,
            "stage": info.stage,
            "rank": info.rank,
            "dora": info.dora,
        }

    @app.get(ROUTE)
    def list_adapters():
        _, adapters = lora_set()
        return {"object": "list", "base": adapters.base_path, "data": [row(adapters, n) for n in adapters.infos]}

    @app.post(ROUTE)
    async def add_adapter(request: Request):
        host, adapters = lora_set()
        body = await read_json(request)
        for key in ("name", "path"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ApiError(400, f'`{key}` is required (a string): {{"name": NAME, "path": OUTPUT_FOLDER}}', key)
        name, path = body["name"], body["path"]
        try:
            info, tokenizer = adapters.prepare(name, path, cache_dir)
        except ConfigError as exc:
            raise ApiError(409 if "already taken" in str(exc) else 400, str(exc), "name") from None
        except ModelError as exc:
            raise ApiError(400, str(exc), "path") from None
        try:
            host.batcher.between_steps(lambda: adapters.attach(name, info, tokenizer))
        except ModelError as exc:  # damaged weights: the set is as it was
            raise ApiError(400, str(exc), "path") from None
        except (TimeoutError, QueueFull) as exc:
            raise ApiError(503, f"the adapter was not added: {exc}", code="unavailable", kind="server_error") from None
        print(f"[tunesmith] adapter `{name}` added from {info.path}", flush=True)
        return JSONResponse(row(adapters, name), status_code=201)

    @app.delete(ROUTE + "/{name}")
    def remove_adapter(name: str):
        host, adapters = lora_set()
        if name not in adapters.infos and name != "base":
            raise ApiError(
                404, f"unknown adapter `{name}`; loaded: {', '.join(adapters.names)}", "name", "model_not_found"
            )

        def detach():  # on the generation thread: no request for it can join while this runs
            busy = host.batcher.uses(adapters.adapter_name(name))
            if busy:
                raise ApiError(
                    409,
                    f"{busy} request(s) for `{name}` are waiting or running; retry when they end",
                    "name",
                    "adapter_busy",
                )
            adapters.detach(name)

        try:
            host.batcher.between_steps(detach)
        except ConfigError as exc:
            raise ApiError(400, str(exc), "name") from None
        except (TimeoutError, QueueFull) as exc:
            raise ApiError(
                503, f"the adapter was not removed: {exc}", code="unavailable", kind="server_error"
            ) from None
        print(f"[tunesmith] adapter `{name}` removed", flush=True)
        return {"id": name, "object": "adapter", "deleted": True}
