"""``select_layers``: a student keeping some of the teacher's layers, weights copied (DistilBERT).

The layer stack (found through the architecture adapter) is cut down to the
chosen layers by ``arch/surgery.py``; embeddings, norms and the head come
along unchanged, each kept layer's KV-cache slot becomes its new position,
and the config says the new depth, so the saved student reloads as a plain
model of its family (per-layer sizes, where earlier stages left layers
different, travel in the saved metadata as after structured pruning).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from pydantic import PositiveInt, model_validator

from slimformer.arch.surgery import remove_layers, sync_config
from slimformer.errors import SlimformerError
from slimformer.methods.apply import apply_method
from slimformer.methods.base import MethodConfig, StageContext, register_method
from slimformer.model import SlimModel


class SelectLayers(MethodConfig):
    """Keep only the listed layers (or every N-th from the first), each copied exactly."""

    method = "select_layers"
    family = "students"

    #: 0-based layers of the current model to keep.
    layers: list[int] | None = None
    #: Keep one layer in every ``every``, starting with the first (2: layers 0, 2, 4, ...).
    every: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> SelectLayers:
        if (self.layers is None) == (self.every is None):
            raise ValueError("give exactly one of `layers` and `every`")
        return self


def choose_layers(n_layers: int, layers: Sequence[int] | None, every: int | None) -> list[int]:
    """The 0-based layers to keep: ``layers`` as given, or every ``every``-th from the first."""
    if (layers is None) == (every is None):
        raise SlimformerError(
            "give either the layers to keep or every (keep one layer in every N)",
            "for example layers=[0, 2, 4] or every=2",
        )
    if every is not None and every < 1:
        raise SlimformerError(f"every={every} keeps no layers", "use every=1 or more")
    chosen = list(range(0, n_layers, every)) if every is not None else list(layers)
    if not chosen:
        raise SlimformerError("no layers were chosen for the student", "keep at least one layer")
    bad = [i for i in chosen if not 0 <= i < n_layers]
    if bad:
        raise SlimformerError(
            f"layer {bad[0]} does not exist: the model has layers 0..{n_layers - 1}",
            "choose layers inside that range",
        )
    if len(set(chosen)) != len(chosen):
        raise SlimformerError(f"layers {chosen} repeat a layer", "list each layer once")
    return sorted(chosen)


def cut_layers(slim: SlimModel, keep: Sequence[int]) -> None:
    """Keep only layers ``keep`` of ``slim`` in place, renumbered 0..len(keep)-1."""
    kept = set(keep)
    remove_layers(slim.adapter, [i for i in range(len(slim.adapter.layers())) if i not in kept])
    sync_config(slim.adapter)
    slim.refresh_adapter()


def select_layers(
    teacher: SlimModel, layers: Sequence[int] | None = None, *, every: int | None = None
) -> SlimModel:
    """A new model made of the teacher's ``layers`` (0-based), each copied exactly.

    The teacher is left as it was; the student records the stage (with the
    layers it kept) in its compression history, as a recipe stage would.
    """
    keep = choose_layers(len(teacher.adapter.layers()), layers, every)
    student = copy.deepcopy(teacher)
    apply_method(student, SelectLayers(layers=keep), family="students", progress=False)
    return student


@register_method(SelectLayers)
def apply_select_layers(slim: SlimModel, config: SelectLayers, context: StageContext) -> None:
    keep = choose_layers(len(slim.adapter.layers()), config.layers, config.every)
    cut_layers(slim, keep)
    if context.progress:
        print(f"select_layers: kept layers {keep}")
