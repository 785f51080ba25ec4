"""A Trainer callback that times the first optimiser steps and prints the run's estimated training time.

The first step is left out of the rate (it pays for warm-up: allocator, kernel selection, compile);
the next `steps` steps give the seconds per step, printed once:

    [tunesmith] ~3.4 s/step (steps 2-4), estimated training time 12.3 min for 216 steps (11.9 min left)

Evaluation and saving are not part of the estimate.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm
from transformers import TrainerCallback


class TrainingTimeEstimate(TrainerCallback):
    def __init__(self, steps: int = 3):
        self.steps = steps
        self.started = self.first_done = self.first_step = None
        self.printed = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.printed or not state.is_world_process_zero:
            return
        now = time.monotonic()
        if self.first_done is None:  # the end of the first step this process ran (a resumed run starts later)
            self.first_done, self.first_step = now, state.global_step
            return
        timed = state.global_step - self.first_step
        if timed < self.steps and state.global_step < state.max_steps:
            return
        self.printed = True
        per_step = (now - self.first_done) / timed
        left = per_step * max(state.max_steps - state.global_step, 0)
        total = (now - self.started) + left
        # tqdm.write: on a line of its own above the Trainer's progress bar, not glued to it
        tqdm.write(
            f"[tunesmith] ~{per_step:.1f} s/step (steps {self.first_step + 1}-{state.global_step}), estimated "
            f"training time {total / 60:.1f} min for {state.max_steps} steps ({left / 60:.1f} min left)"
        )
