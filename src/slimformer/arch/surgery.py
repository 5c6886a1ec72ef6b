"""Removing attention heads, MLP neurons and whole layers from a model, for real.

Structured pruning makes the weight matrices smaller rather than filling them
with zeros: a removed head takes its rows of q, k and v and its columns of o
with it, a removed neuron its row of up (and gate) and its column of down, a
removed layer its whole block. Everything here works through an adapter's
named parts, so one copy serves every family; the adapter only says which
attributes its attention module reshapes by (``set_attention_geometry``).

Every function checks its whole request before it changes anything, so a bad
request fails with one line and leaves the model as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from slimformer.arch.base import Adapter, AttentionParts, LayerParts, LayerSizes
from slimformer.errors import SlimformerError

__all__ = [
    "check_head_removal",
    "check_plain",
    "remove_heads",
    "remove_layers",
    "remove_neurons",
    "resize_layer",
    "sync_config",
]


# -- heads -------------------------------------------------------------------------------


def check_head_removal(
    att: AttentionParts, heads: Iterable[int], where: str = ""
) -> tuple[list[int], list[int]]:
    """The query heads and key/value heads that stay when ``heads`` (query heads) go.

    With grouped-query attention, query head ``h`` reads key/value head
    ``h // group_size``. A key/value head goes when its whole group goes; the
    groups that stay must keep equal sizes, since the model repeats every
    key/value head the same number of times.
    """
    heads = sorted(set(int(h) for h in heads))
    bad = [h for h in heads if not 0 <= h < att.num_heads]
    if bad:
        raise SlimformerError(
            f"{where}head {bad[0]} does not exist (the layer has {att.num_heads} heads)",
            f"name heads between 0 and {att.num_heads - 1}",
        )
    if len(heads) == att.num_heads:
        raise SlimformerError(
            f"{where}removing all {att.num_heads} heads of a layer leaves no attention",
            "keep at least one head in every layer (drop the whole layer instead)",
        )
    gone = set(heads)
    group = att.group_size
    kept_q = [h for h in range(att.num_heads) if h not in gone]
    sizes = {kv: sum(1 for h in kept_q if h // group == kv) for kv in range(att.num_kv_heads)}
    kept_kv = [kv for kv, size in sizes.items() if size > 0]
    if len({sizes[kv] for kv in kept_kv}) > 1:
        raise SlimformerError(
            f"{where}removing query heads {heads} leaves key/value groups of unequal sizes "
            f"{sorted(set(sizes[kv] for kv in kept_kv))} (grouped-query attention, "
            f"{group} query heads per key/value head)",
            "remove whole groups, or the same number of query heads from every group",
        )
    return kept_q, kept_kv


def remove_heads(adapter: Adapter, layer_index: int, heads: Iterable[int]) -> None:
    """Remove query ``heads`` of one layer (and key/value heads whose groups empty)."""
    layer = _layer(adapter, layer_index)
    att = layer.attention
    if att is None:
        raise SlimformerError(
            f"layer {layer_index} has no attention the adapter can name",
            "use a model family slimformer has an adapter for (BERT, Llama)",
        )
    if att.q is att.k:
        raise SlimformerError(
            f"layer {layer_index}: {adapter.family} computes q, k and v in one fused "
            "projection, whose heads cannot be removed here",
            "remove MLP neurons or whole layers instead",
        )
    kept_q, kept_kv = check_head_removal(att, heads, where=f"layer {layer_index}: ")
    check_plain(att.q, att.k, att.v, att.o)
    q_rows = _head_rows(kept_q, att.head_dim)
    kv_rows = _head_rows(kept_kv, att.head_dim)
    _keep_rows(att.q, q_rows)
    _keep_rows(att.k, kv_rows)
    _keep_rows(att.v, kv_rows)
    _keep_columns(att.o, q_rows)
    adapter.set_attention_geometry(layer, len(kept_q), len(kept_kv))


def _head_rows(heads: Sequence[int], head_dim: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


# -- MLP neurons ---------------------------------------------------------------------------


def remove_neurons(adapter: Adapter, layer_index: int, neurons: Iterable[int]) -> None:
    """Remove MLP ``neurons`` of one layer: rows of up (and gate), columns of down."""
    layer = _layer(adapter, layer_index)
    mlp = layer.mlp
    if mlp is None:
        raise SlimformerError(
            f"layer {layer_index} has no MLP the adapter can name",
            "use a model family slimformer has an adapter for (BERT, Llama)",
        )
    width = mlp.intermediate_size
    gone = set(int(n) for n in neurons)
    if any(not 0 <= n < width for n in gone):
        raise SlimformerError(
            f"layer {layer_index}: neuron {max(gone)} does not exist (the MLP has {width})",
            f"name neurons between 0 and {width - 1}",
        )
    if len(gone) == width:
        raise SlimformerError(
            f"layer {layer_index}: removing all {width} MLP neurons leaves no MLP",
            "keep at least one neuron in every layer",
        )
    parts = [p for p in (mlp.up, mlp.gate, mlp.down) if p is not None]
    check_plain(*parts)
    kept = torch.tensor([n for n in range(width) if n not in gone], dtype=torch.long)
    for linear in (mlp.up, mlp.gate):
        if linear is not None:
            _keep_rows(linear, kept)
    _keep_columns(mlp.down, kept)


# -- layers --------------------------------------------------------------------------------


def remove_layers(adapter: Adapter, indices: Iterable[int]) -> None:
    """Remove whole blocks from the layer stack; cache slots and the config follow."""
    stack = adapter.layer_stack()
    count = 0 if stack is None else len(stack)
    gone = sorted(set(int(i) for i in indices))
    if any(not 0 <= i < count for i in gone):
        raise SlimformerError(
            f"layer {max(gone)} does not exist (the model has {count} layers)",
            f"name layers between 0 and {count - 1}",
        )
    if len(gone) == count:
        raise SlimformerError(
            f"removing all {count} layers leaves no model", "keep at least one layer"
        )
    for index in reversed(gone):
        del stack[index]
    adapter.renumber_layers()
    config = adapter.model.config
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == count:
        config.layer_types = [t for i, t in enumerate(layer_types) if i not in set(gone)]
    config.num_hidden_layers = len(stack)


# -- the config, and shapes rebuilt before loading ---------------------------------------------


def sync_config(adapter: Adapter) -> None:
    """Write the layers' sizes into the config: exact when uniform, else the largest of each.

    Uniform sizes make the config describe the model exactly, so plain
    transformers rebuilds it (where the family derives nothing from a changed
    count). Per-layer sizes travel in the saved metadata instead (see
    ``arch/structure.py``); the config then holds the largest, which every
    layer is built at before being cut to its own size.
    """
    sizes = [layer.sizes() for layer in adapter.layers()]
    if not sizes or any(s is None for s in sizes):
        return
    largest = LayerSizes(
        num_heads=max(s.num_heads for s in sizes),
        num_kv_heads=max(s.num_kv_heads for s in sizes),
        head_dim=sizes[0].head_dim,
        intermediate_size=max(s.intermediate_size for s in sizes),
    )
    adapter.write_config_sizes(largest, len(sizes))


def resize_layer(adapter: Adapter, layer: LayerParts, sizes: LayerSizes) -> None:
    """Give ``layer``'s projections the shapes ``sizes`` describe, with uninitialised weights.

    Used when loading, before the saved tensors are read into them.
    """
    att, mlp = layer.attention, layer.mlp
    q_width = sizes.num_heads * sizes.head_dim
    kv_width = sizes.num_kv_heads * sizes.head_dim
    _reshape(att.q, q_width, None)
    _reshape(att.k, kv_width, None)
    _reshape(att.v, kv_width, None)
    _reshape(att.o, None, q_width)
    for linear in (mlp.up, mlp.gate):
        if linear is not None:
            _reshape(linear, sizes.intermediate_size, None)
    _reshape(mlp.down, None, sizes.intermediate_size)
    adapter.set_attention_geometry(layer, sizes.num_heads, sizes.num_kv_heads)


# -- slicing linears in place ----------------------------------------------------------------


def _layer(adapter: Adapter, index: int) -> LayerParts:
    layers = adapter.layers()
    if not 0 <= index < len(layers):
        raise SlimformerError(
            f"layer {index} does not exist (the model has {len(layers)} layers)",
            f"name layers between 0 and {len(layers) - 1}",
        )
    return layers[index]


def check_plain(*modules: nn.Module) -> None:
    """Only float ``nn.Linear`` weights can be sliced; compressed ones are already packed."""
    for module in modules:
        if type(module) is not nn.Linear:
            raise SlimformerError(
                f"structured pruning found a {type(module).__name__}, not a plain nn.Linear",
                "put structured pruning stages before quantization stages",
            )


def _param(tensor: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(tensor.contiguous().clone(), requires_grad=like.requires_grad)


def _keep_rows(linear: nn.Linear, rows: torch.Tensor) -> None:
    rows = rows.to(linear.weight.device)
    linear.weight = _param(linear.weight.data[rows], linear.weight)
    if linear.bias is not None:
        linear.bias = _param(linear.bias.data[rows], linear.bias)
    linear.out_features = len(rows)


def _keep_columns(linear: nn.Linear, columns: torch.Tensor) -> None:
    columns = columns.to(linear.weight.device)
    linear.weight = _param(linear.weight.data[:, columns], linear.weight)
    linear.in_features = len(columns)


def _reshape(linear: nn.Linear, out: int | None, inp: int | None) -> None:
    out = linear.out_features if out is None else out
    inp = linear.in_features if inp is None else inp
    if (out, inp) == tuple(linear.weight.shape):
        return
    weight = linear.weight
    linear.weight = _param(weight.data.new_empty(out, inp), weight)
    if linear.bias is not None and out != linear.bias.shape[0]:
        linear.bias = _param(linear.bias.data.new_empty(out), linear.bias)
    linear.out_features, linear.in_features = out, inp
