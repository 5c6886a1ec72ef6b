"""The public verb: ``slimformer.distill(student, Distill(...), teacher=teacher)``.

::

    teacher = slimformer.load("minilm-intent")
    student = slimformer.select_layers(teacher, every=2)
    slimformer.distill(student, Distill(dataset="intent", transfer="wiki", epochs=5,
                       losses=[LogitsKD(), HiddenMSE()]), teacher=teacher)

It takes its typed config like ``quantize_(slim, GPTQ(...))`` and runs the
same code as the recipe stage. The older form ``distill(student, teacher,
data, losses=..., **options)`` still works and warns. Models arrive loaded:
names are resolved above this package (``slimformer.distill`` loads them).

Classifiers learn from labelled task data plus optional transfer text that
the teacher labels on the fly, and are scored by accuracy on held-out
examples (ties broken by their label loss); causal LMs learn from token
windows and are scored by mean token loss on the validation split. The
best-scoring weights are kept (``train={"load_best": False}``: the last).
Held-out examples come from the data's validation split or, without one, a
seeded ``holdout_fraction`` of its train split; never from its test split.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from slimformer.data.registry import resolve_dataset
from slimformer.errors import SlimformerError
from slimformer.methods.apply import apply_method, as_slim
from slimformer.methods.base import MethodConfig
from slimformer.methods.distillation.augment import augmented_items
from slimformer.methods.distillation.checks import check_pair
from slimformer.methods.distillation.data import (
    Collator,
    Item,
    holdout,
    lm_windows,
    task_items,
    transfer_items,
)
from slimformer.methods.distillation.losses import parse_losses
from slimformer.methods.distillation.objective import DistillObjective
from slimformer.methods.distillation.teacher_cache import (
    CachedTeacher,
    CacheDtype,
    CachingCollator,
    cache_torch_dtype,
)
from slimformer.methods.distillation.validation import accuracy_and_loss, heldout_loss, token_loss
from slimformer.model import SlimModel
from slimformer.training.precision import autocast
from slimformer.training.settings import TrainSettings
from slimformer.training.trainer import Callback, TrainConfig, Trainer, TrainResult


@dataclass
class DistillRun:
    student: SlimModel
    result: TrainResult


#: What the older call form warns; ``slimformer.distill`` (which loads names) says it too.
OLD_FORM_WARNING = (
    "distill(student, teacher, data, losses=..., **options) is deprecated; "
    "use distill(student, Distill(dataset=data, ...), teacher=teacher)"
)


def distill(
    student: SlimModel | torch.nn.Module,
    config: MethodConfig | SlimModel | torch.nn.Module | None = None,
    data: Any = None,
    losses: Any = ("logits",),
    *,
    teacher: SlimModel | torch.nn.Module | None = None,
    device: str = "cpu",
    progress: bool = True,
    **options: Any,
) -> SlimModel | torch.nn.Module:
    """Train ``student`` in place to mimic ``teacher`` as ``config`` says; returns the student.

    ``config`` is a :class:`~slimformer.methods.distillation.stage.Distill`;
    with ``layers`` the student is first cut down to those layers, as in a recipe.

    Deprecated form: ``distill(student, teacher, data, losses, **options)``.
    Options: ``transfer`` (a text dataset the teacher labels), ``transfer_limit``,
    ``augment`` (this many perturbed copies of each labelled train text, which
    the teacher labels: in-domain transfer text, see :mod:`.augment`),
    ``train`` (a :class:`TrainConfig`, :class:`TrainSettings` or their settings), ``max_length``,
    ``holdout_fraction`` (of the train split held out for evaluation when the
    data has no validation split; larger: a finer score, less to train on),
    ``max_items`` (LM windows), ``cache_teacher`` (store the frozen teacher's
    outputs on disk and reuse them across epochs and runs), ``cache_dtype``
    (``"float16"``, ``"bfloat16"`` or ``"float32"``: how the cache stores them),
    ``callbacks``.
    """
    if isinstance(config, MethodConfig):
        if teacher is None:
            named = config.named_teacher()
            raise SlimformerError(
                "distill needs a teacher" + (f" (the config names {named!r})" if named else ""),
                "pass teacher=slimformer.load(...) or a torch.nn.Module",
            )
        return apply_method(
            student,
            config,
            family="distillation",
            teacher=as_slim(teacher),
            device=device,
            progress=progress,
        )
    warnings.warn(OLD_FORM_WARNING, DeprecationWarning, stacklevel=2)
    old_teacher = config if config is not None else teacher
    return run_distillation(student, old_teacher, data, losses, **options).student


def run_distillation(
    student: SlimModel | torch.nn.Module,
    teacher: SlimModel | torch.nn.Module,
    data: Any,
    losses: Any = ("logits",),
    *,
    transfer: Any = None,
    transfer_limit: int | None = None,
    augment: int | None = None,
    train: TrainSettings | dict | None = None,
    max_length: int = 64,
    holdout_fraction: float = 0.1,
    max_items: int | None = None,
    cache_teacher: bool = False,
    cache_dtype: CacheDtype = "float16",
    callbacks: Sequence[Callback] = (),
) -> DistillRun:
    """:func:`distill`, also returning the training record (losses, evaluations)."""
    student, teacher = _slim(student), _slim(teacher)
    check_pair(student, teacher)
    configs = parse_losses(losses)
    train = _train_config(train)
    transfer_data = TransferData(transfer, transfer_limit, augment)
    items, held, evaluate = _data(
        student, data, transfer_data, max_length, holdout_fraction, max_items, train
    )
    objective = DistillObjective(student, teacher, configs)
    teacher.model.to(train.device)
    student.model.to(train.device)
    fingerprint = {
        "losses": [c.model_dump(mode="json") for c in configs],
        "data": _name(data),
        "transfer": _name(transfer),
        "transfer_limit": transfer_limit,
        "augment": augment,
        "max_length": max_length,
        "holdout": holdout_fraction,
        "student_layers": objective.student_shape.num_layers,
    }
    collate = Collator(items, student.tokenizer, max_length, train.device)
    if cache_teacher:
        with autocast(train.precision, train.device):
            cache = CachedTeacher.build(
                objective, items, collate, train.batch_size, cache_torch_dtype(cache_dtype)
            )
        collate = CachingCollator(collate, cache)
    if evaluate is None and held:
        evaluate = heldout_loss(
            objective,
            Collator(held, student.tokenizer, max_length, train.device),
            len(held),
            train.batch_size,
        )
    trainer = Trainer(
        objective,
        objective,
        len(items),
        collate,
        train,
        evaluate=evaluate,
        callbacks=callbacks,
        fingerprint=fingerprint,
        desc="distill",
    )
    result = trainer.fit()
    student.model.eval()
    student.refresh_adapter()
    return DistillRun(student, result)


def _train_config(train: TrainSettings | dict | None) -> TrainConfig:
    if isinstance(train, TrainConfig):
        return train
    if isinstance(train, TrainSettings):  # a stage's train: block, run on the CPU
        return TrainConfig.of(train)
    return TrainConfig(**(train or {}))


def _slim(model: SlimModel | torch.nn.Module) -> SlimModel:
    """A loaded model as a SlimModel; names are loaded above methods (``slimformer.distill``)."""
    if isinstance(model, str | os.PathLike):
        raise SlimformerError(
            f"distillation here takes loaded models, got the name {str(model)!r}",
            "pass slimformer.load(name), or call slimformer.distill, which loads names",
        )
    return as_slim(model)


def _name(data: Any) -> str | None:
    return None if data is None else str(getattr(data, "name", data))


@dataclass(frozen=True)
class TransferData:
    """What the teacher labels beside the task data: a text dataset, perturbed task copies."""

    dataset: Any = None
    limit: int | None = None
    augment: int | None = None

    def items(self, task: list[Item], mask_word: str | None, seed: int) -> list[Item]:
        """The transfer items for a classifier trained on ``task`` (never its held-out part)."""
        extra = []
        if self.augment:
            extra += augmented_items(task, self.augment, mask_word, seed)
        if self.dataset is not None:
            texts = transfer_items(self.dataset, self.limit, seed)
            _non_empty(texts, self.dataset)
            extra += texts
        return extra


def _data(student, data, transfer: TransferData, max_length, fraction, max_items, train):
    """(train items, held-out items, evaluation) for the student's task."""
    if not 0.0 <= fraction < 1.0:
        raise SlimformerError(
            f"holdout_fraction {fraction} leaves no training data or is negative",
            "hold out a fraction in [0, 1), e.g. 0.1 (0: no evaluation, keep the last weights)",
        )
    if transfer.augment and student.task != "classification":
        raise SlimformerError(
            f"augment copies labelled task texts, and a {student.task} student has none",
            "drop augment, or give transfer: a text dataset instead",
        )
    if student.task == "causal-lm":
        return _lm_data(student, data, max_length, max_items, train)
    if student.task == "classification":
        labelled = resolve_dataset(data)
        items, held = _task_split(labelled, fraction, train.seed)
        _non_empty(items, data)  # no examples is the first thing to say, before label names
        items, held = _task_split(labelled, fraction, train.seed, student.model)
        items = items + transfer.items(items, student.tokenizer.mask_token, train.seed)
        evaluate = accuracy_and_loss(student, held, max_length, train) if held else None
        return items, held, evaluate
    texts = resolve_dataset(data).texts("train")
    items = [Item(text=t) for t in texts]
    items += transfer.items([], None, train.seed)  # no labels to augment: the checks said so
    _non_empty(items, data)
    items, held = holdout(items, fraction, train.seed)
    return items, held, None


