"""The reward a policy is optimised for (stage ppo) and its held-out measure.

`PolicyReward` adds up a trained reward model's score of the whole conversation (an output folder
of `stage: rm`, scored as `tunesmith score` does) and the weighted verifiable reward functions of
`eval.verifiers` (exact_answer, regex_format, length). Each part is reported on its own as well.
"""

from __future__ import annotations

from tunesmith.eval.reward import reward_scores
from tunesmith.eval.verifiers import generate_completions, reward_functions
from tunesmith.methods.load import load_reward_for_inference

REWARD_MODEL = "reward_model"


class PolicyReward:
    def __init__(self, reward_model: str | None, specs, cache_dir: str | None = None, batch_size: int = 8):
        self.specs = list(specs)
        self.functions = reward_functions(self.specs)
        self.batch_size = batch_size
        # a trained head is required here (no `new_head_seed`): a base model is refused with a clear error
        self.reward_model = load_reward_for_inference(reward_model, cache_dir) if reward_model else None

    def __call__(self, rows: list[dict], completions: list[str]) -> tuple[list[float], dict[str, list[float]]]:
        """(total reward per completion, {part: unweighted values}) for rows' prompts and their completions."""
        parts: dict[str, list[float]] = {}
        total = [0.0] * len(completions)
        if self.reward_model is not None:
            conversations = [r["prompt"] + [{"role": "assistant", "content": c}] for r, c in zip(rows, completions)]
            parts[REWARD_MODEL] = reward_scores(
                self.reward_model.model, self.reward_model.tokenizer, conversations, self.batch_size
            )
            total = list(parts[REWARD_MODEL])
        columns = {"answer": [r.get("answer") for r in rows]}
        for spec, func in zip(self.specs, self.functions):
            parts[func.__name__] = func(completions, **columns)
            total = [t + spec.weight * v for t, v in zip(total, parts[func.__name__])]
        return total, parts


def policy_reward_report(
    model, tokenizer, rows: list[dict], scorer: PolicyReward, max_new_tokens: int, batch_size: int = 16
) -> dict:
    """Mean reward of greedy completions on held-out prompts, and each part's mean."""
    completions = generate_completions(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens, batch_size)
    total, parts = scorer(rows, completions)
    result = {f"reward_{name}": sum(values) / len(values) for name, values in parts.items()}
    result["reward_mean"] = sum(total) / len(total)
    result["reward_prompts"] = len(rows)
    result["reward_samples"] = [
        {"prompt": r["prompt"][-1]["content"], "completion": c, "reward": round(t, 4)}
        for r, c, t in zip(rows[:5], completions, total)
    ]
    return result
