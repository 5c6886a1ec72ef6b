"""int8 embedding tables: the compression linear-only methods leave out.

A small encoder's token table is half its weights (MiniLM: 30522 x 384 of
22.7M), so after int8 on the linears the file is still mostly fp32 embedding.
Storing the table as int8 rows with one fp16 scale each
(:class:`slimformer.nn.Int8Embedding`) cuts it to about a quarter; lookups
stay exact to half a grid step per element.

Tied input/output embeddings (GPT-2, SmolLM2: ``tie_word_embeddings``) are
refused while the head still shares the table: quantizing the table would
either change the head too or, untied with a float head, store a second full
copy and make the file larger than before. Compressing the head in an earlier
stage unties it (see ``methods/apply.py``), after which the table is free.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import Field
from torch import nn

from slimformer.errors import SlimformerError
from slimformer.methods.base import MethodConfig, StageContext, register_method
from slimformer.model import SlimModel
from slimformer.nn import Int8Embedding, replace_module


class Int8Embeddings(MethodConfig):
    """int8 embedding tables: one int8 code per weight and one fp16 scale per row."""

    method = "int8_embedding"
    family = "quantization"

    tables: Literal["token", "all"] = Field(
        default="token",
        description="'token': the table input ids are looked up in (the big one); "
        "'all': position and token-type tables too.",
    )
    include: list[str] = Field(default=[], description="Only tables matching these globs.")
    exclude: list[str] = Field(default=[], description="Skip tables matching these globs.")

    def select(self, slim: SlimModel) -> dict[str, nn.Module]:
        """The chosen embedding tables by name; every misfit is a one-line error."""
        tables = slim.adapter.embeddings()
        for pattern in [*self.include, *self.exclude]:
            if not any(fnmatchcase(name, pattern) for name in tables):
                raise SlimformerError(
                    f"the embedding pattern {pattern!r} matches no embedding table",
                    f"embedding tables are: {', '.join(tables) or '(none)'}",
                )
        if self.tables == "token":
            token = slim.adapter.token_embedding()
            tables = {token: tables[token]} if token is not None else {}
        chosen = {
            name: module
            for name, module in tables.items()
            if (not self.include or any(fnmatchcase(name, p) for p in self.include))
            and not any(fnmatchcase(name, p) for p in self.exclude)
        }
        if not chosen:
            raise SlimformerError(
                f"no embedding table of {slim.name} is selected (tables={self.tables!r})",
                "use `tables: all` or widen `include`/`exclude`",
            )
        return chosen


@register_method(Int8Embeddings)
def apply_int8_embedding(slim: SlimModel, config: Int8Embeddings, context: StageContext) -> None:
    chosen = config.select(slim)
    for name, module in chosen.items():
        _check_quantizable(slim.model, name, module)
    for name, module in chosen.items():
        replace_module(slim.model, name, Int8Embedding.from_embedding(module))


def _check_quantizable(model: nn.Module, name: str, module: nn.Module) -> None:
    """Refuse tables that are already compressed or still shared with the output head."""
    if not isinstance(module, nn.Embedding):
        raise SlimformerError(
            f"the embedding {name} is already compressed ({type(module).__name__})",
            f"leave it out with `exclude: [{name}]`",
        )
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is not None and getattr(head, "weight", None) is module.weight:
        raise SlimformerError(
            f"the embedding {name} is tied to the output head, which would change with it",
            "compress the head in an earlier stage (e.g. `method: int8_dynamic` with "
            f"`parts: [attention, mlp, head]`), which unties it, or `exclude: [{name}]`",
        )