def _task_split(data, fraction: float, seed: int, model=None) -> tuple[list[Item], list[Item]]:
    """(train, held-out) labelled items; with ``model``, in its label ids (checked by name)."""
    items, dataset = task_items(data, "train", model=model)
    if "validation" in dataset.splits:
        held, _ = task_items(dataset, "validation")  # ``dataset`` is already in the model's ids
        return items, held
    return holdout(items, fraction, seed)


def _lm_data(student, data, max_length, max_items, train):
    items = lm_windows(student.tokenizer, data, "train", max_length, max_items)
    _non_empty(items, data)
    dataset = resolve_dataset(data)
    if "validation" in dataset.splits:
        limit = max(1, min(16, len(items) // 4))
        held = lm_windows(student.tokenizer, dataset, "validation", max_length, limit)
    else:
        items, held = holdout(items, 0.1, train.seed)
    evaluate = token_loss(student, held, train) if held else None
    return items, held, evaluate


def _non_empty(items: list, data: Any) -> None:
    if not items:
        raise SlimformerError(
            f"dataset {_name(data)!r} gives no training examples",
            "pass a dataset with examples (for text: at least one window of max_length tokens)",
        )


__all__ = ["OLD_FORM_WARNING", "DistillRun", "distill", "run_distillation"]
