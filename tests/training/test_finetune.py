"""The fine-tune helper: labelled, cached by content, and deterministic under its seed."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from slimformer.errors import SlimformerError
from slimformer.zoo import finetune_cache_path, finetune_classifier

SETTINGS = {"epochs": 1, "batch_size": 8, "max_length": 16}


def _weights(folder):
    return load_file(next(folder.glob("*.safetensors")))


def test_same_seed_same_weights_whatever_the_global_rng(
    tiny_bert_dir, tiny_cls_jsonl, tmp_path, monkeypatch
):
    """Two builds in fresh caches, with the global RNG disturbed differently, agree exactly."""
    folders = []
    for run, disturbance in enumerate((1, 999)):
        monkeypatch.setenv("SLIMFORMER_CACHE", str(tmp_path / f"cache{run}"))
        torch.manual_seed(disturbance)
        torch.rand(disturbance)
        folders.append(
            finetune_classifier(str(tiny_bert_dir), str(tiny_cls_jsonl), progress=False, **SETTINGS)
        )
    first, second = (_weights(f) for f in folders)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_labels_travel_with_the_model_and_the_cache_is_reused(tiny_bert_dir, tiny_cls_jsonl):
    folder = finetune_classifier(
        str(tiny_bert_dir), str(tiny_cls_jsonl), progress=False, **SETTINGS
    )
    config = json.loads((folder / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["negative", "neutral", "positive"]
    assert folder == finetune_cache_path(str(tiny_bert_dir), str(tiny_cls_jsonl), **SETTINGS)
    mtime = (folder / "config.json").stat().st_mtime
    again = finetune_classifier(str(tiny_bert_dir), str(tiny_cls_jsonl), progress=False, **SETTINGS)
    assert again == folder and (folder / "config.json").stat().st_mtime == mtime


def test_changed_settings_give_another_cache_entry(tiny_bert_dir, tiny_cls_jsonl):
    one = finetune_cache_path(str(tiny_bert_dir), str(tiny_cls_jsonl), **SETTINGS)
    two = finetune_cache_path(str(tiny_bert_dir), str(tiny_cls_jsonl), **{**SETTINGS, "seed": 1})
    assert one != two


def test_unlabelled_data_cannot_train_a_classifier(tiny_bert_dir, tiny_txt):
    with pytest.raises(SlimformerError, match="has no labels"):
        finetune_classifier(str(tiny_bert_dir), str(tiny_txt), progress=False)


def test_builds_inside_inference_mode(tiny_bert_dir, tiny_cls_jsonl):
    """A first load of a fine-tuned zoo model may happen inside inference_mode."""
    with torch.inference_mode():
        folder = finetune_classifier(
            str(tiny_bert_dir), str(tiny_cls_jsonl), progress=False, epochs=1, seed=7
        )
    assert (folder / "config.json").is_file()
