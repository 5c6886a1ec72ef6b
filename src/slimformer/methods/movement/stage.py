"""The ``movement`` recipe stage: prune while fine-tuning a classifier on labelled data.

``hard`` keeps the top-scored weights of each layer at a sparsity that rises
on the cubic schedule, so every layer ends at exactly ``sparsity``. ``soft``
keeps weights whose ``sigmoid(score)`` passes a rising threshold, with an L1
pull on ``sigmoid(score)``; its sparsity is whatever the regulariser reaches
(reported, not targeted). ``magnitude`` is the baseline the paper compares
with: the same schedule and budget, ranking ``|W|``; with
``warmup_fraction: 0`` and ``cooldown_fraction: 1`` it is one-shot magnitude
pruning followed by a fine-tune that keeps the pruned weights at zero.

``score_init: magnitude`` is for a model already fine-tuned on the task (such
as minilm-intent): at its loss minimum the early score gradients are noise, so
equal initial scores make the first pruning steps random; starting the scores
at magnitude's ranking lets movement revise a sound mask instead.

The stage ends with the masks folded in and the scores gone, each pruned
linear stored as a :class:`slimformer.nn.SparseLinear` (bitmask + kept
values), so the saved model shrinks with sparsity like one-shot pruning's.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from slimformer.arch import PARTS
from slimformer.methods.base import StageContext, register_method
from slimformer.methods.movement.masked_weight import attach_masks, fold_masks
from slimformer.methods.movement.training import train_with_masks
from slimformer.methods.pruning.replace import install_pruned
from slimformer.methods.selection import LinearSelection
from slimformer.model import SlimModel
from slimformer.training.settings import TrainedStage, TrainSettings, train_field

#: The ``train:`` block's defaults: no held-out score here, and an earlier (less sparse)
#: state must never win, so the last weights are kept.
TRAIN_DEFAULTS = {"epochs": 10, "lr": 1e-4, "batch_size": 16, "seed": 0, "load_best": False}
#: Training settings version 1 recipes wrote flat in the stage.
FLAT_KEYS = ("epochs", "lr", "batch_size", "seed")


class Movement(TrainedStage, LinearSelection):
    """Movement pruning while fine-tuning a classifier (learned scores, cubic schedule)."""

    method = "movement"
    family = "pruning"

    parts: list[Literal[PARTS]] = Field(  # type: ignore[valid-type]
        default=["attention", "mlp"],
        description="Model parts to prune; embeddings and the task head are left alone.",
    )
    sparsity: float | None = Field(
        default=None, ge=0, lt=1, description="Share of each layer's weights pruned (hard)."
    )
    variant: Literal["hard", "soft", "magnitude"] = "hard"
    dataset: str = Field(description="A labelled dataset name or .jsonl/.csv path.")
    train: TrainSettings = train_field(**TRAIN_DEFAULTS)
    flat_train_keys: ClassVar[tuple[str, ...]] = FLAT_KEYS
    score_lr: PositiveFloat = Field(default=1e-2, description="Learning rate of the scores.")
    score_init: Literal["zeros", "magnitude"] = Field(
        default="zeros",
        description="Initial scores: equal (the paper) or |W| / mean |W| of the layer.",
    )
    max_length: PositiveInt = 64
    warmup_fraction: float = Field(
        default=0.1, ge=0, le=1, description="Share of steps before pruning starts."
    )
    cooldown_fraction: float = Field(
        default=0.2, ge=0, le=1, description="Share of steps at the final sparsity."
    )
    threshold: float = Field(
        default=0.1, gt=0, lt=1, description="Final sigmoid(score) threshold (soft)."
    )
    l1: NonNegativeFloat = Field(default=1.0, description="Weight of the L1 on sigmoid (soft).")

    @model_validator(mode="after")
    def _consistent(self) -> Movement:
        if self.variant == "soft" and self.sparsity is not None:
            raise ValueError("the soft variant reaches its sparsity through l1; drop sparsity")
        if self.variant != "soft" and self.sparsity is None:
            raise ValueError(f"the {self.variant} variant needs a target sparsity in [0, 1)")
        if self.warmup_fraction + self.cooldown_fraction > 1:
            raise ValueError("warmup_fraction + cooldown_fraction must be at most 1")
        return self


@register_method(Movement)
def apply_movement(slim: SlimModel, config: Movement, context: StageContext) -> None:
    linears = config.select(slim)
    masks = attach_masks(linears, config.variant, config.score_init)
    try:
        train_with_masks(slim, masks, config, context.device, context.progress)
    finally:
        kept = fold_masks(linears)
    for name, linear in linears.items():  # compact storage: bytes fall with sparsity
        install_pruned(slim, name, linear, linear.weight, kept[name], "unstructured")
    slim.refresh_adapter()
    if context.progress:
        total = sum(mask.numel() for mask in kept.values())
        pruned = total - sum(int(mask.sum()) for mask in kept.values())
        print(f"movement ({config.variant}): {pruned / total:.2%} of {total} weights pruned")
