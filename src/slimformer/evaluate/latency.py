"""Wall-clock latency of a forward pass, with honest statistics.

A single timing is noise. We warm up (first calls pay for allocation, lazy
initialisation and kernel selection), then time many runs and report the
median with its spread, so a reader can tell a real speed-up from jitter.
Thread count is pinned for the measurement because it changes CPU latency
more than most compression methods do, and it is restored afterwards so the
caller's process is left as it was.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from slimformer.arch.inputs import random_token_inputs
from slimformer.errors import SlimformerError
from slimformer.evaluate.record import LatencyResult


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Use ``threads`` intra-op threads inside the block; restore after.

    Yields the thread count in effect, so results can record what was used.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise SlimformerError(f"threads must be at least 1, got {threads}", "pass threads>=1")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _synchronizer(device: str | torch.device) -> Callable[[], None]:
    """A function that waits for queued device work, so timings are complete."""
    kind = torch.device(device).type
    if kind == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if kind == "mps":
        return torch.mps.synchronize
    return lambda: None


def _check_counts(batch: int, seq_len: int, runs: int, warmup: int) -> None:
    """Reject shapes and counts that cannot produce a meaningful timing."""
    if batch < 1 or seq_len < 1:
        raise SlimformerError(
            f"input shape must be positive, got batch={batch}, seq_len={seq_len}",
            "pass batch>=1 and seq_len>=1",
        )
    if runs < 1 or warmup < 0:
        raise SlimformerError(
            f"need runs>=1 and warmup>=0, got runs={runs}, warmup={warmup}",
            "pass at least one timed run",
        )


def _time_runs(
    forward: Callable[[], Any], runs: int, warmup: int, sync: Callable[[], None]
) -> np.ndarray:
    """Milliseconds of each timed run, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        forward()
    sync()
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        sync()
        start = time.perf_counter()
        forward()
        sync()
        times[i] = (time.perf_counter() - start) * 1000.0
    return times


def measure_latency(
    forward: Callable[[], Any],
    *,
    batch: int,
    seq_len: int,
    runs: int = 30,
    warmup: int = 5,
    threads: int | None = None,
    device: str = "cpu",
) -> LatencyResult:
    """Time ``forward()`` ``runs`` times under ``torch.inference_mode``.

    ``batch`` and ``seq_len`` describe what ``forward`` processes; they are
    used for throughput and recorded with the result. On CUDA the device is
    synchronised before and after each run so the time covers the kernels.
    """
    _check_counts(batch, seq_len, runs, warmup)
    with torch_threads(threads) as used_threads, torch.inference_mode():
        times = _time_runs(forward, runs, warmup, _synchronizer(device))
    return latency_from_times(
        times, batch=batch, seq_len=seq_len, threads=used_threads, warmup=warmup, device=device
    )


def latency_from_times(
    times_ms: Sequence[float] | np.ndarray,
    *,
    batch: int,
    seq_len: int,
    threads: int,
    warmup: int,
    device: str | torch.device = "cpu",
) -> LatencyResult:
    """Summary statistics of timed runs; shared with benchmarks that interleave models."""
    times = np.asarray(times_ms, dtype=float)
    p10, p25, median, p75, p90 = np.percentile(times, [10, 25, 50, 75, 90])
    median_s = max(float(median), 1e-9) / 1000.0
    return LatencyResult(
        batch=batch,
        seq_len=seq_len,
        threads=threads,
        runs=len(times),
        warmup=warmup,
        median_ms=float(median),
        p10_ms=float(p10),
        p90_ms=float(p90),
        iqr_ms=float(p75 - p25),
        min_ms=float(times.min()),
        mean_ms=float(times.mean()),
        std_ms=float(times.std(ddof=1)) if len(times) > 1 else 0.0,
        sequences_per_s=batch / median_s,
        tokens_per_s=batch * seq_len / median_s,
        device=str(device),
    )


def make_inputs(
    vocab_size: int, batch: int, seq_len: int, seed: int = 0, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Random ``input_ids`` and an all-ones ``attention_mask`` for timing a text model.

    Ids start at ``min(1000, vocab_size - 1)`` to stay clear of special tokens,
    and stop before the last id (often end-of-text) when the vocabulary allows.
    The generator is seeded so every model sees the same inputs. What a text
    adapter's ``example_inputs`` returns; kept for callers that hold a
    vocabulary size rather than a model.
    """
    return random_token_inputs(vocab_size, batch, seq_len, seed, device)


def model_forward(model: Callable[..., Any], inputs: Mapping[str, Any]) -> Callable[[], Any]:
    """A no-argument callable running ``model(**inputs)``, for the timers."""
    kwargs = dict(inputs)

    def forward() -> Any:
        return model(**kwargs)

    return forward
