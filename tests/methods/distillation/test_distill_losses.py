"""Each distillation loss is zero between identical models and positive between different ones."""

from __future__ import annotations

import copy

import pytest
import torch

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.distillation.data import Collator, Item
from slimformer.methods.distillation.losses import LOSSES, parse_losses
from slimformer.methods.distillation.objective import DistillObjective
from tiny_models import config_like

TEXTS = ["the service was great today", "an awful slow day", "plain and usual"]


def _configs(kind: str):
    # The hard-label half of the logits loss is not a teacher comparison: leave it out here.
    return parse_losses([{"kind": kind, "hard_weight": 0.0} if kind == "logits" else kind])


def _value(student, teacher, configs, labels=(0, 2, 1)) -> float:
    objective = DistillObjective(student, teacher, configs)
    items = [Item(text=t, label=y) for t, y in zip(TEXTS, labels, strict=True)]
    batch = Collator(items, student.tokenizer, 32, "cpu")(range(len(items)))
    student.model.eval()
    with torch.no_grad():
        return float(objective(batch))


@pytest.fixture()
def bert_pair(tiny_bert_cls_dir):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    return teacher, copy.deepcopy(teacher)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_loss_is_zero_for_identical_models(bert_pair, kind):
    teacher, student = bert_pair
    assert _value(student, teacher, _configs(kind)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_loss_is_positive_for_different_models(bert_pair, kind):
    teacher, student = bert_pair
    torch.manual_seed(0)
    with torch.no_grad():
        for param in student.model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    assert _value(student, teacher, _configs(kind)) > 1e-4


@pytest.mark.parametrize("kind", ["hidden_mse", "hidden_cosine", "patient", "minilm"])
def test_losses_work_across_widths(bert_pair, kind):
    """A narrower student (another hidden size) learns through a projection or relations."""
    from transformers import BertForSequenceClassification

    teacher, _ = bert_pair
    config = config_like(teacher.model.config, hidden_size=32)
    config.num_attention_heads = 2
    torch.manual_seed(0)
    student = slimformer.SlimModel(
        BertForSequenceClassification(config), teacher.tokenizer, "s", "memory", "classification"
    )
    configs = parse_losses([{"kind": kind, "relation_heads": 4} if kind == "minilm" else kind])
    assert _value(student, teacher, configs) > 1e-4


def test_causal_token_kl_and_minilm_with_grouped_heads(tiny_llama_dir):
    teacher = slimformer.load(tiny_llama_dir, runtime="eager")
    student = copy.deepcopy(teacher)
    configs = parse_losses([{"kind": "logits", "hard_weight": 0.0}, "minilm", "attention_mse"])
    ids = tuple(range(100, 116))
    objective = DistillObjective(student, teacher, configs)
    batch = Collator([Item(ids=ids)], student.tokenizer, 16, "cpu")([0])
    with torch.no_grad():
        assert float(objective(batch)) == pytest.approx(0.0, abs=1e-6)
        torch.nn.init.normal_(student.model.model.layers[1].self_attn.k_proj.weight)
        assert float(objective(batch)) > 1e-4


def test_attention_mse_refuses_other_head_counts(bert_pair):
    from transformers import BertForSequenceClassification

    teacher, _ = bert_pair
    config = config_like(teacher.model.config, num_attention_heads=2)
    student = slimformer.SlimModel(
        BertForSequenceClassification(config), teacher.tokenizer, "s", "memory", "classification"
    )
    with pytest.raises(SlimformerError, match="minilm"):
        DistillObjective(student, teacher, parse_losses(["attention_mse"]))


def test_layer_map_naming_missing_layers_is_one_clear_error(bert_pair):
    teacher, student = bert_pair
    configs = parse_losses([{"kind": "hidden_mse", "layer_map": {1: 7}}])
    with pytest.raises(SlimformerError, match=r"teacher layer 7.*0\.\.2"):
        DistillObjective(student, teacher, configs)
    with pytest.raises(SlimformerError, match="unknown loss"):
        parse_losses(["hiden"])


def test_layer_map_strategies():
    from slimformer.methods.distillation.layer_map import resolve_layer_map

    assert resolve_layer_map("uniform", 3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert resolve_layer_map("skip", 3, 6) == [(1, 2), (2, 4)]
    assert resolve_layer_map("last", 3, 6) == [(1, 4), (2, 5)]
    assert resolve_layer_map("final", 3, 6) == [(3, 6)]
    assert resolve_layer_map("uniform", 2, 6, include_embeddings=True)[0] == (0, 0)
    assert resolve_layer_map({2: 5, 1: 1}, 3, 6) == [(1, 1), (2, 5)]
