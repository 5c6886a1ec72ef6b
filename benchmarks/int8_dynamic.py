"""Dynamic int8 against fp32 and the peers that run here, on minilm-intent.

Writes benchmarks/results/int8_dynamic.md and .json. Every variant is timed
in the same process, interleaved in rounds (so drift in machine speed hits
all of them alike), at batch 1 x seq 64 and batch 32 x seq 128 with a fixed
thread count. Accuracy is on the 193 intent test examples; "lost" counts
examples fp32 gets right and the variant gets wrong, net.

Run: ``make bench`` or ``python benchmarks/int8_dynamic.py [--threads 2]``;
``--render`` writes the markdown again from the saved JSON, running nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

import slimformer
from slimformer.evaluate.classification import evaluate_classification
from slimformer.evaluate.latency import latency_from_times, make_inputs
from slimformer.evaluate.measure import cpu_model_name
from slimformer.evaluate.size import disk_bytes, linear_weight_bytes, safetensors_tensor_bytes
from slimformer.report.targets import checklist
from slimformer.runtime import BucketedCompiled

RESULTS = Path(__file__).parent / "results"
SHAPES = ((1, 64), (32, 128))
RUNS_PER_ROUND = {1: 10, 32: 3}


@dataclass
class Variant:
    name: str
    runtime: str
    module: nn.Module
    disk_bytes: int | None = None
    linear_bytes: int | None = None
    accuracy_from: str = ""
    times: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    compile_s: float = 0.0
    eval: dict | None = None


# -- variants ------------------------------------------------------------------


def saved_sizes(slim) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        slimformer.save(slim, Path(tmp) / "m")
        folder = Path(tmp) / "m"
        tensors = safetensors_tensor_bytes(folder)
        return disk_bytes(folder)[0], linear_weight_bytes(tensors, slim.model)


def torch_save_bytes(module: nn.Module) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.pt"
        torch.save(module.state_dict(), path)
        return path.stat().st_size


class Bf16Autocast(nn.Module):
    """fp32 weights, matrix products in bf16 through autocast."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, **inputs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(**inputs)
        return SimpleNamespace(logits=out.logits.float())


class OrtClassifier(nn.Module):
    """An ONNX Runtime session called like the Hugging Face classifier."""

    def __init__(self, path: Path, config, threads: int) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = config

    def forward(self, input_ids, attention_mask=None, **_):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feeds)[0]))


def ort_int8(model: nn.Module, workdir: Path, threads: int) -> Variant:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ids = torch.randint(1000, 2000, (2, 16))
    fp32_path, int8_path = workdir / "fp32.onnx", workdir / "int8.onnx"
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        str(fp32_path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes},
        dynamo=False,
        opset_version=17,
    )
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    module = OrtClassifier(int8_path, model.config, threads)
    return Variant("onnxruntime dynamic int8", "onnxruntime", module, int8_path.stat().st_size)


def torch_quantize_dynamic(model: nn.Module) -> Variant:
    quantized = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8
    )
    return Variant("torch quantize_dynamic", "eager", quantized, torch_save_bytes(quantized))


def torchao_int8(model: nn.Module) -> list[Variant]:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantized = copy.deepcopy(model)
    quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
    size = torch_save_bytes(quantized)
    return [
        Variant("torchao int8 dynamic", "eager", quantized, size),
        Variant(
            "torchao int8 dynamic",
            "compile",
            BucketedCompiled(quantized),
            size,
            accuracy_from="torchao int8 dynamic (eager)",
        ),
    ]


