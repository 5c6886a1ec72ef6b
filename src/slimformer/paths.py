"""Where slimformer keeps its cache, and how it writes outputs safely.

Outputs are built in a temporary sibling folder and renamed into place only
when complete, so an interrupted or failing run never leaves a half-written
model behind, and an existing output is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from slimformer.errors import SlimformerError


def cache_dir() -> Path:
    """The cache root: ``$SLIMFORMER_CACHE`` or ``~/.cache/slimformer``."""
    root = os.environ.get("SLIMFORMER_CACHE") or Path.home() / ".cache" / "slimformer"
    path = Path(root).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file at that path, or a folder that cannot be created
        raise SlimformerError(
            f"the cache {path} cannot be used as a folder ({exc.strerror or exc})",
            "point SLIMFORMER_CACHE at a writable folder (or unset it)",
        ) from None
    return path


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing, non-empty output unless ``overwrite`` is set."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SlimformerError(
            f"output {out} exists and is a file", "choose a folder path for --out"
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SlimformerError(
            f"output folder {out} already exists and is not empty",
            "choose another --out or pass --overwrite",
        )
    return out


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` only if the block succeeds."""
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(backup)
        tmp.rename(out)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        tmp.rename(out)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
