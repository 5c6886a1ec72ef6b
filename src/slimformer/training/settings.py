"""Training settings, written once: the ``train:`` block of every stage that trains.

A recipe carries them nested in the stage, as it carries ``calibration:``::

    - method: finetune
      dataset: intent
      train: {epochs: 5, lr: 1.0e-4}

Each training method (``distill``, ``finetune``, ``movement``) gives its own
defaults for the block (:func:`train_field`); a block that sets only some
settings takes the rest from the method's defaults, not from this class's.
Older recipes wrote the settings flat in the stage (``epochs: 3``); they are
still read, meaning the same, with a DeprecationWarning naming the nested form
(:func:`nest_train_settings`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from slimformer.training.precision import Precision

Schedule = Literal["linear", "constant"]
Shuffle = Literal["epoch_seeded", "single_stream"]


class TrainSettings(BaseModel):
    """How to train: optimiser, schedule, data order, batching, evaluation and checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveInt = Field(default=1, description="Passes over the training data.")
    max_steps: PositiveInt | None = Field(
        default=None, description="Stop after this many optimizer steps (overrides epochs)."
    )
    max_minutes: PositiveFloat | None = Field(
        default=None,
        description="Wall-clock budget: stop after the first step that ends past it; "
        "the schedule still decays over the planned steps, so pair it with max_steps.",
    )
    lr: PositiveFloat = Field(default=5e-5, description="AdamW learning rate.")
    weight_decay: NonNegativeFloat = Field(default=0.01, description="AdamW weight decay.")
    warmup: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Fraction of the steps warming the lr up."
    )
    schedule: Schedule = Field(
        default="linear",
        description="After warm-up: linear (decay to zero at the end) or constant.",
    )
    batch_size: PositiveInt = Field(default=16, description="Items per micro-batch.")
    grad_accum: PositiveInt = Field(
        default=1, description="Micro-batches summed into one optimizer step."
    )
    max_grad_norm: PositiveFloat | None = Field(
        default=1.0, description="Clip the gradient norm to this (None: no clipping)."
    )
    shuffle: Shuffle = Field(
        default="epoch_seeded",
        description="Data order: epoch_seeded (each epoch's order from (seed, epoch)) or "
        "single_stream (one generator seeded once draws every epoch's order in turn).",
    )
    eval_every: PositiveInt | None = Field(
        default=None, description="Evaluate every N optimizer steps (and at the end)."
    )
    seed: int = Field(default=0, description="Seeds dropout, the data order and held-out splits.")
    precision: Precision = Field(
        default="auto", description="auto (bf16 on CUDA that supports it), fp32 or bf16."
    )
    checkpoint_dir: str | None = Field(
        default=None, description="Folder for resumable checkpoints (None: no resume)."
    )
    checkpoint_every: PositiveInt | None = Field(
        default=None, description="Save a checkpoint every N optimizer steps."
    )
    load_best: bool = Field(
        default=True,
        description="End with the best evaluated weights (ties: lower validation loss), "
        "not the last; only where the method evaluates.",
    )


class TrainedStage(BaseModel):
    """Mixin of a stage config with a ``train:`` block: fills the block, reads the old flat form.

    A subclass declares ``train: TrainSettings = train_field(**defaults)`` where it
    wants the block in its recipe form (the defaults are the method's), and sets
    ``flat_train_keys`` to the settings its version 1 took flat.
    """

    flat_train_keys: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _nest_train(cls, data: Any) -> Any:
        block = cls.model_fields["train"].get_default(call_default_factory=True)
        defaults = block.model_dump(exclude_unset=True)  # what the method set: train_field(...)
        name = getattr(cls, "method", "") or cls.__name__
        return nest_train_settings(data, defaults, cls.flat_train_keys, name)


def train_field(**defaults: Any) -> Any:
    """The ``train:`` field of a stage config, whose defaults are ``defaults`` (the method's)."""
    TrainSettings(**defaults)  # a typo in a method's defaults fails at import
    return Field(
        default_factory=lambda: TrainSettings(**defaults),
        description="Training settings (epochs, lr, batch_size, seed, ...).",
    )


def nest_train_settings(
    data: Any, defaults: Mapping[str, Any], flat_keys: Iterable[str], method: str
) -> Any:
    """A stage's settings with its ``train:`` block complete: the method's defaults under it.

    ``flat_keys`` are the training settings the stage's earlier form took flat
    (``epochs: 3`` beside ``dataset:``); they are moved under ``train:`` with a
    DeprecationWarning. Given both ways at once, the setting is refused.
    """
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    flat = {key: data.pop(key) for key in flat_keys if key in data}
    given = data.get("train")
    if isinstance(given, TrainSettings):
        given = given.model_dump(exclude_unset=True)
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        return data  # validation says what is wrong with it
    both = sorted(set(flat) & set(given))
    if both:
        raise ValueError(f"{', '.join(both)} given both flat and under train:; keep train:")
    if flat:
        _warn_flat(method, flat)
    data["train"] = {**defaults, **given, **flat}
    return data


def _warn_flat(method: str, flat: Mapping[str, Any]) -> None:
    nested = ", ".join(f"{key}: {value}" for key, value in flat.items())
    warnings.warn(
        f"{method}: training settings written flat in the stage ({', '.join(flat)}) are "
        f"deprecated; nest them: `train: {{{nested}}}`",
        DeprecationWarning,
        stacklevel=3,  # the stage config's validator: a slimformer module, whoever called
    )
