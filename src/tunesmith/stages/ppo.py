"""PPO (RLHF step 3): optimise the policy against a trained reward model and/or verifiable rewards.

    tunesmith train examples/ppo_lora.yaml

TRL 1.16 ships no PPO trainer (it left the library; trl.experimental has none), so the loop is
written here on transformers' Trainer: `compute_loss` (its documented extension point) does the
RL work, and checkpoints, resume, signals, the NaN policy, LoRA+ and logging work as in every
other stage. One optimiser step:

1. rollout    `ppo.num_generations` completions per prompt are sampled and scored
              (`eval.policy_reward`: the reward model's score plus the weighted reward functions);
2. KL         log-probabilities of the sampled tokens under the policy that sampled them and under
              the reference (with a PEFT adapter: the same model with the adapter disabled, no
              second copy; otherwise a frozen copy of the base); k_t = log pi(t) - log ref(t);
3. advantage  per-token reward -beta * k_t plus the score on the last token, summed to the end
              (return-to-go G_t); A_t = G_t - baseline, the baseline being the mean score of the
              prompt's other completions (leave-one-out, as RLOO does: no value model to train);
4. update     PPO's clipped objective -min(r A, clip(r, 1 - eps, 1 + eps) A), r = pi / pi_sampling,
              for `ppo.epochs_per_rollout` optimiser steps on the same rollout;
5. KL control beta stays `ppo.kl_coef`, or adapts toward `ppo.target_kl` (Ziegler et al. 2019).

Dropout is switched off in the policy (as TRL's RL trainers do) so that r is exactly 1 on fresh
samples. A checkpoint also holds the PPO state the Trainer does not know (`ppo_state.json`: the KL
coefficient; `ppo_rollout.pt`: the rollout still being optimised), written before the checkpoint's
manifest, so a resumed run continues exactly where it stopped. Per step, metrics.jsonl gets reward
(+ reward_std and each part), kl, kl_coef, entropy, clip_fraction and completion_length; reward.png
draws the reward.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from pathlib import Path

import torch
from transformers import GenerationConfig, Trainer, TrainerCallback

from tunesmith.config import TunesmithConfig
from tunesmith.data import options
from tunesmith.data.rows import PROMPTS
from tunesmith.errors import ConfigError
from tunesmith.eval.policy_reward import PolicyReward, policy_reward_report
from tunesmith.eval.verifiers import FUNCTIONS, require_answers
from tunesmith.layout import RUN_MANIFEST, read_manifest
from tunesmith.models.loader import load_causal_lm
from tunesmith.models.reward import is_reward_model
from tunesmith.runtime.arguments import training_arguments
from tunesmith.runtime.logging_callbacks import RewardPlot
from tunesmith.stages.base import Stage
from tunesmith.stages.held_out import held_out_rows, prompt_splits
from tunesmith.stages.lifecycle import RunResult, begin_run, load_run_tokenizer, load_trainable_model, train_and_save

log = logging.getLogger(__name__)


# --- checks (before any model loads) -----------------------------------------------------------------


def check(cfg: TunesmithConfig) -> None:
    p = cfg.ppo
    if p.reward_model is None and not p.rewards:
        raise ConfigError(
            "ppo: no reward given; set ppo.reward_model to the output folder of a `stage: rm` run "
            "and/or ppo.rewards to reward functions, e.g. `ppo: {rewards: [{name: exact_answer}]}` "
            f"(available: {', '.join(FUNCTIONS)})"
        )
    if p.reward_model is not None:
        check_reward_model(p.reward_model)
    if cfg.training.nproc > 1:
        raise ConfigError("training.nproc: stage ppo runs in one process for now; set training.nproc=1")
    prompt_splits(cfg, load_run_tokenizer(cfg)[1], cfg.ppo.rewards)


def check_reward_model(ref: str) -> None:
    """ppo.reward_model must be a finished output of `stage: rm` (a folder with a trained scalar head)."""
    path = Path(ref)
    if not path.is_dir():
        raise ConfigError(f"ppo.reward_model: {ref} is not a folder; give the output_dir of a `stage: rm` run")
    if not (path / RUN_MANIFEST).is_file():
        raise ConfigError(
            f"ppo.reward_model: {ref} is not a finished tunesmith output (no {RUN_MANIFEST}); "
            "train a reward model with `stage: rm` and give its output_dir"
        )
    stage = read_manifest(path).get("stage")
    if stage != "rm" or not is_reward_model(path):
        raise ConfigError(
            f"ppo.reward_model: {ref} is the output of stage `{stage}`, not a reward model; "
            "give the output_dir of a `stage: rm` run"
        )


def arguments(cfg: TunesmithConfig, work, device, dtype, has_eval: bool):
    # The rollout order is arranged in `rollout_order` (each batch repeated epochs_per_rollout times): keep it.
    return training_arguments(cfg, work, device, dtype, has_eval=False, train_sampling_strategy="sequential")


def rollout_order(rows: list[dict], prompts_per_step: int, repeats: int, seed: int) -> list[dict]:
    """Rows shuffled (seeded) into batches of `prompts_per_step`, each batch repeated `repeats` times in a row,
    so that consecutive optimiser steps see the same prompts (one rollout, several PPO epochs). The last
    batch is filled up from the start of the shuffled order."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    while len(order) % prompts_per_step:
        order.append(order[len(order) % len(rows)])
    batches = [order[i : i + prompts_per_step] for i in range(0, len(order), prompts_per_step)]
    return [row for batch in batches for _ in range(repeats) for row in batch]


