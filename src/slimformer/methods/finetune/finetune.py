"""The ``finetune`` recipe stage: train the model as it is now on a labelled dataset.

Placed after a compression stage it recovers accuracy; its float weights
train while compressed modules (int8 buffers) stay as they are.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from slimformer.data import labelled_dataset
from slimformer.methods.base import MethodConfig, StageContext, register_method
from slimformer.model import SlimModel
from slimformer.training.loop import train_classifier


class Finetune(MethodConfig):
    """Fine-tune the model on a labelled dataset (recovery after compression)."""

    method = "finetune"
    family = "training"

    dataset: str = Field(description="A labelled dataset name or .jsonl/.csv path.")
    epochs: PositiveInt = 1
    lr: PositiveFloat = 2e-5
    batch_size: PositiveInt = 16
    max_length: PositiveInt = 64
    seed: int = 0


@register_method(Finetune)
def apply_finetune(slim: SlimModel, config: Finetune, context: StageContext) -> None:
    data = labelled_dataset(config.dataset)
    train_classifier(
        slim.model,
        slim.tokenizer,
        data.split("train"),
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        max_length=config.max_length,
        seed=config.seed,
        device=context.device,
        progress=context.progress,
    )
