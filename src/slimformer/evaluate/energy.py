"""Energy per batch: measured from RAPL when possible, otherwise estimated.

Intel (and recent AMD) CPUs expose cumulative package energy counters through
Linux powercap ("RAPL"). When they are readable we difference them around the
work, which is a real measurement, though of the whole CPU package, so other
activity on the machine is included. They are often root-only or absent (VMs,
containers, macOS). Then we fall back to an estimate: CPU seconds this process
used times a power figure per busy core. That is a model, not a measurement,
and every field of the result says so.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimformer.errors import SlimformerError
from slimformer.evaluate.record import EnergyResult

# Where Linux exposes RAPL; tests point this at a fake tree.
RAPL_ROOT = Path("/sys/class/powercap")

# Package domains are "intel-rapl:N"; "intel-rapl:N:M" are sub-domains (core,
# uncore, dram) already included in, or separate from, the package figure.
_PACKAGE_DIR = re.compile(r"^intel-rapl:\d+$")

# Rough share of a server CPU's power per busy core: e.g. a ~200 W TDP part
# with ~16 cores. It is an assumption for estimates, not a measurement;
# override with the ``watts_per_core`` argument or SLIMFORMER_WATTS_PER_CORE.
DEFAULT_WATTS_PER_CORE = 12.0
WATTS_ENV = "SLIMFORMER_WATTS_PER_CORE"


@dataclass(frozen=True)
class RaplDomain:
    """One package energy counter: its folder, name and wraparound range."""

    path: Path
    name: str
    max_energy_uj: int

    def read_uj(self) -> int:
        """Current counter value in microjoules."""
        return int((self.path / "energy_uj").read_text().strip())


def _read_int(path: Path, default: int) -> int:
    """An integer from a sysfs file, or ``default`` if missing or unreadable."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return default


def rapl_package_domains(root: Path | None = None) -> list[RaplDomain]:
    """Readable RAPL package domains under ``root``; empty if there are none."""
    root = RAPL_ROOT if root is None else root
    if not root.is_dir():
        return []
    domains = []
    for folder in sorted(root.iterdir()):
        if not _PACKAGE_DIR.match(folder.name):
            continue
        name_file = folder / "name"
        name = name_file.read_text().strip() if name_file.is_file() else folder.name
        if not name.startswith("package"):
            continue
        domain = RaplDomain(folder, name, _read_int(folder / "max_energy_range_uj", 0))
        try:
            domain.read_uj()
        except (OSError, ValueError):
            return []  # counters exist but are root-only: an all-or-nothing reading
        domains.append(domain)
    return domains


def counter_delta_uj(before: int, after: int, max_energy_uj: int) -> int:
    """Energy between two counter readings, allowing for one wraparound."""
    delta = after - before
    if delta < 0 and max_energy_uj > 0:
        delta += max_energy_uj
    return max(delta, 0)


def resolve_watts_per_core(watts_per_core: float | None = None) -> tuple[float, str]:
    """The W/core figure to use and where it came from (argument, env, default)."""
    if watts_per_core is not None:
        value, source = float(watts_per_core), "argument"
    elif os.environ.get(WATTS_ENV):
        raw = os.environ[WATTS_ENV]
        try:
            value, source = float(raw), f"${WATTS_ENV}"
        except ValueError as err:
            raise SlimformerError(
                f"{WATTS_ENV}={raw!r} is not a number", f"set {WATTS_ENV} to watts, e.g. 12"
            ) from err
    else:
        value, source = DEFAULT_WATTS_PER_CORE, "default, an assumed per-core share of TDP"
    if not value > 0:
        raise SlimformerError(f"watts per core must be positive, got {value}", "pass e.g. 12.0")
    return value, source


def _check_counts(sequences_per_call: int, calls: int, warmup: int) -> None:
    """Reject counts that cannot give a per-sequence figure."""
    if sequences_per_call < 1 or calls < 1 or warmup < 0:
        raise SlimformerError(
            f"need sequences_per_call>=1, calls>=1, warmup>=0; got "
            f"{sequences_per_call}, {calls}, {warmup}",
            "pass positive counts",
        )


def _run_with_rapl(fn: Callable[[], Any], calls: int, domains: list[RaplDomain]) -> tuple:
    """Total joules over ``calls`` from package counters, plus a description."""
    before = [d.read_uj() for d in domains]
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    seconds = time.perf_counter() - start
    after = [d.read_uj() for d in domains]
    uj = sum(
        counter_delta_uj(b, a, d.max_energy_uj)
        for d, b, a in zip(domains, before, after, strict=True)
    )
    names = ", ".join(f"{d.path.name} ({d.name})" for d in domains)
    detail = (
        f"RAPL package counters {names}: {uj / 1e6:.3f} J over {calls} call(s) in "
        f"{seconds:.3f} s wall; whole-package energy, includes other activity on the machine"
    )
    return uj / 1e6, detail


def _run_with_estimate(fn: Callable[[], Any], calls: int, watts: float, source: str) -> tuple:
    """Total joules over ``calls`` estimated from this process's CPU time."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    cpu_s = time.process_time() - cpu_start
    wall_s = time.perf_counter() - wall_start
    detail = (
        f"estimate, not a measurement: {cpu_s:.3f} CPU s (user+system, this process) × "
        f"{watts:g} W per busy core ({source}) over {calls} call(s) in {wall_s:.3f} s wall; "
        "no readable RAPL counters"
    )
    return cpu_s * watts, detail


def measure_energy(
    fn: Callable[[], Any],
    *,
    sequences_per_call: int,
    calls: int = 10,
    warmup: int = 1,
    watts_per_core: float | None = None,
) -> EnergyResult:
    """Energy per call (batch) and per sequence of running ``fn``.

    ``fn`` runs ``warmup`` untimed times, then ``calls`` measured times. With
    readable RAPL package counters the result is measured ("rapl"); otherwise
    it is CPU seconds × watts per busy core ("estimate"). Passing
    ``watts_per_core`` only affects the estimate.
    """
    _check_counts(sequences_per_call, calls, warmup)
    for _ in range(warmup):
        fn()
    domains = rapl_package_domains()
    if domains:
        joules, detail = _run_with_rapl(fn, calls, domains)
        method, is_estimate = "rapl", False
    else:
        watts, source = resolve_watts_per_core(watts_per_core)
        joules, detail = _run_with_estimate(fn, calls, watts, source)
        method, is_estimate = "estimate", True
    per_batch = joules / calls
    return EnergyResult(
        joules_per_batch=per_batch,
        joules_per_sequence=per_batch / sequences_per_call,
        method=method,
        detail=detail,
        is_estimate=is_estimate,
    )
