"""`tunesmith serve --engine vllm`: vLLM's own OpenAI-compatible server on the same model and adapters.

    tunesmith serve --engine vllm --model out/demo_veltrano --host 0.0.0.0 --api-key KEY   # a CUDA GPU + vllm

tunesmith's options become vLLM's, and the process becomes vLLM's server (`os.execv`, so signals
such as SIGTERM reach vLLM directly):

- the model: a LoRA-family output is served as a LoRA module of its base (`--enable-lora
  --lora-modules NAME=OUTPUT`, clients send `model: NAME`; the base itself answers as `base`); a
  whole model (full/freeze output, a model folder, a hub id, the embedded default's converted
  folder) is served as it is, under `--name`;
- `--adapter NAME=PATH ...`: their shared base with one LoRA module each (`--max-loras` their count);
- `--max-lora-rank`: the largest adapter rank, rounded up to a size vLLM accepts;
- `--host`, `--port`, `--api-key` (or `$TUNESMITH_API_KEY`), `--max-batch` (`--max-num-seqs`);
- `--chat-template`: for a tunesmith output, the template and system prompt the default engine
  renders with (the output's own template, which a LoRA module's base does not have, and the run's
  `data.system` put first when a request has no system turn); outputs served together must agree.

What vLLM cannot serve is refused before anything starts, with the reason: DoRA adapters, virtual-
token (prompt/prefix) outputs, bottleneck adapters and LoRA experts (export a merged model, or use
the default engine), `--admin-key` (runtime adapter loading is the transformers engine's), and any
machine without a CUDA GPU or without the `vllm` package. Queue length, request timeout and grace
period are vLLM's own there. Status: written against vLLM's documented CLI, not yet run on a GPU
(`scripts/gpu_check.sh` has the step).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.layout import RUN_MANIFEST, trained_part

BASE_NAME = "base"  # the name the base model answers to when adapters are served on it (as LoraSet's)
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts


def check_available() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "serve --engine vllm: vLLM serves on a CUDA GPU and this machine has none; "
            "--engine transformers (the default) serves here"
        )
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "serve --engine vllm: needs the vllm package (pip install vllm, on the GPU machine); "
            "--engine transformers (the default) needs nothing more"
        )


def _max_rank(ranks: list[int]) -> int:
    top = max(ranks)
    for allowed in LORA_RANKS:
        if allowed >= top:
            return allowed
    raise ConfigError(
        f"serve --engine vllm: an adapter of rank {top} is above vLLM's largest --max-lora-rank "
        f"({LORA_RANKS[-1]}); export a merged model and serve that"
    )


def _lora_output(path: str):
    """The output's description, refused unless vLLM can serve it as a LoRA module."""
    from tunesmith.models.lora_set import describe_output

    info = describe_output(path)
    if info.kind != "lora":
        raise ConfigError(
            f"serve --engine vllm: {path} is a {info.kind} output; vLLM serves LoRA adapters and whole "
            "models only: `tunesmith export --merge` it, or serve it with --engine transformers"
        )
    if info.dora:
        raise ConfigError(
            f"serve --engine vllm: {path} is a DoRA adapter, which vLLM does not serve; "
            f"`tunesmith export {path} --merge` writes a whole model it can serve"
        )
    return info


def served_prompt(outputs: list[str]) -> tuple[str | None, str | None]:
    """(chat template, system prompt) the default engine renders these tunesmith outputs' requests
    with: each output's own tokenizer template and its run's `data.system`. vLLM takes one template
    for the whole server, so outputs that differ are refused."""
    from transformers import AutoTokenizer

    from tunesmith.layout import read_manifest

    def template(path: str) -> str | None:
        has_tokenizer = (Path(path) / "tokenizer_config.json").is_file()
        return AutoTokenizer.from_pretrained(path).chat_template if has_tokenizer else None

    found = {(template(path), read_manifest(path).get("system") or None): path for path in outputs}
    if len(found) > 1:
        raise ConfigError(
            "serve --engine vllm: these outputs were trained with different chat templates or system prompts "
            f"({', '.join(found.values())}); vLLM renders every request with one, so serve them with "
            "--engine transformers, or one at a time"
        )
    return next(iter(found)) if found else (None, None)


