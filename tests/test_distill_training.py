"""Distillation training: it learns, resumes exactly after a forced stop, and refuses bad input."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import slimformer
from slimformer.errors import SlimformerError
from slimformer.methods.distillation import run_distillation, select_layers

LOSSES = ["logits", "hidden_mse", "minilm"]
#: The teacher-matching part alone: what distillation must lower.
SOFT = [{"kind": "logits", "hard_weight": 0.0}, "hidden_mse", "minilm"]


class Stop(Exception):
    pass


def _train(**extra):
    return {"batch_size": 4, "lr": 3e-3, "progress": False, **extra}


@pytest.fixture()
def pair(tiny_bert_cls_dir):
    teacher = slimformer.load(tiny_bert_cls_dir, runtime="eager")
    return teacher, select_layers(teacher, [0])


def _objective_value(student, teacher, path) -> float:
    """The distillation loss on every training text, without dropout."""
    from slimformer.methods.distillation.data import Collator, task_items
    from slimformer.methods.distillation.losses import parse_losses
    from slimformer.methods.distillation.objective import DistillObjective

    items, _ = task_items(str(path))
    objective = DistillObjective(student, teacher, parse_losses(SOFT)).eval()
    with torch.no_grad():
        return float(objective(Collator(items, student.tokenizer, 32, "cpu")(range(len(items)))))


def test_short_distillation_lowers_the_loss(pair, tiny_cls_jsonl):
    teacher, student = pair
    torch.manual_seed(0)
    with torch.no_grad():  # a student that starts away from the teacher
        for param in student.model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    before = _objective_value(student, teacher, tiny_cls_jsonl)
    run_distillation(student, teacher, tiny_cls_jsonl, SOFT, train=_train(epochs=10, lr=1e-3))
    assert _objective_value(student, teacher, tiny_cls_jsonl) < 0.8 * before


def test_resume_after_forced_stop_matches_uninterrupted_run(pair, tiny_cls_jsonl, tmp_path):
    teacher, fresh = pair
    settings = _train(epochs=2, eval_every=2, checkpoint_every=2, grad_accum=2)

    whole = run_distillation(
        copy.deepcopy(fresh),
        teacher,
        tiny_cls_jsonl,
        LOSSES,
        train={**settings, "checkpoint_dir": str(tmp_path / "a")},
    )

    def stop_at_5(trainer):
        if trainer.step == 5:
            raise Stop

    folder = str(tmp_path / "b")
    with pytest.raises(Stop):
        run_distillation(
            copy.deepcopy(fresh),
            teacher,
            tiny_cls_jsonl,
            LOSSES,
            train={**settings, "checkpoint_dir": folder},
            callbacks=[stop_at_5],
        )
    steps_seen = []
    resumed = run_distillation(
        copy.deepcopy(fresh),
        teacher,
        tiny_cls_jsonl,
        LOSSES,
        train={**settings, "checkpoint_dir": folder},
        callbacks=[lambda trainer: steps_seen.append(trainer.step)],
    )
    assert steps_seen[0] == 5  # continued after the step-4 checkpoint, not from the start
    assert resumed.result.losses == whole.result.losses
    assert resumed.result.evaluations == whole.result.evaluations  # with their losses
    assert resumed.result.best_loss == whole.result.best_loss is not None
    a, b = whole.student.model.state_dict(), resumed.student.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_settings_is_one_clear_error(pair, tiny_cls_jsonl, tmp_path):
    teacher, student = pair
    folder = str(tmp_path / "c")
    settings = _train(max_steps=2, checkpoint_every=1, checkpoint_dir=folder)
    run_distillation(copy.deepcopy(student), teacher, tiny_cls_jsonl, LOSSES, train=settings)
    with pytest.raises(SlimformerError, match=r"made with lr=0.003.*lr=0.002.*checkpoint_dir"):
        run_distillation(student, teacher, tiny_cls_jsonl, LOSSES, train={**settings, "lr": 2e-3})


def test_best_model_file_is_never_half_written(pair, tiny_cls_jsonl, tmp_path):
    teacher, student = pair
    folder = tmp_path / "d"
    run_distillation(
        student,
        teacher,
        tiny_cls_jsonl,
        ["logits"],
        train=_train(max_steps=2, eval_every=1, checkpoint_dir=str(folder)),
    )
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt"]  # no temporary files left
    assert "state" in torch.load(folder / "best.pt", weights_only=False)


def test_empty_dataset_is_one_clear_error(pair, tmp_path):
    teacher, student = pair
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "only one", "label": "negative"}) + "\n")
    with pytest.raises(SlimformerError, match="no training examples"):
        run_distillation(student, teacher, empty, ["logits"], holdout_fraction=0.5)


def test_classifier_evaluations_carry_the_validation_loss(pair, tiny_cls_jsonl):
    """Accuracy ties are broken by the held-out label loss, so every evaluation records it."""
    teacher, student = pair
    run = run_distillation(
        student,
        teacher,
        tiny_cls_jsonl,
        ["logits"],
        holdout_fraction=0.3,
        train=_train(max_steps=4, eval_every=2),
    )
    losses = [loss for _, _, loss in run.result.evaluations]
    assert len(losses) == 2 and all(loss is not None and loss > 0 for loss in losses)
    assert run.result.best_loss in losses
    with pytest.raises(SlimformerError, match="holdout_fraction"):
        run_distillation(student, teacher, tiny_cls_jsonl, ["logits"], holdout_fraction=1.0)


def test_vocabulary_and_label_mismatch_are_refused(pair, tiny_llama_dir):
    teacher, student = pair
    other = copy.deepcopy(student)
    other.model.config.id2label = {0: "a", 1: "b", 2: "c"}
    with pytest.raises(SlimformerError, match=r"labels.*differ"):
        run_distillation(other, teacher, "intent", ["logits"])
    smaller = copy.deepcopy(student)
    smaller.model.config.vocab_size = 100
    with pytest.raises(SlimformerError, match="vocabulary has 100 tokens"):
        run_distillation(smaller, teacher, "intent", ["logits"])
    with pytest.raises(SlimformerError, match="causal-lm model but the teacher"):
        run_distillation(slimformer.load(tiny_llama_dir), teacher, "intent", ["logits"])


def test_causal_lm_distillation_on_windows(tiny_llama_dir, tiny_txt):
    teacher = slimformer.load(tiny_llama_dir, runtime="eager")
    student = select_layers(teacher, [1])
    run = run_distillation(
        student, teacher, tiny_txt, ["logits"], max_length=32, train=_train(max_steps=4)
    )
    assert run.result.evaluations and run.result.evaluations[-1][1] > 0


def test_distill_recipe_stage_uses_the_original_as_teacher(
    tiny_bert_cls_dir, tiny_cls_jsonl, write_recipe, tmp_path
):
    recipe = write_recipe(
        "name: d\nstages:\n  - method: distill\n"
        f"    dataset: {tiny_cls_jsonl}\n    layers: [1]\n    max_steps: 2\n    batch_size: 4\n"
        "    losses: [{kind: logits}, {kind: hidden_mse, layer_map: uniform}]\n"
    )
    out = tmp_path / "out"
    slimformer.compress(
        str(tiny_bert_cls_dir),
        recipe,
        out,
        measure=slimformer.pipeline.MeasureOptions(enabled=False),
        progress=False,
    )
    again = slimformer.load(out)
    assert again.config.num_hidden_layers == 1
    assert "method: distill" in (out / "recipe.yaml").read_text()


def test_cli_distill_saves_a_student(tiny_bert_cls_dir, tiny_cls_jsonl, tmp_path, capsys):
    from slimformer.cli import main

    out = tmp_path / "student"
    args = ["distill", str(tiny_bert_cls_dir), "--data", str(tiny_cls_jsonl), "--out", str(out)]
    assert main([*args, "--layers", "1", "--max-steps", "1", "--batch-size", "4"]) == 0
    assert slimformer.load(out).config.num_hidden_layers == 1
    args[-1] = str(tmp_path / "other")
    assert main([*args, "--layers", "1", "--losses", "hiden"]) == 2
    assert "unknown loss 'hiden'" in capsys.readouterr().err
