"""The held-out rows a stage's `evaluate` measures (validation files, or the val_split of training),
and the prompt rows of the stages that sample (grpo, ppo)."""

from __future__ import annotations

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import build_sources, build_splits
from tunesmith.data.rows import PROMPTS, load_row_splits, load_rows
from tunesmith.eval.verifiers import require_answers
from tunesmith.models.default import cache_root

# --- held-out data for a stage's `evaluate` (validation files, or the val_split of training) ------


def held_out_tokens(cfg: TunesmithConfig, tokenizer, system: str | None, kind: str):
    """The tokenised validation set as the run saw it, rendered with `system` (the model's own); never
    augmented (the run's validation rows are not either)."""
    data = cfg.data.model_copy(update={"system": system, "augment": None})
    root = cache_root(cfg.model.cache_dir)
    if cfg.data.validation:  # only the validation files: the training set is not read again
        return build_sources(tokenizer, data, "validation", kind, cfg.training.seed, root)
    return build_splits(tokenizer, data, kind, cfg.training.seed, root)[1]  # from the tokenised cache


def held_out_rows(cfg: TunesmithConfig, tokenizer, system: str | None, kind, trainer_truncates: bool):
    """The validation rows (data.rows.RowSet) of a stage whose trainer tokenises itself."""
    data = cfg.data.model_copy(update={"system": system})
    if cfg.data.validation:
        return load_rows(tokenizer, data, "validation", kind, cfg.training.seed, trainer_truncates)
    return load_row_splits(tokenizer, data, kind, cfg.training.seed, trainer_truncates)[1]


def prompt_splits(cfg: TunesmithConfig, tokenizer, rewards):
    """Training and held-out prompt rows (grpo, ppo); every row needs an `answer` when exact_answer is
    among `rewards`."""
    train, val = load_row_splits(tokenizer, cfg.data, PROMPTS, cfg.training.seed, trainer_truncates=False)
    for rows in (train, val):
        if rows is not None:
            require_answers(rows.rows, rewards)
    return train, val
