"""Nothing in a checkpoint folder runs code: a crafted pickle is refused, never unpickled."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from slimformer.errors import SlimformerError
from slimformer.training.checkpoint import BEST, LAST, load_checkpoint
from slimformer.training.trainer import TrainConfig, Trainer


class _Payload:
    """Unpickling this object would create ``marker`` (a stand-in for any command)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _plant(path, marker) -> None:
    torch.save({"settings": {}, "step": 1, "evil": _Payload(str(marker))}, path)


def _trainer(folder, max_steps=4) -> Trainer:
    torch.manual_seed(0)
    module = nn.Linear(4, 1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def loss_fn(indices):
        return nn.functional.mse_loss(module(x[indices]), y[indices])

    config = TrainConfig(
        batch_size=4,
        max_steps=max_steps,
        checkpoint_every=2,
        checkpoint_dir=str(folder),
        lr=0.1,
        progress=False,
    )
    return Trainer(module, loss_fn, 16, list, config)


@pytest.mark.parametrize("name", [LAST, BEST])
def test_a_crafted_pickle_in_the_checkpoint_dir_is_refused(tmp_path, name):
    folder, marker = tmp_path / "ckpt", tmp_path / "pwned"
    folder.mkdir()
    _plant(folder / name, marker)
    with pytest.raises(SlimformerError, match="start the training again") as info:
        load_checkpoint(folder / name)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_resuming_from_a_crafted_last_checkpoint_runs_nothing(tmp_path):
    folder, marker = tmp_path / "ckpt", tmp_path / "pwned"
    folder.mkdir()
    _plant(folder / LAST, marker)
    with pytest.raises(SlimformerError, match="cannot read the checkpoint"):
        _trainer(folder).fit()
    assert not marker.exists()


def test_an_old_checkpoint_holding_numpy_arrays_is_refused_with_one_line(tmp_path):
    numpy = pytest.importorskip("numpy")
    path = tmp_path / LAST
    torch.save({"rng": {"numpy": numpy.random.get_state()}}, path)
    with pytest.raises(SlimformerError, match="start the training again"):
        load_checkpoint(path)


def test_a_truncated_checkpoint_is_one_line(tmp_path):
    path = tmp_path / LAST
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(SlimformerError, match="start the training again") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_a_checkpoint_round_trips_and_resumes_to_the_uninterrupted_result(tmp_path):
    whole = _trainer(tmp_path / "a", max_steps=6)
    whole_result = whole.fit()
    first = _trainer(tmp_path / "b", max_steps=6)
    first.total_steps = 2  # stop after the first checkpoint, as if killed
    first.fit()
    saved = load_checkpoint(tmp_path / "b" / LAST)
    assert saved["step"] == 2 and isinstance(saved["rng"]["torch"], torch.Tensor)
    resumed = _trainer(tmp_path / "b", max_steps=6).fit()
    assert resumed.losses == whole_result.losses
