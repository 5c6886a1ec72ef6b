"""Best-checkpoint selection: the best score wins; on a tie, the lower validation loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimformer.training.trainer import Evaluation, TrainConfig, Trainer, better


def _trainer(scores: list[tuple[float, float | None]], **settings) -> tuple[Trainer, dict]:
    """A trainer whose k-th evaluation returns ``scores[k]`` and notes the weights it saw."""
    torch.manual_seed(0)
    module = nn.Linear(4, 1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    seen: dict[int, torch.Tensor] = {}

    def loss_fn(indices):
        return nn.functional.mse_loss(module(x[indices]), y[indices])

    def evaluate() -> Evaluation:
        value, loss = scores[len(seen)]
        seen[len(seen)] = module.weight.detach().clone()
        return Evaluation("acc", value, loss=loss)

    config = TrainConfig(
        batch_size=4, max_steps=3 * len(scores), eval_every=3, lr=0.1, progress=False, **settings
    )
    return Trainer(module, loss_fn, 16, list, config, evaluate=evaluate), seen


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_tie_on_accuracy_goes_to_the_later_lower_loss(tmp_path, in_memory):
    # evaluation 1 and 2 tie on accuracy; 2 has the lower loss; 3 is worse on accuracy
    scores = [(0.5, 1.0), (0.9, 0.8), (0.9, 0.4), (0.8, 0.1)]
    folder = None if in_memory else str(tmp_path / "ckpt")
    trainer, seen = _trainer(scores, checkpoint_dir=folder)
    result = trainer.fit()
    assert (result.best_step, result.best, result.best_loss) == (9, 0.9, 0.4)
    assert [e[2] for e in result.evaluations] == [1.0, 0.8, 0.4, 0.1]
    assert torch.equal(trainer.module.weight, seen[2])  # the weights of evaluation 2 came back


def test_a_tie_with_higher_or_equal_loss_keeps_the_earlier():
    trainer, seen = _trainer([(0.9, 0.4), (0.9, 0.4), (0.9, 0.7)])
    result = trainer.fit()
    assert result.best_step == 3
    assert torch.equal(trainer.module.weight, seen[0])


def test_a_better_score_wins_whatever_its_loss():
    trainer, _ = _trainer([(0.8, 0.1), (0.9, 5.0)])
    assert trainer.fit().best_step == 6


def test_load_best_false_keeps_the_last_weights_but_reports_the_best():
    trainer, seen = _trainer([(0.9, 0.1), (0.5, 0.9)], load_best=False)
    result = trainer.fit()
    assert result.best_step == 3
    assert not torch.equal(trainer.module.weight, seen[0])


def test_ties_without_losses_and_lower_is_better_scores():
    assert not better(Evaluation("acc", 0.9), 0.9, None)  # no loss: the earlier stays
    assert not better(Evaluation("acc", 0.9, loss=0.1), 0.9, None)
    assert better(Evaluation("token_loss", 2.0, False), 2.5, None)
    assert not better(Evaluation("token_loss", 3.0, False, loss=0.0), 2.5, 9.0)
