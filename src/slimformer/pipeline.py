"""The compression pipeline, in public pieces that ``compress`` composes.

::

    load ──► assess (before) ──► run_recipe ──► save_run ──► assess (after)
                                                                   │
                                      report.json + report.md ◄────┘

- :func:`run_recipe` runs a recipe's stages on a model in memory and hands
  each stage that learns from another model its teacher (the original, kept
  before the first stage, or the model the stage names, loaded here: stages
  never reach back into the loader);
- :func:`assess` evaluates and measures a model as it is now, saving nothing,
  and returns an :class:`Assessment`;
- :func:`save_run` (and :func:`run_folder`, which leaves the report to the
  caller) writes the model, the exact recipe and the reports into a
  temporary folder next to ``out``, moved into place at the end, so a
  failure leaves no half-written output.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimformer.errors import SlimformerError
from slimformer.methods.apply import apply_method, as_slim
from slimformer.methods.base import MethodConfig, StageContext
from slimformer.model import SlimModel
from slimformer.nn.finite import check_model_finite
from slimformer.paths import atomic_dir, check_output_dir
from slimformer.recipe import Recipe
from slimformer.runtime import check_device
from slimformer.serialization import save_model_dir

#: A model as the pipeline's callers give it: loaded, or a zoo name, folder, GGUF file or hub id.
ModelSource = SlimModel | nn.Module | str | os.PathLike


@dataclass
class MeasureOptions:
    """How latency and the rest are measured; defaults match the README protocol."""

    shapes: tuple[tuple[int, int], ...] = ((1, 64), (32, 128))
    threads: int | None = 2
    runs: int = 20
    warmup: int = 3
    enabled: bool = True


@dataclass
class Assessment:
    """One look at a model as it is now: quality on a dataset, measurements, how it ran."""

    runtime: str = "eager"
    #: ``slimformer.evaluate``'s result, when a dataset was given.
    eval: dict[str, Any] | None = None
    #: ``measure_model``'s record (size, latency, memory, energy), when measuring.
    measurement: Any = None
    #: Embedding models: the reference embeddings the quality was scored against;
    #: hand it to the next assessment so both sides are scored against the same one.
    reference: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The form the report reads (``build_report``, ``compare``): only what was taken."""
        out: dict[str, Any] = {"runtime": self.runtime}
        if self.eval is not None:
            out["eval"] = self.eval
        if self.measurement is not None:
            out["measurement"] = self.measurement
        return out


