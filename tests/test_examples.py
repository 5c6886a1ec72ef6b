"""Every recipe shipped in examples/ is valid and round-trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from slimformer.recipe import Recipe

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_recipe_is_valid(path):
    recipe = Recipe.load(path)
    assert recipe.stages
    assert Recipe.from_yaml(recipe.to_yaml()).to_dict() == recipe.to_dict()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_recipe_uses_no_deprecated_form(path):
    """Examples show the current form (training settings nested under ``train:``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        Recipe.load(path)
