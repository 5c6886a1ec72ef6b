"""The one call a calibrated method makes: its spec, its per-block work, its stage context.

Cutting the windows (from the run's session when there is one) and running
the sequential engine with the stage's device, precision and progress bar
used to be repeated by every calibrated method; it lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor

from slimformer.calibration.engine import BlockContext, run_sequential
from slimformer.calibration.session import CalibrationSession
from slimformer.calibration.spec import CalibrationSpec, calibration_tokens
from slimformer.calibration.stats import Collect
from slimformer.model import SlimModel

__all__ = ["StageCalibration", "calibrate", "stage_windows"]


class StageCalibration(Protocol):
    """What :func:`calibrate` reads from a stage's context (``StageContext`` has it)."""

    #: Token windows or a dataset given to the verb; wins over the spec's dataset.
    calibration: Any
    device: str
    progress: bool
    calibration_session: CalibrationSession | None


def calibrate(
    slim: SlimModel,
    spec: CalibrationSpec,
    process_block: Callable[[BlockContext], None],
    context: StageCalibration,
    *,
    collect: Collect = Collect(),  # noqa: B008 - a frozen dataclass, safe as a default
    true_sequential: bool = False,
    windows: Tensor | None = None,
) -> Tensor:
    """Walk ``slim`` block by block with ``process_block``, calibrated as ``spec`` says.

    The stage's ``context`` gives the device, progress bar, windows or data
    given to the verb, and the session that shares windows and the prefix's
    output with the other stages of the run. ``windows`` (already cut, e.g.
    for a second pass of one stage) skips the lookup. Returns the windows,
    which some methods reuse after the walk.
    """
    if windows is None:
        windows = stage_windows(slim, spec, context)
    run_sequential(
        slim,
        windows,
        process_block,
        collect=collect,
        device=context.device,
        compute_dtype=spec.torch_dtype(),
        true_sequential=true_sequential,
        progress=context.progress,
        session=getattr(context, "calibration_session", None),
    )
    return windows


def stage_windows(slim: SlimModel, spec: CalibrationSpec, context: StageCalibration) -> Tensor:
    """The stage's token windows, from its session when it has one."""
    session = getattr(context, "calibration_session", None)
    if session is None:
        return calibration_tokens(slim, spec, context.calibration)
    return session.windows(slim, spec, context.calibration)
