"""Architecture adapters: the one vocabulary methods use for the parts of a model."""

from __future__ import annotations

import pytest
from torch import nn
from transformers import BertForSequenceClassification, BertModel, LlamaForCausalLM

from slimformer.arch import Adapter, BertAdapter, LlamaAdapter, get_adapter


@pytest.fixture(scope="module")
def bert_cls(tiny_bert_cls_dir):
    return BertForSequenceClassification.from_pretrained(tiny_bert_cls_dir).eval()


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return BertModel.from_pretrained(tiny_bert_dir).eval()


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()


class Stack(nn.Module):
    """No config, no family: only linears in a ModuleList of Sequentials."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 8)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)) for _ in range(3)
        )
        self.out = nn.Linear(8, 2)


def test_family_adapters_are_picked(bert, bert_cls, llama):
    assert type(get_adapter(bert)) is BertAdapter
    assert type(get_adapter(bert_cls)) is BertAdapter
    assert type(get_adapter(llama)) is LlamaAdapter
    assert type(get_adapter(Stack())) is Adapter


def test_bert_layers(bert_cls):
    adapter = get_adapter(bert_cls)
    layers = adapter.layers()
    assert [layer.index for layer in layers] == [0, 1]
    block = bert_cls.bert.encoder.layer[1]
    layer = layers[1]
    assert layer.module is block
    att = layer.attention
    assert att.q is block.attention.self.query
    assert att.k is block.attention.self.key
    assert att.v is block.attention.self.value
    assert att.o is block.attention.output.dense
    assert all(isinstance(m, nn.Linear) for m in (att.q, att.k, att.v, att.o))
    assert (att.num_heads, att.num_kv_heads, att.head_dim) == (4, 4, 16)
    assert layer.mlp.up is block.intermediate.dense
    assert layer.mlp.down is block.output.dense
    assert layer.mlp.gate is None
    assert layer.norms["attention_norm"] is block.attention.output.LayerNorm
    assert layer.norms["mlp_norm"] is block.output.LayerNorm
    assert adapter.layer_stack() is bert_cls.bert.encoder.layer


def test_bert_head_and_embeddings(bert, bert_cls):
    cls_adapter = get_adapter(bert_cls)
    assert cls_adapter.head() is bert_cls.classifier
    assert set(cls_adapter.embeddings()) == {
        "bert.embeddings.word_embeddings",
        "bert.embeddings.position_embeddings",
        "bert.embeddings.token_type_embeddings",
    }
    adapter = get_adapter(bert)
    assert adapter.head() is None
    assert adapter.embeddings()["embeddings.word_embeddings"] is bert.embeddings.word_embeddings


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("bert.encoder.layer.0.attention.self.query", "attention"),
        ("bert.encoder.layer.1.attention.self.value", "attention"),
        ("bert.encoder.layer.0.attention.output.dense", "attention"),
        ("bert.encoder.layer.0.intermediate.dense", "mlp"),
        ("bert.encoder.layer.1.output.dense", "mlp"),
        ("bert.embeddings.word_embeddings", "embedding"),
        ("bert.pooler.dense", "head"),
        ("classifier", "head"),
    ],
)
def test_bert_part_of(bert_cls, name, part):
    assert get_adapter(bert_cls).part_of(name) == part


def test_bert_layer_index_of(bert_cls):
    adapter = get_adapter(bert_cls)
    assert adapter.layer_index_of("bert.encoder.layer.1.output.dense") == 1
    assert adapter.layer_index_of("classifier") is None


def test_llama_layers_with_grouped_query_attention(llama):
    adapter = get_adapter(llama)
    layers = adapter.layers()
    assert len(layers) == 2
    block = llama.model.layers[0]
    att = layers[0].attention
    assert att.module is block.self_attn
    assert (att.q, att.k, att.v, att.o) == (
        block.self_attn.q_proj,
        block.self_attn.k_proj,
        block.self_attn.v_proj,
        block.self_attn.o_proj,
    )
    assert (att.num_heads, att.num_kv_heads, att.head_dim) == (4, 2, 16)
    assert att.k.out_features == att.num_kv_heads * att.head_dim == 32
    mlp = layers[0].mlp
    assert mlp.gate is block.mlp.gate_proj
    assert mlp.up is block.mlp.up_proj
    assert mlp.down is block.mlp.down_proj
    assert (mlp.up.out_features, mlp.down.in_features) == (128, 128)
    assert layers[0].norms == {
        "attention_norm": block.input_layernorm,
        "mlp_norm": block.post_attention_layernorm,
    }
    assert adapter.head() is llama.lm_head
    assert adapter.embeddings() == {"model.embed_tokens": llama.model.embed_tokens}


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("model.layers.0.self_attn.q_proj", "attention"),
        ("model.layers.1.self_attn.k_proj", "attention"),
        ("model.layers.0.mlp.gate_proj", "mlp"),
        ("model.layers.1.mlp.down_proj", "mlp"),
        ("model.embed_tokens", "embedding"),
        ("lm_head", "head"),
        ("model.norm", "other"),
    ],
)
def test_llama_part_of(llama, name, part):
    # lm_head shares its weight with embed_tokens; each still gets its own part
    assert get_adapter(llama).part_of(name) == part


def test_linear_layers_list_every_linear(bert_cls, llama):
    for model in (bert_cls, llama):
        expected = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        linears = get_adapter(model).linear_layers()
        assert set(linears) == expected
        assert all(model.get_submodule(n) is m for n, m in linears.items())
    # 6 per BERT layer, plus pooler and classifier; 7 per Llama layer, plus lm_head
    assert len(get_adapter(bert_cls).linear_layers()) == 2 * 6 + 2
    assert len(get_adapter(llama).linear_layers()) == 2 * 7 + 1


def test_generic_fallback():
    model = Stack()
    adapter = get_adapter(model)
    assert adapter.family == "generic"
    assert adapter.layer_stack() is model.blocks
    layers = adapter.layers()
    assert [layer.module for layer in layers] == list(model.blocks)
    assert all(layer.attention is None and layer.mlp is None for layer in layers)
    linears = adapter.linear_layers()
    assert list(linears) == [
        "proj",
        "blocks.0.0",
        "blocks.0.2",
        "blocks.1.0",
        "blocks.1.2",
        "blocks.2.0",
        "blocks.2.2",
        "out",
    ]
    assert {adapter.part_of(name) for name in linears} == {"other"}
    assert adapter.layer_index_of("blocks.2.0") == 2
    assert adapter.layer_index_of("out") is None
    assert adapter.head() is None and adapter.embeddings() == {}
    assert adapter.describe() == {"family": "generic", "num_layers": 3}


def test_generic_without_module_list():
    adapter = get_adapter(nn.Sequential(nn.Linear(2, 2)))
    assert adapter.layer_stack() is None and adapter.layers() == []
    assert adapter.describe() == {"family": "generic", "num_layers": 0}


def test_describe(bert, llama):
    assert get_adapter(bert).describe() == {
        "family": "bert",
        "num_layers": 2,
        "num_heads": 4,
        "num_kv_heads": 4,
        "head_dim": 16,
    }
    assert get_adapter(llama).describe() == {
        "family": "llama",
        "num_layers": 2,
        "num_heads": 4,
        "num_kv_heads": 2,
        "head_dim": 16,
    }


def test_bert_mlp_view_does_not_change_state_dict(bert_cls):
    keys = list(bert_cls.state_dict())
    get_adapter(bert_cls).layers()
    assert list(bert_cls.state_dict()) == keys
