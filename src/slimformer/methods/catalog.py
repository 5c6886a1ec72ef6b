"""The catalogue of built-in methods: names to configs, for recipes, the CLI and ``methods``.

Importing this module imports every built-in method module, so each
registers itself once; the rest of the package never needs to (a verb is
called with a config whose module is already imported). Lookups by name
(``method_entry``, ``make_config``) live here because only a caller that
starts from a name needs the whole catalogue.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from slimformer.errors import SlimformerError
from slimformer.methods.base import MethodConfig, MethodEntry, lookup, registered_so_far
from slimformer.methods.distillation import stage as distill_stage  # noqa: F401
from slimformer.methods.finetune import finetune  # noqa: F401
from slimformer.methods.movement import stage as movement_stage  # noqa: F401
from slimformer.methods.pruning import (
    magnitude,  # noqa: F401
    sparsegpt,  # noqa: F401
    wanda,  # noqa: F401
)
from slimformer.methods.quantization import (
    awq,  # noqa: F401
    embedding,  # noqa: F401
    float_format,  # noqa: F401
    gptq,  # noqa: F401
    int8_dynamic,  # noqa: F401
    mixed_precision,  # noqa: F401
    rtn,  # noqa: F401
    smoothquant,  # noqa: F401 - imports (so registers) w8a8 too
)
from slimformer.methods.structured import (
    drop_layers,  # noqa: F401
    prune_heads,  # noqa: F401
    prune_neurons,  # noqa: F401
)
from slimformer.methods.students import (
    layer_selection,  # noqa: F401
    narrowing,  # noqa: F401
)


def method_entry(name: str) -> MethodEntry:
    """The built-in (or user-registered) method called ``name``; a near miss is suggested."""
    entry = lookup(name)
    if entry is None:
        known = registered_so_far()
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SlimformerError(
            f"unknown method {name!r}", f"{hint}known methods: {', '.join(sorted(known))}"
        )
    return entry


def registered_methods() -> dict[str, MethodEntry]:
    """Every method by name: the built-ins and any a user registered."""
    return registered_so_far()


def make_config(name: str, settings: dict[str, Any], where: str = "") -> MethodConfig:
    """Build and validate a config from recipe settings, with a one-line error."""
    try:
        entry = method_entry(name)
    except SlimformerError as exc:  # say which stage names the unknown method
        raise SlimformerError(f"{where}{exc.problem}", exc.fix) from None
    check_version(entry.config, settings, where)
    try:
        return entry.config(**settings)
    except ValidationError as exc:
        raise SlimformerError(
            f"{where}{name}: {_describe(exc, entry.config)}",
            f"settings of {name}: {', '.join(entry.config.model_fields)}",
        ) from None


def check_version(config: type[MethodConfig], settings: dict[str, Any], where: str = "") -> None:
    """Refuse settings written for a newer version of ``config``: their meaning is unknown here.

    Older versions are read as written (a config migrates them itself); a newer
    one would be silently misread, so it fails before any setting is validated.
    """
    version = settings.get("version")
    current = config.current_version()
    if isinstance(version, int) and not isinstance(version, bool) and version > current:
        raise SlimformerError(
            f"{where}{config.method}: recipe version {version} is newer than this "
            f"slimformer's {config.method} version {current}",
            f"upgrade slimformer or write version: {current}",
        )


def _describe(exc: ValidationError, config: type[MethodConfig]) -> str:
    error = exc.errors()[0]
    field_name = ".".join(str(p) for p in error["loc"]) or "settings"
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(field_name, list(config.model_fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown setting {field_name!r}{hint}"
    return f"setting {field_name!r}: {error['msg']}"
