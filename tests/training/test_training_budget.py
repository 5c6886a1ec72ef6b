"""A wall-clock budget (max_minutes) ends training after the step that crosses it."""

from __future__ import annotations

import torch
from torch import nn

from slimformer.training.trainer import TrainConfig, Trainer


def _trainer(**settings) -> Trainer:
    torch.manual_seed(0)
    module = nn.Linear(4, 1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def loss_fn(indices):
        return nn.functional.mse_loss(module(x[indices]), y[indices])

    config = TrainConfig(batch_size=4, max_steps=20, progress=False, **settings)
    return Trainer(module, loss_fn, 16, list, config)


def test_an_exhausted_budget_stops_after_one_step():
    result = _trainer(max_minutes=1e-9).fit()
    assert result.steps == 1


def test_a_generous_budget_runs_every_planned_step():
    result = _trainer(max_minutes=60.0).fit()
    assert result.steps == 20 and len(result.losses) == 20
