"""The two OpenAI completion formats: chat completions and text completions, one class each behind
one interface, so the routes (serve.completions) never ask which format they answer.

    completion = ChatCompletion(body, max_tokens_cap=1024)     # ApiError 400 on a bad field
    constraint = await completion.constraint(loaded)           # JSON mode's token constraint, or None
    prompt_ids = completion.prompt_ids(loaded)                 # the tokens generation continues
    completion.choice(0, text, "stop", None)                   # one choice of the whole reply
    completion.chunk_choice(0, completion.delta(piece))        # one choice of a stream chunk

A format says how a request body becomes a prompt and how its reply is shaped: the whole reply's
choices, and a stream's deltas (chat: the assistant role first, then `{"content": piece}`; text:
the pieces themselves).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from tunesmith.data.tokenize import render
from tunesmith.data.turns import with_system
from tunesmith.models.loader import LoadedModel
from tunesmith.serve.host import eos_ids
from tunesmith.serve.json_mode import response_constraint
from tunesmith.serve.replies import ChoiceText
from tunesmith.serve.requests import ApiError, Options, chat_messages, chat_options, text_options, unicode_text
from tunesmith.serve.tools import parse_reply, template_messages, tool_request


class Completion:
    """One completion request in one format: its checked fields (`options`), how it becomes a prompt,
    and how its choices and stream deltas are shaped."""

    route: str  # the endpoint
    param: str  # the body field a too-long prompt is blamed on
    id_prefix: str  # of the reply's `id`
    object: str  # the whole reply's `object`
    chunk_object: str  # a stream chunk's `object`
    delta_key: str  # where a stream chunk's choice carries its new text
    first_delta: dict | None = None  # sent for every choice before its text
    holds_text: bool = False  # True: a streamed choice's text is sent once whole (to parse it first)
    options: Options

    async def constraint(self, loaded: LoadedModel):
        """The token constraint every choice is generated under (serve.json_mode), or None."""
        return None

    def prompt_ids(self, loaded: LoadedModel) -> list[int]:
        raise NotImplementedError

    def logprobs(self, text: ChoiceText, tokens: list) -> dict:
        raise NotImplementedError

    def choice(self, index: int, text: str, finish: str, logprobs: dict | None) -> dict:
        """One choice of the whole (not streamed) reply."""
        raise NotImplementedError

    def delta(self, piece: str):
        """A streamed choice's new text, as its chunk carries it."""
        raise NotImplementedError

    def end_delta(self):
        """The delta of a streamed choice's last chunk (the one with its finish reason)."""
        raise NotImplementedError

    def whole_delta(self, text: str, finish: str) -> tuple[object, str]:
        """(delta, finish reason) of a choice's whole text, sent at its end when `holds_text`."""
        return self.delta(text), finish

    def chunk_choice(self, index: int, delta, finish: str | None = None, logprobs: dict | None = None) -> dict:
        return {"index": index, "finish_reason": finish, "logprobs": logprobs, self.delta_key: delta}


class ChatCompletion(Completion):
    """POST /v1/chat/completions: messages rendered with the model's chat template, its training
    system prompt first when they have none; tool calls parsed out of the reply when tools are offered."""

    route, param = "/v1/chat/completions", "messages"
    id_prefix, object, chunk_object, delta_key = "chatcmpl", "chat.completion", "chat.completion.chunk", "delta"

    def __init__(self, body: dict, max_tokens_cap: int):
        self.body = body
        self.options = chat_options(body, max_tokens_cap)
        self.messages, self.tools = chat_messages(body), tool_request(body)
        self.single_call = body.get("parallel_tool_calls") is False
        self.first_delta = {"role": "assistant", "content": ""}
        self.holds_text = bool(self.tools)  # a tool call is sent once parsed
        self.tokenizer, self.prompt_text = None, ""

    async def constraint(self, loaded: LoadedModel):
        if self.tools and self.body.get("response_format") not in (None, {"type": "text"}):
            raise ApiError(
                400,
                "`response_format` JSON modes and `tools` cannot be combined: a JSON-constrained reply "
                "cannot carry a tool call",
                "response_format",
            )
        # off the event loop: the first JSON request builds the vocabulary's table (seconds for a 49k vocabulary),
        # and /health, /v1/models and the running streams must not wait for it
        return await run_in_threadpool(response_constraint, self.body, loaded.tokenizer, eos_ids(loaded))

    def prompt_ids(self, loaded: LoadedModel) -> list[int]:
        ids = templated_prompt_ids(loaded, self.messages, self.tools)
        if self.tools:  # parsing a reply reads the prompt it continues (serve.tools.parse_reply)
            self.tokenizer, self.prompt_text = loaded.tokenizer, loaded.tokenizer.decode(ids)
        return ids

    def logprobs(self, text: ChoiceText, tokens: list) -> dict:
        return text.chat_logprobs(tokens)

    def message(self, text: str, finish: str) -> tuple[dict, str]:
        """The assistant message of a reply (its tool calls parsed out when tools were offered)."""
        if not self.tools:
            return {"role": "assistant", "content": text}, finish
        content, calls = parse_reply(self.tokenizer, self.prompt_text, text, self.tools)
        calls = calls[:1] if self.single_call else calls
        if not calls:
            return {"role": "assistant", "content": text}, finish
        return {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"

    def choice(self, index: int, text: str, finish: str, logprobs: dict | None) -> dict:
        message, finish = self.message(text, finish)
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}

    def delta(self, piece: str) -> dict:
        return {"content": piece}

    def end_delta(self) -> dict:
        return {}

    def whole_delta(self, text: str, finish: str) -> tuple[dict, str]:
        message, finish = self.message(text, finish)
        delta = {"content": message["content"]}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        return delta, finish


class TextCompletion(Completion):
    """POST /v1/completions: the prompt as raw text, continued."""

    route, param = "/v1/completions", "prompt"
    id_prefix, object, chunk_object, delta_key = "cmpl", "text_completion", "text_completion", "text"

    def __init__(self, body: dict, max_tokens_cap: int):
        self.body, self.options = body, text_options(body, max_tokens_cap)

    def prompt_ids(self, loaded: LoadedModel) -> list[int]:
        prompt = self.body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "`prompt` must be a non-empty string", "prompt")
        return list(loaded.tokenizer(unicode_text(prompt, "prompt"))["input_ids"])

    def logprobs(self, text: ChoiceText, tokens: list) -> dict:
        return text.text_logprobs(tokens)

    def choice(self, index: int, text: str, finish: str, logprobs: dict | None) -> dict:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def delta(self, piece: str) -> str:
        return piece

    def end_delta(self) -> str:
        return ""


FORMATS = (ChatCompletion, TextCompletion)


def templated_prompt_ids(loaded: LoadedModel, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    """The token ids of `messages` (the model's system prompt first when they have none) rendered by the
    model's chat template up to the assistant's turn; ApiError 400 when the template refuses them."""
    messages = with_system(messages, loaded.system)
    if tools or any(m.get("tool_calls") for m in messages):
        # rendered as training rendered rows with tools (data.tokenize.render): by the template where it
        # shows tools and calls, else the tools in the system turn and calls as <tool_call> text
        try:
            text = render(loaded.tokenizer, template_messages(messages), add_generation_prompt=True, tools=tools)
        except Exception as exc:
            raise ApiError(400, f"the model's chat template refused these messages: {exc}", "messages") from None
        return list(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
    try:
        encoded = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    except Exception as exc:  # the template's own checks (e.g. roles it does not allow)
        raise ApiError(400, f"the model's chat template refused these messages: {exc}", "messages") from None
    return list(encoded["input_ids"])
