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

Run: ``make bench-quant`` or ``python benchmarks/quantization.py [--rows a,b] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / ".work" / "quantization"
EXAMPLES = ROOT / "examples"

LM_CALIBRATION = {"dataset": "wiki", "split": "train", "samples": 64, "length": 512, "seed": 0}
BF16_CALIBRATION = {**LM_CALIBRATION, "compute_dtype": "bfloat16"}
CLS_CALIBRATION = {"dataset": "intent", "split": "train", "samples": 64, "length": 128, "seed": 0}


@dataclass(frozen=True)
class Row:
    """One benchmark row: a model and either a recipe (file or stages) or a peer."""

    name: str
    model: str
    label: str
    recipe: str | list[dict] | None = None
    peer: str | None = None


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


# -- one row, in its own process ------------------------------------------------


def compress_row(row: Row, threads: int) -> dict[str, Any]:
    """Load, compress, save, reload, evaluate: everything about a row but its latency."""
    import slimformer
    from slimformer.evaluate.size import disk_bytes

    torch.set_num_threads(threads)
    slim = slimformer.load(row.model, runtime="eager", progress=False)
    started = time.perf_counter()
    methods = _apply(slim, row)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    folder = WORK / row.name / "model"
    if row.peer is None:
        shutil.rmtree(folder, ignore_errors=True)
        slimformer.save(slim, folder)
        total, _ = disk_bytes(folder)
        identical = _reloads_identically(slim, folder)
    else:
        from int8_dynamic import torch_save_bytes  # sibling benchmark: one way to size peers

        total, identical = torch_save_bytes(slim.model), None
    quality = slimformer.evaluate(slim, _task_data(row), progress=False)
    return {
        "row": row.name,
        "methods": methods,
        "compress_s": seconds,
        "peak_rss_bytes": peak,
        "disk_bytes": total,
        "linear_bits_per_weight": _linear_bits(slim.model),
        "reload_identical": identical,
        "quality": {k: quality[k] for k in ("metric", "value", "dataset", "split") if k in quality},
        "eval_detail": {
            k: v
            for k, v in quality["metrics"].items()
            if k in ("windows", "window", "tokens", "examples")
        },
    }


def _apply(slim, row: Row) -> list[str]:
    if row.peer is not None:
        _apply_peer(slim.model, row.peer)
        return [row.peer]
    from slimformer.methods.apply import apply_method
    from slimformer.recipe import Recipe

    if row.recipe == []:
        return []  # the dense reference
    recipe = Recipe.load(row.recipe if isinstance(row.recipe, str) else {"stages": row.recipe})
    for stage in recipe.stages:
        apply_method(slim, stage, progress=False)
    return [stage.method for stage in recipe.stages]


def _apply_peer(model: torch.nn.Module, peer: str) -> None:
    """torchao's own weight-only schemes, on the same layers slimformer quantizes."""
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    def is_target(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and "lm_head" not in name

    if peer == "torchao-int8":
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=is_target)
        return
    model.to(torch.bfloat16)  # torchao's int4 kernels take bf16 activations
    quantize_(model, Int4WeightOnlyConfig(group_size=64), filter_fn=is_target)


