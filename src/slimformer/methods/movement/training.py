"""Fine-tune a classifier with movement masks attached, on the shared trainer.

Scores and weights train together; scores get their own (much larger)
learning rate and no weight decay, since decay would pull every score to
zero and blur the ranking. After each optimizer step the schedule moves the
masks' level; the soft variant adds ``lambda_t * mean(sigmoid(S))``, its L1
pressure growing with the threshold so early training is not pushed to
prune before the scores mean anything.
"""

from __future__ import annotations

import torch

from slimformer.data import labelled_dataset
from slimformer.methods.movement.masked_weight import MovementMask, score_parameters, set_level
from slimformer.methods.movement.schedule import cubic_sparsity
from slimformer.model import SlimModel
from slimformer.training.classifier import LabelledBatch, classifier_loss, example_collator
from slimformer.training.trainer import TrainConfig, Trainer, TrainResult


class MaskSchedule:
    """Moves every mask's level along the cubic schedule; called after each optimizer step."""

    def __init__(self, masks: dict[str, MovementMask], final: float, total_steps: int, config):
        self.masks, self.final, self.total = masks, final, total_steps
        self.warmup = round(config.warmup_fraction * total_steps)
        self.cooldown = round(config.cooldown_fraction * total_steps)

    def level(self, step: int) -> float:
        return cubic_sparsity(step, self.total, self.final, self.warmup, self.cooldown)

    def __call__(self, trainer: Trainer) -> None:
        set_level(self.masks, self.level(trainer.step))


def train_with_masks(
    slim: SlimModel, masks: dict[str, MovementMask], config, device: str, progress: bool
) -> TrainResult:
    """Fine-tune ``slim`` on ``config.dataset`` while the masks follow the schedule."""
    examples = labelled_dataset(config.dataset).split("train")
    # load_best stays off whatever the block says: an earlier, less sparse state must never win
    train = TrainConfig.of(config.train.model_copy(update={"load_best": False}), device, progress)
    final = config.threshold if config.variant == "soft" else config.sparsity
    scores = score_parameters(masks)
    score_ids = {id(p) for p in scores}
    weights = [p for p in slim.model.parameters() if p.requires_grad and id(p) not in score_ids]
    groups = [{"params": weights}]
    if scores:
        groups.append({"params": scores, "lr": config.score_lr, "weight_decay": 0.0})

    model = slim.model

    def loss_fn(batch: LabelledBatch) -> torch.Tensor:
        loss = classifier_loss(model, batch)
        if config.variant == "soft" and config.l1 > 0:
            level = next(iter(masks.values())).level
            loss = loss + config.l1 * (level / final) * _mean_density(scores)
        return loss

    trainer = Trainer(
        model,
        loss_fn,
        len(examples),
        example_collator(slim.tokenizer, examples, config.max_length, device),
        train,
        desc=f"movement ({config.variant})",
        param_groups=groups,
    )
    schedule = MaskSchedule(masks, final, trainer.total_steps, config)
    trainer.callbacks.append(schedule)
    set_level(masks, schedule.level(0))
    result = trainer.fit()
    set_level(masks, final)  # the end of the schedule, whatever rounding did to the steps
    model.eval()
    return result


def _mean_density(scores: list[torch.Tensor]) -> torch.Tensor:
    """The L1 of ``sigmoid(S)`` per weight, averaged over layers (Sanh et al.'s regulariser)."""
    return torch.stack([torch.sigmoid(s).mean() for s in scores]).mean()
