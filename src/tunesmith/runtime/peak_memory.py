"""Peak memory of what is measured: the process's RSS high-water mark on CPU, max allocated on CUDA.

    with PeakMemory() as memory:
        trainer.train()
    memory.peak_mb      # MiB: the most this process held while training

On Linux the CPU figure is the kernel's per-process high-water mark `VmHWM` (/proc/self/status),
reset to the current resident set when the measurement starts by writing "5" to
/proc/self/clear_refs. So a figure never carries what the process held before (loading data,
evaluating the base model) nor its parent's peak: `ru_maxrss`, the portable alternative, keeps
both (it is never reset, and survives fork + exec). Where /proc is not there (macOS) or
clear_refs cannot be written, it falls back to `ru_maxrss` and `reset` says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

PROC = Path("/proc/self")


def rss_peak_mb() -> float:
    """The process's RSS high-water mark in MiB: VmHWM where /proc has it, else ru_maxrss."""
    try:
        for line in (PROC / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def reset_rss_peak() -> bool:
    """Reset VmHWM to the current resident set; False where the kernel does not allow it."""
    try:
        (PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager; `peak_mb` is the peak RSS (CPU) or CUDA allocation during the `with` block;
    `reset` is False when the CPU figure could not be reset and includes earlier peaks."""

    def __enter__(self):
        self.reset = reset_rss_peak()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        self.peak_rss_mb = rss_peak_mb()
        self.peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        return False

    @property
    def peak_mb(self) -> float:
        return self.peak_cuda_mb if self.peak_cuda_mb is not None else self.peak_rss_mb
