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
    assert f"saved the student to {out}" in capsys.readouterr().out
    # It ran as a one-stage recipe, written out with its report like compress writes them.
    assert {"recipe.yaml", "report.json", "report.md"} <= {p.name for p in out.iterdir()}
    recipe = slimformer.Recipe.load(out / "recipe.yaml")
    [stage] = recipe.stages
    assert stage.method == "distill" and stage.layers == [1] and stage.teacher is None
    assert stage.train.max_steps == 1 and stage.train.batch_size == 4
    assert stage.dataset == str(tiny_cls_jsonl)
    report = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["distill"]
    assert (
        report["before"]["measurement"]["size"]["params_total"]
        > (report["after"]["measurement"]["size"]["params_total"])
    )
    args[-1] = str(tmp_path / "other")
    assert main([*args, "--layers", "1", "--losses", "hiden"]) == 2
    assert "unknown loss 'hiden'" in capsys.readouterr().err


# -- the verb: a typed config and a teacher ------------------------------------------


def _same_weights(a, b) -> bool:
    one, two = a.model.state_dict(), b.model.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def test_distill_verb_takes_its_config_and_a_teacher(pair, tiny_cls_jsonl):
    from slimformer.methods.distillation import Distill

    teacher, student = pair
    expected, untrained = copy.deepcopy(student), copy.deepcopy(student)
    # Distill's defaults: 3 epochs of one 32-item batch at lr 1e-4, the best of them kept.
    run_distillation(
        expected,
        teacher,
        tiny_cls_jsonl,
        ["logits"],
        train={"epochs": 3, "lr": 1e-4, "batch_size": 32, "progress": False},
    )
    config = Distill(dataset=str(tiny_cls_jsonl))
    returned = slimformer.distill(student, config, teacher=teacher, progress=False)
    assert returned is student and not _same_weights(student, untrained)
    assert _same_weights(student, expected)  # the same code as the recipe stage and the engine
    assert student.compression["methods"][-1]["method"] == "distill"


def test_distill_verb_loads_names_and_cuts_layers(tiny_bert_cls_dir, tiny_cls_jsonl):
    from slimformer.methods.distillation import Distill

    config = Distill(dataset=str(tiny_cls_jsonl), layers=[1], teacher=str(tiny_bert_cls_dir))
    student = slimformer.distill(str(tiny_bert_cls_dir), config, progress=False)
    assert student.config.num_hidden_layers == 1


def test_distill_verb_needs_a_teacher(pair, tiny_cls_jsonl):
    from slimformer.methods.distillation import Distill, distill

    _, student = pair
    with pytest.raises(SlimformerError, match="distill needs a teacher"):
        slimformer.distill(student, Distill(dataset=str(tiny_cls_jsonl)))
    with pytest.raises(SlimformerError, match="the config names 'x'"):
        distill(student, Distill(dataset=str(tiny_cls_jsonl), teacher="x"))


def test_old_distill_call_warns_and_still_works(pair, tiny_cls_jsonl, tiny_bert_cls_dir):
    from slimformer.methods.distillation import distill

    teacher, student = pair
    expected = copy.deepcopy(student)
    settings = {"losses": ["logits"], "train": _train(max_steps=2)}
    run_distillation(expected, teacher, tiny_cls_jsonl, **settings)
    with pytest.warns(DeprecationWarning, match="Distill"):
        returned = slimformer.distill(student, teacher, tiny_cls_jsonl, **settings)
    assert returned is student and _same_weights(student, expected)
    with pytest.warns(DeprecationWarning):  # names load in slimformer.distill, as before
        named = slimformer.distill(
            str(tiny_bert_cls_dir), str(tiny_bert_cls_dir), tiny_cls_jsonl, **settings
        )
    assert named.config.num_hidden_layers == teacher.config.num_hidden_layers
    with (
        pytest.raises(SlimformerError, match="takes loaded models"),
        pytest.warns(DeprecationWarning),
    ):
        distill(student, str(tiny_bert_cls_dir), tiny_cls_jsonl, **settings)


def test_cli_distill_from_a_given_student(tiny_bert_cls_dir, tiny_cls_jsonl, tmp_path):
    from slimformer.cli import main

    out = tmp_path / "student"
    teacher, data = str(tiny_bert_cls_dir), str(tiny_cls_jsonl)
    args = ["distill", teacher, "--data", data, "--out", str(out), "--student", teacher]
    assert main([*args, "--max-steps", "1", "--no-measure", "--eval", data]) == 0
    [stage] = slimformer.Recipe.load(out / "recipe.yaml").stages
    assert stage.teacher == teacher and stage.layers is None  # the pipeline loaded it
    report = json.loads((out / "report.json").read_text())
    assert report["after"]["eval"]["metric"] == "accuracy" and "measurement" not in report["after"]
