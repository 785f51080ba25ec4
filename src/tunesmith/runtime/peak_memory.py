"""Peak memory of the process: RSS high-water mark on CPU, max allocated on CUDA."""

from __future__ import annotations

import resource
import sys

import torch


def rss_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class PeakMemory:
    """Context manager; `peak_mb` is the process RSS peak (CPU) or CUDA peak allocation."""

    def __enter__(self):
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