# --- the pieces of one PPO step ------------------------------------------------------------------------


def token_logprobs(model, ids, mask, completion_length: int, temperature: float, entropy: bool = False):
    """Log-probabilities of the last `completion_length` tokens of `ids` (and the per-token entropy)."""
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: positions as generate() counts them
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    logits = logits[:, -completion_length - 1 : -1].float() / temperature
    logp_all = logits.log_softmax(-1)
    logp = logp_all.gather(-1, ids[:, -completion_length:].unsqueeze(-1)).squeeze(-1)
    if not entropy:
        return logp
    return logp, -(logp_all.exp() * logp_all).sum(-1)


class Reference:
    """The model the KL penalty pulls toward: the policy with its PEFT adapter disabled (no second copy
    in memory), or a frozen copy of the base when the policy cannot switch its trained part off."""

    def __init__(self, policy, load_base):
        self.copy = None
        if not hasattr(policy, "disable_adapter"):
            self.copy = load_base().to(policy.device).eval().requires_grad_(False)

    @torch.no_grad()
    def logprobs(self, policy, ids, mask, completion_length: int, temperature: float):
        if self.copy is not None:
            return token_logprobs(self.copy, ids, mask, completion_length, temperature)
        with policy.disable_adapter():
            return token_logprobs(policy, ids, mask, completion_length, temperature)


def completion_mask(completion_ids, eos_ids: list[int]):
    """1 for the completion's tokens up to and including its first end-of-sequence token."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device)).int()
    return ((is_eos.cumsum(1) - is_eos) == 0).int()


def advantages(scores, kl, mask, kl_coef: float, group: int):
    """Per-token advantages: return-to-go of (-kl_coef * kl_t, + score at the last token) minus the
    leave-one-out mean score of the other completions of the same prompt (of the batch when group is 1).
    Not divided by a standard deviation: when every completion scores the same, dividing would blow the
    small KL terms up to full-size advantages."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1) - 1).clamp(min=0).long()
    rewards[torch.arange(len(scores)), last] += scores
    returns = (rewards * mask).flip(1).cumsum(1).flip(1)
    if group > 1:
        sums = scores.view(-1, group).sum(1, keepdim=True)
        baseline = ((sums - scores.view(-1, group)) / (group - 1)).view(-1)
    elif len(scores) > 1:
        baseline = (scores.sum() - scores) / (len(scores) - 1)
    else:
        baseline = torch.zeros_like(scores)
    return (returns - baseline[:, None]) * mask


def clipped_loss(logp, old_logp, adv, mask, clip_range: float):
    """PPO's clipped surrogate, averaged over each completion's tokens and then over completions."""
    ratio = (logp - old_logp).exp()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_range, 1 + clip_range) * adv)
    per_sequence = -(surrogate * mask).sum(1) / mask.sum(1).clamp(min=1)
    clipped = ((ratio - 1).abs() > clip_range).float()
    return per_sequence.mean(), (clipped * mask).sum() / mask.sum().clamp(min=1)


class AdaptiveKL:
    """beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon) per rollout of n completions
    (Ziegler et al. 2019); with no target beta stays fixed."""

    def __init__(self, value: float, target: float | None, horizon: int):
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, kl: float, n: int) -> None:
        if self.target is not None:
            error = max(-0.2, min(0.2, kl / self.target - 1))
            self.value *= 1 + error * n / self.horizon


PPO_STATE = "ppo_state.json"  # inside each checkpoint: the KL coefficient
PPO_ROLLOUT = "ppo_rollout.pt"  # inside each checkpoint: the rollout the next steps still optimise


