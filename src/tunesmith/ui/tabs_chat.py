"""The Chat tab: any output (or `default`), streaming replies, side by side with its base model."""

from __future__ import annotations

import gradio as gr

from tunesmith.errors import TunesmithError
from tunesmith.ui.i18n import text


def build(ctx, labels) -> None:
    with gr.Row():
        model = labels(gr.Dropdown(["default"], value="default", allow_custom_value=True,
                                   label=text("chat_model", "en"), elem_id="chat-model"), "chat_model")
        side = labels(gr.Checkbox(True, label=text("side_by_side", "en"), elem_id="chat-side"), "side_by_side")
        tokens = labels(gr.Slider(1, 1024, value=64, step=1, label=text("max_new_tokens", "en")), "max_new_tokens")
        temperature = labels(gr.Slider(0, 2, value=0, step=0.05, label=text("temperature", "en")), "temperature")
    with gr.Row():
        tuned = labels(gr.Chatbot(label=text("tuned", "en"), elem_id="chat-tuned", height=360), "tuned")
        base = labels(gr.Chatbot(label=text("base", "en"), elem_id="chat-base", height=360), "base")
    with gr.Row():
        message = labels(gr.Textbox(label=text("message", "en"), elem_id="chat-message", scale=4), "message")
        send = labels(gr.Button(text("send", "en"), variant="primary", elem_id="chat-send", scale=1), "send", "value")
        clear = labels(gr.Button(text("clear", "en"), scale=1), "clear", "value")

    def listed():
        return gr.update(choices=["default", *ctx.outputs()])

    def reply(ref, with_base, max_new, temp, msg, tuned_history, base_history):
        tuned_history, base_history = list(tuned_history or []), list(base_history or [])
        if not (msg or "").strip():
            yield tuned_history, base_history, ""
            return
        try:
            ref = ctx.guard.model_ref(ref or "default", "chat model")
        except TunesmithError as exc:
            gr.Warning(str(exc))
            yield tuned_history, base_history, msg
            return
        panes = [(ref, tuned_history)] + ([(ctx.chat.base_of(ref), base_history)] if with_base else [])
        for model_ref, history in panes:
            history.append({"role": "user", "content": msg})
            history.append({"role": "assistant", "content": ""})
            try:
                for so_far in ctx.chat.stream(model_ref, history[:-1], int(max_new), float(temp)):
                    history[-1] = {"role": "assistant", "content": so_far}
                    yield tuned_history, base_history, ""
            except Exception as exc:  # noqa: BLE001 - a model that will not load or generate: said in the pane
                history[-1] = {"role": "assistant", "content": f"(no reply: {type(exc).__name__}: {exc})"}
                yield tuned_history, base_history, ""

    model.focus(listed, None, model)
    inputs = [model, side, tokens, temperature, message, tuned, base]
    send.click(reply, inputs, [tuned, base, message])
    message.submit(reply, inputs, [tuned, base, message])
    clear.click(lambda: ([], []), None, [tuned, base])
    side.change(lambda shown: gr.update(visible=shown), side, base)
