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

from transformers import TrainerCallback

from tunesmith.config import TunesmithConfig
from tunesmith.data.dataset import fingerprint
from tunesmith.data.preference import load_prompts
from tunesmith.errors import ConfigError, DataError
from tunesmith.eval.verifiers import FUNCTIONS, reward_functions
from tunesmith.runtime.logging_callbacks import plot_metric
from tunesmith.stages.common import RunResult, begin_run, load_trainable_model, train_and_save, training_arguments

log = logging.getLogger(__name__)


def check_data(cfg: TunesmithConfig) -> None:
    g, t = cfg.grpo, cfg.training
    if not g.rewards:
        raise ConfigError("grpo.rewards: no reward function given; e.g. `grpo: {rewards: [{name: exact_answer}]}` "
                          f"(available: {', '.join(FUNCTIONS)})")
    if (t.batch_size * t.gradient_accumulation) % g.num_generations:
        raise ConfigError(f"training.batch_size: GRPO's batches count completions, so batch_size x gradient_accumulation "
                          f"({t.batch_size} x {t.gradient_accumulation}) must be a multiple of grpo.num_generations "
                          f"({g.num_generations}), e.g. training.batch_size={g.num_generations * 2}")
    for paths in (cfg.data.train, cfg.data.validation):
        if paths:
            prompts(cfg, paths)


def prompts(cfg: TunesmithConfig, paths: list[str], specs=None) -> list[dict]:
    """Prompt rows; when exact_answer is a reward (of `specs`, default grpo.rewards), every row must carry an `answer`."""
    rows = load_prompts(paths, cfg.data.system, cfg.data.columns)
    if any(r.name == "exact_answer" for r in (cfg.grpo.rewards if specs is None else specs)):
        missing = [r["where"] for r in rows if "answer" not in r]
        if missing:
            raise DataError(f"{len(missing)} prompt row(s) have no `answer` field, which reward exact_answer needs: "
                            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return rows


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    from trl import GRPOConfig

    g = cfg.grpo
    return training_arguments(
        cfg, work, device, dtype, has_eval=False,  # held-out reward is measured before/after by the CLI
        args_class=GRPOConfig, num_generations=g.num_generations, max_completion_length=g.max_completion_length,
        temperature=g.temperature, beta=g.beta, reward_weights=[r.weight for r in g.rewards],
        train_sampling_strategy="random",  # GRPO samples prompt groups with its own sampler
    )


class RewardPlot(TrainerCallback):
    """Draw the logged mean reward (+- its std within groups) into reward.png when training ends."""

    def __init__(self, work, title: str):
        self.work, self.title, self.records = work, title, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            self.records.append({"step": state.global_step, **logs})

    def on_train_end(self, args, state, control, **kwargs):
        plot_metric(self.records, "reward", self.work / "reward.png", self.title, band="reward_std")


def _dataset(rows):
    from datasets import Dataset

    keep = ("prompt", "answer") if all("answer" in r for r in rows) else ("prompt",)
    return Dataset.from_list([{k: r[k] for k in keep} for r in rows])


def run_grpo(cfg: TunesmithConfig) -> RunResult:
    from trl import GRPOTrainer

    # --- setup ------------------------------------------------------------------------------------------
    setup = begin_run(cfg)
    train_rows = prompts(cfg, cfg.data.train)
    if cfg.data.max_samples:
        train_rows = train_rows[: cfg.data.max_samples]
    log.info("grpo: %d prompts x %d completions, rewards %s", len(train_rows), cfg.grpo.num_generations,
             ", ".join(r.name for r in cfg.grpo.rewards))
    model, trainable = load_trainable_model(cfg, setup)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return GRPOTrainer(
            model=model,
            reward_funcs=reward_functions(cfg.grpo.rewards),
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=False),
            train_dataset=_dataset(train_rows),
            processing_class=setup.tokenizer,
            callbacks=[*callbacks, RewardPlot(work, f"grpo/{cfg.method}: mean reward")],
        )

    data = {"train_fingerprint": fingerprint(cfg.data.train), "train_prompts": len(train_rows),
            "validation_fingerprint": fingerprint(cfg.data.validation) if cfg.data.validation else None}
    return train_and_save(cfg, setup, model, trainable, make_trainer, False, data)
