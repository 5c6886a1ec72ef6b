"""The compress pipeline: recipe in, compressed model, recipe and reports out."""

from __future__ import annotations

import json
import math

import pytest
import torch

import slimformer
from slimformer.errors import SlimformerError
from slimformer.nn import compressed_modules
from slimformer.pipeline import MeasureOptions

FAST = MeasureOptions(shapes=((1, 8),), runs=2, warmup=1)
OFF = MeasureOptions(enabled=False)
OUTPUT_FILES = {"config.json", "model.safetensors", "recipe.yaml", "report.json", "report.md"}


def compress(model, recipe, out, **options):
    """compress() with quick measurement and the eager run time unless told otherwise."""
    options = {"measure": FAST, "progress": False, "runtime": "eager", **options}
    return slimformer.compress(model, recipe, out, **options)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_classifier_compress(tiny_bert_cls_dir, int8_recipe, tiny_cls_jsonl, tmp_path):
    out = tmp_path / "out"
    report = compress(tiny_bert_cls_dir, int8_recipe, out, eval=str(tiny_cls_jsonl))
    assert {p.name for p in out.iterdir()} >= OUTPUT_FILES
    assert leftovers(tmp_path) == []
    assert json.loads((out / "report.json").read_text()) == report

    assert report["task"] == "classification"
    assert report["architecture"]["family"] == "bert"
    assert [stage["stage"] for stage in report["stages"]] == ["int8_dynamic"]
    assert report["recipe"]["stages"][0]["method"] == "int8_dynamic"
    assert report["protocol"]["shapes"] == [[1, 8]] and report["protocol"]["runs"] == 2
    for side in ("before", "after"):
        ev = report[side]["eval"]
        assert ev["metric"] == "accuracy" and ev["dataset"] == "reviews"
        assert 0 <= ev["value"] <= 1 and ev["metrics"]["n"] == 6
        assert len(ev["predictions"]) == 6
        measurement = report[side]["measurement"]
        assert measurement["size"]["disk_bytes"] > 0
        assert [(lat["batch"], lat["seq_len"]) for lat in measurement["latency"]] == [(1, 8)]

    comparison = report["comparison"]
    assert comparison["quality"]["metric"] == "accuracy"
    assert comparison["quality"]["change"] == pytest.approx(
        report["after"]["eval"]["value"] - report["before"]["eval"]["value"]
    )
    assert 0 <= comparison["quality"]["changed_predictions"] <= 6
    assert 0 < comparison["disk_ratio"] < 1
    assert 0 < comparison["linear_weight_disk_ratio"] < 0.35
    assert 0 < comparison["memory_ratio"] < 1
    assert set(comparison["speedup"]) == {"1x8"}

    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# slimformer report:")
    assert "| accuracy (reviews) |" in markdown and "size on disk" in markdown

    recipe_written = slimformer.Recipe.load(out / "recipe.yaml")
    assert recipe_written.to_dict() == report["recipe"]

    reloaded = slimformer.load(out, runtime="eager")
    assert reloaded.task == "classification"
    assert len(compressed_modules(reloaded.model)) == 12
    assert reloaded.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}


