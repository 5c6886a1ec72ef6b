"""Training as a recovery stage: fine-tune the model as it is now on labelled data."""

from __future__ import annotations

from slimformer.methods.apply import apply_method
from slimformer.methods.finetune.finetune import Finetune


def finetune_(model, config: Finetune, **context):
    """The family verb: ``finetune_(slim, Finetune(dataset="intent"))`` trains ``slim`` in place.

    Its float weights train; compressed modules stay as they are. ``context``
    takes ``device`` and ``progress`` like the other verbs.
    """
    return apply_method(model, config, family="training", **context)


__all__ = ["Finetune", "finetune_"]
