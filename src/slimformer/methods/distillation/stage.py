"""The ``distill`` recipe stage: the model as it was before the recipe teaches the model now.

Placed after pruning (or any structural change) it is the recovery stage;
with ``layers`` it first cuts the current model down to those layers (a
DistilBERT-style student) and then distils. ``teacher`` names another
teacher (a zoo name or a folder) instead of the original. The stage never
loads a model: whoever runs it (``slimformer.compress``, ``run_recipe``, the
``distill`` verb) resolves the teacher and hands it over in the context.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PositiveInt

from slimformer.errors import SlimformerError
from slimformer.methods.base import MethodConfig, StageContext, register_method
from slimformer.methods.distillation.api import run_distillation
from slimformer.methods.distillation.losses import AnyLoss, LogitsKD
from slimformer.methods.distillation.teacher_cache import CacheDtype
from slimformer.methods.students.layer_selection import choose_layers, cut_layers
from slimformer.model import SlimModel
from slimformer.training.settings import TrainedStage, TrainSettings, train_field
from slimformer.training.trainer import TrainConfig

#: The ``train:`` block's defaults for this stage.
TRAIN_DEFAULTS = {"epochs": 3, "lr": 1e-4, "batch_size": 32}
#: Training settings version 1 recipes wrote flat in the stage.
FLAT_KEYS = (
    "epochs",
    "max_steps",
    "max_minutes",
    "lr",
    "batch_size",
    "grad_accum",
    "warmup",
    "eval_every",
    "load_best",
    "seed",
    "precision",
    "checkpoint_dir",
    "checkpoint_every",
)


class Distill(TrainedStage, MethodConfig):
    """Distil the original model (or a named teacher) into the model as it is now."""

    method = "distill"
    family = "distillation"
    needs_original: ClassVar[bool] = True

    dataset: str = Field(description="Task data: a labelled dataset, or text for LMs.")
    transfer: str | None = Field(default=None, description="Text the teacher labels on the fly.")
    transfer_limit: PositiveInt | None = None
    #: Perturbed copies of each labelled train text for the teacher to label (Tang et al. 2019).
    augment: PositiveInt | None = None
    losses: list[AnyLoss] = Field(default_factory=lambda: [LogitsKD()])
    #: 0-based layers of the current model to keep before distilling (None: keep all).
    layers: list[int] | None = None
    teacher: str | None = None
    max_length: PositiveInt = 64
    max_items: PositiveInt | None = None
    train: TrainSettings = train_field(**TRAIN_DEFAULTS)
    flat_train_keys: ClassVar[tuple[str, ...]] = FLAT_KEYS
    #: Fraction of the train split held out to score checkpoints when the data has no
    #: validation split (never the test split); larger scores more finely, trains on less.
    holdout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: Store the frozen teacher's outputs on disk: computed once, reused by later epochs/runs.
    cache_teacher: bool = False
    #: How the cache stores them: float16 (default, half the bytes) or float32 (exact).
    cache_dtype: CacheDtype = "float16"

    def named_teacher(self) -> str | None:
        return self.teacher


@register_method(Distill)
def apply_distill(slim: SlimModel, config: Distill, context: StageContext) -> None:
    teacher = _teacher(config, context)
    if config.layers is not None:
        cut_layers(slim, choose_layers(len(slim.adapter.layers()), config.layers, None))
    run_distillation(
        slim,
        teacher,
        config.dataset,
        list(config.losses),
        transfer=config.transfer,
        transfer_limit=config.transfer_limit,
        augment=config.augment,
        max_length=config.max_length,
        max_items=config.max_items,
        holdout_fraction=config.holdout_fraction,
        cache_teacher=config.cache_teacher,
        cache_dtype=config.cache_dtype,
        train=TrainConfig.of(config.train, context.device, context.progress),
    )


def _teacher(config: Distill, context: StageContext) -> SlimModel:
    """The teacher the caller resolved; a named one must have been loaded by the caller."""
    if context.teacher is not None:
        return context.teacher
    if config.teacher is not None:
        raise SlimformerError(
            f"the distill stage names teacher {config.teacher!r} but was handed no teacher",
            "run it through slimformer.compress or slimformer.pipeline.run_recipe (they load it), "
            "or pass teacher= to slimformer.distill",
        )
    if context.original is None:
        raise SlimformerError(
            "the distill stage has no teacher: no original model was kept",
            "run it through a recipe (slimformer compress) or set teacher: to a model",
        )
    return context.original
