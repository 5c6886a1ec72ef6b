"""The on-disk teacher cache: cached outputs equal recomputed ones, and stale entries cannot hit."""

from __future__ import annotations

import copy

import pytest
import torch

import slimformer
from slimformer.distillation import run_distillation, select_layers
from slimformer.distillation.data import Collator, Item
from slimformer.distillation.losses import parse_losses
from slimformer.distillation.objective import DistillObjective
from slimformer.distillation.teacher_cache import CachedTeacher, CachingCollator, teacher_cache_path

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


def _assert_same(cached, live):
    mask = live.mask.bool()
    torch.testing.assert_close(cached.logits, live.logits, atol=1e-5, rtol=1e-5)
    assert len(cached.hidden) == len(live.hidden)
    for c, t in zip(cached.hidden, live.hidden, strict=True):
        torch.testing.assert_close(c[mask], t[mask], atol=1e-5, rtol=1e-5)
    assert cached.qkv.keys() == live.qkv.keys() and cached.qkv
    for layer in live.qkv:
        for c, t in zip(cached.qkv[layer], live.qkv[layer], strict=True):
            torch.testing.assert_close(c[mask], t[mask], atol=1e-5, rtol=1e-5)


def test_cached_outputs_equal_recomputed_ones_in_any_batch(setup):
    objective, items, collate = setup
    cache = CachedTeacher.build(objective, items, collate, batch_size=2)
    assert not cache.hit and cache.path.is_file()
    for indices in ([4, 1, 2], [0], [3, 1]):  # other compositions than the ones cached
        batch = CachingCollator(collate, cache)(indices)
        _assert_same(batch.teacher, objective.teacher_outputs(collate(indices)))
    again = CachedTeacher.build(objective, items, collate, batch_size=2)
    assert again.hit and again.path == cache.path
    assert again.stored.keys() == cache.stored.keys()
    for key, value in cache.stored.items():
        assert torch.equal(again.stored[key], value)


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
