"""The records a measurement produces.

Every number slimformer reports about a model lives in one of these pydantic
models, so reports, benchmarks and the CLI read and write the same JSON. Units
are part of the field names (``_bytes``, ``_ms``, ``_s``) because a bare
"size: 4.2" in a saved report is useless a month later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from slimformer.errors import SlimformerError


class _Record(BaseModel):
    """Shared config: reject unknown fields so a typo in saved JSON is caught."""

    model_config = ConfigDict(extra="forbid")


class SizeResult(_Record):
    """How big the model is: logical weights, bytes in memory, bytes on disk."""

    params_total: int = Field(description="Logical weights, tied tensors counted once.")
    params_nonzero: int = Field(description="Logical weights that are not zero.")
    weight_bytes_in_memory: int = Field(description="Unique parameters + persistent buffers.")
    disk_bytes: int | None = Field(default=None, description="Total bytes of a saved artifact.")
    disk_files: dict[str, int] | None = Field(
        default=None, description="Relative file path → bytes, for the saved artifact."
    )
    linear_weight_bytes_on_disk: int | None = Field(
        default=None, description="Bytes of the safetensors tensors holding Linear weights."
    )


class LatencyResult(_Record):
    """Wall-clock statistics of repeated forward passes at one input shape."""

    batch: int
    seq_len: int
    threads: int
    runs: int
    warmup: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    min_ms: float
    mean_ms: float
    std_ms: float
    sequences_per_s: float = Field(description="batch / median time.")
    tokens_per_s: float = Field(description="batch * seq_len / median time.")
    device: str


class MemoryResult(_Record):
    """Peak resident memory while running something, relative to before."""

    peak_rss_bytes: int
    baseline_rss_bytes: int
    peak_increase_bytes: int
    method: str = Field(description="How it was measured, in a few words.")


class EnergyResult(_Record):
    """Energy per batch, from RAPL counters or an explicitly labelled estimate."""

    joules_per_batch: float
    joules_per_sequence: float
    method: Literal["rapl", "estimate"]
    detail: str = Field(description="Counters read, or the CPU seconds and W/core used.")
    is_estimate: bool


class Measurement(_Record):
    """Everything measured about one model on one machine."""

    size: SizeResult
    latency: list[LatencyResult] = Field(default_factory=list)
    memory: MemoryResult | None = None
    energy: EnergyResult | None = None
    machine: dict[str, Any] = Field(default_factory=dict)

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """Serialize to JSON text, and write it to ``path`` when given."""
        text = self.model_dump_json(indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Measurement:
        """Read a measurement from JSON text or from a file path holding it."""
        text = str(source)
        if isinstance(source, Path) or not text.lstrip().startswith("{"):
            path = Path(source)
            if not path.is_file():
                raise SlimformerError(
                    f"no measurement file at {path}", "pass JSON text or the path of a saved one"
                )
            text = path.read_text(encoding="utf-8")
        return cls.model_validate_json(text)
