"""Which `data.*` options each kind of data supports.

Every option either works for a stage or is refused at config time for it, naming the key and the
stage (`stages.registry.check_stage` compares these sets with what a config sets). A stage record
says which set it reads; a stage may support fewer (mtl cannot pack rows of different tasks).
"""

from __future__ import annotations

from tunesmith.config.data import DataConfig

# Where the rows come from, how many, and what happens to bad or long ones: every kind of data.
SOURCES = frozenset(
    {
        "train",
        "validation",
        "registry",
        "weights",
        "columns",
        "max_samples",
        "val_split",
        "on_error",
        "max_reject_fraction",
        "max_length",
    }
)
# Chat rows tokenised by tunesmith (sft, mtl): formats, masking, packing, cleaning, cache, streaming, augmentation.
CHAT = SOURCES | {
    "format",
    "system",
    "template",
    "overlength",
    "train_on_prompt",
    "last_turn_only",
    "packing",
    "clean",
    "cache",
    "streaming",
    "augment",
}
# Raw documents cut into max_length blocks (pt): no chat template, no masking, nothing is over-length.
# `system` is kept: the trained model answers eval.qa and chat with it (saved in the manifest).
TEXT = SOURCES | {"system", "packing", "clean", "cache", "streaming"}
# Rows a TRL-style trainer tokenises itself (dpo, kto, rm, grpo, ppo): see data/rows.py.
ROWS = SOURCES | {"system", "template", "overlength"}

WHY = {
    "format": "it names a chat-row format (alpaca, messages, sharegpt, multitask)",
    "template": "raw text is not rendered with a chat template",
    "overlength": "documents are cut into data.max_length blocks, so no row is over-length",
    "train_on_prompt": "it chooses which chat tokens are trained",
    "last_turn_only": "it chooses which chat tokens are trained",
    "packing": "packing joins tokenised rows into shared sequences",
    "clean": "cleaning rewrites and deduplicates chat rows or documents",
    "cache": "the tokenised cache holds rows tunesmith tokenises; this stage's trainer tokenises its own",
    "streaming": "streaming trains from memory-mapped token arrays",
    "augment": "augmentation varies the system prompt and few-shot order of chat rows",
}


def refused_options(data: DataConfig, supported: frozenset[str]) -> list[str]:
    """The options set to something other than their default that `supported` does not contain."""
    defaults = DataConfig(train=[])
    return [
        key for key in DataConfig.model_fields if key not in supported and getattr(data, key) != getattr(defaults, key)
    ]
