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

from tunesmith.data.turns import with_system
from tunesmith.models.loader import LoadedModel
from tunesmith.serve.streaming import Generation


def context_budget(loaded: LoadedModel, max_new_tokens: int) -> int | None:
    """Prompt tokens the model can read and still answer max_new_tokens (None: no known limit)."""
    limit = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
    return limit - max_new_tokens if isinstance(limit, int) else None


def prompt_tokens(loaded: LoadedModel, messages: list[dict]) -> int:
    ids = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    return len(ids["input_ids"])


def fit_history(
    loaded: LoadedModel, head: list[dict], history: list[dict], budget: int | None
) -> tuple[list[dict], int, int]:
    """The newest turns of `history` whose prompt (after `head`) fits `budget` tokens, how many
    turns were left out (whole user/assistant pairs), and the prompt's size in tokens. The last
    (user) turn is always kept, even when it alone is over the budget."""
    dropped = 0
    while True:
        size = prompt_tokens(loaded, head + history[dropped:])
        if budget is None or size <= budget or len(history) - dropped <= 1:
            return history[dropped:], dropped, size
        dropped += 2 if len(history) - dropped > 2 else 1


def stream_reply(loaded: LoadedModel, messages: list[dict], max_new_tokens: int, temperature: float, out=None) -> str:
    """Generate a reply to `messages`, writing it to `out` as it comes; a generation that fails
    raises its error here (it never leaves the reader waiting)."""
    out = out or sys.stdout
    tokenizer, model = loaded.tokenizer, loaded.model
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    pieces = []
    for piece in Generation(
        model, tokenizer, inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
    ):
        pieces.append(piece)
        out.write(piece)
        out.flush()
    out.write("\n")
    return "".join(pieces).strip()


def chat_loop(
    loaded: LoadedModel | None,
    system: str | None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    stdin=None,
    out=None,
    adapters=None,
    active: str | None = None,
) -> None:
    """Chat with `loaded`, or with the adapter `active` of the LoraSet `adapters` (switchable).
    `system` None: each model's own training system prompt."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    interactive = stdin.isatty()
    history: list[dict] = []
    if adapters is not None:
        active = active or adapters.names[1]
    if interactive:
        what = (
            f"adapter `{active}` of {', '.join(adapters.names)} (/adapter NAME switches)" if adapters else loaded.path
        )
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
        if adapters is None:
            reply, history = _turn(loaded, system, history, max_new_tokens, temperature, out, "assistant")
        else:
            with adapters.use(active) as current:
                reply, history = _turn(current, system, history, max_new_tokens, temperature, out, active)
        if reply is None:  # the turn failed and was said so; the chat goes on without it
            history.pop()
        else:
            history.append({"role": "assistant", "content": reply})


def _turn(
    loaded: LoadedModel,
    system: str | None,
    history: list[dict],
    max_new_tokens: int,
    temperature: float,
    out,
    speaker: str,
) -> tuple[str | None, list[dict]]:
    """One reply (None when it failed, with the reason written to `out`) and the history it was
    given, trimmed to the model's context (max_position_embeddings - max_new_tokens)."""
    system = system if system is not None else loaded.system
    head = with_system([], system)
    budget = context_budget(loaded, max_new_tokens)
    history, dropped, size = fit_history(loaded, head, history, budget)
    if dropped:
        out.write(
            f"(history trimmed: the {dropped} oldest turns were left out to fit the model's context of "
            f"{budget + max_new_tokens} tokens, {max_new_tokens} of them kept for the reply)\n"
        )
    if budget is not None and size > budget:
        out.write(
            f"(no reply: this message makes a prompt of {size} tokens, but the model reads {budget + max_new_tokens} "
            f"tokens with {max_new_tokens} kept for the reply; shorten it or lower --max-new-tokens)\n"
        )
        return None, history
    out.write(f"{speaker}> ")
    try:
        return stream_reply(loaded, head + history, max_new_tokens, temperature, out), history
    except Exception as exc:
        out.write(
            f"\n(no reply: generation failed: {type(exc).__name__}: {exc}; try a shorter message, /reset, "
            f"or a smaller --max-new-tokens)\n"
        )
        return None, history
