"""Distillation losses, each a small config; a list of them is one weighted objective."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from slimformer.errors import SlimformerError
from slimformer.methods.distillation.losses.attention import AttentionMSE
from slimformer.methods.distillation.losses.base import LossConfig, LossTerm
from slimformer.methods.distillation.losses.hidden import HiddenCosine, HiddenMSE
from slimformer.methods.distillation.losses.logits import LogitsKD
from slimformer.methods.distillation.losses.minilm import MiniLM
from slimformer.methods.distillation.losses.patient import PatientKD

LOSSES: dict[str, type[LossConfig]] = {
    config.model_fields["kind"].default: config
    for config in (LogitsKD, HiddenMSE, HiddenCosine, AttentionMSE, MiniLM, PatientKD)
}

#: One loss in a recipe: ``{kind: hidden_mse, weight: 1.0, ...}``.
AnyLoss = Annotated[
    LogitsKD | HiddenMSE | HiddenCosine | AttentionMSE | MiniLM | PatientKD,
    Field(discriminator="kind"),
]


def parse_losses(losses: Any) -> list[LossConfig]:
    """Loss configs from configs, kind names (``"logits"``) or dicts (``{"kind": ...}``)."""
    if isinstance(losses, LossConfig | str | dict):
        losses = [losses]
    parsed = [_one(item) for item in losses]
    if not parsed:
        raise SlimformerError("no distillation loss was given", f"use some of: {', '.join(LOSSES)}")
    return parsed


def _one(item: Any) -> LossConfig:
    if isinstance(item, LossConfig):
        return item
    if isinstance(item, str):
        if item not in LOSSES:
            raise SlimformerError(f"unknown loss {item!r}", f"use one of: {', '.join(LOSSES)}")
        return LOSSES[item]()
    try:
        return TypeAdapter(AnyLoss).validate_python(item)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise SlimformerError(
            f"loss {item!r}: {where}: {error['msg']}", f"kinds: {', '.join(LOSSES)}"
        ) from None


__all__ = [
    "LOSSES",
    "AnyLoss",
    "AttentionMSE",
    "HiddenCosine",
    "HiddenMSE",
    "LogitsKD",
    "LossConfig",
    "LossTerm",
    "MiniLM",
    "PatientKD",
    "parse_losses",
]
