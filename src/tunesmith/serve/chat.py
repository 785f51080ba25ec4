"""Streaming terminal chat with a base model or a trained output (adapter or full).

    tunesmith chat --model out/sft_lora_demo

    tunesmith chat --adapter support=out/support --adapter sales=out/sales

Type a message and press Enter; `/reset` clears the history, `/exit` (or Ctrl-D) quits. With
several adapters (one base in memory, models.lora_set.LoraSet), `/adapter NAME` switches the
specialist that answers the next turn (`/adapter base`: the base model) and `/adapters` lists them.
Input may be piped: each line is one user turn.
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


def chat_loop(loaded: LoadedModel | None, system: str | None, max_new_tokens: int = 256, temperature: float = 0.0,
              stdin=None, out=None, adapters=None, active: str | None = None) -> None:
    """Chat with `loaded`, or with the adapter `active` of the LoraSet `adapters` (switchable).
    `system` None: each model's own training system prompt."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    interactive = stdin.isatty()
    history: list[dict] = []
    if adapters is not None:
        active = active or adapters.names[1]
    if interactive:
        what = f"adapter `{active}` of {', '.join(adapters.names)} (/adapter NAME switches)" if adapters else loaded.path
        out.write(f"tunesmith chat with {what}  (/reset clears history, /exit quits)\n")
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
        if adapters is not None and text == "/adapters":
            out.write(", ".join(f"[{n}]" if n == active else n for n in adapters.names) + "\n")
            continue
        if adapters is not None and text.startswith("/adapter"):
            name = text.removeprefix("/adapter").strip()
            if name not in adapters.names:
                out.write(f"(unknown adapter `{name}`; loaded: {', '.join(adapters.names)})\n")
            else:
                active = name
                out.write(f"(now answering: {active})\n")
            continue
        history.append({"role": "user", "content": text})
        out.write(f"{active}> " if adapters is not None else "assistant> ")
        if adapters is None:
            reply = _turn(loaded, system, history, max_new_tokens, temperature, out)
        else:
            with adapters.use(active) as current:
                reply = _turn(current, system, history, max_new_tokens, temperature, out)
        history.append({"role": "assistant", "content": reply})


def _turn(loaded: LoadedModel, system: str | None, history: list[dict], max_new_tokens: int, temperature: float,
          out) -> str:
    system = system if system is not None else loaded.system
    head = [{"role": "system", "content": system}] if system else []
    return stream_reply(loaded, head + history, max_new_tokens, temperature, out)
