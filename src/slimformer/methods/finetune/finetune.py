"""The ``finetune`` recipe stage: train the model as it is now on a labelled dataset.

Placed after a compression stage it recovers accuracy; its float weights
train while compressed modules (int8 buffers) stay as they are. It trains
by the plain fine-tune procedure (constant lr, no warm-up or clipping, fp32),
so its defaults reproduce the numbers recipes have always given.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PositiveInt

from slimformer.data import labelled_dataset
from slimformer.methods.base import MethodConfig, StageContext, register_method
from slimformer.model import SlimModel
from slimformer.training.classifier import PLAIN_FINETUNE, labels_for_model, train_classifier
from slimformer.training.settings import TrainedStage, TrainSettings, train_field

#: The ``train:`` block's defaults for this stage.
TRAIN_DEFAULTS = {**PLAIN_FINETUNE, "epochs": 1, "lr": 2e-5, "batch_size": 16, "seed": 0}
#: Training settings version 1 recipes wrote flat in the stage.
FLAT_KEYS = ("epochs", "lr", "batch_size", "seed")


class Finetune(TrainedStage, MethodConfig):
    """Fine-tune the model on a labelled dataset (recovery after compression)."""

    method = "finetune"
    family = "training"

    dataset: str = Field(description="A labelled dataset name or .jsonl/.csv path.")
    max_length: PositiveInt = 64
    train: TrainSettings = train_field(**TRAIN_DEFAULTS)
    flat_train_keys: ClassVar[tuple[str, ...]] = FLAT_KEYS


@register_method(Finetune)
def apply_finetune(slim: SlimModel, config: Finetune, context: StageContext) -> None:
    data = labels_for_model(slim.model, labelled_dataset(config.dataset))
    train_classifier(
        slim.model,
        slim.tokenizer,
        data.split("train"),
        config.train,
        max_length=config.max_length,
        device=context.device,
        progress=context.progress,
    )
