"""Peak memory figures measure only what is measured: VmHWM, reset when the measurement starts."""

import mmap

import pytest

from tunesmith.runtime import peak_memory
from tunesmith.runtime.peak_memory import PeakMemory


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def _touch(megabytes: int) -> None:
    """Make `megabytes` of fresh pages resident and release them: an anonymous mapping, never memory the
    allocator already holds (in a long test process a heap allocation may reuse resident free pages)."""
    block = mmap.mmap(-1, megabytes * 2**20)
    block.write(b"y" * (megabytes * 2**20))
    block.close()


def test_the_peak_is_of_the_measured_block_only():
    # relative to the current resident set, so it holds in a long test process with a high peak of its own
    _touch(400)  # an earlier peak (data loading, a base evaluation)
    before = _rss_mb()
    with PeakMemory() as memory:
        _touch(20)
    if not memory.reset:
        pytest.skip("this kernel does not let a process reset its VmHWM (/proc/self/clear_refs)")
    assert before + 15 < memory.peak_mb < before + 200, (memory.peak_mb, before)  # the block's 20 MB, not the 400


def test_without_proc_it_falls_back_to_ru_maxrss(monkeypatch, tmp_path):
    monkeypatch.setattr(peak_memory, "PROC", tmp_path / "no-proc")
    with PeakMemory() as memory:
        pass
    assert memory.reset is False and memory.peak_mb > 0