def _reloads_identically(slim, folder: Path) -> bool:
    import slimformer

    reloaded = slimformer.load(folder, runtime="eager", progress=False)
    ids = torch.randint(1000, 20000, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return bool(
            torch.equal(slim.model(input_ids=ids).logits, reloaded.model(input_ids=ids).logits)
        )


def _linear_bits(model: torch.nn.Module) -> float | None:
    """Bits per weight of the quantized weight-only layers, from their stored tensors."""
    from slimformer.nn import WeightOnlyLinear
    from slimformer.nn.quantized_linear import bits_per_weight

    layers = [m for m in model.modules() if isinstance(m, WeightOnlyLinear)]
    if not layers:
        return None
    bits = sum(bits_per_weight(m) * m.in_features * m.out_features for m in layers)
    return bits / sum(m.in_features * m.out_features for m in layers)


def _task_data(row: Row) -> str:
    return "wiki" if row.model == "smollm2-135m" else "intent"


# -- latency, all rows in one process ----------------------------------------------


def measure_latency(rows: list[Row], threads: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median latencies of every row, interleaved in rounds."""
    import slimformer

    torch.set_num_threads(threads)
    models = {row.name: _latency_model(row, slimformer) for row in rows}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in models}
    for _ in range(rounds):
        for row in rows:
            for shape, ms in _time_once(row, models[row.name]).items():
                times[row.name].setdefault(shape, []).extend(ms)
    return {n: {s: statistics.median(v) for s, v in t.items()} for n, t in times.items()}


def _latency_model(row: Row, slimformer):
    if row.peer is not None:
        slim = slimformer.load(row.model, runtime="eager", progress=False)
        _apply_peer(slim.model, row.peer)
        return slim.model
    runtime = "eager" if row.model == "smollm2-135m" else "auto"
    slim = slimformer.load(WORK / row.name / "model", runtime=runtime, progress=False)
    return slim.model if runtime == "eager" else slim.runner


def _time_once(row: Row, model) -> dict[str, list[float]]:
    if row.model == "smollm2-135m":
        return {"prefill_1x512_ms": _prefill(model), "decode_ms_per_token": _decode(model)}
    return {"batch32x128_ms": _classify(model)}


def _prefill(model, runs: int = 2) -> list[float]:
    ids = torch.randint(1000, 20000, (1, 512), generator=torch.Generator().manual_seed(1))
    return [_timed(lambda: model(input_ids=ids, use_cache=False)) for _ in range(runs + 1)][1:]


def _decode(model, prefix: int = 256, steps: int = 16) -> list[float]:
    ids = torch.randint(1000, 20000, (1, prefix), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True)
        past, token, times = out.past_key_values, out.logits[:, -1:].argmax(-1), []
        for _ in range(steps):
            started = time.perf_counter()
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            times.append((time.perf_counter() - started) * 1e3)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return times[2:]


def _classify(model, runs: int = 3) -> list[float]:
    from slimformer.evaluate.latency import make_inputs

    inputs = make_inputs(30522, 32, 128)
    return [_timed(lambda: model(**inputs)) for _ in range(runs + 1)][1:]


def _timed(call) -> float:
    with torch.inference_mode():
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1e3


# -- driver ------------------------------------------------------------------------


def run_row_in_subprocess(row: Row, threads: int) -> dict[str, Any]:
    out = WORK / row.name / "result.json"
    if out.exists():
        return json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {row.name} ...", flush=True)
    command = [sys.executable, __file__, "--worker", row.name, "--threads", str(threads)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        result = {"row": row.name, "error": tail[0]}
    else:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        out.write_text(json.dumps(result))
    print(f"    {_summary(result)}", flush=True)
    return result


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    q = result["quality"]
    return f"{q['metric']} {q['value']:.4g} in {result['compress_s']:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="forget finished rows and redo them")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for the report (a partial run's own)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(compress_row(ROWS[args.worker], args.threads)))
        return
    rows = [ROWS[name] for name in args.rows.split(",")] if args.rows else list(ROWS.values())
    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    results = {row.name: run_row_in_subprocess(row, args.threads) for row in rows}
    ok = [row for row in rows if "error" not in results[row.name]]
    print(f"[{time.strftime('%H:%M:%S')}] latency of {len(ok)} rows ...", flush=True)
    for name, latency in measure_latency(ok, args.threads, args.rounds).items():
        results[name]["latency"] = latency
    from quantization_report import write_report

    args.results.mkdir(parents=True, exist_ok=True)
    write_report(rows, results, _machine(args.threads), args.results)


def _machine(threads: int) -> dict[str, Any]:
    from slimformer.evaluate.measure import cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
