"""One module at several places (cross-layer sharing): saved once, compressed once, still shared."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

import slimformer
from slimformer.calibration.engine import run_sequential
from slimformer.methods.selection import select_linears
from slimformer.model import SlimModel, task_of
from slimformer.nn import compressed_modules, replace_module
from slimformer.nn.sharing import all_names, shared_aliases
from slimformer.serialization import compression_metadata
from tiny_models import tiny_model

VOCAB = 96
IDS = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))


#: Five layers, so that layer 4 can be made an alias of layer 3.
SIZES = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 5,
    "max_position_embeddings": 64,
}


def _llama() -> nn.Module:
    return tiny_model("llama", VOCAB, **SIZES).eval()


def _bert() -> nn.Module:
    return tiny_model("bert", VOCAB, **SIZES).eval()


def _gpt2() -> nn.Module:
    return tiny_model("gpt2", VOCAB, n_embd=32, n_layer=5, n_positions=64).eval()


FAMILIES = {
    "llama": (_llama, lambda m: m.model.layers, "model.layers"),
    "bert": (_bert, lambda m: m.encoder.layer, "encoder.layer"),
    "gpt2": (_gpt2, lambda m: m.transformer.h, "transformer.h"),  # Conv1D on disk
}


def _slim(model: nn.Module) -> SlimModel:
    return SlimModel(model=model, tokenizer=None, name="tiny", source="tiny", task=task_of(model))


def _tied(family: str) -> tuple[SlimModel, nn.ModuleList, str]:
    build, stack_of, prefix = FAMILIES[family]
    model = build()
    stack = stack_of(model)
    stack[4] = stack[3]
    return _slim(model), stack, prefix


def _outputs(slim: SlimModel) -> torch.Tensor:
    # No KV cache: a block copied from layer 3 would keep writing its cache slot (layer_idx 3).
    extra = {"use_cache": False} if slim.task == "causal-lm" else {}
    with torch.no_grad():
        out = slim.model(input_ids=IDS, **extra)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _file_bytes(folder) -> int:
    return (folder / "model.safetensors").stat().st_size


def _shared_section(folder) -> dict | None:
    config = json.loads((folder / "config.json").read_text())
    return config["slimformer"].get("shared")


@pytest.mark.parametrize("family", FAMILIES)
def test_tied_blocks_are_saved_once_and_load_still_tied(family, tmp_path):
    slim, stack, prefix = _tied(family)
    expected = _outputs(slim)
    untied = _slim(copy.deepcopy(slim.model))
    stack_of = FAMILIES[family][1]
    stack_of(untied.model)[4] = copy.deepcopy(stack_of(untied.model)[3])  # equal values, 2 copies
    assert torch.equal(_outputs(untied), expected)

    tied_dir = slimformer.save(slim, tmp_path / "tied")
    untied_dir = slimformer.save(untied, tmp_path / "untied")
    assert _shared_section(tied_dir) == {f"{prefix}.4": f"{prefix}.3"}
    assert _shared_section(untied_dir) is None
    block_bytes = sum(p.numel() * p.element_size() for p in stack[3].parameters())
    assert _file_bytes(untied_dir) - _file_bytes(tied_dir) >= block_bytes

    reloaded = slimformer.load(tied_dir, runtime="eager")
    assert torch.equal(_outputs(reloaded), expected)
    layers = stack_of(reloaded.model)
    assert layers[4] is layers[3]
    before = _outputs(reloaded)
    with torch.no_grad():
        next(layers[3].parameters()).mul_(0.5)  # the shared block changes at both places
    assert next(layers[4].parameters()) is next(layers[3].parameters())
    assert not torch.equal(_outputs(reloaded), before)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "config", [slimformer.Int8Dynamic(), slimformer.RTN(bits=4, group_size=32)], ids=str
)
def test_quantizing_a_tied_block_quantizes_it_once_and_keeps_the_tie(family, config, tmp_path):
    slim, stack, prefix = _tied(family)
    linears_in_block = sum(isinstance(m, nn.Linear) for m in stack[3].modules())
    slimformer.quantize_(slim, config, progress=False)
    assert stack[4] is stack[3]
    compressed = compressed_modules(slim.model)
    assert not any(name.startswith(f"{prefix}.4.") for name in compressed)
    assert sum(name.startswith(f"{prefix}.3.") for name in compressed) == linears_in_block
    expected = _outputs(slim)

    folder = slimformer.save(slim, tmp_path / "q")
    meta = json.loads((folder / "config.json").read_text())["slimformer"]
    assert meta["shared"] == {f"{prefix}.4": f"{prefix}.3"}
    assert not any(name.startswith(f"{prefix}.4.") for name in meta["modules"])
    reloaded = slimformer.load(folder, runtime="eager")
    layers = FAMILIES[family][1](reloaded.model)
    assert layers[4] is layers[3]
    assert set(compressed_modules(reloaded.model)) == set(compressed)
    assert torch.equal(_outputs(reloaded), expected)


def test_a_linear_shared_by_two_blocks_gets_one_replacement_at_both_places(tmp_path):
    slim, stack, _ = _tied("llama")
    stack[4] = copy.deepcopy(stack[3])  # two blocks ...
    stack[4].mlp.up_proj = stack[3].mlp.up_proj  # ... sharing one linear
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    assert stack[4].mlp.up_proj is stack[3].mlp.up_proj
    assert "model.layers.4.mlp.up_proj" not in compressed_modules(slim.model)
    expected = _outputs(slim)

    folder = slimformer.save(slim, tmp_path / "q")
    assert _shared_section(folder) == {"model.layers.4.mlp.up_proj": "model.layers.3.mlp.up_proj"}
    reloaded = slimformer.load(folder, runtime="eager").model
    assert reloaded.model.layers[4].mlp.up_proj is reloaded.model.layers[3].mlp.up_proj
    assert reloaded.model.layers[4] is not reloaded.model.layers[3]
    assert torch.equal(_outputs(_slim(reloaded)), expected)


def test_a_tied_parameter_is_saved_once_and_tied_again(tmp_path):
    slim, stack, _ = _tied("llama")
    stack[4] = copy.deepcopy(stack[3])
    stack[4].mlp.down_proj.weight = stack[3].mlp.down_proj.weight
    expected = _outputs(slim)
    folder = slimformer.save(slim, tmp_path / "p")
    key = "mlp.down_proj.weight"
    assert _shared_section(folder) == {f"model.layers.4.{key}": f"model.layers.3.{key}"}
    reloaded = slimformer.load(folder, runtime="eager").model
    layers = reloaded.model.layers
    assert layers[4].mlp.down_proj.weight is layers[3].mlp.down_proj.weight
    assert torch.equal(_outputs(_slim(reloaded)), expected)


def test_weights_hugging_face_ties_itself_are_no_aliases():
    model = _llama()  # tie_word_embeddings: lm_head.weight is embed_tokens.weight
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert "shared" not in compression_metadata(model, [])
    assert shared_aliases(model) == {"lm_head.weight": "model.embed_tokens.weight"}


def test_a_shared_module_without_state_is_no_alias():
    model = _llama()
    model.model.layers[4].mlp.act_fn = model.model.layers[3].mlp.act_fn  # nothing to store
    assert "shared" not in compression_metadata(model, [])
    model.model.layers[4].mlp = model.model.layers[3].mlp
    assert compression_metadata(model, [])["shared"] == {"model.layers.4.mlp": "model.layers.3.mlp"}


def test_a_folder_without_a_shared_section_still_loads(tmp_path):
    slim = _slim(_llama())
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    folder = slimformer.save(slim, tmp_path / "old")
    assert _shared_section(folder) is None  # the format of every folder saved before
    reloaded = slimformer.load(folder, runtime="eager")
    assert torch.equal(_outputs(reloaded), _outputs(slim))


def test_replace_module_installs_one_object_at_every_place_but_not_inside_a_wrapper():
    slim, stack, _ = _tied("llama")
    stack[4] = copy.deepcopy(stack[3])
    shared = stack[3].mlp.up_proj
    stack[4].mlp.up_proj = shared
    wrapper = nn.Sequential(shared)  # holds the old module, as InputScaled does
    replace_module(slim.model, "model.layers.3.mlp.up_proj", wrapper)
    assert stack[3].mlp.up_proj is wrapper and stack[4].mlp.up_proj is wrapper
    assert wrapper[0] is shared


def test_selection_lists_a_shared_layer_once_and_patterns_see_all_its_names():
    slim, _, _ = _tied("llama")
    names = all_names(slim.model)
    assert names["model.layers.3.mlp.up_proj"] == [
        "model.layers.3.mlp.up_proj",
        "model.layers.4.mlp.up_proj",
    ]
    chosen = select_linears(slim, ["mlp"])
    assert "model.layers.3.mlp.up_proj" in chosen
    assert not any(name.startswith("model.layers.4.") for name in chosen)
    only_4 = select_linears(slim, ["mlp"], include=["model.layers.4.*"])
    assert set(only_4) == {n for n in chosen if n.startswith("model.layers.3.")}
    without_4 = select_linears(slim, ["mlp"], exclude=["model.layers.4.*"])
    assert not any(name.startswith("model.layers.3.") for name in without_4)


def test_calibration_compresses_a_shared_block_once_and_still_runs_it_twice():
    slim = _slim(_llama())
    stack = slim.model.model.layers
    stack[2] = stack[1]
    seen: list[tuple[int, list[str]]] = []
    calls = []
    handle = stack[1].register_forward_hook(lambda *args: calls.append(1))
    run_sequential(
        slim,
        IDS,
        lambda ctx: seen.append((ctx.index, sorted(ctx.linears))),
        batch_size=2,
        progress=False,
    )
    handle.remove()
    assert [index for index, _ in seen] == [0, 1, 3, 4]  # position 2 is the block at 1
    assert seen[1][1] and all(name.startswith("model.layers.1.") for name in seen[1][1])
    assert len(calls) == 2  # one batch, run at position 1 and again to feed position 3


def test_gptq_on_tied_blocks_quantizes_once(tmp_path):
    slim, stack, _ = _tied("llama")
    slimformer.quantize_(
        slim, slimformer.GPTQ(bits=4, group_size=32), calibration=IDS, progress=False
    )
    assert stack[4] is stack[3]
    assert not any(n.startswith("model.layers.4.") for n in compressed_modules(slim.model))
    expected = _outputs(slim)
    assert torch.isfinite(expected).all()
    reloaded = slimformer.load(slimformer.save(slim, tmp_path / "g"), runtime="eager")
    assert reloaded.model.model.layers[4] is reloaded.model.model.layers[3]
    assert torch.equal(_outputs(reloaded), expected)
