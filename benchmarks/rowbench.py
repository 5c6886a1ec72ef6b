"""The machinery the family benchmarks share: rows run one process each, latency interleaved.

A benchmark is a list of :class:`Row`: a model and a recipe (a file in
``examples/`` or a list of stages). Each row is compressed in its own
process, so its wall time and peak memory are its own: load, run the recipe,
save, reload and check the outputs are bit-identical, evaluate. Finished rows
are kept under the benchmark's work folder (one JSON and one saved model
each), so an interrupted run resumes. Latency is measured afterwards in one
process for every saved model, interleaved in rounds, so drift in machine
speed hits every row alike:

- ``smollm2-135m``: prefill of batch 1 x 512 tokens, and single-token decoding
  after a 256-token prefix (median ms per token), eager, fixed thread count;
- ``minilm-intent``: batch 32 x seq 128 through the model's own runtime
  (``slimformer.load``'s choice: compiled for int8, eager otherwise).

Each benchmark's report module words its results; the tables, target lines
and figures they share come from ``slimformer.report``. ``--render`` writes a
report again from the saved results, running nothing.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLES = ROOT / "examples"

LM_CALIBRATION = {"dataset": "wiki", "split": "train", "samples": 64, "length": 512, "seed": 0}
BF16_CALIBRATION = {**LM_CALIBRATION, "compute_dtype": "bfloat16"}
CLS_CALIBRATION = {"dataset": "intent", "split": "train", "samples": 64, "length": 128, "seed": 0}


@dataclass(frozen=True)
class Row:
    """One benchmark row: a model and either a recipe (file or stages) or a peer.

    ``series`` and ``x`` place a row on a curve (say, accuracy against the
    share of heads removed); ``decode`` says whether an LM row's decoding speed
    is worth timing.
    """

    name: str
    model: str
    label: str
    recipe: str | list[dict] | None = None
    peer: str | None = None
    series: str = ""
    x: float | None = None
    decode: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


#: Hooks a benchmark may give: a peer's own compression, and extra facts about a result.
PeerHook = Callable[[torch.nn.Module, str], None]
FactsHook = Callable[[Any, Row], dict[str, Any]]


# -- one row, in its own process ----------------------------------------------------


def compress_row(
    row: Row,
    threads: int,
    work: Path,
    apply_peer: PeerHook | None = None,
    facts: FactsHook | None = None,
) -> dict[str, Any]:
    """Load, compress, save, reload, evaluate: everything about a row but its latency."""
    import slimformer
    from slimformer.evaluate.size import disk_bytes

    torch.set_num_threads(threads)
    slim = slimformer.load(row.model, runtime="eager", progress=False)
    started = time.perf_counter()
    methods = _apply(slim, row, apply_peer)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    folder = work / row.name / "model"
    if row.peer is None:
        shutil.rmtree(folder, ignore_errors=True)
        slimformer.save(slim, folder)
        total, _ = disk_bytes(folder)
        identical = _reloads_identically(slim, folder)
    else:
        from int8_dynamic import torch_save_bytes  # sibling benchmark: one way to size peers

        total, identical = torch_save_bytes(slim.model), None
    quality = slimformer.evaluate(slim, task_data(row), progress=False)
    return {
        "row": row.name,
        "methods": methods,
        "compress_s": seconds,
        "peak_rss_bytes": peak,
        "disk_bytes": total,
        "reload_identical": identical,
        "quality": {k: quality[k] for k in ("metric", "value", "dataset", "split") if k in quality},
        "eval_detail": {
            k: v
            for k, v in quality["metrics"].items()
            if k in ("windows", "window", "tokens", "mean_loss", "examples", "n", "correct")
        },
        **(facts(slim, row) if facts else {}),
    }


def _apply(slim, row: Row, apply_peer: PeerHook | None) -> list[str]:
    if row.peer is not None:
        if apply_peer is None:
            raise ValueError(f"row {row.name} names a peer but the benchmark has no peer hook")
        apply_peer(slim.model, row.peer)
        return [row.peer]
    from slimformer.methods.apply import apply_method
    from slimformer.pipeline import keep_original
    from slimformer.recipe import Recipe

    if row.recipe == []:
        return []  # the dense reference
    recipe = Recipe.load(row.recipe if isinstance(row.recipe, str) else {"stages": row.recipe})
    original = keep_original(slim, recipe)  # the teacher of distill stages, as in compress
    for stage in recipe.stages:
        apply_method(slim, stage, progress=False, original=original)
    return [stage.method for stage in recipe.stages]


def _reloads_identically(slim, folder: Path) -> bool:
    import slimformer

    reloaded = slimformer.load(folder, runtime="eager", progress=False)
    ids = torch.randint(1000, 20000, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return bool(
            torch.equal(slim.model(input_ids=ids).logits, reloaded.model(input_ids=ids).logits)
        )


def size_facts(slim) -> dict[str, Any]:
    """Logical weights of a result: all, the embedding tables, the rest; and its depth.

    Counts go through ``count_parameters``: compressed modules (int8, sparse)
    count their logical ``[out, in]`` weights, a tied LM head counts once.
    """
    from slimformer.arch.base import is_embedding
    from slimformer.evaluate.size import count_parameters

    total, _ = count_parameters(slim.model)
    embeddings = sum(count_parameters(m)[0] for m in slim.model.modules() if is_embedding(m))
    return {
        "params": total,
        "params_embeddings": embeddings,
        "params_outside_embeddings": total - embeddings,
        "layers": getattr(slim.model.config, "num_hidden_layers", None),
    }


def task_data(row: Row) -> str:
    return "wiki" if row.model == "smollm2-135m" else "intent"


# -- latency, all rows in one process -------------------------------------------------


def measure_latency(
    rows: list[Row],
    threads: int,
    rounds: int,
    work: Path,
    apply_peer: PeerHook | None = None,
) -> dict[str, dict[str, float]]:
    """Median latencies of every row, interleaved in rounds."""
    import slimformer

    torch.set_num_threads(threads)
    models = {row.name: _latency_model(row, slimformer, work, apply_peer) for row in rows}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in models}
    for _ in range(rounds):
        for row in rows:
            for shape, ms in _time_once(row, models[row.name]).items():
                times[row.name].setdefault(shape, []).extend(ms)
    return {n: {s: statistics.median(v) for s, v in t.items()} for n, t in times.items()}


def _latency_model(row: Row, slimformer, work: Path, apply_peer: PeerHook | None):
    if row.peer is not None:
        slim = slimformer.load(row.model, runtime="eager", progress=False)
        apply_peer(slim.model, row.peer)
        return slim.model
    runtime = "eager" if row.model == "smollm2-135m" else "auto"
    slim = slimformer.load(work / row.name / "model", runtime=runtime, progress=False)
    return slim.model if runtime == "eager" else slim.runner


def _time_once(row: Row, model) -> dict[str, list[float]]:
    if row.model == "smollm2-135m":
        times = {"prefill_1x512_ms": _prefill(model)}
        if row.decode:
            times["decode_ms_per_token"] = _decode(model)
        return times
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


# -- driver -----------------------------------------------------------------------------


def run_row_in_subprocess(row: Row, threads: int, script: str, work: Path) -> dict[str, Any]:
    """``script --worker ROW`` in a fresh process, or the row's kept result if it has one."""
    out = work / row.name / "result.json"
    if out.exists():
        return json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {row.name} ...", flush=True)
    command = [sys.executable, script, "--worker", row.name, "--threads", str(threads)]
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