class SavePpoState(TrainerCallback):
    """On each checkpoint save: write the KL controller's coefficient and the current rollouts into the
    checkpoint folder. It runs before the CheckpointGuard, so the checkpoint manifest covers them."""

    def __init__(self, trainer: PpoTrainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            self.trainer.save_ppo_state(folder)


# --- the trainer ----------------------------------------------------------------------------------------


class PpoTrainer(Trainer):
    """transformers' Trainer whose loss is one PPO step (see the module docstring); inputs are prompt rows."""

    def __init__(self, *args, ppo, scorer: PolicyReward, reference: Reference, callbacks=(), **kwargs):
        # the PPO state goes into a checkpoint before the callbacks that follow (the manifest writer)
        super().__init__(*args, callbacks=[SavePpoState(self), *callbacks], **kwargs)
        self.ppo, self.scorer, self.reference = ppo, scorer, reference
        self.kl_control = AdaptiveKL(ppo.kl_coef, ppo.target_kl, ppo.kl_horizon)
        self.rollouts: dict[tuple, dict] = {}
        self.stats: dict[str, list[float]] = defaultdict(list)

    def save_ppo_state(self, folder: Path) -> None:
        (folder / PPO_STATE).write_text(json.dumps({"kl_coef": self.kl_control.value, "step": self.state.global_step}))
        torch.save(self.rollouts, folder / PPO_ROLLOUT)

    def load_ppo_state(self, folder: Path) -> None:
        """Restore what `save_ppo_state` wrote (checkpoints of older runs have neither file: the KL controller
        then restarts from ppo.kl_coef, with a warning)."""
        state_file = folder / PPO_STATE
        if not state_file.is_file():
            log.warning(
                "ppo: %s has no %s; the KL coefficient restarts from ppo.kl_coef=%s",
                folder,
                PPO_STATE,
                self.ppo.kl_coef,
            )
            return
        self.kl_control.value = json.loads(state_file.read_text())["kl_coef"]
        if (folder / PPO_ROLLOUT).is_file():
            device = self.accelerator.unwrap_model(self.model).device
            self.rollouts = torch.load(folder / PPO_ROLLOUT, map_location=device, weights_only=True)
        log.info("ppo: resuming with kl_coef=%s", self.kl_control.value)

    def train(self, resume_from_checkpoint=None, **kwargs):
        if isinstance(resume_from_checkpoint, (str, Path)):
            self.load_ppo_state(Path(resume_from_checkpoint))
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rows = inputs["rows"]
        key = tuple(r["where"] for r in rows)
        if self.state.global_step % self.ppo.epochs_per_rollout == 0 or key not in self.rollouts:
            if self.state.global_step % self.ppo.epochs_per_rollout == 0:
                self.rollouts = {k: v for k, v in self.rollouts.items() if v["step"] == self.state.global_step}
            self.rollouts[key] = self.rollout(model, rows)
        r = self.rollouts[key]
        logp, entropy = token_logprobs(model, r["ids"], r["mask"], r["length"], self.ppo.temperature, entropy=True)
        loss, clip_fraction = clipped_loss(
            logp, r["old_logp"], r["advantages"], r["completion_mask"], self.ppo.clip_range
        )

        m = r["completion_mask"]
        tokens = m.sum().clamp(min=1)
        self.stats["kl"].append(((logp.detach() - r["ref_logp"]) * m).sum(1).mean().item())
        self.stats["entropy"].append(((entropy.detach() * m).sum() / tokens).item())
        self.stats["clip_fraction"].append(clip_fraction.item())
        for name, value in r["stats"].items():
            self.stats[name].append(value)
        return loss

    @torch.no_grad()
    def rollout(self, model, rows: list[dict]) -> dict:
        policy = self.accelerator.unwrap_model(model)
        tokenizer, p, k = self.processing_class, self.ppo, self.ppo.num_generations
        texts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        try:
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
        finally:
            tokenizer.padding_side = side
        prompt_ids = batch["input_ids"].repeat_interleave(k, 0)
        prompt_mask = batch["attention_mask"].repeat_interleave(k, 0)
        eos = policy.generation_config.eos_token_id
        eos_ids = [tokenizer.eos_token_id] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        # plain sampling at `temperature` (no top-k/top-p), so the sampled tokens follow the policy whose
        # log-probabilities the ratio uses
        generation = GenerationConfig(
            do_sample=True,
            temperature=p.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=p.max_completion_length,
            eos_token_id=eos_ids,
            pad_token_id=tokenizer.pad_token_id,
        )
        was_training = policy.training
        policy.eval()
        sequences = policy.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=generation)
        policy.train(was_training)
        completion = sequences[:, prompt_ids.shape[1] :]
        cmask = completion_mask(completion, eos_ids)
        ids, mask = sequences, torch.cat([prompt_mask, cmask], 1)
        length = completion.shape[1]

        texts = [
            t.strip()
            for t in tokenizer.batch_decode(
                completion * cmask + tokenizer.pad_token_id * (1 - cmask), skip_special_tokens=True
            )
        ]
        expanded = [row for row in rows for _ in range(k)]
        total, parts = self.scorer(expanded, texts)
        scores = torch.tensor(total, dtype=torch.float32, device=ids.device)

        old_logp = token_logprobs(model, ids, mask, length, p.temperature)
        with self.accelerator.autocast():  # the policy's forward is autocast (mixed precision); the copy's is not
            ref_logp = self.reference.logprobs(policy, ids, mask, length, p.temperature)
        kl = (old_logp - ref_logp) * cmask
        adv = advantages(scores, kl, cmask.float(), self.kl_control.value, k)
        sequence_kl = kl.sum(1).mean().item()
        stats = {
            "reward": scores.mean().item(),
            "reward_std": scores.std(unbiased=False).item(),
            "kl_coef": self.kl_control.value,
            "completion_length": cmask.sum(1).float().mean().item(),
            **{f"rewards/{name}": sum(v) / len(v) for name, v in parts.items()},
        }
        self.kl_control.update(sequence_kl, len(texts))
        return {
            "ids": ids,
            "mask": mask,
            "length": length,
            "completion_mask": cmask.float(),
            "old_logp": old_logp,
            "ref_logp": ref_logp,
            "advantages": adv,
            "stats": stats,
            "step": self.state.global_step,
        }

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.stats and "loss" in logs:  # a training log: add this window's PPO statistics
            logs = {**logs, **{name: sum(v) / len(v) for name, v in self.stats.items()}}
            self.stats.clear()
        super().log(logs, start_time)


