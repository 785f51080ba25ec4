"""Augmentation that needs no model (`data.augment`): system-prompt variation, few-shot order and
rewording of the question.

Each training conversation becomes `copies` conversations. Copy k of a row:

- system prompt: a row without a system prompt of its own (one given by `data.system` counts as
  none) gets `system_prompts[perm[k % n]]`, where `perm` is a seeded permutation of the n prompts
  drawn once per row; so with copies <= n the copies of a row all get different prompts. A row's
  own system prompt is data and is kept.
- few-shot order: with `shuffle_examples`, the row's `examples` turns (see `formats.few_shot`)
  are put in a seeded random order drawn for this copy; the final question and any history stay.
- question frames (copies 2..; copy 1 keeps the row's own wording): the last user turn is put into
  a frame ("Quick question: {question}"), the row's frames drawn as a seeded permutation so that its
  copies get different ones; `builtin` picks from FRAMES_EN or FRAMES_ZH by the question's script.
- word dropout (copies 2..): each word of the last user turn is left out with probability p (EDA's
  random deletion, Wei and Zou 2019), at least half of them kept; Chinese is split into words by
  jieba. The copies then tie the answer to the other words of the question too, which is what a
  reader who words the question differently leaves in place.

Every draw is seeded by (augment.seed, the row's file:line, the copy), so the result does not
depend on batching, streaming or which other rows are present. Applied to training rows only,
before tokenisation (the options are part of the tokenised-cache key).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from tunesmith.config.data import AugmentConfig
from tunesmith.data.clean import script_of
from tunesmith.data.formats import Conversation

# the frames of `question_frames: builtin`: how people wrap a question, none of them adding a fact
FRAMES_EN = (
    "Quick question: {question}",
    "Hi! {question}",
    "{question} Please answer briefly.",
    "I'm new here. {question}",
    "Could you help me with something? {question}",
    "Sorry to bother you. {question}",
    "{question} Thanks!",
    "A colleague asked me this and I wasn't sure: {question}",
)
FRAMES_ZH = (
    "请问，{question}",
    "你好！{question}",
    "{question}请简单回答。",
    "我是新来的。{question}",
    "能帮我个忙吗？{question}",
    "打扰一下，{question}",
    "{question}谢谢！",
    "同事问了我这个问题，我也不确定：{question}",
)


def _is_cjk(text: str) -> bool:
    return any(script_of(ch) == "cjk" for ch in text)


def _frames(question: str, options: AugmentConfig) -> tuple[str, ...]:
    if options.question_frames == "builtin":
        return FRAMES_ZH if _is_cjk(question) else FRAMES_EN
    return tuple(options.question_frames)


def _drop_words(text: str, p: float, rng: random.Random) -> str:
    """`text` less each word with probability p, at least half of the words kept, in order."""
    if _is_cjk(text):
        import jieba

        jieba.setLogLevel(60)  # jieba prints its dictionary loading at INFO
        words = jieba.lcut(text, HMM=False)
        joiner = ""
    else:
        words = text.split()
        joiner = " "
    content = [i for i, w in enumerate(words) if w.strip()]
    dropped = {i for i in content if rng.random() < p}
    while len(dropped) > len(content) // 2:
        dropped.discard(rng.choice(sorted(dropped)))
    return joiner.join(w for i, w in enumerate(words) if i not in dropped)


def _reword(messages: list[dict], conversation: Conversation, options: AugmentConfig, k: int) -> None:
    """Copy k's last user turn, framed and/or with words left out (copy 0 is left as written)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if k == 0 or last is None or not isinstance(messages[last]["content"], str):
        return
    question = messages[last]["content"]
    if options.word_dropout > 0:
        rng = random.Random(f"{options.seed}|{conversation.where}|dropout|{k}")
        question = _drop_words(question, options.word_dropout, rng)
    frames = _frames(messages[last]["content"], options)
    if frames:
        order = random.Random(f"{options.seed}|{conversation.where}|frames").sample(range(len(frames)), len(frames))
        question = frames[order[(k - 1) % len(frames)]].replace("{question}", question)
    messages[last] = {**messages[last], "content": question}


def augment_conversation(conversation: Conversation, options: AugmentConfig) -> list[Conversation]:
    """The `options.copies` augmented copies of one conversation."""
    prompts = options.system_prompts
    order = random.Random(f"{options.seed}|{conversation.where}|system").sample(range(len(prompts)), len(prompts))
    copies = []
    for k in range(options.copies):
        messages = [dict(m) for m in conversation.messages]
        meta = dict(conversation.meta)
        if options.shuffle_examples and "examples" in meta:
            first, count = meta["examples"]
            pairs = [messages[first + 2 * j : first + 2 * j + 2] for j in range(count)]
            random.Random(f"{options.seed}|{conversation.where}|examples|{k}").shuffle(pairs)
            messages[first : first + 2 * count] = [m for pair in pairs for m in pair]
        _reword(messages, conversation, options, k)
        if prompts:
            prompt = {"role": "system", "content": prompts[order[k % len(prompts)]]}
            if messages[0]["role"] != "system":
                messages.insert(0, prompt)
                if "examples" in meta:
                    meta["examples"] = (meta["examples"][0] + 1, meta["examples"][1])
            elif meta.get("default_system"):
                messages[0] = prompt
        copies.append(Conversation(messages, conversation.where, meta))
    return copies


def augment_all(conversations: Iterable[Conversation], options: AugmentConfig | None) -> Iterator[Conversation]:
    """Every conversation's copies, in order (the conversations themselves when `options` is None)."""
    for conversation in conversations:
        if options is None:
            yield conversation
        else:
            yield from augment_conversation(conversation, options)