def machine(threads: int) -> dict[str, Any]:
    """The facts a reader needs to compare figures: CPU, threads, versions, date."""
    from slimformer.evaluate.measure import cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


ReportWriter = Callable[[list[Row], dict[str, dict], dict[str, Any], Path], None]


def run_benchmark(
    description: str,
    rows: dict[str, Row],
    work: Path,
    script: str,
    write_report: ReportWriter,
    apply_peer: PeerHook | None = None,
    facts: FactsHook | None = None,
    timed: Callable[[Row], bool] = lambda row: row.extra.get("timed", True),
) -> None:
    """The command line every family benchmark shares: rows, threads, rounds, resume.

    ``timed`` picks the rows whose latency is worth measuring: by default all
    but those whose ``extra`` says ``timed: False``.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="forget finished rows and redo them")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for the report (a partial run's own)"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="write the report again from the saved results in --results, running nothing",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        render_saved(rows, args.results / f"{Path(script).stem}.json", write_report)
        return
    if args.worker:
        result = compress_row(rows[args.worker], args.threads, work, apply_peer, facts)
        print(json.dumps(result))
        return
    chosen = [rows[name] for name in args.rows.split(",")] if args.rows else list(rows.values())
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    results = {row.name: run_row_in_subprocess(row, args.threads, script, work) for row in chosen}
    ok = [row for row in chosen if "error" not in results[row.name] and timed(row)]
    print(f"[{time.strftime('%H:%M:%S')}] latency of {len(ok)} rows ...", flush=True)
    for name, latency in measure_latency(ok, args.threads, args.rounds, work, apply_peer).items():
        results[name]["latency"] = latency
    args.results.mkdir(parents=True, exist_ok=True)
    write_report(chosen, results, machine(args.threads), args.results)


def render_saved(rows: dict[str, Row], saved: Path, write_report: ReportWriter) -> None:
    """The report again from a benchmark's saved results: a new wording, not a new run."""
    from slimformer.report.runs import load_runs

    measured, results = load_runs(saved)
    unknown = [name for name in results if name not in rows]
    if unknown:
        raise SystemExit(f"{saved} has rows this benchmark no longer defines: {unknown}")
    write_report([rows[name] for name in results], results, measured, saved.parent)