def build_variants(threads: int, workdir: Path, peers: bool) -> list[Variant]:
    fp32 = slimformer.load("minilm-intent", runtime="eager")
    fp32_disk, fp32_linear = saved_sizes(fp32)
    variants = [
        Variant("fp32 (baseline)", "eager", fp32.model, fp32_disk, fp32_linear),
        Variant(
            "fp32",
            "compile",
            BucketedCompiled(fp32.model),
            fp32_disk,
            fp32_linear,
            accuracy_from="fp32 (baseline) (eager)",
        ),
    ]
    int8 = slimformer.load("minilm-intent", runtime="eager")
    slimformer.quantize_(int8, slimformer.Int8Dynamic(), progress=False)
    int8_disk, int8_linear = saved_sizes(int8)
    with tempfile.TemporaryDirectory() as tmp:
        slimformer.save(int8, Path(tmp) / "int8")
        reloaded = slimformer.load(Path(tmp) / "int8")  # the user's path: runtime auto
    variants += [
        Variant("slimformer int8_dynamic", "eager", int8.model, int8_disk, int8_linear),
        Variant(
            "slimformer int8_dynamic",
            f"{reloaded.runtime} (slimformer.load default)",
            reloaded.runner,
            int8_disk,
            int8_linear,
        ),
    ]
    if peers:
        variants.append(Variant("bf16 autocast", "eager", Bf16Autocast(fp32.model)))
        variants.append(torch_quantize_dynamic(fp32.model))
        variants.append(ort_int8(fp32.model, workdir, threads))
        variants += torchao_int8(fp32.model)
    return variants


# -- measuring -----------------------------------------------------------------


def call(module: nn.Module, inputs: dict) -> Callable[[], object]:
    return lambda: module(**inputs)


def warm_up(variants: list[Variant], inputs: dict) -> None:
    """First calls, compilation included, are not timed."""
    for variant in variants:
        started = time.perf_counter()
        for shape_inputs in inputs.values():
            for _ in range(3):
                variant.module(**shape_inputs)
        variant.compile_s = time.perf_counter() - started
        print(
            f"  warm-up {variant.name} [{variant.runtime}]: {variant.compile_s:.1f} s", flush=True
        )


def time_interleaved(variants: list[Variant], inputs: dict, rounds: int) -> None:
    for round_index in range(rounds):
        for shape, shape_inputs in inputs.items():
            for variant in variants:
                forward = call(variant.module, shape_inputs)
                for _ in range(RUNS_PER_ROUND.get(shape[0], 3)):
                    started = time.perf_counter()
                    forward()
                    elapsed = (time.perf_counter() - started) * 1000
                    variant.times.setdefault(shape, []).append(elapsed)
        print(f"  timing round {round_index + 1}/{rounds} done", flush=True)


def evaluate_all(variants: list[Variant], tokenizer) -> None:
    by_key = {}
    for variant in variants:
        key = f"{variant.name} ({variant.runtime.split(' ')[0]})"
        if variant.accuracy_from:
            variant.eval = by_key[variant.accuracy_from]
            continue
        variant.eval = evaluate_classification(variant.module, tokenizer, "intent", progress=False)
        by_key[key] = variant.eval
        print(f"  accuracy {key}: {variant.eval['correct']}/{variant.eval['n']}", flush=True)


# -- reporting -----------------------------------------------------------------


def summarise(variants: list[Variant], threads: int) -> list[dict]:
    base = variants[0]
    base_correct = base.eval["correct"]
    rows = []
    for variant in variants:
        row = {
            "variant": variant.name,
            "runtime": variant.runtime,
            "correct": variant.eval["correct"],
            "n": variant.eval["n"],
            "lost_vs_fp32": base_correct - variant.eval["correct"],
            "accuracy_from": variant.accuracy_from or None,
            "disk_bytes": variant.disk_bytes,
            "linear_weight_bytes": variant.linear_bytes,
            "warmup_s": round(variant.compile_s, 1),
        }
        for shape, times in variant.times.items():
            stats = latency_from_times(
                times, batch=shape[0], seq_len=shape[1], threads=threads, warmup=3
            )
            base_stats = latency_from_times(
                base.times[shape], batch=shape[0], seq_len=shape[1], threads=threads, warmup=3
            )
            row[f"{shape[0]}x{shape[1]}"] = stats.model_dump()
            row[f"speedup_{shape[0]}x{shape[1]}"] = base_stats.median_ms / stats.median_ms
        rows.append(row)
    return rows


