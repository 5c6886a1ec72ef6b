"""Recipes: a YAML list of stages, each a method name with its settings.

::

    name: int8
    stages:
      - method: int8_dynamic
        exclude: ["*.pooler.*"]

Every stage is validated against its method's config before any work
starts, so a typo fails in a second rather than after an hour of calibration.
A recipe written back out (``to_yaml``) is the exact recipe that ran: every
default is spelled out, with each method's version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slimformer.errors import SlimformerError
from slimformer.methods.base import MethodConfig
from slimformer.methods.catalog import make_config

_TOP_LEVEL = {"name", "description", "stages"}


@dataclass
class Recipe:
    """An ordered list of validated method configs."""

    stages: list[MethodConfig]
    name: str = "recipe"
    description: str = ""
    source: str | None = field(default=None, compare=False)

    # -- reading -------------------------------------------------------------------
    @classmethod
    def load(cls, recipe: Recipe | str | os.PathLike | dict | list) -> Recipe:
        """A recipe from an object, a YAML file path, YAML text or a parsed dict/list."""
        if isinstance(recipe, Recipe):
            return recipe
        if isinstance(recipe, (dict, list)):
            return cls.from_dict(recipe)
        text = str(recipe)
        path = Path(text)
        # YAML text spans lines or has a `method:` key; one line without ":" is a path.
        one_line = "\n" not in text
        if isinstance(recipe, os.PathLike) or (
            one_line and (":" not in text or path.suffix in {".yaml", ".yml"} or _is_file(path))
        ):
            if not _is_file(path):
                raise SlimformerError(f"recipe file {path} not found", "check the --recipe path")
            return cls.from_yaml(path.read_text(), source=str(path))
        return cls.from_yaml(text)

    @classmethod
    def from_yaml(cls, text: str, source: str | None = None) -> Recipe:
        where = f"recipe {source}" if source else "recipe"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            raise SlimformerError(f"{where} is not valid YAML{line}", "fix the syntax") from None
        recipe = cls.from_dict(data, where=where)
        recipe.source = source
        return recipe

    @classmethod
    def from_dict(cls, data: Any, where: str = "recipe") -> Recipe:
        if isinstance(data, list):
            data = {"stages": data}
        if not isinstance(data, dict) or "stages" not in data:
            raise SlimformerError(
                f"{where} has no 'stages' list", "write `stages:` followed by `- method: NAME`"
            )
        unknown = sorted(set(data) - _TOP_LEVEL)
        if unknown:
            raise SlimformerError(
                f"{where} has unknown top-level key(s) {unknown}",
                f"allowed: {', '.join(sorted(_TOP_LEVEL))}",
            )
        stages = data["stages"]
        if not isinstance(stages, list) or not stages:
            raise SlimformerError(f"{where}: 'stages' is empty", "list at least one stage")
        configs = [_stage(stage, i, where) for i, stage in enumerate(stages, start=1)]
        return cls(
            stages=configs,
            name=str(data.get("name") or "recipe"),
            description=str(data.get("description") or ""),
        )

    # -- writing -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["stages"] = [stage.to_dict() for stage in self.stages]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long to be a file: then it is not one
        return False


def _stage(stage: Any, index: int, where: str) -> MethodConfig:
    prefix = f"{where}, stage {index}: "
    if not isinstance(stage, dict) or "method" not in stage:
        raise SlimformerError(
            f"{prefix}a stage must be a mapping with a 'method' key",
            "write `- method: int8_dynamic` and its settings below it",
        )
    settings = {key: value for key, value in stage.items() if key != "method"}
    return make_config(str(stage["method"]), settings, where=prefix)
