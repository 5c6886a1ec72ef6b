"""Students: smaller models cut from a teacher, to be distilled (or fine-tuned) afterwards.

A student is the teacher with whole layers taken away (:func:`select_layers`,
by depth, DistilBERT-style) or with fewer heads and a narrower feed-forward
block in every layer (:func:`narrow`, by width), the kept weights copied
exactly. Both choose what stays without data, from the layer list or from
the weights' norms, and cut through ``arch/surgery.py``, the one place that
removes parts of a model.

They are their own family rather than part of ``structured`` (which scores
parts on data and removes the least important to compress a model it keeps)
or of ``distillation`` (which trains): a student is shaped once, before any
training, and then taught. As recipe stages (``method: select_layers``,
``method: narrow``) they come before ``distill``, whose teacher is the model
as it was before the recipe::

    stages:
      - method: select_layers
        every: 2
      - method: distill
        dataset: intent
"""

from __future__ import annotations

import copy

from slimformer.methods.apply import apply_method, as_slim
from slimformer.methods.students.layer_selection import (
    SelectLayers,
    choose_layers,
    cut_layers,
    select_layers,
)
from slimformer.methods.students.narrowing import Narrow, narrow
from slimformer.model import SlimModel


def student(teacher, config: SelectLayers | Narrow, **context) -> SlimModel:
    """The family verb: a student cut from a copy of ``teacher`` by a typed config.

    ``student(teacher, SelectLayers(every=2))`` or ``student(teacher, Narrow(heads=6))``;
    the teacher is left as it was, the student records the stage as a recipe would.
    """
    copied = copy.deepcopy(as_slim(teacher))
    apply_method(copied, config, family="students", **{"progress": False, **context})
    return copied


__all__ = [
    "Narrow",
    "SelectLayers",
    "choose_layers",
    "cut_layers",
    "narrow",
    "select_layers",
    "student",
]
