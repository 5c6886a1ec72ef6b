"""Methods: typed configs registered under a name, each with the function that applies it.

A method config is a small frozen pydantic model: it validates its settings
(unknown fields are errors, so a typo in a recipe fails loudly), has defaults
and a ``version``, and round-trips through JSON and YAML. The apply function
is registered next to it, so Python calls (``quantize_(model, Int8Dynamic())``)
and recipe stages (``method: int8_dynamic``) run the same code.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from slimformer.errors import SlimformerError
from slimformer.model import SlimModel


class MethodConfig(BaseModel):
    """Base of every method config; subclasses add typed, validated settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Registered name, used in recipes and saved metadata.
    method: ClassVar[str] = ""
    #: Family: quantization, pruning, distillation, low-rank, sharing, training.
    family: ClassVar[str] = ""
    #: Whether the stage needs the model as it was before the recipe (a teacher).
    needs_original: ClassVar[bool] = False
    #: Bumped whenever a setting's meaning changes, so old recipes are read as written.
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The recipe form: the method name followed by every setting."""
        return {"method": self.method, **self.model_dump(mode="json")}


@dataclass
class StageContext:
    """What a stage may need besides the model: the original, data, device."""

    original: SlimModel | None = None
    #: Token windows or a dataset given to the verb; overrides a config's calibration.
    calibration: Any = None
    device: str = "cpu"
    progress: bool = True
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


ApplyFn = Callable[[SlimModel, Any, StageContext], None]


@dataclass(frozen=True)
class MethodEntry:
    name: str
    family: str
    config: type[MethodConfig]
    apply: ApplyFn
    summary: str


_REGISTRY: dict[str, MethodEntry] = {}


def register_method(config: type[MethodConfig]) -> Callable[[ApplyFn], ApplyFn]:
    """Register ``config`` under ``config.method`` with the decorated apply function."""

    def decorator(apply: ApplyFn) -> ApplyFn:
        summary = (config.__doc__ or "").strip().splitlines()[0] if config.__doc__ else ""
        _REGISTRY[config.method] = MethodEntry(config.method, config.family, config, apply, summary)
        return apply

    return decorator


def method_entry(name: str) -> MethodEntry:
    _ensure_builtin_methods()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SlimformerError(
            f"unknown method {name!r}", f"{hint}known methods: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def registered_methods() -> dict[str, MethodEntry]:
    _ensure_builtin_methods()
    return dict(_REGISTRY)


def make_config(name: str, settings: dict[str, Any], where: str = "") -> MethodConfig:
    """Build and validate a config from recipe settings, with a one-line error."""
    try:
        entry = method_entry(name)
    except SlimformerError as exc:  # say which stage names the unknown method
        raise SlimformerError(f"{where}{exc.problem}", exc.fix) from None
    try:
        return entry.config(**settings)
    except ValidationError as exc:
        raise SlimformerError(
            f"{where}{name}: {_describe(exc, entry.config)}",
            f"settings of {name}: {', '.join(entry.config.model_fields)}",
        ) from None


def _describe(exc: ValidationError, config: type[MethodConfig]) -> str:
    error = exc.errors()[0]
    field_name = ".".join(str(p) for p in error["loc"]) or "settings"
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(field_name, list(config.model_fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown setting {field_name!r}{hint}"
    return f"setting {field_name!r}: {error['msg']}"


def _ensure_builtin_methods() -> None:
    """Import the built-in method modules so they register themselves."""
    import slimformer.methods.builtin  # noqa: F401
