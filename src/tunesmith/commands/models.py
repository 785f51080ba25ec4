"""Verbs that use trained models: chat, serve, score, export, and sets of LoRA outputs (`adapters`)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def cmd_chat(args) -> int:
    from tunesmith.serve.chat import chat_loop

    if args.adapter:
        from tunesmith.errors import ConfigError
        from tunesmith.models.lora_set import LoraSet, parse_named

        if args.model != "default":
            raise ConfigError("chat: --adapter loads the adapters' own base model; leave out --model")
        adapters = LoraSet(parse_named(args.adapter), args.cache_dir)
        chat_loop(None, args.system, args.max_new_tokens, args.temperature, adapters=adapters)
        return 0
    from tunesmith.methods.load import load_for_inference
    from tunesmith.model_registry import resolve_reference

    loaded = load_for_inference(resolve_reference(args.model), args.cache_dir)
    chat_loop(loaded, args.system, args.max_new_tokens, args.temperature)
    return 0


def cmd_serve(args) -> int:
    from tunesmith.errors import ConfigError
    from tunesmith.serve.api import refuse_open_without_key, serve
    from tunesmith.serve.host import ModelHost

    api_key = args.api_key or os.environ.get("TUNESMITH_API_KEY") or None
    if args.adapter and args.model != "default":
        raise ConfigError("serve: --adapter loads the adapters' own base model; leave out --model")
    if args.max_batch < 1 or args.max_queue < 0:
        raise ConfigError("serve: --max-batch must be at least 1 and --max-queue at least 0")
    if args.request_timeout is not None and args.request_timeout <= 0:
        raise ConfigError("serve: --request-timeout must be a positive number of seconds")
    batching = {"max_batch": args.max_batch, "max_queue": args.max_queue}
    from tunesmith.model_registry import PREFIX, resolve_reference

    # a registry reference is resolved (and its files hash-checked) before the server starts
    model = resolve_reference(args.model)
    name = args.name or (
        "default"
        if args.model == "default"
        else args.model[len(PREFIX) :]
        if args.model.startswith(PREFIX)
        else Path(args.model).name
    )
    if args.engine == "vllm":
        from tunesmith.models.lora_set import parse_named
        from tunesmith.serve.vllm_engine import check_available, run_vllm, vllm_command

        if args.admin_key or os.environ.get("TUNESMITH_ADMIN_KEY"):
            raise ConfigError(
                "serve --engine vllm: --admin-key (adapters added at run time) is the transformers "
                "engine's; list the adapters with --adapter instead"
            )
        refuse_open_without_key(args.host, api_key)
        check_available()
        run_vllm(
            vllm_command(
                model,
                name,
                parse_named(args.adapter) if args.adapter else {},
                args.host,
                args.port,
                api_key,
                args.max_batch,
                args.cache_dir,
                args.access_log,
            )
        )
        return 0

    def load() -> ModelHost:  # runs while the server already answers /health (503 "loading")
        if args.adapter:
            from tunesmith.models.lora_set import LoraSet, parse_named

            return ModelHost(adapters=LoraSet(parse_named(args.adapter), args.cache_dir), **batching)
        from tunesmith.methods.load import load_for_inference

        loaded = load_for_inference(model, args.cache_dir)
        return ModelHost(loaded, name, **batching)

    if args.adapter:
        from tunesmith.models.lora_set import parse_named

        parse_named(args.adapter)  # a malformed --adapter is refused before the server starts
    admin_key = args.admin_key or os.environ.get("TUNESMITH_ADMIN_KEY") or None
    serve(
        load,
        args.host,
        args.port,
        api_key,
        args.max_tokens,
        args.request_timeout,
        args.grace,
        admin_key,
        args.cache_dir,
        args.access_log,
    )
    return 0


def cmd_adapters_list(args) -> int:
    from tunesmith.models.lora_set import find_outputs, outputs_table

    found = find_outputs(args.roots)
    if args.json:
        print(json.dumps([a.row() for a in found], indent=2, ensure_ascii=False))
    else:
        print(outputs_table(found))
    return 0


def cmd_adapters_combine(args) -> int:
    from tunesmith.export import combine_adapters
    from tunesmith.models.lora_set import parse_weighted

    out = combine_adapters(
        parse_weighted(args.adapter),
        args.out,
        args.combination,
        args.density,
        args.rank,
        args.cache_dir,
        args.overwrite,
    )
    print(f"[tunesmith] combined adapter written to {out}; chat with: tunesmith chat --model {out}")
    return 0


def cmd_export(args) -> int:
    from tunesmith.export import export_model

    out = export_model(
        args.model,
        args.out,
        merge=args.merge,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
        format=args.format,
        quant=args.quant,
        gguf_pre=args.gguf_pre,
        qa=args.qa,
        max_drop=args.max_drop,
        calibration=args.calibration,
    )
    after = json.loads((out / "tunesmith.json").read_text())["after_export"]
    figures = (
        f"QA accuracy {after['trained_qa_accuracy']:.3f} trained -> {after['artifact_qa_accuracy']:.3f} exported"
        if after["measure"] == "qa_accuracy"
        else f"greedy agreement with the trained model {after['greedy_agreement']:.3f}"
    )
    print(f"[tunesmith] standalone model written to {out}; checked after export: {figures}")
    return 0


def cmd_score(args) -> int:
    from tunesmith.data.preference import load_scored_rows
    from tunesmith.errors import ConfigError
    from tunesmith.eval.reward import reward_scores
    from tunesmith.methods.load import load_reward_for_inference

    if bool(args.file) == bool(args.prompt is not None or args.reply):
        raise ConfigError("score: give either --prompt with one or more --reply, or --file ROWS.jsonl")
    if args.file is None and (args.prompt is None or not args.reply):
        raise ConfigError("score: --prompt and --reply go together (--reply may repeat to rank several replies)")
    loaded = load_reward_for_inference(args.model, args.cache_dir)  # refuses a model without a trained head
    system = args.system if args.system is not None else loaded.system
    if args.file:
        rows = load_scored_rows(args.file, system)
    else:
        from tunesmith.data.turns import with_system

        prompt = with_system([{"role": "user", "content": args.prompt}], system)
        rows = [
            {"messages": prompt + [{"role": "assistant", "content": reply}], "where": f"--reply {i + 1}"}
            for i, reply in enumerate(args.reply)
        ]
    rewards = reward_scores(loaded.model, loaded.tokenizer, [r["messages"] for r in rows], args.batch_size)
    for row, reward in zip(rows, rewards):
        print(json.dumps({"where": row["where"], "reward": round(reward, 6)}, ensure_ascii=False))
    return 0


def register(verbs) -> None:
    from tunesmith.export.formats import EXPORTERS, all_quants

    chat = verbs.add_parser("chat", help="Chat with a model in the terminal (streaming).")
    chat.add_argument(
        "--model",
        default="default",
        help="An output folder, 'default', a model folder, a hub id or registry:NAME@ALIAS / registry:NAME:VERSION.",
    )
    chat.add_argument("--system", help="System prompt (default: the one the model was trained with).")
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy.")
    chat.add_argument("--cache-dir", help="Cache of the converted default model.")
    chat.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Load this LoRA-family output beside others on their shared base (repeatable); "
        "/adapter NAME switches between them per turn.",
    )
    chat.set_defaults(func=cmd_chat)

    srv = verbs.add_parser(
        "serve",
        help="OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions).",
        description="Serve a model, or several adapters of one base (the request's `model` picks "
        "one), with the OpenAI API. Listens on 127.0.0.1 unless --host says otherwise.",
    )
    srv.add_argument(
        "--model",
        default="default",
        help="An output folder, 'default', a model folder, a hub id or "
        "registry:NAME@ALIAS / registry:NAME:VERSION (files hash-checked before serving).",
    )
    srv.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Serve this LoRA-family output under NAME beside others on their shared base (repeatable).",
    )
    srv.add_argument("--name", help="The model name clients send (default: the folder name, or 'default').")
    srv.add_argument(
        "--host", default="127.0.0.1", help="Address to listen on (another than loopback needs --api-key)."
    )
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--api-key", help="Require `Authorization: Bearer KEY` (default: $TUNESMITH_API_KEY, else none).")
    srv.add_argument(
        "--admin-key",
        help="Enable /v1/adapters (add and remove adapters at run time, with --adapter) "
        "for `Authorization: Bearer ADMIN_KEY` (default: $TUNESMITH_ADMIN_KEY, else off).",
    )
    srv.add_argument("--max-tokens", type=int, default=1024, help="The most new tokens one request may ask for.")
    srv.add_argument("--max-batch", type=int, default=16, help="The most requests generated together in one batch.")
    srv.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="The most requests waiting for a place in the batch; more get 429 with Retry-After.",
    )
    srv.add_argument(
        "--request-timeout",
        type=float,
        default=600.0,
        help="Seconds a request may take, waiting included; then it is cancelled and answered 504.",
    )
    srv.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="On SIGTERM: seconds running requests may take to finish before they are cancelled.",
    )
    srv.add_argument(
        "--access-log",
        default="-",
        metavar="-|PATH|off",
        help="One JSON line per request (time, request id, client, path, status, seconds, model, tokens, "
        "time to first token, outcome; never prompts or keys): - = stderr (default), a file (appended), "
        "or off. With --engine vllm: vLLM's own uvicorn log, or off.",
    )
    srv.add_argument(
        "--engine",
        choices=("transformers", "vllm"),
        default="transformers",
        help="transformers (default; CPU or GPU): tunesmith's own server, every option above. vllm (a "
        "CUDA GPU and the vllm package; not yet run on a GPU): vLLM's OpenAI server on the same model, "
        "LoRA outputs as LoRA modules; --max-queue/--request-timeout/--grace are vLLM's own there.",
    )
    srv.add_argument("--cache-dir", help="Cache of the converted default model.")
    srv.set_defaults(func=cmd_serve)

    adapters = verbs.add_parser(
        "adapters", help="LoRA sets: list finished outputs, combine LoRA outputs of one base by weight."
    )
    adapter_verbs = adapters.add_subparsers(dest="adapters_verb", metavar="VERB", required=True)
    listing = adapter_verbs.add_parser(
        "list", help="Finished outputs in (or directly under) folders, with kind, base, rank, size and metrics."
    )
    listing.add_argument("roots", nargs="*", default=["out"], help="Folders to look in (default: out).")
    listing.add_argument("--json", action="store_true", help="Print JSON rows instead of a table.")
    listing.set_defaults(func=cmd_adapters_list)
    combine = adapter_verbs.add_parser(
        "combine", help="Write one adapter that is a weighted combination of several LoRA adapters of the same base."
    )
    combine.add_argument("out", help="Output folder (written as OUT.partial, then renamed).")
    combine.add_argument(
        "--adapter",
        action="append",
        required=True,
        metavar="PATH[:WEIGHT]",
        help="An adapter output and its weight (default 1); repeat for each.",
    )
    combine.add_argument(
        "--combination",
        default="cat",
        help="cat (exact weighted sum; rank = sum of ranks), svd (the same sum at --rank), linear, "
        "ties, dare_linear, dare_ties, magnitude_prune (with --density), or their _svd forms.",
    )
    combine.add_argument("--density", type=float, help="Fraction of each delta kept by the pruning combinations.")
    combine.add_argument("--rank", type=int, help="Rank of an svd combination (default: the largest input rank).")
    combine.add_argument("--overwrite", action="store_true", help="Replace an existing OUT.")
    combine.add_argument("--cache-dir", help="Cache of the converted default model.")
    combine.set_defaults(func=cmd_adapters_combine)

    export = verbs.add_parser(
        "export",
        help="Write a standalone model: transformers folder, GGUF or ONNX, checked against the trained model.",
        description="Merge a LoRA/DoRA/PiSSA output into plain base weights (--merge), or "
        "re-save a full/freeze output, as a transformers folder with tokenizer and manifest; or "
        "write a GGUF (--format gguf) or an ONNX decoder with its KV cache (--format onnx). Every "
        "export is checked against the trained model in its own runtime (the config's eval.qa "
        "re-run when it has one) and the result written into its manifest.",
    )
    export.add_argument("model", help="A finished output folder (or any model folder).")
    export.add_argument("--out", required=True, help="Folder to write (written as OUT.partial, then renamed).")
    export.add_argument(
        "--merge", action="store_true", help="Fold LoRA-family adapters into a copy of the base weights."
    )
    export.add_argument(
        "--format",
        choices=tuple(EXPORTERS),
        default="transformers",
        help="transformers: a safetensors folder; gguf: one GGUF file (llama.cpp, Ollama) with a "
        "Modelfile; onnx: a decoder with its KV cache for ONNX Runtime. gguf and onnx merge adapters "
        "and are checked against the model they came from.",
    )
    export.add_argument(
        "--quant",
        choices=all_quants(),
        help="GGUF: f32, f16 (default), bf16, q8_0 (near-lossless at half the size), q4_0, q4_1; "
        "ONNX: f32 (default), int8 (dynamic quantisation, about a quarter of the size, least accurate), "
        "q8_0 or q4_0 (weight-only blocks of 32, as GGUF's); transformers: bnb4 (NF4) or bnb8 (LLM.int8()), "
        "bitsandbytes weights for GPU serving (a CUDA GPU; not yet run on one); gptq4 (4-bit groups), gptq8 "
        "(8-bit channels) or awq4 (a GPU), calibrated compressed-tensors weights vLLM serves "
        "(pip install 'tunesmith[gptq]').",
    )
    export.add_argument(
        "--calibration",
        help='Rows (JSONL: chat rows or {"text": ...}) that calibrate gptq4/gptq8/'
        "awq4 (default: the output's own training data, data.train).",
    )
    export.add_argument("--gguf-pre", help="llama.cpp pre-tokenizer name, for a tokenizer tunesmith has not verified.")
    export.add_argument(
        "--qa",
        help="QA questions (JSONL, as eval.qa) answered by the trained model and the artifact "
        "after export (default: the output's eval.qa).",
    )
    export.add_argument(
        "--max-drop",
        type=float,
        help="Fail the export (exit 4, OUT left as OUT.partial) when the "
        "artifact's QA accuracy (else its greedy agreement) is more than this below the trained model's "
        "(a fraction: 0.05 = 5 points).",
    )
    export.add_argument("--overwrite", action="store_true", help="Replace an existing OUT.")
    export.add_argument("--cache-dir", help="Cache of the converted default model.")
    export.set_defaults(func=cmd_export)

    score = verbs.add_parser(
        "score",
        help="Score replies with a reward model (trained with stage: rm).",
        description="Print one JSON line {where, reward} per reply; higher is better.",
    )
    score.add_argument("model", help="A reward-model output folder (stage: rm).")
    score.add_argument("--prompt", help="The user message.")
    score.add_argument("--reply", action="append", default=[], help="A reply to score (repeat to rank several).")
    score.add_argument("--file", nargs="+", help='JSONL/JSON files of {"prompt", "reply", "system"?} rows.')
    score.add_argument("--system", help="System prompt (default: the one the model was trained with).")
    score.add_argument("--batch-size", type=int, default=8)
    score.add_argument("--cache-dir", help="Cache of the converted default model.")
    score.set_defaults(func=cmd_score)
