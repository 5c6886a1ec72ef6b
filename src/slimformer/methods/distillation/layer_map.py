"""Which student layer learns from which teacher layer.

Layers are numbered as hidden states are: 0 is the embedding output, i the
output of layer i (1-based). Strategies:

- ``uniform``: student layer i <- teacher layer round(i * Lt / Ls) (TinyBERT), last to last;
- ``skip``: student i <- teacher i * (Lt // Ls) for i < Ls (patient KD, every k-th layer);
- ``last``: student i <- teacher Lt - Ls + i for i < Ls (patient KD, the last layers);
- ``final``: only the last student layer <- the last teacher layer (DistilBERT's cosine);
- an explicit ``{student: teacher}`` map.

Patient KD leaves the last layer out of ``skip`` and ``last`` because the
logits loss already covers it.
"""

from __future__ import annotations

from typing import Literal

from slimformer.errors import SlimformerError

Strategy = Literal["uniform", "skip", "last", "final"]
LayerMapSpec = Strategy | dict[int, int]


def resolve_layer_map(
    spec: LayerMapSpec,
    n_student: int,
    n_teacher: int,
    *,
    include_embeddings: bool = False,
    lowest: int = 0,
) -> list[tuple[int, int]]:
    """The ``(student, teacher)`` pairs of ``spec``; ``lowest`` is the first valid number."""
    if isinstance(spec, dict):
        return _explicit(spec, n_student, n_teacher, lowest)
    pairs = _strategy(spec, n_student, n_teacher)
    if include_embeddings:
        pairs.insert(0, (0, 0))
    if not pairs:
        raise SlimformerError(
            f"layer map {spec!r} pairs no layers for a {n_student}-layer student",
            "use layer_map: uniform (or final) for one-layer students",
        )
    return pairs


def _strategy(spec: str, n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    if spec == "uniform":
        return [(i, max(1, round(i * n_teacher / n_student))) for i in range(1, n_student + 1)]
    if spec == "skip":
        step = max(1, n_teacher // n_student)
        return [(i, i * step) for i in range(1, n_student)]
    if spec == "last":
        return [(i, n_teacher - n_student + i) for i in range(1, n_student)]
    if spec == "final":
        return [(n_student, n_teacher)]
    raise SlimformerError(
        f"unknown layer map {spec!r}", "use uniform, skip, last, final or a {student: teacher} map"
    )


def _explicit(
    spec: dict[int, int], n_student: int, n_teacher: int, lowest: int
) -> list[tuple[int, int]]:
    if not spec:
        raise SlimformerError("the layer map is empty", "map at least one student layer")
    for student, teacher in spec.items():
        for who, number, count in (
            ("student", student, n_student),
            ("teacher", teacher, n_teacher),
        ):
            if not lowest <= number <= count:
                raise SlimformerError(
                    f"the layer map names {who} layer {number}, but the {who} has layers "
                    f"{lowest}..{count}",
                    "number layers as hidden states are: 0 = embeddings, 1..L = layer outputs",
                )
    return sorted((int(s), int(t)) for s, t in spec.items())
