"""Student/teacher compatibility, checked before any training starts.

Distillation compares outputs position by position and class by class: a
student that reads tokens through another vocabulary, or orders its labels
differently, would learn garbage without any error. Each mismatch is one line.
"""

from __future__ import annotations

from slimformer.errors import SlimformerError
from slimformer.model import SlimModel


def check_pair(student: SlimModel, teacher: SlimModel) -> None:
    """Refuse a student that cannot learn from ``teacher`` output for output."""
    if student.task != teacher.task:
        raise SlimformerError(
            f"the student is a {student.task} model but the teacher is a {teacher.task} model",
            "distil between models of the same task",
        )
    _check_vocabulary(student, teacher)
    if student.task == "classification":
        _check_labels(student, teacher)


def _check_vocabulary(student: SlimModel, teacher: SlimModel) -> None:
    s_size = getattr(student.model.config, "vocab_size", None)
    t_size = getattr(teacher.model.config, "vocab_size", None)
    if s_size != t_size:
        raise SlimformerError(
            f"the student's vocabulary has {s_size} tokens, the teacher's {t_size}",
            "use a student with the teacher's tokenizer and vocabulary",
        )
    s_tok, t_tok = student.tokenizer, teacher.tokenizer
    if s_tok is not None and t_tok is not None and s_tok.get_vocab() != t_tok.get_vocab():
        raise SlimformerError(
            "the student's tokenizer maps tokens to other ids than the teacher's",
            "use a student with the teacher's tokenizer",
        )


def _check_labels(student: SlimModel, teacher: SlimModel) -> None:
    s_labels = _labels(student)
    t_labels = _labels(teacher)
    if s_labels != t_labels:
        raise SlimformerError(
            f"the student's labels {s_labels} differ from the teacher's {t_labels}",
            "give the student the teacher's label set, in the teacher's order",
        )


def _labels(slim: SlimModel) -> list[str]:
    config = slim.model.config
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(config.num_labels)]