def save(slim: SlimModel, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a (compressed) model so that ``slimformer.load(out)`` restores it."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_model_dir(as_slim(slim), tmp)
    return Path(out)


def compress(
    model: ModelSource,
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
    teacher: ModelSource | None = None,
) -> dict[str, Any]:
    """Run ``recipe`` on ``model``, save the result in ``out``, return the report.

    "before" runs the model as loaded (eager for plain models); "after" runs
    it the way ``slimformer.load(out)`` will, with ``runtime`` (``auto`` picks
    the compiled graph for int8 models, where their speed comes from).
    ``measure=False`` skips measuring (size, latency, memory, energy); quality stays.
    ``teacher`` teaches the stages that learn from a model and name none
    (default: the model as it was before the recipe).
    """
    from slimformer.evaluate.measure import check_positions
    from slimformer.report import build_report, write_reports

    check_output_dir(out, overwrite)
    check_device(device)
    recipe = Recipe.load(recipe)
    measure = _measure_options(measure)
    slim = load_model(model, progress=progress)
    check_model_finite(slim.model)
    if measure.enabled:
        check_positions(slim.model, measure.shapes)
    slim.model.to(device)
    options = {"eval_options": eval_options, "measure": measure, "progress": progress}
    before = assess(slim, eval, **options)
    timings = run_recipe(slim, recipe, teacher=teacher, device=device, progress=progress)
    slim.set_runtime(runtime, device)
    with run_folder(slim, recipe, out, overwrite=overwrite) as folder:
        after = assess(slim, eval, reference=before.reference, saved=folder, **options)
        report = build_report(slim, recipe, before.to_dict(), after.to_dict(), timings, measure)
        write_reports(report, folder)
    return report


def run_recipe(
    slim: SlimModel | nn.Module,
    recipe: Recipe | str | os.PathLike | dict | list,
    *,
    teacher: ModelSource | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run ``recipe``'s stages on ``slim`` in place; returns each stage's wall time.

    A stage that learns from a model (``distill``) gets the model it names
    (``teacher:``, loaded here), else ``teacher``, else a copy of ``slim``
    taken before the first stage.
    """
    recipe = Recipe.load(recipe)
    slim = as_slim(slim)
    check_model_finite(slim.model)
    given = None if teacher is None else resolve_teacher(teacher, progress=progress)
    original = keep_original(slim, recipe) if given is None else None
    default = given if given is not None else original
    context = StageContext(device=device, progress=progress, original=original)
    timings = []
    for index, stage in enumerate(recipe.stages, start=1):
        if progress:
            print(f"stage {index}/{len(recipe.stages)}: {stage.method}")
        context.teacher = _stage_teacher(stage, index, default, progress)
        started = time.perf_counter()
        apply_method(slim, stage, context=context, check_finite=False)
        timings.append({"stage": stage.method, "seconds": time.perf_counter() - started})
        _release_calibration(context, recipe.stages[index:])
    context.teacher = None  # the context outlives no stage; drop the teacher's reference
    return timings


def _release_calibration(context: StageContext, later: list) -> None:
    """Free the session's windows and kept inputs once no later stage calibrates."""
    session = context.calibration_session
    if session is not None and not any(hasattr(stage, "calibration") for stage in later):
        session.clear()


def assess(
    slim: SlimModel,
    eval: str | None = None,
    *,
    eval_options: dict[str, Any] | None = None,
    measure: MeasureOptions | bool | None = None,
    reference: Any = None,
    saved: str | os.PathLike | None = None,
    progress: bool = True,
) -> Assessment:
    """Evaluate (on ``eval``) and measure ``slim`` as it is now, without saving it.

    ``saved`` is the model's folder when it has one (its size on disk is
    measured there); otherwise it is saved to a scratch folder for that.
    ``reference``: an earlier assessment's, so embeddings compare to one reference.
    """
    from slimformer.evaluate import evaluate, reference_embeddings
    from slimformer.evaluate.measure import measure_model

    measure = _measure_options(measure)
    result = Assessment(runtime=slim.runtime)
    if eval:
        if slim.task == "embedding" and reference is None:
            reference = reference_embeddings(slim, eval)
        result.reference = reference
        result.eval = evaluate(
            slim, eval, reference=reference, progress=progress, **(eval_options or {})
        )
    if measure.enabled:
        warm_up(slim, measure.shapes, measure.threads)
        with tempfile.TemporaryDirectory(prefix="slimformer-size-") as scratch:
            folder = saved or save_model_dir(slim, scratch)
            result.measurement = measure_model(
                slim.runner,
                shapes=measure.shapes,
                threads=measure.threads,
                runs=measure.runs,
                warmup=measure.warmup,
                saved_path=folder,
            )
    return result


@contextlib.contextmanager
def run_folder(
    slim: SlimModel, recipe: Recipe, out: str | os.PathLike, *, overwrite: bool = False
) -> Iterator[Path]:
    """A temporary folder holding the model and ``recipe.yaml``; it becomes ``out`` at the end.

    The block may add files (the reports) and measure the saved model there;
    if it fails, nothing is left behind.
    """
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_model_dir(slim, tmp)
        (tmp / "recipe.yaml").write_text(recipe.to_yaml())
        yield tmp


def save_run(
    slim: SlimModel,
    recipe: Recipe,
    out: str | os.PathLike,
    report: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Save the model, the exact recipe that ran and (given one) the report into ``out``."""
    from slimformer.report import write_reports

    with run_folder(slim, recipe, out, overwrite=overwrite) as folder:
        if report is not None:
            write_reports(report, folder)
    return Path(out)


def load_model(model: ModelSource, progress: bool = True) -> SlimModel:
    """``model`` as a SlimModel: loaded ones as they are, names through the zoo."""
    if isinstance(model, str | os.PathLike):
        from slimformer.zoo import load

        return load(model, progress=progress)
    return as_slim(model)


def resolve_teacher(teacher: ModelSource, progress: bool = True) -> SlimModel:
    """A teacher given loaded or by name; named ones load eager (they are only run, in eager)."""
    if isinstance(teacher, str | os.PathLike):
        from slimformer.zoo import load

        return load(teacher, runtime="eager", progress=progress)
    return as_slim(teacher)


def _stage_teacher(
    stage: MethodConfig, index: int, default: SlimModel | None, progress: bool
) -> SlimModel | None:
    """The teacher of one stage: the one it names, loaded now, else ``default``."""
    if not type(stage).needs_original:
        return None
    name = stage.named_teacher()
    if name is None:
        return default
    try:
        return resolve_teacher(name, progress=progress)
    except SlimformerError as exc:  # say which stage wanted it
        raise SlimformerError(
            f"stage {index} ({stage.method}): teacher {name!r}: {exc.problem}", exc.fix
        ) from None


def distill(
    student: ModelSource,
    config: MethodConfig | ModelSource | None = None,
    data: Any = None,
    losses: Any = ("logits",),
    *,
    teacher: ModelSource | None = None,
    device: str = "cpu",
    progress: bool = True,
    **options: Any,
) -> SlimModel | nn.Module:
    """``slimformer.distill``: the distillation verb, with models also given by name.

    ``distill(student, Distill(dataset=...), teacher=teacher)`` trains
    ``student`` in place (the teacher defaults to the one the config names);
    the older ``distill(student, teacher, data, losses, **options)`` still
    works and warns. Names load here so the method itself only sees models.
    """
    from slimformer.methods.distillation import api

    student = _eager(student)
    if isinstance(config, MethodConfig):
        source = teacher if teacher is not None else config.named_teacher()
        resolved = None if source is None else resolve_teacher(source, progress=False)
        return api.distill(student, config, teacher=resolved, device=device, progress=progress)
    warnings.warn(api.OLD_FORM_WARNING, DeprecationWarning, stacklevel=2)
    old_teacher = _eager(config if config is not None else teacher)
    return api.run_distillation(student, old_teacher, data, losses, **options).student


def _eager(model: ModelSource | None) -> Any:
    """Names load eager, without progress bars, as the distill verb always loaded them."""
    if isinstance(model, str | os.PathLike):
        return resolve_teacher(model, progress=False)
    return model


def _measure_options(measure: MeasureOptions | bool | None) -> MeasureOptions:
    if isinstance(measure, MeasureOptions):
        return measure
    return MeasureOptions(enabled=measure is not False)


def warm_up(slim: SlimModel, shapes, threads: int | None) -> None:
    """Run each shape once so compilation (if any) is not measured as latency or memory."""
    from slimformer.evaluate.latency import torch_threads

    with torch_threads(threads), torch.inference_mode():
        for batch, seq in shapes:
            slim.runner(**slim.adapter.example_inputs(batch, seq))


def keep_original(slim: SlimModel, recipe: Recipe) -> SlimModel | None:
    """A copy of ``slim`` before the recipe, when a stage learns from it and names no teacher."""
    if any(type(stage).needs_original and stage.named_teacher() is None for stage in recipe.stages):
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
