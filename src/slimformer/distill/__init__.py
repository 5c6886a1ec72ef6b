"""Knowledge distillation: students, losses, data and the ``distill`` verb.

A student learns from a frozen teacher through a weighted sum of losses
(:mod:`slimformer.distill.losses`); students come from the teacher by depth
(:func:`select_layers`) or width (:func:`narrow`), or are any model of the
same task and vocabulary.
"""

from slimformer.distill.api import DistillRun, distill, run_distillation
from slimformer.distill.losses import (
    AttentionMSE,
    HiddenCosine,
    HiddenMSE,
    LogitsKD,
    MiniLM,
    PatientKD,
    parse_losses,
)
from slimformer.distill.narrow import narrow
from slimformer.distill.select_layers import select_layers

__all__ = [
    "AttentionMSE",
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