# --- the recipe -------------------------------------------------------------------------------------------


def run(cfg: TunesmithConfig) -> RunResult:
    # --- setup ------------------------------------------------------------------------------------------
    from trl.trainer.utils import disable_dropout_in_model

    p, t = cfg.ppo, cfg.training
    setup = begin_run(cfg)
    train_set, val_set = prompt_splits(cfg, setup.tokenizer, cfg.ppo.rewards)
    train_rows = train_set.rows
    scorer = PolicyReward(p.reward_model, p.rewards, cfg.model.cache_dir)
    log.info(
        "ppo: %d prompts x %d completions, reward: %s",
        len(train_rows),
        p.num_generations,
        ", ".join(([p.reward_model] if p.reward_model else []) + [r.name for r in p.rewards]),
    )
    model, trainable = load_trainable_model(cfg, setup)
    disable_dropout_in_model(model)
    reference = Reference(
        model,
        lambda: load_causal_lm(
            setup.base_path, setup.dtype, cfg.model.attn_implementation, cfg.model.trust_remote_code
        ),
    )
    order = rollout_order(train_rows, t.batch_size * t.gradient_accumulation, p.epochs_per_rollout, t.seed)

    # --- train, then save --------------------------------------------------------------------------
    def make_trainer(work, callbacks):
        return PpoTrainer(
            model=model,
            args=arguments(cfg, work, setup.device, setup.dtype, has_eval=False),
            train_dataset=order,
            data_collator=lambda rows: {"rows": rows},
            processing_class=setup.tokenizer,
            callbacks=[*callbacks, RewardPlot(work, f"ppo/{cfg.method}: mean reward")],
            ppo=p,
            scorer=scorer,
            reference=reference,
        )

    # the held-out prompts are scored by `evaluate` (mean reward), not by the trainer
    return train_and_save(cfg, setup, model, trainable, make_trainer, train_set, val_set, trainer_evaluates=False)


def evaluate(cfg: TunesmithConfig, loaded, system: str | None) -> dict:
    """Mean reward (reward model and/or functions) of greedy completions on the held-out prompts."""
    p = cfg.ppo
    rows = held_out_rows(cfg, loaded.tokenizer, system, PROMPTS, trainer_truncates=False).rows
    require_answers(rows, p.rewards)
    scorer = PolicyReward(p.reward_model, p.rewards, cfg.model.cache_dir, cfg.eval.batch_size)
    return policy_reward_report(
        loaded.model,
        loaded.tokenizer,
        rows,
        scorer,
        p.eval_max_new_tokens or p.max_completion_length,
        cfg.eval.batch_size,
    )


STAGE = Stage(
    "ppo",
    data_kind="rows",
    reads="prompts (prompt or messages, optional answer)",
    data_options=options.ROWS,
    run=run,
    arguments=arguments,
    evaluate=evaluate,
    check=check,
    section="ppo",
)