def test_existing_out_needs_overwrite(tiny_bert_cls_dir, int8_recipe, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(SlimformerError, match="already exists and is not empty"):
        compress(tiny_bert_cls_dir, int8_recipe, out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]

    compress(tiny_bert_cls_dir, int8_recipe, out, overwrite=True, measure=OFF)
    names = {p.name for p in out.iterdir()}
    assert "mine.txt" not in names and names >= OUTPUT_FILES
    assert leftovers(tmp_path) == []


def test_failing_stage_leaves_nothing(tiny_bert_cls_dir, write_recipe, tmp_path):
    recipe = write_recipe("stages:\n  - method: int8_dynamic\n    include: ['*.no_such_layer.*']\n")
    parent = tmp_path / "results"
    parent.mkdir()
    with pytest.raises(SlimformerError, match="matches no linear layer"):
        compress(tiny_bert_cls_dir, recipe, parent / "out")
    assert list(parent.iterdir()) == []


def test_bad_recipe_fails_before_loading(write_recipe, tmp_path):
    recipe = write_recipe("stages:\n  - method: int8_dynamic\n    exlude: []\n")
    with pytest.raises(SlimformerError, match="did you mean 'exclude'"):
        compress("no-such-model", recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dict_recipe_and_loaded_model(tiny_bert_cls_dir, tmp_path):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    recipe = {
        "name": "attention only",
        "stages": [{"method": "int8_dynamic", "parts": ["attention"]}],
    }
    report = compress(slim, recipe, tmp_path / "out", measure=False)  # as OFF
    assert report["recipe"]["name"] == "attention only"
    assert "measurement" not in report["after"] and "eval" not in report["after"]
    assert report["comparison"] == {}
    assert len(compressed_modules(slim.model)) == 8  # the caller's model is compressed in place


def test_finetune_then_quantize(tiny_bert_cls_dir, tiny_cls_jsonl, tmp_path):
    recipe = [
        {"method": "finetune", "dataset": str(tiny_cls_jsonl), "epochs": 1, "batch_size": 8},
        {"method": "int8_dynamic"},
    ]
    report = compress(tiny_bert_cls_dir, recipe, tmp_path / "out", measure=OFF)
    assert [stage["stage"] for stage in report["stages"]] == ["finetune", "int8_dynamic"]
    saved = json.loads((tmp_path / "out" / "config.json").read_text())["slimformer"]
    assert [m["method"] for m in saved["methods"]] == ["finetune", "int8_dynamic"]


def test_embedding_model_fidelity(tiny_bert_dir, int8_recipe, tiny_cls_jsonl, tmp_path):
    report = compress(tiny_bert_dir, int8_recipe, tmp_path / "out", eval=str(tiny_cls_jsonl))
    assert report["task"] == "embedding"
    before, after = report["before"]["eval"], report["after"]["eval"]
    assert before["metric"] == after["metric"] == "mean_cosine"
    assert before["value"] == pytest.approx(1.0, abs=1e-6)  # the original against itself
    assert 0.99 < after["value"] <= 1.0 + 1e-6
    assert after["metrics"]["retrieval_agreement"] >= 0.5
    assert "reference" not in report["after"]  # tensors stay out of the JSON report
    assert report["comparison"]["disk_ratio"] < 1


def test_causal_lm_perplexity(tiny_llama_dir, int8_recipe, tiny_txt, tmp_path):
    report = compress(
        tiny_llama_dir,
        int8_recipe,
        tmp_path / "out",
        eval=str(tiny_txt),
        eval_options={"max_tokens": 256, "window": 32},
    )
    assert report["task"] == "causal-lm"
    assert report["architecture"]["num_kv_heads"] == 2
    before, after = report["before"]["eval"], report["after"]["eval"]
    assert before["metric"] == "perplexity" and not before["higher_is_better"]
    assert before["metrics"]["window"] == 32 and before["metrics"]["tokens"] <= 256
    for value in (before["value"], after["value"]):
        assert math.isfinite(value) and value > 1
    # a random model: both close to the vocabulary size, and int8 changes little
    assert after["value"] == pytest.approx(before["value"], rel=0.05)
    assert report["comparison"]["linear_weight_disk_ratio"] < 0.30
    reloaded = slimformer.load(tmp_path / "out", runtime="eager")
    assert reloaded.model.lm_head.weight is reloaded.model.model.embed_tokens.weight


def test_save_then_load_matches_in_memory(tiny_bert_cls_dir, minilm_tokenizer, tmp_path):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.quantize_(slim, slimformer.Int8Dynamic(), progress=False)
    out = slimformer.save(slim, tmp_path / "saved")
    inputs = minilm_tokenizer(["one sentence", "and another"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = slim.model(**inputs).logits
        assert torch.equal(slimformer.load(out).model(**inputs).logits, expected)


def test_evaluate_verb_after_submodule_imports(tiny_bert_cls_dir, tiny_cls_jsonl):
    """``slimformer.evaluate(...)`` stays callable once ``slimformer.evaluate.*`` is imported."""
    import slimformer.evaluate.size

    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    result = slimformer.evaluate(slim, str(tiny_cls_jsonl), progress=False)
    assert result["metric"] == "accuracy" and result["metrics"]["n"] == 6


# -- the public pieces compress is made of ------------------------------------------


def test_pieces_compose_like_compress(tiny_bert_cls_dir, int8_recipe, tiny_cls_jsonl, tmp_path):
    from slimformer.recipe import Recipe
    from slimformer.report import build_report

    data = str(tiny_cls_jsonl)
    whole = compress(tiny_bert_cls_dir, int8_recipe, tmp_path / "whole", eval=data, measure=OFF)

    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    before = slimformer.assess(slim, data, measure=False, progress=False)
    assert isinstance(before, slimformer.Assessment)
    assert before.runtime == "eager" and before.measurement is None
    assert before.eval["metric"] == "accuracy" and before.eval["metrics"]["n"] == 6
    assert set(before.to_dict()) == {"runtime", "eval"}
    recipe = Recipe.load(int8_recipe)
    timings = slimformer.run_recipe(slim, recipe, progress=False)
    assert [t["stage"] for t in timings] == ["int8_dynamic"] and timings[0]["seconds"] >= 0
    assert len(compressed_modules(slim.model)) > 0  # in memory, nothing saved yet
    after = slimformer.assess(slim, data, measure=False, progress=False)
    report = build_report(slim, recipe, before.to_dict(), after.to_dict(), timings, OFF)
    out = slimformer.save_run(slim, recipe, tmp_path / "pieces", report)

    assert {p.name for p in out.iterdir()} >= OUTPUT_FILES
    assert Recipe.load(out / "recipe.yaml").to_dict() == recipe.to_dict()
    saved = json.loads((out / "report.json").read_text())
    for key in ("before", "after", "comparison", "recipe", "model", "task"):
        assert saved[key] == whole[key], key


def test_assess_measures_without_saving(tiny_bert_cls_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    found = slimformer.assess(slim, measure=FAST, progress=False)
    assert found.eval is None and found.reference is None
    assert found.measurement.size.disk_bytes > 0
    assert [(lat.batch, lat.seq_len) for lat in found.measurement.latency] == [(1, 8)]
    assert set(found.to_dict()) == {"runtime", "measurement"}
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def taught(monkeypatch):
    """Record the teacher each distill stage is handed, instead of training."""
    from slimformer.methods.distillation import stage

    teachers = []
    monkeypatch.setattr(
        stage, "run_distillation", lambda _s, teacher, *a, **k: teachers.append(teacher)
    )
    return teachers


def _distill_stage(data, **settings) -> dict:
    return {"method": "distill", "dataset": str(data), **settings}


def test_run_recipe_resolves_the_teacher(tiny_bert_cls_dir, tiny_cls_jsonl, taught):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.run_recipe(slim, [_distill_stage(tiny_cls_jsonl)], progress=False)
    original = taught.pop()  # the model as it was before the recipe: a copy
    assert original is not slim and original.name == slim.name

    given = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slimformer.run_recipe(slim, [_distill_stage(tiny_cls_jsonl)], teacher=given, progress=False)
    assert taught.pop() is given

    named = _distill_stage(tiny_cls_jsonl, teacher=str(tiny_bert_cls_dir))
    slimformer.run_recipe(slim, [{"method": "int8_dynamic"}, named], progress=False)
    loaded = taught.pop()  # loaded by the pipeline, named as the stage names it
    assert loaded is not slim and loaded.name == str(tiny_bert_cls_dir)
    assert compressed_modules(loaded.model) == {}  # not the int8 model of stage 1


def test_a_named_teacher_needs_no_copy_of_the_original(tiny_bert_cls_dir, tiny_cls_jsonl):
    from slimformer.pipeline import keep_original
    from slimformer.recipe import Recipe

    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    named = Recipe.load([_distill_stage(tiny_cls_jsonl, teacher="elsewhere")])
    assert keep_original(slim, named) is None
    assert keep_original(slim, Recipe.load([_distill_stage(tiny_cls_jsonl)])) is not None


def test_a_missing_teacher_is_one_line(tiny_bert_cls_dir, tiny_cls_jsonl, tmp_path, taught):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    stage = _distill_stage(tiny_cls_jsonl, teacher=str(tmp_path / "no-such-teacher"))
    with pytest.raises(SlimformerError) as caught:
        slimformer.run_recipe(slim, [stage], progress=False)
    assert str(caught.value).startswith("stage 1 (distill): teacher ")
    assert "\n" not in str(caught.value) and taught == []


def test_the_distill_stage_never_loads_a_model(tiny_bert_cls_dir, tiny_cls_jsonl, taught):
    from slimformer.methods.apply import apply_method
    from slimformer.methods.distillation import Distill

    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    config = Distill(dataset=str(tiny_cls_jsonl), teacher=str(tiny_bert_cls_dir))
    with pytest.raises(SlimformerError, match="handed no teacher"):
        apply_method(slim, config, progress=False)
    assert taught == []


def test_no_method_imports_the_loader():
    """Stages get their models from the pipeline; methods/ never reaches back into the zoo."""
    import pathlib
    import re

    root = pathlib.Path(slimformer.__file__).parent / "methods"
    pattern = re.compile(
        r"^\s*(from slimformer(\.zoo| import .*\bzoo\b)|import slimformer\.zoo)", re.M
    )
    offenders = [p.name for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


# --- finite-number guards ----------------------------------------------------------------


def broken_copy(source, tmp_path, value: float, name: str = "broken"):
    """A copy of the model at ``source`` with one weight set to ``value`` (NaN or inf)."""
    slim = slimformer.load(source, runtime="eager")
    with torch.no_grad():
        slim.model.bert.encoder.layer[1].intermediate.dense.weight[2, 3] = value
    folder = tmp_path / name
    slim.model.save_pretrained(folder)
    slim.tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_compress_refuses_a_non_finite_model_before_any_stage(
    tiny_bert_cls_dir, int8_recipe, tmp_path, capsys, value
):
    source = broken_copy(tiny_bert_cls_dir, tmp_path, value)
    out = tmp_path / "out"
    with pytest.raises(SlimformerError) as caught:
        compress(source, int8_recipe, out, progress=True)
    message = str(caught.value)
    assert "bert.encoder.layer.1.intermediate.dense.weight (1 NaN/inf)" in message
    assert "input model is broken" in message
    assert "stage 1/1" not in capsys.readouterr().out
    assert not out.exists() and leftovers(tmp_path) == []


def test_quantize_refuses_a_nan_weight_and_leaves_the_model_alone(tiny_bert_cls_dir):
    from slimformer.methods.quantization import Int8Dynamic

    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    with torch.no_grad():
        slim.model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(SlimformerError, match=r"classifier\.weight \(1 NaN/inf\)"):
        slimformer.quantize_(slim, Int8Dynamic())
    assert compressed_modules(slim.model) == {}


def test_run_recipe_checks_the_input_once(tiny_bert_cls_dir, int8_recipe):
    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    with torch.no_grad():
        slim.model.bert.pooler.dense.bias[0] = float("-inf")
    with pytest.raises(SlimformerError, match=r"pooler\.dense\.bias"):
        slimformer.run_recipe(slim, int8_recipe, progress=False)
    assert compressed_modules(slim.model) == {}


def test_calibration_that_overflows_names_the_layer(tiny_llama_dir):
    from slimformer.methods.quantization.gptq import GPTQ

    slim = slimformer.load(tiny_llama_dir, runtime="eager")
    with torch.no_grad():  # a finite norm weight whose activations overflow float32 sums
        slim.model.model.layers[0].post_attention_layernorm.weight.fill_(1e25)
    ids = torch.randint(5, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    with pytest.raises(SlimformerError) as caught:
        slimformer.quantize_(slim, GPTQ(group_size=0), calibration=ids, progress=False)
    message = str(caught.value)
    assert "input to model.layers.0.mlp.gate_proj are not finite" in message
    assert "damp" not in message and "\n" not in message
