"""Streaming terminal chat with a base model or a trained output (adapter or full).

    tunesmith chat --model out/sft_lora_demo

Type a message and press Enter; `/reset` clears the history, `/exit` (or Ctrl-D) quits. Input
may be piped: each line is one user turn.
"""

from __future__ import annotations

import sys
from threading import Thread

import torch

from tunesmith.models.loader import LoadedModel


def stream_reply(loaded: LoadedModel, messages: list[dict], max_new_tokens: int, temperature: float, out=None) -> str:
    out = out or sys.stdout
    from transformers import TextIteratorStreamer

    tokenizer, model = loaded.tokenizer, loaded.model
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    kwargs = dict(**inputs, max_new_tokens=max_new_tokens, streamer=streamer, pad_token_id=tokenizer.pad_token_id, **sampling)
    worker = Thread(target=lambda: torch.no_grad()(model.generate)(**kwargs), daemon=True)
    worker.start()
    pieces = []
    for piece in streamer:
        pieces.append(piece)
        out.write(piece)
        out.flush()
    worker.join()
    out.write("\n")
    return "".join(pieces).strip()


def chat_loop(loaded: LoadedModel, system: str | None, max_new_tokens: int = 256, temperature: float = 0.0,
              stdin=None, out=None) -> None:
    stdin, out = stdin or sys.stdin, out or sys.stdout
    interactive = stdin.isatty()
    history: list[dict] = []
    base = [{"role": "system", "content": system}] if system else []
    if interactive:
        out.write(f"tunesmith chat with {loaded.path}  (/reset clears history, /exit quits)\n")
    while True:
        if interactive:
            out.write("\nyou> ")
            out.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            history = []
            out.write("(history cleared)\n")
            continue
        history.append({"role": "user", "content": text})
        out.write("assistant> ")
        reply = stream_reply(loaded, base + history, max_new_tokens, temperature, out)
        history.append({"role": "assistant", "content": reply})
