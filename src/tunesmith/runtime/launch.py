"""Several training processes on one machine, launched by tunesmith itself (`training.nproc`).

    tunesmith train config.yaml training.nproc=2

The command the user runs stays the orchestrator: it validates everything, measures the base
model, then starts `torch.distributed.run` (torchrun) with N workers running the same command in
worker mode; the transformers Trainer inside each worker does DDP (gloo on CPU, nccl on GPUs).
Rank 0 alone writes the output; the orchestrator measures the result afterwards. The same YAML
runs under an external launcher too (torchrun/accelerate/SLURM), see docs/distributed.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

WORKER_ENV = "TUNESMITH_WORKER"


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def under_launcher() -> bool:
    """True inside any torchrun/accelerate worker (ours or the user's own launcher)."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def launch_workers(nproc: int, config: str, overrides: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "tunesmith",
        "train",
        config,
        *overrides,
    ]
    print(f"[tunesmith] launching {nproc} training processes: {' '.join(command)}", flush=True)
    env = {
        **os.environ,
        WORKER_ENV: "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc))),
    }
    return subprocess.run(command, env=env).returncode
