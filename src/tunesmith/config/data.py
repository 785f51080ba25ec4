"""Section `data:`: the training and validation files, their format and tokenising, with its
subsections `data.clean` (cleaning before tokenising) and `data.augment` (augmentation without a model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.section import Section, paths_as_lists


class CleanConfig(Section):
    normalise: bool = Field(True, description="Unicode NFKC, control characters removed, runs of spaces collapsed.")
    dedup: bool = Field(True, description="Drop rows whose normalised text is identical to an earlier row.")
    near_dup_threshold: float | None = Field(
        0.9,
        gt=0,
        le=1,
        description="Drop rows whose MinHash-estimated Jaccard similarity (word 3-grams; character 4-grams for "
        "CJK) to an earlier row is at least this; null turns near-dedup off.",
    )
    num_perm: int = Field(128, ge=16, description="MinHash permutations (more: more exact, slower).")
    min_chars: int = Field(1, ge=0, description="Drop rows whose reply (or document) is shorter than this.")
    max_chars: int | None = Field(None, gt=0, description="Drop rows whose reply (or document) is longer than this.")
    languages: list[str] = Field(
        default_factory=list,
        description="Keep rows mostly written in these languages' scripts (e.g. [en, zh]); cheap script check, "
        "empty = all.",
    )


class AugmentConfig(Section):
    system_prompts: list[str] = Field(
        default_factory=list,
        description="System prompts to vary: each training row without a system prompt of its own (data.system "
        "counts as none) gets one of these, drawn by a seeded RNG per row and copy; with copies <= the number of "
        "prompts, the copies of a row all get different ones.",
    )
    shuffle_examples: bool = Field(
        False,
        description="Put the few-shot `examples` of alpaca/multitask rows ({input, output} objects, rendered as "
        "prior user/assistant turns) in a seeded random order, drawn anew for every copy.",
    )
    question_frames: list[str] | Literal["builtin"] = Field(
        default_factory=list,
        description="Reword the last user turn of copies 2.. of each row (copy 1 stays as written): each copy puts "
        "the question into one of these frames, e.g. 'Quick question: {question}' (each must contain {question}); "
        "'builtin' takes tunesmith's own English and Chinese frames (data.augment module), by the question's script.",
    )
    word_dropout: float = Field(
        0.0,
        ge=0.0,
        le=0.5,
        description="In copies 2.. of each row, leave out each word of the last user turn with this probability "
        "(EDA's random deletion; Chinese split into words by jieba; at least half the words are kept), so that the "
        "answer is tied to every cue of the question, not one wording.",
    )
    copies: int = Field(
        1,
        ge=1,
        le=64,
        description="Training rows written per source row, each with its own draw (system prompt, example order, "
        "question frame, dropped words).",
    )
    seed: int = Field(0, description="Seed of the augmentation draws (same seed, same rows; part of the cache key).")

    @model_validator(mode="after")
    def _does_something(self):
        if any(not isinstance(p, str) or not p.strip() for p in self.system_prompts):
            raise ValueError("data.augment.system_prompts: every prompt must be a non-empty string")
        if self.question_frames != "builtin" and any("{question}" not in f for f in self.question_frames):
            raise ValueError(
                "data.augment.question_frames: every frame must be a string containing {question} "
                "(or write question_frames: builtin)"
            )
        rewords = bool(self.question_frames) or self.word_dropout > 0
        if not self.system_prompts and not self.shuffle_examples and not rewords:
            raise ValueError(
                "data.augment: set system_prompts, shuffle_examples: true, question_frames and/or "
                "word_dropout (or remove the section)"
            )
        if rewords and self.copies < 2:
            raise ValueError(
                "data.augment.copies: question_frames and word_dropout reword copies 2.. of each row "
                "(copy 1 stays as written); set copies to 2 or more"
            )
        return self


class DataConfig(Section):
    train: list[str] = Field(
        default_factory=list,
        description="Training data files (.json array or .jsonl; alpaca or chat `messages` rows). "
        "A single path or a list.",
    )
    validation: list[str] = Field(
        default_factory=list, description="Validation files (same formats) for eval loss/perplexity."
    )
    registry: str | None = Field(
        None,
        description="YAML file of named datasets ({name: {path, format, columns, system}}); train and "
        "validation entries may then be names instead of paths.",
    )
    weights: list[float] | None = Field(
        None,
        description="Mixing ratios, one per data.train entry: source i makes up weight_i/sum of the mixed "
        "training set (small sources are repeated, large ones sampled; seeded).",
    )
    format: Literal["auto", "alpaca", "messages", "sharegpt", "multitask", "prompt_completion"] = Field(
        "auto", description="Row format; auto detects it per row from the keys present."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column mapping for files whose field names differ: {canonical: name in file}, e.g. "
        "{instruction: question, output: answer} or {messages: dialog}.",
    )
    system: str | None = Field(
        None,
        description="System prompt given to rows that have none. Saved with the output, so chat and "
        "eval use the same one.",
    )
    max_length: int = Field(1024, gt=8, description="Longest tokenised row (and pack length with packing).")
    overlength: Literal["truncate", "drop", "error"] = Field(
        "truncate",
        description="Rows longer than max_length: truncate (keep the start; a row left with no trained token "
        "is dropped and counted), drop (leave out, counted), error (an invalid row).",
    )
    template: Literal["auto", "chatml", "plain"] = Field(
        "auto",
        description="Chat template: auto = the tokenizer's own (refused if it has none); chatml or plain = a "
        "shipped template for base models. The template used is saved with the trained model.",
    )
    train_on_prompt: bool = Field(
        False, description="Also train on system/user tokens (default: assistant turns only)."
    )
    last_turn_only: bool = Field(False, description="Train only the last assistant turn of each conversation.")
    max_samples: int | None = Field(
        None, gt=0, description="Use at most this many rows of each training source (for quick trials)."
    )
    val_split: float = Field(
        0.0,
        ge=0,
        description="With no validation files: hold out this many training rows (seeded by training.seed): a "
        "fraction below 0.5 (0.05 = 5%), or a whole number of rows from 1 (200).",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="Invalid rows: fail (refuse to start, listing the first 20 with file:line:field) or skip "
        "(leave them out; reasons are written to OUTPUT/rejects.jsonl).",
    )
    max_reject_fraction: float = Field(
        0.1, ge=0, le=1, description="With on_error: skip, still fail when more than this fraction of rows is invalid."
    )
    packing: bool = Field(
        False,
        description="Pack several rows into each max_length sequence (per-row position ids, no attention across "
        "rows, no padding waste); batch_size then counts packs.",
    )
    clean: CleanConfig | None = Field(
        None,
        description="Clean rows before tokenising: normalise, dedup, MinHash near-dedup, length and script "
        "filters (removed rows are listed in rejects.jsonl).",
    )
    cache: bool = Field(
        True,
        description="Reuse tokenised data from the cache (CACHE/tokenized) when files, tokenizer and options are "
        "unchanged.",
    )
    streaming: bool = Field(
        False,
        description="For sets larger than memory (stages sft, pt): read rows one at a time, tokenise in batches into "
        "on-disk arrays in the cache, and train from them memory-mapped. Not with .json arrays (use .jsonl), "
        "data.weights, clean dedup, forgetting.replay.",
    )
    augment: AugmentConfig | None = Field(
        None,
        description="Augmentation without a model, on training rows only (validation stays as written): system-prompt "
        "variation, few-shot example order shuffling, question frames and word dropout (copies 2..), several copies "
        "per row; seeded, applied before tokenising; forgetting.replay rows are never augmented.",
    )

    @model_validator(mode="after")
    def _val_split_is_a_fraction_or_a_count(self):
        v = self.val_split
        if 0.5 <= v < 1 or (v >= 1 and v != int(v)):
            raise ValueError(
                f"data.val_split={v}: give a fraction below 0.5 (0.05 = 5% of the rows) or a whole number of rows (200)"
            )
        return self

    @model_validator(mode="after")
    def _weights_match_sources(self):
        if self.weights is not None:
            if len(self.weights) != len(self.train):
                raise ValueError(
                    f"data.weights has {len(self.weights)} values for {len(self.train)} data.train entries"
                )
            if any(w < 0 for w in self.weights) or not sum(self.weights) > 0:
                raise ValueError("data.weights must be non-negative with a positive sum")
        return self

    @model_validator(mode="after")
    def _streaming_options(self):
        if not self.streaming:
            return self
        if self.weights is not None:
            raise ValueError(
                "data.weights: mixing draws rows from every source at random, which needs them all in "
                "memory; with data.streaming: true the sources are concatenated (remove data.weights, or "
                "set data.streaming: false)"
            )
        if self.clean is not None and (self.clean.dedup or self.clean.near_dup_threshold is not None):
            raise ValueError(
                "data.clean: dedup and near-dedup compare each row with every earlier one, which needs "
                "them in memory; with data.streaming: true set clean.dedup: false and "
                "clean.near_dup_threshold: null (normalisation and the length/script filters stream), "
                "or set data.streaming: false"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _paths_as_lists(cls, values):
        return paths_as_lists(values, ("train", "validation"))
