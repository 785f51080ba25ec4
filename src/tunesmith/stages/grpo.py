"""GRPO (group relative policy optimisation): online RL with verifiable rewards, via TRL's GRPOTrainer.

    tunesmith train examples/grpo_lora.yaml

For each prompt the policy samples `grpo.num_generations` completions; the configured reward
functions (`eval.verifiers`: exact_answer, regex_format, length) score them, and each completion
is pushed up or down by its reward relative to its group. Mean reward and its spread are logged
every `training.logging_steps` into metrics.jsonl and drawn in reward.png. With `grpo.beta` > 0 a
KL term holds the policy near the base (with LoRA: the base with the adapter off).
"""

from __future__ import annotations

import logging

from tunesmith.config import TunesmithConfig
from tunesmith.data import options
from tunesmith.data.rows import PROMPTS
from tunesmith.errors import ConfigError
from tunesmith.eval.verifiers import FUNCTIONS, require_answers, reward_functions, reward_report
from tunesmith.runtime.arguments import training_arguments
from tunesmith.runtime.logging_callbacks import RewardPlot
from tunesmith.stages.base import Stage
from tunesmith.stages.held_out import held_out_rows, prompt_splits
from tunesmith.stages.lifecycle import RunResult, begin_run, load_run_tokenizer, load_trainable_model, train_and_save

log = logging.getLogger(__name__)


def check(cfg: TunesmithConfig) -> None:
    g, t = cfg.grpo, cfg.training
    if not g.rewards:
        raise ConfigError(
            "grpo.rewards: no reward function given; e.g. `grpo: {rewards: [{name: exact_answer}]}` "
            f"(available: {', '.join(FUNCTIONS)})"
        )
    if (t.batch_size * t.gradient_accumulation) % g.num_generations:
        raise ConfigError(
            f"training.batch_size: GRPO's batches count completions, so batch_size x gradient_accumulation "
            f"({t.batch_size} x {t.gradient_accumulation}) must be a multiple of grpo.num_generations "
            f"({g.num_generations}), e.g. training.batch_size={g.num_generations * 2}"
        )
    prompt_splits(cfg, load_run_tokenizer(cfg)[1], cfg.grpo.rewards)


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    from trl import GRPOConfig

    g = cfg.grpo
    return training_arguments(
        cfg,
        work,
        device,
        dtype,
        has_eval=False,  # held-out reward is measured before/after by the CLI
        args_class=GRPOConfig,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        beta=g.beta,
        reward_weights=[r.weight for r in g.rewards],
        train_sampling_strategy="random",  # GRPO samples prompt groups with its own sampler
    )


def run(cfg: TunesmithConfig) -> RunResult:
    from trl import GRPOTrainer

    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_rows, val_rows = prompt_splits(cfg, setup.tokenizer, cfg.grpo.rewards)
    log.info(
        "grpo: %d prompts x %d completions, rewards %s",
        len(train_rows.rows),
        cfg.grpo.num_generations,
        ", ".join(r.name for r in cfg.grpo.rewards),
    )
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return GRPOTrainer(
            model=model,
            reward_funcs=reward_functions(cfg.grpo.rewards),
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=False),
            train_dataset=train_rows.dataset(PROMPTS.fields),
            processing_class=setup.tokenizer,
            callbacks=[*callbacks, RewardPlot(work, f"grpo/{cfg.method}: mean reward")],
        )

    # the held-out prompts are scored by `evaluate` (mean reward), not by the trainer
    return train_and_save(cfg, setup, model, trainable, make_trainer, train_rows, val_rows, trainer_evaluates=False)


def evaluate(cfg: TunesmithConfig, loaded, system: str | None) -> dict:
    """Mean reward of greedy completions on the held-out prompts."""
    rows = held_out_rows(cfg, loaded.tokenizer, system, PROMPTS, trainer_truncates=False).rows
    require_answers(rows, cfg.grpo.rewards)
    g = cfg.grpo
    return reward_report(
        loaded.model,
        loaded.tokenizer,
        rows,
        g.rewards,
        g.eval_max_new_tokens or g.max_completion_length,
        cfg.eval.batch_size,
    )


STAGE = Stage(
    "grpo",
    data_kind="rows",
    reads="prompts (prompt or messages, optional answer)",
    data_options=options.ROWS,
    run=run,
    arguments=arguments,
    evaluate=evaluate,
    check=check,
    section="grpo",
)
