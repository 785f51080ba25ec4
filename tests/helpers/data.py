"""Data the tests of several stages and methods share."""

from __future__ import annotations

# The RL tests' task: "Is item N ready?" answered "yes" or "no"; GRPO and PPO reward one answer.
QUESTIONS = [f"Is item {i} ready?" for i in range(8)]
HELD_OUT = [f"Is item {i} ready?" for i in (20, 21, 22, 23)]

# Preference pairs (DPO and the methods trained with it): always the polite answer over the rude one.
POLITE, RUDE = "Certainly, here is a careful answer.", "No. Figure it out."


def preference_pairs(questions) -> list[dict]:
    return [{"prompt": q, "chosen": POLITE, "rejected": RUDE} for q in questions]
