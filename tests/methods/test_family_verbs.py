"""One verb a family, each taking its typed config, as quantize_ does."""

from __future__ import annotations

import pytest
import torch

import slimformer
from slimformer.errors import SlimformerError


def test_student_cuts_a_copy_and_leaves_the_teacher(tiny_llama_dir):
    teacher = slimformer.load(str(tiny_llama_dir))
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    depth = len(teacher.adapter.layers())
    small = slimformer.student(teacher, slimformer.SelectLayers(layers=[0, depth - 1]))
    assert len(small.adapter.layers()) == 2
    assert len(teacher.adapter.layers()) == depth
    assert all(torch.equal(v, teacher.model.state_dict()[k]) for k, v in before.items())
    assert small.compression["methods"][-1]["method"] == "select_layers"


def test_student_narrows_by_config(tiny_llama_dir):
    teacher = slimformer.load(str(tiny_llama_dir))
    width = teacher.model.config.intermediate_size
    small = slimformer.student(teacher, slimformer.Narrow(intermediate_size=width // 2))
    assert small.model.config.intermediate_size == width // 2
    assert teacher.model.config.intermediate_size == width


def test_finetune_verb_trains_in_place(tiny_bert_cls_dir, tiny_cls_jsonl):
    slim = slimformer.load(str(tiny_bert_cls_dir))
    head = slim.model.classifier.weight.detach().clone()
    config = slimformer.Finetune(dataset=str(tiny_cls_jsonl), train={"epochs": 1, "batch_size": 8})
    slimformer.finetune_(slim, config, progress=False)
    assert not torch.equal(head, slim.model.classifier.weight)
    assert slim.compression["methods"][-1]["method"] == "finetune"


@pytest.mark.parametrize(
    "verb, config",
    [
        ("finetune_", slimformer.RTN()),
        ("quantize_", slimformer.Magnitude(sparsity=0.5)),
    ],
)
def test_a_verb_refuses_another_familys_config(tiny_bert_cls_dir, verb, config):
    slim = slimformer.load(str(tiny_bert_cls_dir))
    with pytest.raises(SlimformerError, match="method, not"):
        getattr(slimformer, verb)(slim, config)
