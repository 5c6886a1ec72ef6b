"""Figures of many runs, saved as PNG files beside the report that links them.

matplotlib is the optional ``plots`` extra: it is imported only when a
figure is drawn, so the package (and a report without figures) works
without it, and :func:`save_figures` then saves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple


class Figure(NamedTuple):
    """A figure a report may draw.

    ``draw(axes, *data)`` draws on one matplotlib axes (or an array of
    ``columns`` of them) and returns whether it drew anything: a figure
    with nothing to show is not saved.
    """

    name: str
    draw: Callable[..., bool]
    columns: int = 1


def plots_available() -> bool:
    """Whether matplotlib (the ``plots`` extra) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def save_figures(out: str | Path, figures: Iterable[Figure], *data: Any) -> list[str]:
    """Draw each figure from ``data`` and save those with something to show, as PNG in ``out``.

    Returns the names saved, in order; [] without matplotlib. Figures are
    drawn on a bare matplotlib figure, never through pyplot, so no display
    is needed and the caller's backend and open figures are left alone.
    """
    if not plots_available():
        return []
    from matplotlib.figure import Figure as MatplotlibFigure  # no pyplot, no global state

    saved = []
    for name, draw, columns in figures:
        fig = MatplotlibFigure(figsize=(6 * columns if columns > 1 else 7, 4.5))
        if draw(fig.subplots(1, columns), *data):
            fig.tight_layout()
            fig.savefig(Path(out) / name, dpi=120)
            saved.append(name)
    return saved


def figure_links(names: Iterable[str]) -> list[str]:
    """Markdown image lines for saved figures, relative to the report beside them."""
    return [f"![{name}]({name})" for name in names]
