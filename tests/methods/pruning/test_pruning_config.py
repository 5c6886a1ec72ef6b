"""Pruning configs: YAML round trips, and one line for every impossible setting, nothing written."""

from __future__ import annotations

import pytest

import slimformer
from slimformer.errors import SlimformerError
from slimformer.pipeline import MeasureOptions
from slimformer.recipe import Recipe


def test_pruning_recipe_round_trips_through_yaml():
    text = (
        "name: two\nstages:\n"
        "  - method: wanda\n    sparsity: 0.6\n    allocation: owl\n    exclude: ['*.down_proj']\n"
        "  - method: sparsegpt\n    pattern: '4:8'\n    block_size: 64\n"
        "    calibration: {samples: 8, length: 128, compute_dtype: bfloat16}\n"
    )
    recipe = Recipe.from_yaml(text)
    wanda, sparsegpt = recipe.stages
    assert wanda == slimformer.Wanda(sparsity=0.6, allocation="owl", exclude=["*.down_proj"])
    assert sparsegpt.nm().n == 4 and sparsegpt.target() == 0.5
    assert sparsegpt.calibration.compute_dtype == "bfloat16"
    again = Recipe.from_yaml(recipe.to_yaml())
    assert again.stages == recipe.stages and again.to_yaml() == recipe.to_yaml()


def test_defaults_and_pattern_spelling():
    assert slimformer.Magnitude().target() == 0.5
    assert slimformer.SparseGPT(pattern=" 2 : 4 ").pattern == "2:4"
    assert slimformer.Wanda(pattern="1:4").target() == 0.75
    assert slimformer.Wanda(pattern="2:4", sparsity=0.5).target() == 0.5


@pytest.mark.parametrize(
    ("stage", "match"),
    [
        (
            "method: magnitude\n    sparsity: 1.0",
            r"'sparsity': Input should be less than 1",
        ),
        ("method: wanda\n    sparsity: -0.1", r"setting 'sparsity': Input should be greater than"),
        ("method: sparsegpt\n    pattern: '4:4'", r"pattern '4:4' keeps 4 of every 4 .* 0 < N < M"),
        ("method: sparsegpt\n    pattern: '6:4'", r"pattern '6:4' keeps 6 of every 4"),
        ("method: wanda\n    pattern: '2-4'", r"pattern '2-4' is neither 'unstructured' nor N:M"),
        ("method: wanda\n    pattern: '2:4'\n    sparsity: 0.6", r"pattern 2:4 sets sparsity 0.5"),
        ("method: wanda\n    pattern: '2:4'\n    allocation: owl", r"allocation 'owl' varies"),
        ("method: magnitude\n    pattern: '2:4'\n    scope: global", r"scope 'global' compares"),
    ],
)
def test_impossible_settings_are_one_line_errors(stage, match):
    with pytest.raises(SlimformerError, match=match) as info:
        Recipe.from_yaml(f"stages:\n  - {stage}\n")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "stage",
    ["method: magnitude\n    sparsity: 1.5", "method: magnitude\n    pattern: '2:3'"],
    ids=["sparsity", "m-does-not-divide"],
)
def test_compress_writes_nothing_on_bad_input(tiny_llama_dir, write_recipe, tmp_path, stage):
    recipe = write_recipe(f"stages:\n  - {stage}\n")
    with pytest.raises(SlimformerError) as info:
        slimformer.compress(
            tiny_llama_dir,
            recipe,
            tmp_path / "out",
            measure=MeasureOptions(enabled=False),
            progress=False,
        )
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yaml"]
