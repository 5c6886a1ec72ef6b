"""The nested ``train:`` block: one list of settings, each method's defaults, old recipes."""

from __future__ import annotations

import pytest
import torch

from slimformer.errors import SlimformerError
from slimformer.methods.catalog import make_config
from slimformer.recipe import Recipe
from slimformer.training.order import epoch_order
from slimformer.training.schedule import warmup_constant
from slimformer.training.settings import TrainSettings
from slimformer.training.trainer import TrainConfig

REQUIRED = {
    "finetune": {"dataset": "intent"},
    "distill": {"dataset": "intent"},
    "movement": {"dataset": "intent", "sparsity": 0.5},
}
#: Each method's training defaults, as they were when the settings were flat.
DEFAULTS = {
    "finetune": {"epochs": 1, "lr": 2e-5, "batch_size": 16, "seed": 0},
    "distill": {"epochs": 3, "lr": 1e-4, "batch_size": 32, "seed": 0, "warmup": 0.1},
    "movement": {"epochs": 10, "lr": 1e-4, "batch_size": 16, "seed": 0, "warmup": 0.1},
}


@pytest.mark.parametrize("method", sorted(DEFAULTS))
def test_each_method_keeps_its_defaults(method):
    train = make_config(method, REQUIRED[method]).train
    assert isinstance(train, TrainSettings)
    assert {key: getattr(train, key) for key in DEFAULTS[method]} == DEFAULTS[method]


@pytest.mark.parametrize("method", sorted(DEFAULTS))
def test_a_partial_block_takes_the_rest_from_the_method(method):
    train = make_config(method, {**REQUIRED[method], "train": {"epochs": 2}}).train
    expected = {**DEFAULTS[method], "epochs": 2}
    assert {key: getattr(train, key) for key in expected} == expected


@pytest.mark.parametrize("method", sorted(DEFAULTS))
def test_flat_settings_still_read_the_same_with_a_warning(method):
    flat = {"epochs": 4, "lr": 3e-4, "batch_size": 8, "seed": 5}
    with pytest.warns(DeprecationWarning, match=r"nest them: `train: \{epochs: 4, lr: 0.0003"):
        old = make_config(method, {**REQUIRED[method], **flat})
    new = make_config(method, {**REQUIRED[method], "train": flat})
    assert old == new and old.to_dict() == new.to_dict()


def test_every_flat_distill_setting_of_version_1_is_read():
    flat = {
        "epochs": 2,
        "max_steps": 80,
        "max_minutes": 20,
        "lr": 2e-4,
        "batch_size": 8,
        "grad_accum": 2,
        "warmup": 0.05,
        "eval_every": 20,
        "load_best": False,
        "seed": 1,
        "precision": "fp32",
        "checkpoint_dir": "ckpt",
        "checkpoint_every": 10,
    }
    with pytest.warns(DeprecationWarning):
        old = make_config("distill", {"dataset": "wiki", "version": 1, **flat})
    assert old.train.model_dump(include=set(flat)) == flat


def test_old_example_recipe_means_the_same_and_is_written_nested():
    flat = (
        "stages:\n  - method: distill\n    dataset: intent\n    layers: [0, 5]\n"
        "    epochs: 6\n    lr: 2.0e-4\n    batch_size: 32\n    eval_every: 7\n    max_length: 64\n"
    )
    nested = (
        "stages:\n  - method: distill\n    dataset: intent\n    layers: [0, 5]\n"
        "    max_length: 64\n    train: {epochs: 6, lr: 2.0e-4, batch_size: 32, eval_every: 7}\n"
    )
    with pytest.warns(DeprecationWarning):
        old = Recipe.from_yaml(flat)
    assert old.stages == Recipe.from_yaml(nested).stages
    written = old.to_dict()["stages"][0]
    assert "epochs" not in written and written["train"]["epochs"] == 6
    assert set(written["train"]) == set(TrainSettings.model_fields)


def test_a_setting_given_both_ways_is_refused():
    with pytest.raises(SlimformerError, match="epochs given both flat and under train:"):
        make_config("finetune", {"dataset": "intent", "epochs": 2, "train": {"epochs": 3}})


def test_only_the_old_flat_settings_are_lifted():
    """movement never took a flat ``warmup``: it stays an unknown setting."""
    with pytest.raises(SlimformerError, match="unknown setting 'warmup'"):
        make_config("movement", {**REQUIRED["movement"], "warmup": 0.2})
    with pytest.raises(SlimformerError, match=r"setting 'train\.epochs'"):
        make_config("finetune", {"dataset": "intent", "train": {"epochs": 0}})
    with pytest.raises(SlimformerError, match=r"unknown setting 'train\.epoch'"):
        make_config("finetune", {"dataset": "intent", "train": {"epoch": 2}})


def test_a_settings_object_fills_the_rest_from_the_method():
    config = make_config("distill", {"dataset": "intent", "train": TrainSettings(lr=1e-3)})
    assert (config.train.lr, config.train.epochs, config.train.batch_size) == (1e-3, 3, 32)


def test_resume_key_leaves_out_new_settings_at_their_defaults():
    """Checkpoints written before ``schedule`` and ``shuffle`` existed still resume."""
    key = TrainConfig().resume_key()
    assert "schedule" not in key and "shuffle" not in key and "lr" in key
    key = TrainConfig(schedule="constant", shuffle="single_stream").resume_key()
    assert (key["schedule"], key["shuffle"]) == ("constant", "single_stream")


def test_constant_schedule_warms_up_then_holds():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_constant(optimizer, total_steps=6, warmup_steps=2)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1])


def test_single_stream_order_is_one_generator_drawn_in_turn():
    generator = torch.Generator().manual_seed(7)
    expected = [torch.randperm(10, generator=generator).tolist() for _ in range(3)]
    assert [list(epoch_order("single_stream", 7, e, 10)) for e in range(3)] == expected
    seeded = [list(epoch_order("epoch_seeded", 7, e, 10)) for e in range(3)]
    assert seeded != expected and all(sorted(order) == list(range(10)) for order in seeded)
