"""Knowledge distillation: students, losses, data and the ``distill`` verb.

A student learns from a frozen teacher through a weighted sum of losses
(:mod:`slimformer.methods.distillation.losses`); students come from the teacher by depth
(:func:`select_layers`) or width (:func:`narrow`), both built in
:mod:`slimformer.methods.students` and re-exported here, or are any model of the
same task and vocabulary. The package is named for the technique and the
verb for the action, so ``slimformer.distill`` is a plain function (exported
by :mod:`slimformer`) that no subpackage import can shadow.
"""

from slimformer.methods.distillation.api import DistillRun, distill, run_distillation
from slimformer.methods.distillation.losses import (
    AttentionMSE,
    HiddenCosine,
    HiddenMSE,
    LogitsKD,
    MiniLM,
    PatientKD,
    parse_losses,
)
from slimformer.methods.distillation.stage import Distill
from slimformer.methods.students import narrow, select_layers

__all__ = [
    "AttentionMSE",
    "Distill",
    "DistillRun",
    "HiddenCosine",
    "HiddenMSE",
    "LogitsKD",
    "MiniLM",
    "PatientKD",
    "distill",
    "narrow",
    "parse_losses",
    "run_distillation",
    "select_layers",
]
