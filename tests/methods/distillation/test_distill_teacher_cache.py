"""The on-disk teacher cache: cached outputs equal recomputed ones, and stale entries cannot hit."""

from __future__ import annotations

import copy

import pytest
import torch

import slimformer
from slimformer.methods.distillation import run_distillation, select_layers
from slimformer.methods.distillation.data import Collator, Item
from slimformer.methods.distillation.losses import parse_losses
from slimformer.methods.distillation.objective import DistillObjective
from slimformer.methods.distillation.teacher_cache import (
    CachedTeacher,
    CachingCollator,
    teacher_cache_path,
)

TEXTS = [
    "the service was great today",
    "an awful slow day with rain and long queues everywhere",
    "plain",
    "usual but fine in the end",
    "a good one",
]
LOSSES = parse_losses(["logits", "hidden_mse", "minilm"])


@pytest.fixture()
def setup(tiny_bert_cls_dir):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    student = select_layers(teacher, [0])
    items = [Item(text=t, label=i % 3) for i, t in enumerate(TEXTS)]
    objective = DistillObjective(student, teacher, LOSSES)
    return objective, items, Collator(items, teacher.tokenizer, 32, "cpu")


def _assert_same(cached, live, tol: float = 1e-5):
    mask = live.mask.bool()
    torch.testing.assert_close(cached.logits, live.logits, atol=tol, rtol=tol)
    assert cached.hidden.keys() == live.hidden.keys() and cached.hidden
    for layer in live.hidden:
        torch.testing.assert_close(
            cached.hidden[layer][mask], live.hidden[layer][mask], atol=tol, rtol=tol
        )
    assert cached.qkv.keys() == live.qkv.keys() and cached.qkv
    for layer in live.qkv:
        for c, t in zip(cached.qkv[layer], live.qkv[layer], strict=True):
            torch.testing.assert_close(c[mask], t[mask], atol=tol, rtol=tol)


def test_cached_outputs_equal_recomputed_ones_in_any_batch(setup):
    objective, items, collate = setup
    cache = CachedTeacher.build(objective, items, collate, batch_size=2, dtype=torch.float32)
    assert not cache.hit and cache.path.is_file()
    for indices in ([4, 1, 2], [0], [3, 1]):  # other compositions than the ones cached
        batch = CachingCollator(collate, cache)(indices)
        _assert_same(batch.teacher, objective.teacher_outputs(collate(indices)))
    again = CachedTeacher.build(objective, items, collate, batch_size=2, dtype=torch.float32)
    assert again.hit and again.path == cache.path
    assert again.stored.keys() == cache.stored.keys()
    for key, value in cache.stored.items():
        assert torch.equal(again.stored[key], value)


def test_float16_entries_give_the_live_loss(setup):
    """Half the bytes, and the objective on cached outputs is the live one to 1e-4 relative."""
    objective, items, collate = setup
    cache = CachedTeacher.build(objective, items, collate, batch_size=2)
    assert all(v.dtype == torch.float16 for v in cache.stored.values())
    objective.eval()
    cached_collate = CachingCollator(collate, cache)
    with torch.no_grad():
        for indices in ([4, 1, 2], [0, 3]):
            _assert_same(
                cached_collate(indices).teacher, objective.teacher_outputs(collate(indices)), 2e-3
            )
            live = objective(collate(indices))
            cached = objective(cached_collate(indices))
            torch.testing.assert_close(cached, live, rtol=1e-4, atol=1e-6)


def test_cache_holds_only_what_the_losses_read(setup, tiny_bert_cls_dir):
    """Mapped hidden states, the minilm layer's q/k/v and logits: nothing else is stored."""
    objective, items, collate = setup  # student: 1 layer; teacher: 2 layers
    cache = CachedTeacher.build(objective, items, collate, batch_size=5)
    names = {key.split(".", 1)[1] for key in cache.stored}
    # hidden_mse, uniform with embeddings: student (0, 1) <- teacher (0, 2); minilm: last layer
    assert names == {"logits", "h0", "h2", "q2", "k2", "v2"}
    assert len(cache.stored) == len(items) * len(names)
    only_logits = DistillObjective(objective._slims[0], objective.teacher, parse_losses("logits"))
    logits_cache = CachedTeacher.build(only_logits, items, collate, batch_size=5)
    assert {key.split(".", 1)[1] for key in logits_cache.stored} == {"logits"}
    assert logits_cache.path != cache.path


def test_a_value_beyond_float16_is_kept_in_float32():
    from slimformer.methods.distillation.teacher_cache import _narrow

    small, huge = torch.tensor([1.0, -2.5]), torch.tensor([1.0, 1e6])
    assert _narrow(small, torch.float16).dtype == torch.float16
    assert torch.equal(_narrow(huge, torch.float16), huge)


def test_changed_teacher_data_or_length_is_a_new_entry(setup):
    objective, items, _ = setup
    teacher = objective.teacher
    needs = objective.teacher_needs
    path = teacher_cache_path(teacher, items, 32, needs)
    assert teacher_cache_path(teacher, list(items), 32, needs) == path
    changed = [*items[:-1], Item(text="a good two", label=items[-1].label)]
    relabelled = [*items[:-1], Item(text=items[-1].text, label=0)]
    assert teacher_cache_path(teacher, changed, 32, needs) != path
    assert teacher_cache_path(teacher, relabelled, 32, needs) != path
    assert teacher_cache_path(teacher, items, 16, needs) != path
    assert teacher_cache_path(teacher, items, 32, needs, torch.float32) != path
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        next(other.model.parameters()).view(-1)[0] += 1e-3
    assert teacher_cache_path(other, items, 32, needs) != path


def test_damaged_entry_is_recomputed(setup):
    objective, items, collate = setup
    first = CachedTeacher.build(objective, items, collate, batch_size=4)
    first.path.write_bytes(b"not a safetensors file")
    again = CachedTeacher.build(objective, items, collate, batch_size=4)
    assert not again.hit
    torch.testing.assert_close(again.stored["0.logits"], first.stored["0.logits"])


def test_training_with_the_cache_matches_training_without(tiny_bert_cls_dir, tiny_cls_jsonl):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    results = []
    for cache in (False, True, True):  # live, cache miss, cache hit
        student = select_layers(teacher, [0])
        run_distillation(
            student,
            teacher,
            tiny_cls_jsonl,
            ["logits", "hidden_mse"],
            cache_teacher=cache,
            cache_dtype="float32",  # exact: the same steps, so the same weights
            train={"batch_size": 4, "lr": 3e-3, "epochs": 2, "progress": False},
        )
        results.append(student.model.state_dict())
    for other in results[1:]:
        for key, value in results[0].items():
            torch.testing.assert_close(other[key], value, atol=1e-4, rtol=1e-4)


def test_cache_works_for_causal_lm_windows(tiny_llama_dir, tiny_txt):
    teacher = slimformer.load(tiny_llama_dir, runtime="eager")
    run = run_distillation(
        select_layers(teacher, [1]),
        teacher,
        tiny_txt,
        ["logits", "hidden_mse"],
        max_length=32,
        cache_teacher=True,
        train={"batch_size": 4, "lr": 3e-3, "max_steps": 3, "progress": False},
    )
    assert run.result.steps == 3 and all(torch.isfinite(torch.tensor(run.result.losses)))
