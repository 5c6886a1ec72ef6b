"""Movement pruning: the schedule, straight-through scores, exact sparsity, plain model out."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.base import StageContext
from slimformer.methods.catalog import make_config, method_entry
from slimformer.methods.movement.binarize import topk_keep_mask
from slimformer.methods.movement.masked_weight import attach_masks, fold_masks, set_level
from slimformer.methods.movement.schedule import cubic_sparsity
from slimformer.nn import SparseLinear
from slimformer.pipeline import MeasureOptions

QUICK = {"epochs": 2, "batch_size": 8, "max_length": 16}


def run_stage(model_dir, settings):
    slim = slimformer.load(model_dir, runtime="eager", progress=False)
    config = make_config("movement", settings)
    method_entry("movement").apply(slim, config, StageContext(progress=False))
    return slim


def encoder_weights(slim) -> dict[str, torch.Tensor]:
    """The weight of every encoder linear, pruned (SparseLinear, rebuilt dense) or not."""
    return {
        name: module.dense_weight() if isinstance(module, SparseLinear) else module.weight
        for name, module in slim.model.named_modules()
        if isinstance(module, nn.Linear | SparseLinear) and ".encoder." in f".{name}."
    }


def test_cubic_schedule_values():
    total, target, warmup, cooldown = 100, 0.9, 10, 20
    values = [cubic_sparsity(t, total, target, warmup, cooldown) for t in range(total)]
    assert values[0] == values[9] == 0.0  # warm-up: nothing pruned
    assert values[10] == 0.0  # the ramp starts at zero
    assert values[45] == pytest.approx(target * (1 - 0.5**3))  # half-way through the ramp
    assert values[79] < target and values[80] == values[99] == target  # cool-down at target
    assert all(a <= b for a, b in itertools.pairwise(values))
    # no ramp at all: one-shot at step 0
    assert cubic_sparsity(0, total, target, 0, total) == target


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.51, 0.9, 0.99])
def test_topk_mask_keeps_the_highest_scores_exactly(sparsity):
    """Both ranking directions (dropped side below 50%, kept side above) agree."""
    scores = torch.randperm(1000).float().view(40, 25)
    mask = topk_keep_mask(scores, sparsity)
    drop = round(sparsity * 1000)
    assert int((mask == 0).sum()) == drop
    assert torch.equal(mask.bool(), scores >= drop)  # scores are 0..999: keep the top ones
    ties = topk_keep_mask(torch.zeros(40, 25), sparsity)  # equal scores: count still exact
    assert int((ties == 0).sum()) == drop


def test_straight_through_gradient_reaches_scores():
    torch.manual_seed(0)
    linear = nn.Linear(8, 6)
    masks = attach_masks({"l": linear}, "hard")
    set_level(masks, 0.5)
    scores = masks["l"].scores
    with torch.no_grad():
        scores.copy_(torch.randn_like(scores))
    x = torch.randn(4, 8)
    linear(x).pow(2).sum().backward()
    weight = linear.parametrizations.weight.original
    mask = (linear.weight != 0).float()
    assert int((mask == 0).sum()) == 24  # exactly half of 48
    effective = (weight * mask).detach().requires_grad_(True)
    nn.functional.linear(x, effective, linear.bias).pow(2).sum().backward()
    expected = effective.grad * weight.detach()  # dL/dW' * W: straight through the mask
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    torch.testing.assert_close(scores.grad, expected)
    torch.testing.assert_close(weight.grad, effective.grad * mask)  # pruned weights get none


def test_magnitude_initialised_scores_start_at_the_magnitude_mask():
    """score_init: magnitude ranks like magnitude pruning until the scores have moved."""
    torch.manual_seed(0)
    linear, twin = nn.Linear(20, 10), nn.Linear(20, 10)
    twin.load_state_dict(linear.state_dict())
    moved = attach_masks({"l": linear}, "hard", "magnitude")
    magnitude = attach_masks({"l": twin}, "magnitude")
    weight = linear.parametrizations.weight.original.detach()
    scores = moved["l"].scores.detach()
    torch.testing.assert_close(scores.mean(), torch.tensor(1.0))  # scale-free across layers
    torch.testing.assert_close(scores, weight.abs() / weight.abs().mean())
    for level in (0.3, 0.9):
        set_level({**moved, "t": magnitude["l"]}, level)
        assert torch.equal(linear.weight != 0, twin.weight != 0)
    zero = attach_masks({"z": nn.Linear(4, 4)}, "hard")["z"].scores
    assert torch.equal(zero, torch.zeros(4, 4))  # the paper's default: equal scores


def test_soft_mask_folds_to_threshold():
    torch.manual_seed(0)
    linear = nn.Linear(16, 16)
    original = linear.weight.detach().clone()
    masks = attach_masks({"l": linear}, "soft")
    with torch.no_grad():
        masks["l"].scores.copy_(torch.randn(16, 16) * 3)
    set_level(masks, 0.3)
    keep = torch.sigmoid(masks["l"].scores.detach()) > 0.3
    kept = fold_masks({"l": linear})
    assert not parametrize.is_parametrized(linear)
    assert torch.equal(kept["l"], keep)
    assert torch.equal(linear.weight.detach(), original * keep)


def test_hard_variant_exact_sparsity_and_sparse_storage(tiny_bert_cls_dir, tiny_cls_jsonl):
    before = slimformer.load(tiny_bert_cls_dir, runtime="eager", progress=False)
    embedding_zeros = int((before.model.bert.embeddings.word_embeddings.weight == 0).sum())
    slim = run_stage(tiny_bert_cls_dir, {"sparsity": 0.7, "dataset": str(tiny_cls_jsonl), **QUICK})
    weights = encoder_weights(slim)
    assert len(weights) == 6 * len(slim.model.bert.encoder.layer)
    for name, weight in weights.items():
        assert isinstance(slim.model.get_submodule(name), SparseLinear), name
        assert int((weight == 0).sum()) == round(0.7 * weight.numel()), name
    for name, module in slim.model.named_modules():
        assert not parametrize.is_parametrized(module), name
    names = [name for name, _ in slim.model.named_parameters()]
    assert not any("scores" in n or "parametrizations" in n for n in names)
    untouched = {k for k in before.model.state_dict() if ".encoder." not in f".{k}"}
    assert untouched <= set(slim.model.state_dict())
    # embeddings and the head train but are not pruned (the padding row was zero already)
    embeddings = slim.model.bert.embeddings.word_embeddings.weight
    assert int((embeddings == 0).sum()) == embedding_zeros
    assert int((slim.model.classifier.weight == 0).sum()) == 0


def test_scores_move_the_mask_away_from_magnitude(tiny_bert_cls_dir, tiny_cls_jsonl):
    """Hard movement and magnitude at the same budget keep different weights."""
    data = {"sparsity": 0.5, "dataset": str(tiny_cls_jsonl), **QUICK}
    moved = run_stage(tiny_bert_cls_dir, {**data, "variant": "hard"})
    magnitude = run_stage(tiny_bert_cls_dir, {**data, "variant": "magnitude"})
    name = "bert.encoder.layer.0.attention.self.query"
    a = encoder_weights(moved)[name] != 0
    b = encoder_weights(magnitude)[name] != 0
    assert int(a.sum()) == int(b.sum())
    assert not torch.equal(a, b)


def test_hard_mask_from_equal_scores_ignores_score_lr(tiny_bert_cls_dir, tiny_cls_jsonl):
    """Equal initial scores: Adam scales every score step alike and top-k ignores scale.

    So score_lr only matters once the scores start unequal (score_init: magnitude).
    """
    data = {"sparsity": 0.5, "dataset": str(tiny_cls_jsonl), **QUICK}

    def kept(settings) -> dict[str, torch.Tensor]:
        slim = run_stage(tiny_bert_cls_dir, {**data, **settings})
        return {name: weight != 0 for name, weight in encoder_weights(slim).items()}

    slow, fast = kept({"score_lr": 1e-2}), kept({"score_lr": 1e-1})
    assert all(torch.equal(slow[name], fast[name]) for name in slow)
    warm_slow = kept({"score_lr": 1e-3, "score_init": "magnitude"})
    warm_fast = kept({"score_lr": 1.0, "score_init": "magnitude"})
    assert not all(torch.equal(warm_slow[name], warm_fast[name]) for name in warm_slow)


def test_soft_variant_l1_prunes_more(tiny_bert_cls_dir, tiny_cls_jsonl):
    data = {
        "variant": "soft",
        "dataset": str(tiny_cls_jsonl),
        **QUICK,
        "epochs": 6,
        "score_lr": 1.0,
    }

    def sparsity(slim) -> float:
        weights = list(encoder_weights(slim).values())
        return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)

    loose = sparsity(run_stage(tiny_bert_cls_dir, {**data, "l1": 0.0}))
    pulled = sparsity(run_stage(tiny_bert_cls_dir, {**data, "l1": 1000.0}))
    assert pulled > loose and pulled > 0.05


def test_recipe_saves_and_reloads(tiny_bert_cls_dir, tiny_cls_jsonl, tmp_path):
    recipe = [
        {"method": "movement", "sparsity": 0.6, "dataset": str(tiny_cls_jsonl), **QUICK},
    ]
    out = tmp_path / "out"
    report = slimformer.compress(
        tiny_bert_cls_dir,
        recipe,
        out,
        measure=MeasureOptions(enabled=False),
        progress=False,
        runtime="eager",
    )
    assert [stage["stage"] for stage in report["stages"]] == ["movement"]
    again = slimformer.load(out, runtime="eager", progress=False)
    for name, weight in encoder_weights(again).items():
        assert int((weight == 0).sum()) == round(0.6 * weight.numel()), name
    inputs = again.tokenizer(["the service was great"], return_tensors="pt")
    fresh = run_stage(
        tiny_bert_cls_dir,
        {"sparsity": 0.6, "dataset": str(tiny_cls_jsonl), **QUICK},
    )
    with torch.no_grad():  # same seed, same data: the reloaded model is the trained one
        torch.testing.assert_close(again.model(**inputs).logits, fresh.model(**inputs).logits)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sparsity": 1.0}, r"movement: setting 'sparsity': Input should be less than 1"),
        ({"sparsity": -0.1}, r"movement: setting 'sparsity': Input should be greater"),
        ({}, r"the hard variant needs a target sparsity"),
        ({"variant": "soft", "sparsity": 0.5}, r"soft variant reaches its sparsity through l1"),
        ({"sparsity": 0.5, "warmup_fraction": 0.6, "cooldown_fraction": 0.6}, r"at most 1"),
        ({"sparsity": 0.5, "score_init": "random"}, r"setting 'score_init'"),
    ],
)
def test_bad_settings_one_line(settings, message):
    with pytest.raises(SlimformerError, match=message) as info:
        make_config("movement", {"dataset": "intent", **settings})
    assert "\n" not in str(info.value)


def test_unlabelled_dataset_one_line(tiny_bert_cls_dir, tiny_txt):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager", progress=False)
    weights = {k: v.clone() for k, v in slim.model.state_dict().items()}
    config = make_config("movement", {"sparsity": 0.5, "dataset": str(tiny_txt)})
    with pytest.raises(SlimformerError, match="has no labels") as info:
        method_entry("movement").apply(slim, config, StageContext(progress=False))
    assert "\n" not in str(info.value)
    assert set(slim.model.state_dict()) == set(weights)  # masks folded away again
    for key, value in slim.model.state_dict().items():
        assert torch.equal(value, weights[key]), key  # nothing pruned
