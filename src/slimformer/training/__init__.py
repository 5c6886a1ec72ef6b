"""Training: the fine-tune helper and the recovery stage."""

from slimformer.training.finetune import finetune_classifier

__all__ = ["finetune_classifier"]
