"""The ``slimformer`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    # The environment carries the session's temporary SLIMFORMER_CACHE (see conftest).
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "slimformer.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def assert_user_error(result: subprocess.CompletedProcess, match: str) -> str:
    """Exit code 2, exactly one ``error:`` line that matches, and no traceback."""
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert match in errors[0], errors[0]
    return errors[0]


def test_help():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("models", "datasets", "methods", "compress", "evaluate", "measure", "demo"):
        assert command in result.stdout
    compress_help = run_cli("compress", "--help")
    assert compress_help.returncode == 0
    assert "--recipe" in compress_help.stdout and "--overwrite" in compress_help.stdout


def test_no_command_prints_help():
    result = run_cli()
    assert result.returncode == 2 and "COMMAND" in result.stdout


def test_models():
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    for name in ("minilm", "minilm-intent", "smollm2-135m"):
        assert f" {name} " in result.stdout  # whole, never cut short by the table


def test_datasets():
    result = run_cli("datasets")
    assert result.returncode == 0, result.stderr
    for name in ("wiki", "intent", "multiemo", "polarity"):
        assert f" {name} " in result.stdout


def test_methods():
    result = run_cli("methods")
    assert result.returncode == 0, result.stderr
    assert " int8_dynamic " in result.stdout and " finetune " in result.stdout
    assert "quantization" in result.stdout and "(required)" in result.stdout


def test_compress(tiny_bert_cls_dir, int8_recipe, tiny_cls_jsonl, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "compress",
        tiny_bert_cls_dir,
        "--recipe",
        int8_recipe,
        "--out",
        out,
        "--eval",
        tiny_cls_jsonl,
        "--runs",
        "2",
        "--warmup",
        "1",
        "--shapes",
        "1x8",
        "--runtime",
        "eager",
    )
    assert result.returncode == 0, result.stderr
    assert f"saved to {out}" in result.stdout
    assert "accuracy" in result.stdout
    assert (out / "report.md").is_file() and (out / "model.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["shapes"] == [[1, 8]] and report["protocol"]["runs"] == 2


@pytest.fixture()
def typo_recipe(write_recipe):
    return write_recipe("stages:\n  - method: int8_dynamic\n    exlude: []\n", name="typo.yaml")


def test_unknown_model(int8_recipe, tmp_path):
    result = run_cli("compress", "no-such-model", "--recipe", int8_recipe, "--out", tmp_path / "o")
    line = assert_user_error(result, "no model named 'no-such-model'")
    assert "minilm, minilm-intent, smollm2-135m" in line


def test_folder_that_is_not_a_model(int8_recipe, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    result = run_cli("compress", folder, "--recipe", int8_recipe, "--out", tmp_path / "o")
    assert_user_error(result, "is a folder but not a model (no config.json)")


def test_recipe_with_a_typo(tiny_bert_cls_dir, typo_recipe, tmp_path):
    result = run_cli(
        "compress", tiny_bert_cls_dir, "--recipe", typo_recipe, "--out", tmp_path / "o"
    )
    assert_user_error(result, "unknown setting 'exlude' (did you mean 'exclude'?)")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["missing.yaml", "missing"])
def test_missing_recipe_file(tiny_bert_cls_dir, tmp_path, name):
    result = run_cli(
        "compress", tiny_bert_cls_dir, "--recipe", tmp_path / name, "--out", tmp_path / "o"
    )
    assert_user_error(result, "not found")


@pytest.mark.parametrize("shapes", ["1x", "axb", "0x8"])
def test_bad_shapes(tiny_bert_cls_dir, int8_recipe, tmp_path, shapes):
    result = run_cli(
        "compress",
        tiny_bert_cls_dir,
        "--recipe",
        int8_recipe,
        "--out",
        tmp_path / "o",
        "--shapes",
        shapes,
    )
    assert_user_error(result, "--shapes")


def test_existing_out_without_overwrite(tiny_bert_cls_dir, int8_recipe, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.txt").write_text("precious")
    result = run_cli("compress", tiny_bert_cls_dir, "--recipe", int8_recipe, "--out", out)
    assert_user_error(result, "already exists and is not empty; choose another --out or pass")
    assert [p.name for p in out.iterdir()] == ["results.txt"]
    assert (out / "results.txt").read_text() == "precious"


def test_dataset_without_label_column(tiny_bert_cls_dir, int8_recipe, tmp_path):
    data = tmp_path / "unlabelled.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"row {i}", "y": i % 3}) for i in range(9)))
    result = run_cli(
        "compress",
        tiny_bert_cls_dir,
        "--recipe",
        int8_recipe,
        "--out",
        tmp_path / "o",
        "--eval",
        data,
    )
    assert_user_error(result, "no column 'label'")
    assert not (tmp_path / "o").exists()


def test_distill_flags_are_the_train_settings_with_distill_defaults():
    from slimformer.cli import _parser, _train_settings
    from slimformer.methods.distillation.stage import Distill
    from slimformer.training.settings import TrainSettings

    help_text = _parser()._subparsers._group_actions[0].choices["distill"].format_help()
    for name in TrainSettings.model_fields:
        assert "--" + name.replace("_", "-") in help_text
    argv = ["distill", "minilm-intent", "--data", "intent", "--out", "o"]
    args = _parser().parse_args([*argv, "--lr", "3e-4", "--grad-accum", "2", "--keep-last"])
    train = _train_settings(args, "distill", dataset="intent")
    expected = {"lr": 3e-4, "grad_accum": 2, "load_best": False}
    assert train == Distill(dataset="intent", train=expected).train
    assert (train.epochs, train.batch_size) == (3, 32)  # distill's defaults, not the trainer's
    plain = _train_settings(_parser().parse_args(argv), "distill", dataset="intent")
    assert plain == Distill(dataset="intent").train


def test_distill_bad_train_flag_is_one_line(tmp_path):
    result = run_cli(
        "distill", "minilm-intent", "--data", "intent", "--out", tmp_path / "o", "--lr", "fast"
    )
    assert_user_error(result, "distill: setting 'train.lr'")


def test_compress_a_model_with_a_nan_weight(tiny_bert_cls_dir, int8_recipe, tmp_path):
    import slimformer

    slim = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    slim.model.classifier.weight.data[1, 1] = float("nan")
    slim.model.save_pretrained(tmp_path / "broken")
    slim.tokenizer.save_pretrained(tmp_path / "broken")
    out = tmp_path / "out"
    result = run_cli("compress", tmp_path / "broken", "--recipe", int8_recipe, "--out", out)
    error = assert_user_error(result, "classifier.weight (1 NaN/inf)")
    assert "input model is broken" in error
    assert not out.exists()
