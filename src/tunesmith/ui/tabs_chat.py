"""The Chat tab: any output (or `default`), streaming replies, side by side with its base model; or a
LoRA set (several LoRA outputs of one base, the base loaded once) whose active adapter is switched."""

from __future__ import annotations

import gradio as gr

from tunesmith.errors import TunesmithError
from tunesmith.ui.chat_models import set_refs
from tunesmith.ui.i18n import text

NO_SET = "No LoRA set loaded: replies come from the model above."


def build(ctx, labels) -> None:
    with gr.Row():
        model = labels(
            gr.Dropdown(
                ["default"],
                value="default",
                allow_custom_value=True,
                label=text("chat_model", "en"),
                elem_id="chat-model",
            ),
            "chat_model",
        )
        side = labels(gr.Checkbox(True, label=text("side_by_side", "en"), elem_id="chat-side"), "side_by_side")
        tokens = labels(gr.Slider(1, 1024, value=64, step=1, label=text("max_new_tokens", "en")), "max_new_tokens")
        temperature = labels(gr.Slider(0, 2, value=0, step=0.05, label=text("temperature", "en")), "temperature")
    with gr.Row():
        chosen = labels(
            gr.Dropdown(
                [], multiselect=True, allow_custom_value=True, label=text("lora_set", "en"), elem_id="chat-set", scale=3
            ),
            "lora_set",
        )
        load = labels(gr.Button(text("load_set", "en"), elem_id="chat-set-load", scale=0), "load_set", "value")
        adapter = labels(gr.Dropdown([], label=text("adapter", "en"), elem_id="chat-adapter", scale=1), "adapter")
    status = gr.Markdown(NO_SET, elem_id="chat-set-status")
    loaded_set = gr.State([])  # the folders of the LoRA set in use (resolved); empty: the model above
    with gr.Row():
        tuned = labels(gr.Chatbot(label=text("tuned", "en"), elem_id="chat-tuned", height=360), "tuned")
        base = labels(gr.Chatbot(label=text("base", "en"), elem_id="chat-base", height=360), "base")
    with gr.Row():
        message = labels(gr.Textbox(label=text("message", "en"), elem_id="chat-message", scale=4), "message")
        send = labels(gr.Button(text("send", "en"), variant="primary", elem_id="chat-send", scale=1), "send", "value")
        clear = labels(gr.Button(text("clear", "en"), scale=1, elem_id="chat-clear"), "clear", "value")

    def listed():
        return gr.update(choices=["default", *ctx.outputs()])

    def listed_outputs():
        return gr.update(choices=ctx.outputs())

    def load_set(selected):
        """Check and load the chosen outputs as one LoRA set; a refusal is shown and the model above stays in use."""
        if not selected:
            return [], gr.update(choices=[], value=None), NO_SET
        try:
            refs = set_refs(ctx.guard, selected)
            adapters = ctx.chat.lora_set(refs)
        except TunesmithError as exc:
            return (
                [],
                gr.update(choices=[], value=None),
                (
                    f"**LoRA set refused:** {exc}\n\nA LoRA set takes LoRA outputs trained on one base; chat with any "
                    f"other output as the model above. {NO_SET}"
                ),
            )
        names = adapters.names
        rows = "\n".join(f"- `{name}`: {path}" for name, path in zip(names[1:], refs))
        return (
            refs,
            gr.update(choices=names, value=names[1]),
            (
                f"**LoRA set loaded:** base `{adapters.base_path}` (loaded once) with\n{rows}\n\n"
                "Replies come from the active adapter; the Base pane is the same model with the adapters off."
            ),
        )

    def reply(ref, with_base, max_new, temp, msg, refs, active, tuned_history, base_history):
        tuned_history, base_history = list(tuned_history or []), list(base_history or [])
        if not (msg or "").strip():
            yield tuned_history, base_history, ""
            return
        n, t = int(max_new), float(temp)
        if refs:  # the LoRA set: the active adapter, and beside it the same base with the adapters off
            panes = [
                (lambda h: ctx.chat.stream_adapter(refs, active or "base", h, n, t), tuned_history),
                (lambda h: ctx.chat.stream_adapter(refs, "base", h, n, t), base_history),
            ]
        else:
            try:
                ref = ctx.guard.model_ref(ref or "default", "chat model")
            except TunesmithError as exc:
                gr.Warning(str(exc))
                yield tuned_history, base_history, msg
                return
            panes = [
                (lambda h: ctx.chat.stream(ref, h, n, t), tuned_history),
                (lambda h: ctx.chat.stream(ctx.chat.base_of(ref), h, n, t), base_history),
            ]
        if not with_base:
            panes = panes[:1]
        for stream, history in panes:
            history.append({"role": "user", "content": msg})
            history.append({"role": "assistant", "content": ""})
            try:
                for so_far in stream(history[:-1]):
                    history[-1] = {"role": "assistant", "content": so_far}
                    yield tuned_history, base_history, ""
            except Exception as exc:
                history[-1] = {"role": "assistant", "content": f"(no reply: {type(exc).__name__}: {exc})"}
                yield tuned_history, base_history, ""

    model.focus(listed, None, model)
    chosen.focus(listed_outputs, None, chosen)
    load.click(load_set, chosen, [loaded_set, adapter, status])
    inputs = [model, side, tokens, temperature, message, loaded_set, adapter, tuned, base]
    send.click(reply, inputs, [tuned, base, message])
    message.submit(reply, inputs, [tuned, base, message])
    clear.click(lambda: ([], []), None, [tuned, base])
    side.change(lambda shown: gr.update(visible=shown), side, base)
