"""An Ollama `Modelfile` beside an exported GGUF: template, system prompt and stop tokens.

Ollama's TEMPLATE is a Go template, not the tokenizer's Jinja chat template, so it cannot be
translated in general. The exporter renders a probe conversation with the model's own chat
template and compares it with the ChatML layout (`<|im_start|>role\\n...<|im_end|>\\n`, what
SmolLM2, Qwen and many fine-tunes use): when they agree exactly, the Modelfile carries the ChatML
TEMPLATE; otherwise it has none and says so in a comment (Ollama then picks a template from the
GGUF's `tokenizer.chat_template` itself). The system prompt is the one the model was trained with
(the run's manifest), else the default a ChatML template inserts (SmolLM2's "You are a helpful AI
assistant named SmolLM, ..."), so Ollama prompts the model as transformers does.
"""

from __future__ import annotations

CHATML_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def _chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def is_chatml(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders a system + two-turn probe exactly as ChatML."""
    if not tokenizer.chat_template:
        return False
    probe = [
        {"role": "system", "content": "S1"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
    ]
    try:
        rendered = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that cannot render the probe is not ChatML
        return False
    return rendered == _chatml(probe)


def default_system(tokenizer) -> str | None:
    """The system prompt a ChatML template inserts when the conversation has none (SmolLM2's does)."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "U1"}], tokenize=False)
    head = "<|im_start|>system\n"
    if rendered.startswith(head) and "<|im_end|>" in rendered:
        return rendered[len(head) : rendered.index("<|im_end|>")]
    return None


def _quoted(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile(gguf_name: str, tokenizer, system: str | None) -> str:
    lines = ["# ollama create NAME -f Modelfile   (written by tunesmith export --format gguf)", f"FROM ./{gguf_name}"]
    stops = []
    if is_chatml(tokenizer):
        lines.append(f"TEMPLATE {_quoted(CHATML_TEMPLATE)}")
        stops.append("<|im_end|>")
        system = system or default_system(tokenizer)  # the Go template adds no default: say it here
    else:
        lines.append(
            "# no TEMPLATE: the chat template is not ChatML; Ollama reads tokenizer.chat_template from the GGUF"
        )
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return "\n".join(lines) + "\n"
