"""Methods: typed configs registered under a name, each with the function that applies it.

A method config is a small frozen pydantic model: it validates its settings
(unknown fields are errors, so a typo in a recipe fails loudly), has defaults
and a ``version``, and round-trips through JSON and YAML. The apply function
is registered next to it, so Python calls (``quantize_(model, Int8Dynamic())``)
and recipe stages (``method: int8_dynamic``) run the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from slimformer.calibration.session import CalibrationSession
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

    def named_teacher(self) -> str | None:
        """The model this stage names as its teacher; the pipeline loads it, never the stage."""
        return None

    @classmethod
    def current_version(cls) -> int:
        """The newest version of this config that the installed code understands."""
        return cls.model_fields["version"].default


@dataclass
class StageContext:
    """What a stage may need besides the model: its teacher, data, device.

    One context serves every stage of a recipe run, so its calibration
    session lets calibrated stages share token windows and the first block's
    inputs instead of tokenizing and running the model's prefix again.
    """

    original: SlimModel | None = None
    #: The model a stage that learns from another one learns from, resolved by the caller
    #: (the pipeline keeps the original or loads the stage's named teacher).
    teacher: SlimModel | None = None
    #: Token windows or a dataset given to the verb; overrides a config's calibration.
    calibration: Any = None
    device: str = "cpu"
    progress: bool = True
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    #: Shared by the calibrated stages of one run; None walks without sharing.
    calibration_session: CalibrationSession | None = field(default_factory=CalibrationSession)


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


def entry_of(config: MethodConfig | type[MethodConfig]) -> MethodEntry:
    """The registered entry of a config: its class registered it when its module was imported."""
    name = config.method
    entry = _REGISTRY.get(name)
    if entry is None:
        raise SlimformerError(
            f"method {name!r} ({type(config).__name__}) is not registered",
            "decorate its apply function with @register_method(ConfigClass)",
        )
    return entry


def lookup(name: str) -> MethodEntry | None:
    """The entry registered under ``name`` so far, or None."""
    return _REGISTRY.get(name)


def registered_so_far() -> dict[str, MethodEntry]:
    """Every method whose module has been imported; ``methods.catalog`` imports them all."""
    return dict(_REGISTRY)
