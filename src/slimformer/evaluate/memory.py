"""Peak resident memory while something runs.

The figure a user cares about is "how much RAM does inference need", which is
the process's resident set at its peak, not the size of the weights. Linux's
``ru_maxrss`` only gives the peak over the whole process lifetime, so instead a
background thread samples RSS while the work runs and keeps the maximum. A
short spike between two samples can be missed; the sampling interval is small
(1 ms by default) and stated in the result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import threading
from collections.abc import Callable
from typing import Any

import psutil

from slimformer.errors import SlimformerError
from slimformer.evaluate.record import MemoryResult


def current_rss_bytes() -> int:
    """Resident set size of this process right now, in bytes."""
    return int(psutil.Process().memory_info().rss)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries (looked up once)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def _release_freed_memory() -> None:
    """Collect garbage and return freed heap pages to the OS where possible.

    Without this, memory freed by earlier work stays resident in malloc's
    arenas, inflating the baseline and hiding the increase we want to see.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval_s`` until stopped."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(name="slimformer-rss-sampler", daemon=True)
        self._interval_s = interval_s
        self._stop_event = threading.Event()
        self._process = psutil.Process()
        self.peak = 0
        self.samples = 0

    def _sample(self) -> None:
        self.peak = max(self.peak, int(self._process.memory_info().rss))
        self.samples += 1

    def run(self) -> None:
        self._sample()
        while not self._stop_event.wait(self._interval_s):
            self._sample()
        self._sample()

    def stop(self) -> int:
        """Stop sampling and return the peak seen."""
        self._stop_event.set()
        self.join()
        return self.peak


def peak_rss_during(
    fn: Callable[[], Any], repeats: int = 1, interval_s: float = 0.001
) -> MemoryResult:
    """Run ``fn`` ``repeats`` times and report this process's peak RSS.

    The baseline is taken just before, after garbage collection, so
    ``peak_increase_bytes`` is what running ``fn`` added on top of what was
    already resident (the model's weights, the interpreter, libraries).
    """
    if repeats < 1 or interval_s <= 0:
        raise SlimformerError(
            f"need repeats>=1 and interval_s>0, got {repeats} and {interval_s}",
            "pass positive values",
        )
    _release_freed_memory()
    baseline = current_rss_bytes()
    sampler = _RssSampler(interval_s)
    sampler.start()
    try:
        for _ in range(repeats):
            fn()
    finally:
        peak = max(sampler.stop(), baseline)
    return MemoryResult(
        peak_rss_bytes=peak,
        baseline_rss_bytes=baseline,
        peak_increase_bytes=peak - baseline,
        method=(
            f"sampled RSS of this process every {interval_s * 1000:g} ms with psutil "
            f"({sampler.samples} samples over {repeats} run(s)); spikes between samples "
            "can be missed"
        ),
    )