def markdown(rows: list[dict], machine: dict) -> str:
    base = rows[0]
    lines = [
        "# Dynamic int8 on minilm-intent (intent test, 193 examples)",
        "",
        f"Machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
        f"Python {machine['python']}, {machine['date']}. Latency: median (p10-p90) of "
        f"{machine['runs']['1x64']} runs at batch 1 and {machine['runs']['32x128']} at batch 32, "
        "variants interleaved in rounds; speed-up is fp32 eager median / variant median, "
        "measured in this one run.",
        "",
        "| variant | run time | correct | lost vs fp32 | size on disk | linear weights "
        "| batch 1 x seq 64 | speed-up | batch 32 x seq 128 | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['runtime']} | {row['correct']}/{row['n']}"
            f"{' (same model, eager)' if row['accuracy_from'] else ''} | {row['lost_vs_fp32']} "
            f"| {_mb(row['disk_bytes'])} | {_linear(row, base)} "
            f"| {_lat(row['1x64'])} | {row['speedup_1x64']:.2f}x "
            f"| {_lat(row['32x128'])} | {row['speedup_32x128']:.2f}x |"
        )
    lines += ["", *checks(rows), "", NOTES]
    return "\n".join(lines) + "\n"


def checks(rows: list[dict]) -> list[str]:
    """The issue's targets, read off this run's numbers."""
    base = rows[0]
    ours = next(
        r for r in rows if r["variant"].startswith("slimformer") and "default" in r["runtime"]
    )
    ratio = ours["linear_weight_bytes"] / base["linear_weight_bytes"]
    targets = [
        (f"lost at most 1 example: lost {ours['lost_vs_fp32']}", ours["lost_vs_fp32"] <= 1),
        (f"saved linear weights at most 30% of fp32: {ratio * 100:.1f}%", ratio <= 0.30),
        (
            f"at least 2x faster at batch 32 x seq 128: {ours['speedup_32x128']:.2f}x",
            ours["speedup_32x128"] >= 2,
        ),
        (
            f"at least 2x faster at batch 1 x seq 64: {ours['speedup_1x64']:.2f}x",
            ours["speedup_1x64"] >= 2,
        ),
    ]
    return [
        "Targets for slimformer int8_dynamic as `slimformer.load` runs it:",
        "",
        *checklist(targets),
    ]


NOTES = """Notes:
- "linear weights" counts every saved tensor of the Linear layers (int8 codes, scales, biases);
  the embeddings (about half of MiniLM's bytes) stay fp32 under dynamic int8.
- Sizes of peers: torch.save of the state dict (torch, torchao), the .onnx file (onnxruntime).
- The compiled run times pad inputs to shape buckets (slimformer.runtime) and compile once per
  bucket; the warm-up column is the time of the first calls, compilation included.
- fp32 compiled shows what compilation alone gives; the int8 speed-up is not from compiling.
"""


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.1f} MB"


def _linear(row: dict, base: dict) -> str:
    if row["linear_weight_bytes"] is None:
        return "n/a"
    share = row["linear_weight_bytes"] / base["linear_weight_bytes"]
    return f"{row['linear_weight_bytes'] / 1e6:.1f} MB ({share * 100:.0f}%)"


def _lat(stats: dict) -> str:
    return f"{stats['median_ms']:.1f} ms ({stats['p10_ms']:.1f}-{stats['p90_ms']:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true", help="only fp32 and slimformer")
    parser.add_argument(
        "--render", action="store_true", help="write the markdown again from the saved JSON"
    )
    args = parser.parse_args()
    if args.render:
        saved = json.loads((RESULTS / "int8_dynamic.json").read_text())
        (RESULTS / "int8_dynamic.md").write_text(markdown(saved["rows"], saved["machine"]))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    slimformer.load("minilm-intent", runtime="eager")  # builds it once if missing
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        print("building variants ...", flush=True)
        variants = build_variants(args.threads, Path(tmp), peers=not args.no_peers)
        vocab = variants[0].module.config.vocab_size
        inputs = {shape: make_inputs(vocab, *shape) for shape in SHAPES}
        warm_up(variants, inputs)
        time_interleaved(variants, inputs, args.rounds)
        evaluate_all(variants, slimformer.load("minilm-intent", runtime="eager").tokenizer)
    machine = {
        "cpu": cpu_model_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "runs": {f"{b}x{s}": RUNS_PER_ROUND.get(b, 3) * args.rounds for b, s in SHAPES},
    }
    rows = summarise(variants, args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8_dynamic.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=2)
    )
    text = markdown(rows, machine)
    (RESULTS / "int8_dynamic.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
