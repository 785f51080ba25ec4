"""Augmentation that needs no model (`data.augment`): system-prompt variation and few-shot order.

Each training conversation becomes `copies` conversations. Copy k of a row:

- system prompt: a row without a system prompt of its own (one given by `data.system` counts as
  none) gets `system_prompts[perm[k % n]]`, where `perm` is a seeded permutation of the n prompts
  drawn once per row; so with copies <= n the copies of a row all get different prompts. A row's
  own system prompt is data and is kept.
- few-shot order: with `shuffle_examples`, the row's `examples` turns (see `formats.few_shot`)
  are put in a seeded random order drawn for this copy; the final question and any history stay.

Every draw is seeded by (augment.seed, the row's file:line, the copy), so the result does not
depend on batching, streaming or which other rows are present. Applied to training rows only,
before tokenisation (the options are part of the tokenised-cache key).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from tunesmith.config.schema import AugmentConfig
from tunesmith.data.formats import Conversation


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
