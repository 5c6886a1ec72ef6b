"""Knowledge distillation: students, losses, data and the ``distill`` verb.

A student learns from a frozen teacher through a weighted sum of losses
(:mod:`slimformer.distill.losses`); students come from the teacher by depth
(:func:`select_layers`) or width (:func:`narrow`), or are any model of the
same task and vocabulary.
"""

import sys
import types

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


class _CallableModule(types.ModuleType):
    """``slimformer.distill`` is both this package and the verb.

    Importing a subpackage makes it an attribute of its parent, which would
    shadow the verb of the same name; calling the package calls the verb.
    """

    def __call__(self, *args, **kwargs):
        return distill(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
