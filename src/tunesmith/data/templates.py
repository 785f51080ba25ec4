"""Chat templates: the tokenizer's own by default, shipped fallbacks for models without one.

`data.template: auto` uses the tokenizer's template and refuses a tokenizer that has none;
`chatml` and `plain` replace it with a shipped template. Whatever is used is saved with the
trained model (`chat_template.jinja` beside the tokenizer), so chat/eval/serve render exactly
what training rendered. Every shipped template renders a conversation's prefixes as prefixes of
each other, which the label masking in `tokenize.py` relies on (tested for each).
"""

from __future__ import annotations

from tunesmith.errors import ConfigError

# ChatML, as Qwen/SmolLM use it. With a tokenizer whose vocabulary lacks <|im_start|>/<|im_end|>
# the markers are plain text; `plain` uses the tokenizer's own end-of-sequence token instead.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PLAIN = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
SHIPPED = {"chatml": CHATML, "plain": PLAIN}
TEMPLATE_NAMES = ("auto", *SHIPPED)


def apply_template(tokenizer, name: str) -> str:
    """Set the tokenizer's chat template as `data.template` says; returns the name used."""
    if name in SHIPPED:
        tokenizer.chat_template = SHIPPED[name]
        return name
    if name != "auto":
        raise ConfigError(f"data.template: unknown template `{name}` (choose from {', '.join(TEMPLATE_NAMES)})")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "data.template: the tokenizer has no chat template; set `data.template: chatml` or "
            "`data.template: plain` to use a shipped one (it is saved with the trained model)"
        )
    return "tokenizer"
