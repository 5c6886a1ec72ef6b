"""Measure a model end to end: size, latency, peak memory, energy, machine.

This is the one call that turns "we compressed it" into numbers: it runs the
same seeded inputs through a model (made by its adapter's ``example_inputs``:
``input_ids`` and ``attention_mask`` for a text model) and returns a
:class:`Measurement` that can be saved as JSON and compared against the
original model's.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from slimformer.arch import Adapter, get_adapter
from slimformer.errors import SlimformerError
from slimformer.evaluate.energy import measure_energy
from slimformer.evaluate.latency import make_inputs, measure_latency, model_forward, torch_threads
from slimformer.evaluate.memory import peak_rss_during
from slimformer.evaluate.record import (
    EnergyResult,
    LatencyResult,
    Measurement,
    MemoryResult,
    SizeResult,
)
from slimformer.evaluate.size import (
    count_parameters,
    disk_bytes,
    linear_weight_bytes,
    safetensors_tensor_bytes,
    weight_bytes_in_memory,
)

DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((1, 64), (32, 128))

#: Makes the model's inputs for ``(batch, seq_len)``: the same tensors on every call.
InputMaker = Callable[[int, int], dict[str, torch.Tensor]]


def cpu_model_name() -> str:
    """The CPU's marketing name, from /proc/cpuinfo on Linux or ``platform``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: str = "cpu") -> dict[str, object]:
    """What the numbers depend on: CPU, cores, threads, torch, platform, device."""
    info: dict[str, object] = {
        "cpu_model": cpu_model_name(),
        "cores": os.cpu_count(),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        "device": str(device),
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu_model"] = torch.cuda.get_device_name(torch.device(device))
    return info


def measure_size(model: nn.Module, saved_path: str | os.PathLike | None = None) -> SizeResult:
    """Logical weights and bytes in memory, plus disk sizes when a path is given."""
    total, nonzero = count_parameters(model)
    result = SizeResult(
        params_total=total,
        params_nonzero=nonzero,
        weight_bytes_in_memory=weight_bytes_in_memory(model),
    )
    if saved_path is None:
        return result
    result.disk_bytes, result.disk_files = disk_bytes(saved_path)
    root = Path(saved_path)
    if root.suffix == ".safetensors" or any(root.rglob("*.safetensors")):
        result.linear_weight_bytes_on_disk = linear_weight_bytes(
            safetensors_tensor_bytes(root), model
        )
    return result


def _input_maker(
    model: nn.Module, vocab_size: int | None, adapter: Adapter | None, device: str
) -> InputMaker:
    """Inputs from ``vocab_size`` token ids where given, else from the model's adapter."""
    if vocab_size is not None:
        return lambda batch, seq: make_inputs(vocab_size, batch, seq, device=device)
    chosen = adapter if adapter is not None else get_adapter(model)
    return lambda batch, seq: chosen.example_inputs(batch, seq, device=device)


def _check_shapes(shapes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Shapes as a list of ``(batch, seq_len)`` pairs of positive ints."""
    checked = [(int(b), int(s)) for b, s in shapes]
    if not checked or any(b < 1 or s < 1 for b, s in checked):
        raise SlimformerError(
            f"shapes must be a non-empty list of positive (batch, seq_len), got {list(shapes)}",
            "pass e.g. shapes=[(1, 64), (32, 128)]",
        )
    return checked


def check_positions(model: nn.Module, shapes: Sequence[tuple[int, int]]) -> None:
    """Refuse a sequence length beyond the model's position table, before any timing.

    A BERT with 512 positions given 1x1024 failed with a tensor-size
    traceback from inside the embedding, after everything before it had run.
    """
    config = getattr(model, "config", None)
    if config is None:
        config = getattr(getattr(model, "model", None), "config", None)
    limit = None
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            limit = value
            break
    longest = max((int(s) for _, s in shapes), default=0)
    if limit is not None and longest > limit:
        raise SlimformerError(
            f"shape length {longest} is longer than the model's {limit} positions",
            f"pass --shapes with sequence lengths of at most {limit}, e.g. 1x{min(64, limit)}",
        )


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Measure in eval mode (no dropout), then restore the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _measure_memory(
    model: nn.Module, inputs: InputMaker, shape: tuple[int, int], device: str
) -> MemoryResult:
    """Peak RSS during one forward pass at ``shape``."""
    forward = model_forward(model, inputs(*shape))
    with torch.inference_mode():
        result = peak_rss_during(forward)
    if torch.device(device).type != "cpu":
        result.method += f"; host memory only, {device} memory not included"
    return result


def _measure_energy(
    model: nn.Module, inputs: InputMaker, shape: tuple[int, int], device: str, calls: int
) -> EnergyResult:
    """Energy per batch and per sequence at ``shape``."""
    forward = model_forward(model, inputs(*shape))
    with torch.inference_mode():
        result = measure_energy(forward, sequences_per_call=shape[0], calls=calls)
    if result.is_estimate and torch.device(device).type != "cpu":
        result.detail += f"; {device} energy not included"
    return result


def measure_model(
    model: nn.Module,
    *,
    shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
    threads: int | None = None,
    runs: int = 30,
    warmup: int = 5,
    saved_path: str | os.PathLike | None = None,
    vocab_size: int | None = None,
    device: str = "cpu",
    energy_shape: tuple[int, int] | None = None,
    energy_calls: int | None = None,
    adapter: Adapter | None = None,
) -> Measurement:
    """Size, latency at each shape, peak memory, energy and machine facts.

    Memory is measured first, at the largest shape, so the baseline is not
    inflated by buffers earlier runs left behind. Energy defaults to the
    largest shape with ``min(runs, 10)`` calls. The model is put in eval mode
    for the measurement and its previous mode restored after. Inputs come from
    ``adapter`` (default: the model's) or, where ``vocab_size`` is given, are
    token ids drawn from that vocabulary.
    """
    checked = _check_shapes(shapes)
    if vocab_size is None:
        check_positions(model, checked)
    inputs = _input_maker(model, vocab_size, adapter, device)
    inputs(1, 1)  # fails here, before any timing, if the model's inputs cannot be made
    largest = max(checked, key=lambda shape: shape[0] * shape[1])
    energy_at = _check_shapes([energy_shape])[0] if energy_shape is not None else largest
    calls = energy_calls if energy_calls is not None else max(1, min(runs, 10))
    size = measure_size(model, saved_path)
    with _eval_mode(model), torch_threads(threads):
        memory = _measure_memory(model, inputs, largest, device)
        latency: list[LatencyResult] = [
            measure_latency(
                model_forward(model, inputs(b, s)),
                batch=b,
                seq_len=s,
                runs=runs,
                warmup=warmup,
                device=device,
            )
            for b, s in checked
        ]
        energy = _measure_energy(model, inputs, energy_at, device, calls)
        machine = machine_info(device)
    return Measurement(size=size, latency=latency, memory=memory, energy=energy, machine=machine)
