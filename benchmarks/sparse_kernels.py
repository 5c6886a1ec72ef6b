"""Does a sparse CPU kernel beat the dense one? torch.sparse CSR against dense matmul.

Dense kernels gain nothing from zeros, which is why ``SparseLinear`` computes
with a rebuilt dense weight. This script measures where, if anywhere, a
sparse kernel (``torch.sparse`` CSR x dense) wins on this machine, for the
linear shapes of smollm2-135m (576 <-> 1536) at 50, 70, 90 and 95%
unstructured sparsity, at a decoding shape (1 token) and a prefill shape
(512 tokens). Every variant is timed in the same process, interleaved in
rounds, with a fixed thread count; outputs are checked against the dense
product before anything is timed.

Run: ``python benchmarks/sparse_kernels.py [--threads 2] [--rounds 5] [--out FILE.md]``.
The README's pruning section quotes benchmarks/results/sparse_kernels.md, written by
``--out benchmarks/results/sparse_kernels.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from slimformer.evaluate.latency import torch_threads
from slimformer.evaluate.measure import cpu_model_name
from slimformer.methods.pruning.masks import keep_lowest_pruned, pruned_count

#: (name, out_features, in_features) of smollm2-135m's linears.
SHAPES = (("q/o_proj", 576, 576), ("gate/up_proj", 1536, 576), ("down_proj", 576, 1536))
SPARSITIES = (0.5, 0.7, 0.9, 0.95)
TOKENS = (1, 512)


def pruned_weight(out_features: int, in_features: int, sparsity: float) -> torch.Tensor:
    """A random weight with exactly ``sparsity`` of its smallest entries zeroed."""
    weight = torch.randn(out_features, in_features)
    keep = keep_lowest_pruned(weight.abs(), pruned_count(weight.numel(), sparsity))
    return weight * keep


def kernels(weight: torch.Tensor) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each variant computes ``x @ weight.T`` for ``x`` ``[tokens, in]``."""
    csr = weight.to_sparse_csr()
    return {
        "dense": lambda x: x @ weight.T,
        # W (CSR) @ X^T is the sparse x dense product torch implements on CPU
        "csr": lambda x: (csr @ x.T).T,
    }


def time_interleaved(
    variants: dict[str, Callable], x: torch.Tensor, rounds: int, runs: int
) -> dict[str, float]:
    """Median seconds per call of each variant, variants alternating in every round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn(x)  # warm-up
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(runs):
                fn(x)
            times[name].append((time.perf_counter() - start) / runs)
    return {name: statistics.median(values) for name, values in times.items()}


def check_outputs(variants: dict[str, Callable], x: torch.Tensor) -> None:
    expected = variants["dense"](x)
    for name, fn in variants.items():
        if not torch.allclose(fn(x), expected, rtol=1e-4, atol=1e-4):
            raise AssertionError(f"{name} disagrees with the dense product")


def run(threads: int, rounds: int) -> list[dict]:
    rows = []
    with torch_threads(threads), torch.inference_mode():
        for name, out_features, in_features in SHAPES:
            for sparsity in SPARSITIES:
                variants = kernels(pruned_weight(out_features, in_features, sparsity))
                for tokens in TOKENS:
                    x = torch.randn(tokens, in_features)
                    check_outputs(variants, x)
                    runs = 200 if tokens == 1 else 10
                    medians = time_interleaved(variants, x, rounds, runs)
                    rows.append(
                        {
                            "layer": f"{name} {out_features}x{in_features}",
                            "sparsity": sparsity,
                            "tokens": tokens,
                            "dense_us": medians["dense"] * 1e6,
                            "csr_us": medians["csr"] * 1e6,
                        }
                    )
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    lines = [
        f"CPU: {cpu_model_name()}, {threads} threads, torch {torch.__version__}. "
        "Speed-up = dense time / CSR time (above 1: CSR wins).",
        "",
        "| layer | sparsity | tokens | dense (us) | CSR (us) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['layer']} | {row['sparsity']:.0%} | {row['tokens']} | "
            f"{row['dense_us']:.1f} | {row['csr_us']:.1f} | "
            f"{row['dense_us'] / row['csr_us']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the table to this markdown file")
    args = parser.parse_args()
    table = markdown(run(args.threads, args.rounds), args.threads)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
