"""Evaluation (task quality) and measurement (size, speed, memory, energy)."""

import sys
import types

from slimformer.evaluate.tasks import PRIMARY, evaluate, reference_embeddings

__all__ = ["PRIMARY", "evaluate", "reference_embeddings"]


class _CallableModule(types.ModuleType):
    """``slimformer.evaluate(...)`` calls :func:`evaluate`.

    The package and the public verb share a name, and importing any submodule
    binds ``slimformer.evaluate`` to this package, so the package itself must
    be callable for the documented ``slimformer.evaluate(slim, "intent")``.
    """

    def __call__(self, *args, **kwargs):
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