def template_with_system(template: str, system: str | None) -> str:
    """`template` that first puts `system` as the system turn when the messages have none (as the
    default engine's `with_system` does), for vLLM's --chat-template."""
    if not system:
        return template
    if "{% endraw %}" in system or "{%- endraw" in system:
        raise ConfigError(
            "serve --engine vllm: the run's system prompt contains `{% endraw %}`; serve it with --engine transformers"
        )
    return (
        "{%- set tunesmith_system %}{% raw %}" + system + "{% endraw %}{% endset -%}\n"
        "{%- if not messages or messages[0]['role'] != 'system' -%}\n"
        "{%- set messages = [{'role': 'system', 'content': tunesmith_system}] + messages -%}\n"
        "{%- endif -%}\n" + template
    )


def vllm_command(
    model: str,
    name: str,
    adapters: dict[str, str],
    host: str,
    port: int,
    api_key: str | None,
    max_batch: int,
    cache_dir: str | None = None,
    access_log: str = "-",
) -> list[str]:
    """The vLLM server command for what `tunesmith serve` was asked to serve. `access_log`: `-` keeps
    vLLM's own (uvicorn's) access log on stderr, `off` turns it off; a file is refused (ours only)."""
    if access_log not in ("-", "off"):
        raise ConfigError(
            "serve --engine vllm: --access-log to a file is the transformers engine's; vLLM writes "
            "its own access log to stderr (--access-log -) or none (--access-log off)"
        )
    from tunesmith.models.loader import resolve_model_path
    from tunesmith.models.lora_set import common_base

    if not adapters and Path(model).is_dir() and (Path(model) / RUN_MANIFEST).is_file() and trained_part(Path(model)):
        adapters = {name: model}  # a LoRA output: a module of its base
    infos = {n: _lora_output(p) for n, p in adapters.items()}
    base = common_base(list(infos.values()), cache_dir) if infos else model
    base = resolve_model_path(base, cache_dir) if base == "default" or Path(base).exists() else base
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(base),
        "--served-model-name",
        BASE_NAME if infos else name,
        "--host",
        host,
        "--port",
        str(port),
        "--max-num-seqs",
        str(max_batch),
    ]
    if infos:
        command += [
            "--enable-lora",
            "--max-loras",
            str(len(infos)),
            "--max-lora-rank",
            str(_max_rank([i.rank or 8 for i in infos.values()])),
            "--lora-modules",
            *(f"{n}={i.path}" for n, i in infos.items()),
        ]
    outputs = [i.path for i in infos.values()] or ([model] if (Path(model) / RUN_MANIFEST).is_file() else [])
    template, system = served_prompt([str(p) for p in outputs])
    if template and (infos or system):  # the adapters' own template, and the run's system prompt, as served here
        import tempfile

        handle, path = tempfile.mkstemp(prefix="tunesmith-vllm-", suffix=".jinja")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(template_with_system(template, system))
        command += ["--chat-template", path]
    if api_key:
        command += ["--api-key", api_key]
    if access_log == "off":
        command.append("--disable-uvicorn-access-log")
    return command


def shown(command: list[str]) -> str:
    """The command as printed: the API key masked."""
    masked = ["***" if i and command[i - 1] == "--api-key" else arg for i, arg in enumerate(command)]
    return " ".join(masked)


def run_vllm(command: list[str]) -> None:
    """Become vLLM's server (signals go to it directly)."""
    print(f"[tunesmith] serve --engine vllm: {shown(command)}", flush=True)
    os.execv(command[0], command)
