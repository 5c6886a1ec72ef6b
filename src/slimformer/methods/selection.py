"""Choosing which layers a method touches: by part, and by name patterns.

Every method that works on linear layers selects them the same way, so
"skip the head", "only the MLP" or "not layer 0" read alike in every recipe.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import Field
from torch import nn

from slimformer.arch import PARTS
from slimformer.errors import SlimformerError
from slimformer.methods.base import MethodConfig
from slimformer.model import SlimModel
from slimformer.nn.sharing import all_names
from slimformer.nn.sparse_linear import SparseLinear


class LinearSelection(MethodConfig):
    """Base of configs that act on linear layers: which parts, which names."""

    parts: list[Literal[PARTS]] = Field(  # type: ignore[valid-type]
        default=["attention", "mlp", "other"],
        description="Model parts to act on; the task head stays as it is by default.",
    )
    include: list[str] = Field(default=[], description="Only layers matching these globs.")
    exclude: list[str] = Field(default=[], description="Skip layers matching these globs.")

    def select(self, slim: SlimModel, pruned: bool = False) -> dict[str, nn.Module]:
        """The selected layers; ``pruned`` admits already pruned (sparse) ones too.

        Without it, a selected layer that an earlier stage pruned is an error
        naming this method: skipping it silently would leave it uncompressed.
        """
        chosen = select_linears(slim, list(self.parts), self.include, self.exclude)
        if not pruned:
            _refuse_pruned(chosen, self.method)
        return chosen


def _refuse_pruned(chosen: dict[str, nn.Module], method: str) -> None:
    """Stop with a clear line when ``method`` cannot take the pruned layers in ``chosen``."""
    sparse = [name for name, module in chosen.items() if isinstance(module, SparseLinear)]
    if sparse:
        raise SlimformerError(
            f"{len(sparse)} selected layer(s) are already pruned ({sparse[0]}, ...) "
            f"and {method} cannot compress sparse layers",
            "quantize pruned layers with `method: rtn, bits: 8, group_size: 0, symmetric: true`, "
            "or leave them out with `exclude`",
        )


def select_linears(
    slim: SlimModel,
    parts: list[str],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, nn.Module]:
    """The linear layers in ``parts`` whose names match ``include`` and not ``exclude``.

    Patterns are shell-style globs on qualified module names
    (``*.attention.*``, ``bert.encoder.layer.0.*``). A pattern that matches no
    linear layer is an error: it is almost always a typo. Pruned layers
    (:class:`SparseLinear`) count as linear layers.

    A layer shared by several places (tied blocks) is chosen once, under its
    first name, so it is compressed once; patterns see all its names: it is
    included if any name matches ``include`` and left out if any matches ``exclude``.
    """
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SlimformerError(f"unknown part(s) {unknown}", f"parts are: {', '.join(PARTS)}")
    dense = slim.adapter.linear_layers()
    linears = {
        name: module
        for name, module in slim.model.named_modules()
        if name in dense or isinstance(module, SparseLinear)
    }
    names = all_names(slim.model)
    for pattern in [*(include or []), *(exclude or [])]:
        if not any(_matches(names[name], [pattern]) for name in linears):
            raise SlimformerError(
                f"the layer pattern {pattern!r} matches no linear layer",
                f"linear layers look like {next(iter(linears), '(none)')!r}",
            )
    chosen = {
        name: module
        for name, module in linears.items()
        if slim.adapter.part_of(name) in parts
        and (not include or _matches(names[name], include))
        and not _matches(names[name], exclude or [])
    }
    if not chosen:
        raise SlimformerError(
            f"no linear layer of {slim.name} is selected (parts={parts})",
            "widen `parts` or `include`, or check that the model has nn.Linear layers",
        )
    return chosen


def _matches(names: list[str], patterns: list[str]) -> bool:
    """Whether any of a layer's names matches any of ``patterns``."""
    return any(fnmatchcase(name, pattern) for name in names for pattern in patterns)
