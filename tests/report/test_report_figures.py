"""Figures of many runs: saved as PNG when matplotlib is there, skipped without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slimformer.report.figures import Figure, figure_links, save_figures

PNG = b"\x89PNG\r\n\x1a\n"


def _line(ax, points) -> bool:
    ax.plot(*zip(*points, strict=True), marker="o")
    return True


def _nothing(ax, points) -> bool:
    return False


def _two_panels(axes, points) -> bool:
    assert len(axes) == 2
    for ax in axes:
        ax.scatter(*zip(*points, strict=True))
    return True


def test_figures_with_something_to_show_are_saved_as_png(tmp_path):
    pytest.importorskip("matplotlib")
    figures = [
        Figure("curve.png", _line),
        Figure("empty.png", _nothing),
        Figure("panels.png", _two_panels, 2),
    ]
    saved = save_figures(tmp_path, figures, [(0.0, 1.0), (0.5, 0.8)])
    assert saved == ["curve.png", "panels.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "panels.png"]
    assert all((tmp_path / name).read_bytes().startswith(PNG) for name in saved)


def test_without_matplotlib_nothing_is_drawn(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert save_figures(tmp_path, [Figure("curve.png", _line)], [(0.0, 1.0)]) == []
    assert list(tmp_path.iterdir()) == []


def test_figure_links_point_beside_the_report():
    assert figure_links(["a.png", "b.png"]) == ["![a.png](a.png)", "![b.png](b.png)"]


def test_the_package_imports_matplotlib_only_to_draw_and_never_pyplot(tmp_path):
    """``plots`` is an optional extra: importing the report package must not need it."""
    pytest.importorskip("matplotlib")
    code = f"""
import sys
import slimformer.report
assert not [m for m in sys.modules if m.startswith("matplotlib")], "imported at import time"
from slimformer.report import Figure, save_figures
saved = save_figures({str(tmp_path)!r}, [Figure("f.png", lambda ax: bool(ax.plot([0, 1])))])
assert saved == ["f.png"], saved
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
