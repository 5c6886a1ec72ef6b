"""Method configs and recipes: round trips, and one-line errors for every mistake."""

from __future__ import annotations

import pytest

from slimformer.errors import SlimformerError
from slimformer.methods.catalog import make_config, registered_methods
from slimformer.recipe import Recipe

#: Values for settings that have no default, by method.
REQUIRED = {
    "finetune": {"dataset": "intent"},
    "distill": {"dataset": "intent"},
    "drop_layers": {"count": 1},
    "movement": {"sparsity": 0.5, "dataset": "intent"},
    "narrow": {"heads": 2},
    "prune_heads": {"fraction": 0.25},
    "prune_neurons": {"fraction": 0.5},
    "select_layers": {"every": 2},
}


@pytest.mark.parametrize("name", sorted(registered_methods()))
def test_config_round_trips(name):
    entry = registered_methods()[name]
    config = entry.config(**REQUIRED.get(name, {}))
    assert config.method == name and entry.family == config.family and entry.summary
    as_dict = config.to_dict()
    assert as_dict["method"] == name and as_dict["version"] >= 1
    assert set(as_dict) == {"method", *entry.config.model_fields}

    recipe = Recipe(stages=[config], name=f"{name}-test")
    text = recipe.to_yaml()
    again = Recipe.from_yaml(text)
    assert again.to_dict() == recipe.to_dict()
    assert again.stages == [config]
    assert again.to_yaml() == text

    restored = entry.config.model_validate_json(config.model_dump_json())
    assert restored == config and restored.to_dict() == as_dict
    assert make_config(name, {k: v for k, v in as_dict.items() if k != "method"}) == config


def test_recipe_from_list_text_and_file(tmp_path):
    as_list = Recipe.load([{"method": "int8_dynamic", "exclude": ["*.pooler.*"]}])
    assert as_list.name == "recipe" and as_list.stages[0].exclude == ["*.pooler.*"]
    text = "name: mine\ndescription: two stages\nstages:\n  - method: int8_dynamic\n"
    from_text = Recipe.load(text)
    assert (from_text.name, from_text.description) == ("mine", "two stages")
    path = tmp_path / "r.yml"
    path.write_text(text)
    from_file = Recipe.load(path)
    assert from_file == from_text and from_file.source == str(path)
    assert Recipe.load(from_file) is from_file
    one_line = Recipe.load("stages: [{method: int8_dynamic, exclude: ['*.pooler.*']}]")
    assert one_line.stages == as_list.stages
    # text longer than a file name may be is still read as text, not stat()ed as a path
    long_text = f"description: {'x' * 300}\n{text}"
    assert Recipe.load(long_text.replace("description: two stages\n", "")).stages


def single_line_error(text: str, match: str) -> str:
    with pytest.raises(SlimformerError, match=match) as info:
        Recipe.from_yaml(text)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "stages:\n  - method: int8_dynamc\n",
            r"stage 1: unknown method 'int8_dynamc'; did you mean 'int8_dynamic'\?",
        ),
        (
            "stages:\n  - method: int8_dynamic\n    exlude: ['*.pooler.*']\n",
            r"stage 1: int8_dynamic: unknown setting 'exlude' \(did you mean 'exclude'\?\)",
        ),
        (
            "stages:\n  - method: int8_dynamic\n  - method: int8_dynamic\n    parts: 3\n",
            r"stage 2: int8_dynamic: setting 'parts': Input should be a valid list",
        ),
        (
            "stages:\n  - method: int8_dynamic\n    parts: [atention]\n",
            r"setting 'parts.0': Input should be 'embedding', 'attention'",
        ),
        (
            "stages:\n  - method: finetune\n    dataset: intent\n    epochs: many\n",
            r"finetune: setting 'train.epochs': Input should be a valid integer",
        ),
        ("stages:\n  - method: finetune\n", r"finetune: setting 'dataset': Field required"),
        ("name: nothing to do\n", r"recipe has no 'stages' list"),
        ("stages: []\n", r"'stages' is empty"),
        ("stages:\n", r"'stages' is empty"),
        (
            "stages:\n  - method: int8_dynamic\nstagse: []\n",
            r"unknown top-level key\(s\) \['stagse'\]; allowed: description, name, stages",
        ),
        ("stages:\n  - int8_dynamic\n", r"stage 1: a stage must be a mapping with a 'method'"),
        ("stages:\n  - method: [int8\n", r"recipe is not valid YAML at line \d+"),
        ("stages: [\n", r"not valid YAML"),
    ],
)
def test_recipe_errors(text, match):
    single_line_error(text, match)


def test_unknown_setting_lists_the_settings():
    message = single_line_error(
        "stages:\n  - method: int8_dynamic\n    exlude: []\n", "unknown setting"
    )
    assert message.endswith("settings of int8_dynamic: version, parts, include, exclude")


def test_unknown_method_lists_known_methods():
    message = single_line_error("stages:\n  - method: prune_everything\n", "unknown method")
    assert "did you mean" not in message
    assert "known methods: " in message and "int8_dynamic" in message


def test_missing_recipe_file(tmp_path):
    for missing in (tmp_path / "nope.yaml", str(tmp_path / "nope.yml"), tmp_path / "nope"):
        with pytest.raises(SlimformerError, match=r"recipe file .*nope.* not found") as info:
            Recipe.load(missing)
        assert "\n" not in str(info.value)


def test_recipe_file_errors_name_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("stages:\n  - method: int8_dynamic\n    exlude: []\n")
    with pytest.raises(SlimformerError, match=r"^recipe .*typo\.yaml, stage 1: int8_dynamic"):
        Recipe.load(path)


def test_written_recipe_spells_out_every_default():
    recipe = Recipe.from_yaml("stages:\n  - method: int8_dynamic\n")
    assert recipe.to_dict() == {
        "name": "recipe",
        "stages": [
            {
                "method": "int8_dynamic",
                "version": 1,
                "parts": ["attention", "mlp", "other"],
                "include": [],
                "exclude": [],
            }
        ],
    }


def test_configs_are_frozen():
    from pydantic import ValidationError

    config = make_config("int8_dynamic", {})
    with pytest.raises(ValidationError):
        config.include = ["*"]


@pytest.mark.parametrize("name", sorted(registered_methods()))
def test_recipe_from_a_newer_version_is_refused(name):
    entry = registered_methods()[name]
    current = entry.config.current_version()
    stage = {"method": name, **REQUIRED.get(name, {}), "version": current + 1}
    with pytest.raises(SlimformerError) as caught:
        Recipe.from_dict({"stages": [{"method": "int8_dynamic"}, stage]})
    message = str(caught.value)
    assert "\n" not in message
    assert f"stage 2: {name}: recipe version {current + 1} is newer than" in message
    assert f"this slimformer's {name} version {current}" in message
    assert f"upgrade slimformer or write version: {current}" in message


def test_current_and_older_versions_still_read():
    assert make_config("gptq", {"version": 2}).version == 2  # gptq is at version 2
    assert make_config("gptq", {"version": 1}).version == 1  # read as written, migrated
    assert make_config("int8_dynamic", {"version": 1}).version == 1
