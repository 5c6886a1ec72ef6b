"""The quantization family on smollm2-135m (wiki) and minilm-intent (intent).

Writes benchmarks/results/quantization.md and .json, with plots. Each row is
compressed in its own process (so its peak memory is its own): load, run the
recipe, save, reload and check the outputs are bit-identical, evaluate. The
six rows with a recipe in examples/ run that very file. Latency is measured
afterwards in one process for every saved model, interleaved in rounds so
that drift in machine speed hits every row alike:

- smollm2-135m: prefill of batch 1 x 512 tokens, and single-token decoding
  after a 256-token prefix (median ms per token), eager, fixed thread count;
- minilm-intent: batch 32 x seq 128 through the model's own runtime
  (``slimformer.load``'s choice: compiled for int8, eager otherwise).

Finished rows are kept in benchmarks/.work/quantization (one JSON and one
saved model each) so an interrupted run resumes; ``--fresh`` starts over.

Run: ``make bench-quant`` or ``python benchmarks/quantization.py [--rows a,b] [--threads 2]``;
``--render`` writes the report again from its saved JSON, running nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from rowbench import (  # the sibling module: a script's own folder is on sys.path
    BF16_CALIBRATION,
    CLS_CALIBRATION,
    EXAMPLES,
    LM_CALIBRATION,
    ROOT,
    Row,
    run_benchmark,
)

WORK = ROOT / "benchmarks" / ".work" / "quantization"


def _lm_rows() -> list[Row]:
    lm, cal = "smollm2-135m", BF16_CALIBRATION
    w8 = {"bits": 8, "group_size": 0, "symmetric": True}
    w3 = {"bits": 3, "group_size": 64}
    return [
        Row("lm-fp32", lm, "fp32 (dense)", []),
        Row("lm-bf16", lm, "bf16", [{"method": "float", "dtype": "bfloat16"}]),
        Row("lm-rtn-w8", lm, "RTN W8 per-channel", [{"method": "rtn", **w8}]),
        Row("lm-rtn-w4-g64", lm, "RTN W4 g64", str(EXAMPLES / "rtn-w4-g64.yaml")),
        Row("lm-rtn-w3-g64", lm, "RTN W3 g64", [{"method": "rtn", **w3}]),
        Row(
            "lm-gptq-w8", lm, "GPTQ W8 per-channel", [{"method": "gptq", **w8, "calibration": cal}]
        ),
        Row("lm-gptq-w4-g64", lm, "GPTQ W4 g64", str(EXAMPLES / "gptq-w4-g64.yaml")),
        Row("lm-gptq-w3-g64", lm, "GPTQ W3 g64", str(EXAMPLES / "gptq-w3-g64.yaml")),
        Row("lm-awq-w4-g64", lm, "AWQ W4 g64", str(EXAMPLES / "awq-w4-g64.yaml")),
        Row(
            "lm-awq-w3-g64",
            lm,
            "AWQ W3 g64",
            [{"method": "awq", **w3, "calibration": cal}],
        ),
        Row(
            "lm-w8a8-naive-tensor",
            lm,
            "W8A8 naive, static per-tensor activations",
            [{"method": "w8a8", "activations": "per_tensor", "calibration": LM_CALIBRATION}],
        ),
        Row(
            "lm-w8a8-naive-token",
            lm,
            "W8A8 naive, per-token activations",
            [{"method": "w8a8", "activations": "per_token", "calibration": LM_CALIBRATION}],
        ),
        Row(
            "lm-smoothquant-tensor",
            lm,
            "SmoothQuant W8A8, static per-tensor activations",
            [{"method": "smoothquant", "activations": "per_tensor", "calibration": LM_CALIBRATION}],
        ),
        Row(
            "lm-smoothquant-w8a8",
            lm,
            "SmoothQuant W8A8, per-token activations",
            str(EXAMPLES / "smoothquant-w8a8.yaml"),
        ),
        Row("lm-mixed-4.5", lm, "mixed 4.5 bits (4 or 8)", str(EXAMPLES / "mixed-4.5.yaml")),
        Row(
            "lm-mixed-3.5",
            lm,
            "mixed 3.5 bits (3, 4 or 8)",
            [
                {
                    "method": "mixed_precision",
                    "average_bits": 3.5,
                    "choices": [3, 4, 8],
                    "group_size": 64,
                    "calibration": cal,
                }
            ],
        ),
        Row("lm-torchao-int8wo", lm, "torchao int8 weight-only", peer="torchao-int8"),
        Row("lm-torchao-int4wo-g64", lm, "torchao int4 weight-only g64", peer="torchao-int4"),
    ]


def _cls_rows() -> list[Row]:
    cls, cal = "minilm-intent", CLS_CALIBRATION
    w8 = {"bits": 8, "group_size": 0, "symmetric": True}
    return [
        Row("cls-fp32", cls, "fp32 (dense)", []),
        Row("cls-bf16", cls, "bf16", [{"method": "float", "dtype": "bfloat16"}]),
        Row("cls-int8-dynamic", cls, "int8 dynamic (W8A8)", [{"method": "int8_dynamic"}]),
        Row("cls-rtn-w8", cls, "RTN W8 per-channel", [{"method": "rtn", **w8}]),
        Row("cls-rtn-w4-g64", cls, "RTN W4 g64", [{"method": "rtn", "bits": 4, "group_size": 64}]),
        Row(
            "cls-gptq-w4-g64",
            cls,
            "GPTQ W4 g64",
            [{"method": "gptq", "bits": 4, "group_size": 64, "calibration": cal}],
        ),
        Row(
            "cls-gptq-w3-g64",
            cls,
            "GPTQ W3 g64",
            [{"method": "gptq", "bits": 3, "group_size": 64, "calibration": cal}],
        ),
        Row(
            "cls-awq-w4-g64",
            cls,
            "AWQ W4 g64",
            [{"method": "awq", "bits": 4, "group_size": 64, "calibration": cal}],
        ),
        Row(
            "cls-w8a8-naive",
            cls,
            "W8A8 naive, per-token activations",
            [{"method": "w8a8", "activations": "per_token", "calibration": cal}],
        ),
        Row(
            "cls-smoothquant-w8a8",
            cls,
            "SmoothQuant W8A8, per-token activations",
            [{"method": "smoothquant", "calibration": cal}],
        ),
        Row(
            "cls-mixed-4.5",
            cls,
            "mixed 4.5 bits (4 or 8)",
            [
                {
                    "method": "mixed_precision",
                    "average_bits": 4.5,
                    "group_size": 64,
                    "calibration": cal,
                }
            ],
        ),
    ]


ROWS = {row.name: row for row in _lm_rows() + _cls_rows()}


# -- what only this benchmark needs ------------------------------------------------


def apply_peer(model: torch.nn.Module, peer: str) -> None:
    """torchao's own weight-only schemes, on the same layers slimformer quantizes."""
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    def is_target(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and "lm_head" not in name

    if peer == "torchao-int8":
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=is_target)
        return
    model.to(torch.bfloat16)  # torchao's int4 kernels take bf16 activations
    quantize_(model, Int4WeightOnlyConfig(group_size=64), filter_fn=is_target)


def linear_bits(slim, row: Row) -> dict[str, Any]:
    """Bits per weight of the quantized weight-only layers, from their stored tensors."""
    from slimformer.nn import WeightOnlyLinear
    from slimformer.nn.quantized_linear import bits_per_weight

    layers = [m for m in slim.model.modules() if isinstance(m, WeightOnlyLinear)]
    if not layers:
        return {"linear_bits_per_weight": None}
    bits = sum(bits_per_weight(m) * m.in_features * m.out_features for m in layers)
    return {"linear_bits_per_weight": bits / sum(m.in_features * m.out_features for m in layers)}


def main() -> None:
    from quantization_report import write_report

    run_benchmark(
        __doc__.splitlines()[0], ROWS, WORK, __file__, write_report, apply_peer, linear_bits
    )


if __name__ == "__main__":
    main()
