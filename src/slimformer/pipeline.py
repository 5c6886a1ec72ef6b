"""The compression pipeline: measure, compress, save, measure again, report.

::

    load ──► evaluate + measure (before) ──► stages ──► save ──► evaluate + measure (after)
                                                                        │
                                             report.json + report.md ◄──┘

Everything is written into a temporary folder next to ``out`` and moved
into place at the end, so a failure leaves no half-written output.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimformer.errors import SlimformerError
from slimformer.methods.apply import as_slim
from slimformer.methods.base import StageContext
from slimformer.model import SlimModel
from slimformer.paths import atomic_dir, check_output_dir
from slimformer.recipe import Recipe
from slimformer.serialization import save_model_dir


@dataclass
class MeasureOptions:
    """How latency and the rest are measured; defaults match the README protocol."""

    shapes: tuple[tuple[int, int], ...] = ((1, 64), (32, 128))
    threads: int | None = 2
    runs: int = 20
    warmup: int = 3
    enabled: bool = True


def save(slim: SlimModel, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a (compressed) model so that ``slimformer.load(out)`` restores it."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_model_dir(as_slim(slim), tmp)
    return Path(out)


def compress(
    model: SlimModel | str | os.PathLike,
    recipe: Recipe | str | os.PathLike | dict | list,
    out: str | os.PathLike,
    *,
    eval: str | None = None,
    eval_options: dict[str, Any] | None = None,
    measure: MeasureOptions | bool | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    runtime: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``recipe`` on ``model``, save the result in ``out``, return the report.

    "before" runs the model as loaded (eager for plain models); "after" runs
    it the way ``slimformer.load(out)`` will, with ``runtime`` (``auto`` picks
    the compiled graph for int8 models, where their speed comes from).
    ``measure=False`` skips measuring (size, latency, memory, energy); quality stays.
    """
    from slimformer.report import build_report, write_reports
    from slimformer.zoo import load

    check_output_dir(out, overwrite)
    recipe = Recipe.load(recipe)
    measure = _measure_options(measure)
    slim = model if isinstance(model, SlimModel) else load(model, progress=progress)
    slim.model.to(device)
    before = _assess(slim, eval, eval_options, measure, progress, reference=None)
    context = StageContext(device=device, progress=progress)
    context.original = keep_original(slim, recipe)
    before["runtime"] = slim.runtime
    timings = _run_stages(slim, recipe, context, progress)
    slim.set_runtime(runtime, device)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_model_dir(slim, tmp)
        (tmp / "recipe.yaml").write_text(recipe.to_yaml())
        after = _assess(
            slim,
            eval,
            eval_options,
            measure,
            progress,
            reference=before.get("reference"),
            saved=tmp,
        )
        report = build_report(slim, recipe, before, after, timings, measure)
        write_reports(report, tmp)
    return report


def _measure_options(measure: MeasureOptions | bool | None) -> MeasureOptions:
    if isinstance(measure, MeasureOptions):
        return measure
    return MeasureOptions(enabled=measure is not False)


def _run_stages(slim, recipe, context, progress) -> list[dict[str, Any]]:
    """Apply each stage in turn with one context, hence one calibration session for the run."""
    from slimformer.methods.apply import apply_method

    timings = []
    for index, stage in enumerate(recipe.stages, start=1):
        if progress:
            print(f"stage {index}/{len(recipe.stages)}: {stage.method}")
        started = time.perf_counter()
        apply_method(slim, stage, context=context)
        timings.append({"stage": stage.method, "seconds": time.perf_counter() - started})
        _release_calibration(context, recipe.stages[index:])
    return timings


def _release_calibration(context: StageContext, later: list) -> None:
    """Free the session's windows and kept inputs once no later stage calibrates."""
    session = context.calibration_session
    if session is not None and not any(hasattr(stage, "calibration") for stage in later):
        session.clear()


def _assess(slim, eval, eval_options, measure, progress, reference, saved=None) -> dict:
    """Evaluate and measure ``slim`` as it is now; ``saved`` is its folder, if saved."""
    from slimformer.evaluate import evaluate, reference_embeddings
    from slimformer.evaluate.measure import measure_model

    result: dict[str, Any] = {}
    if eval:
        if slim.task == "embedding" and reference is None:
            reference = reference_embeddings(slim, eval)
        result["reference"] = reference
        result["eval"] = evaluate(
            slim, eval, reference=reference, progress=progress, **(eval_options or {})
        )
    if measure.enabled:
        warm_up(slim, measure.shapes, measure.threads)
        with tempfile.TemporaryDirectory(prefix="slimformer-size-") as scratch:
            folder = saved or save_model_dir(slim, scratch)
            result["measurement"] = measure_model(
                slim.runner,
                shapes=measure.shapes,
                threads=measure.threads,
                runs=measure.runs,
                warmup=measure.warmup,
                saved_path=folder,
            )
    return result


def warm_up(slim: SlimModel, shapes, threads: int | None) -> None:
    """Run each shape once so compilation (if any) is not measured as latency or memory."""
    from slimformer.evaluate.latency import torch_threads

    with torch_threads(threads), torch.inference_mode():
        for batch, seq in shapes:
            slim.runner(**slim.adapter.example_inputs(batch, seq))


def keep_original(slim: SlimModel, recipe: Recipe) -> SlimModel | None:
    """A copy of ``slim`` before the recipe, when a stage learns from it (``distill``)."""
    if any(type(stage).needs_original for stage in recipe.stages):
        return _copy(slim)
    return None


def _copy(slim: SlimModel) -> SlimModel:
    import copy

    try:
        return copy.deepcopy(slim)
    except Exception as exc:  # deep copies of exotic models can fail
        raise SlimformerError(
            f"could not keep a copy of the original model ({exc})",
            "save the original and name it as the teacher instead",
        ) from exc
