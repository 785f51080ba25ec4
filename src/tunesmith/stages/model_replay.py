"""`forgetting.replay_answers: model`: general replay rows answered by the starting model itself.

Replayed with written answers, general rows teach those answers: the general perplexity falls
below the base model's and the replies drift toward our wording (the replay20 trial in docs/benchmarks.md).
Answered by the model about to be tuned, the same prompts instead hold it to what it already
did (self-synthesised rehearsal): the replay loss starts near its floor and only grows where the
fine-tune pulls the model away from its own behaviour.

Before training, the prompt of every `forgetting.replay` row (its messages up to the last
assistant turn, with the run's system prompt) is answered greedily with up to
`forgetting.replay_max_new_tokens` new tokens. A reply that has not ended within them is left out:
a cut reply would teach the model to stop mid-sentence. The rows go to a cache file
(`cache_root/model_replay/KEY.jsonl`, KEY over the model's files, the replay files, the system
prompt, the chat template and the token limit), written atomically, so only the first run of a
config pays for the generation; the run then replays that file instead of the written answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import fingerprint
from tunesmith.data.formats import load_conversations
from tunesmith.data.sources import resolve_sources
from tunesmith.errors import DataError
from tunesmith.eval.generate import generate, prompt_text
from tunesmith.models.loader import load_causal_lm

log = logging.getLogger(__name__)

KEY = "forgetting.replay"
MODEL_FILES = (".safetensors", ".bin", ".json", ".gguf")


def replay_entries(cfg: TunesmithConfig, setup) -> list[str]:
    """What the run replays: `forgetting.replay` as written, or (replay_answers: model) the cache
    file of the starting model's own answers to its prompts, generated now if it is not there."""
    f = cfg.forgetting
    if not f.replay or f.replay_answers != "model":
        return f.replay
    sources = resolve_sources(f.replay, cfg.data.registry, KEY)
    target = setup.cache_root / "model_replay" / f"{_key(cfg, setup, sources)}.jsonl"
    if target.is_file():
        log.info("forgetting.replay: the model's own answers from %s", target)
        return [str(target)]
    rows = _answer(cfg, setup, sources)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_text("".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in rows), encoding="utf-8")
    os.replace(partial, target)  # a stopped run leaves no half-written file that a later run would take
    return [str(target)]


def _system(cfg: TunesmithConfig, source) -> str | None:
    return source.system if source.system is not None else cfg.data.system


def _key(cfg: TunesmithConfig, setup, sources) -> str:
    folder = Path(setup.base_path)
    files = (
        sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.iterdir()
            if p.is_file() and p.name.endswith(MODEL_FILES)
        )
        if folder.is_dir()
        else [str(folder)]
    )
    parts = [
        str(folder.resolve()),
        files,
        [(fingerprint(s.paths), s.format, s.columns, _system(cfg, s)) for s in sources],
        setup.tokenizer.chat_template,
        cfg.data.format,
        cfg.data.columns,
        cfg.forgetting.replay_max_new_tokens,
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _answer(cfg: TunesmithConfig, setup, sources) -> list[list[dict]]:
    """The replay conversations with their last assistant turn replaced by the model's greedy reply
    (and the system prompt they are trained with written in); unfinished replies left out."""
    prompts, kept = [], []
    for source in sources:
        system = _system(cfg, source)
        for conversation in load_conversations(
            source.paths, source.format or cfg.data.format, system, source.columns or cfg.data.columns
        ):
            messages = conversation.messages
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            kept.append([{"role": m["role"], "content": m["content"]} for m in messages[:last]])
            prompts.append(prompt_text(setup.tokenizer, kept[-1]))
    limit = cfg.forgetting.replay_max_new_tokens
    started = time.time()
    print(
        f"[tunesmith] forgetting.replay_answers=model: the starting model answers {len(prompts)} replay prompts "
        f"(greedy, <= {limit} tokens; cached for later runs)",
        flush=True,
    )
    model = load_causal_lm(setup.base_path, setup.dtype, cfg.model.attn_implementation, cfg.model.trust_remote_code)
    model.to(setup.device).eval()
    try:
        replies = generate(model, setup.tokenizer, prompts, limit, cfg.eval.batch_size, desc="replay answers")
    finally:
        del model
    rows = [
        messages + [{"role": "assistant", "content": r.text}]
        for messages, r in zip(kept, replies)
        if r.stopped and r.text
    ]
    log.info(
        "forgetting.replay: %d of %d replies ended within %d tokens and are kept (%.0f s)",
        len(rows),
        len(prompts),
        limit,
        time.time() - started,
    )
    if not rows:
        raise DataError(
            f"forgetting.replay_answers: model: none of the {len(prompts)} replies to the replay prompts "
            f"ended within forgetting.replay_max_new_tokens={limit}; raise it or use replay_answers: data"
        )
    return rows
