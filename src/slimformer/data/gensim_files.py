"""Finding the text files that ship inside the gensim wheel.

gensim's test data holds a real Wikipedia sample and a labelled sentence set
that install from PyPI, so they work offline and behind firewalls. They are
located through the installed package rather than a fixed path, so any
virtualenv or platform works.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from slimformer.errors import SlimformerError

INSTALL_HINT = "install it with `pip install gensim` (or `pip install slimformer[data]`)"


def gensim_available() -> bool:
    """Whether gensim is installed, checked without importing it (importing is slow)."""
    return importlib.util.find_spec("gensim") is not None


def gensim_test_file(name: str, dataset: str) -> Path:
    """The path of one file in ``gensim/test/test_data``; fails with the install hint."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise SlimformerError(f"dataset {dataset!r} needs the gensim package", INSTALL_HINT)
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    path = package_dir / "test" / "test_data" / name
    if not path.is_file():
        raise SlimformerError(
            f"dataset {dataset!r} needs {name}, which is missing from gensim at {package_dir}",
            f"reinstall gensim with its test data: {INSTALL_HINT}",
        )
    return path
