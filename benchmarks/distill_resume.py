"""Kill a minilm-intent distillation mid-run, resume it, and compare with an uninterrupted run.

Writes benchmarks/results/distill_resume.md. The recipe is the 3-layer
student on intent alone (the intent-only settings of benchmarks/distillation.py)
with a resumable checkpoint every 10 optimizer steps. Three
``slimformer compress`` processes run it:

1. uninterrupted, to the end;
2. the same recipe, killed with SIGKILL (no clean-up of any kind) right after
   its ``KILL_AT``-th checkpoint lands, that is mid-way through training;
3. the very same command again: it finds the checkpoint and resumes.

The resumed student must equal the uninterrupted one weight for weight
(``torch.equal`` on every tensor of the saved models) and give the same
intent test accuracy. Expect about 2 minutes on 2 cores.

Run: ``python benchmarks/distill_resume.py [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from rowbench import RESULTS, ROOT

WORK = ROOT / "benchmarks" / ".work" / "distill_resume"
#: Kill the second run right after this many checkpoints (of 10 steps each) have landed.
KILL_AT = 4
CHECKPOINT_EVERY = 10


def recipe(checkpoint_dir: Path) -> dict:
    """The 3-layer intent-only distillation with resumable checkpoints in ``checkpoint_dir``."""
    from distillation import MIXES, STUDENTS, distill_stage

    stage = distill_stage(STUDENTS[0], MIXES["hidden"][1], transfer=False)
    checkpoints = {"checkpoint_dir": str(checkpoint_dir), "checkpoint_every": CHECKPOINT_EVERY}
    stage["train"] = {**stage["train"], **checkpoints}
    return {"name": "distill-resume", "stages": [stage]}


def command(name: str, threads: int) -> list[str]:
    folder = WORK / name
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(folder / "checkpoints")))
    cli = Path(sys.executable).with_name("slimformer")
    return [
        *([str(cli)] if cli.exists() else [sys.executable, "-m", "slimformer.cli"]),
        "compress",
        "minilm-intent",
        "--recipe",
        str(path),
        "--out",
        str(folder / "out"),
        "--overwrite",
        "--eval",
        "intent",
        "--no-measure",
        "--threads",
        str(threads),
    ]


def run_to_end(name: str, threads: int) -> float:
    started = time.perf_counter()
    subprocess.run(command(name, threads), check=True, capture_output=True)
    return time.perf_counter() - started


def run_and_kill(name: str, threads: int) -> int:
    """Start the run, SIGKILL it once its KILL_AT-th checkpoint is written; the step it kept."""
    last = WORK / name / "checkpoints" / "last.pt"
    process = subprocess.Popen(
        command(name, threads), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    seen, stamp = 0, None
    while seen < KILL_AT:
        if process.poll() is not None:
            raise SystemExit(f"the run ended before its checkpoint {KILL_AT}: nothing to resume")
        if last.exists() and last.stat().st_mtime_ns != stamp:
            seen, stamp = seen + 1, last.stat().st_mtime_ns
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return int(torch.load(last, map_location="cpu", weights_only=False)["step"])


def compare(a: Path, b: Path) -> dict:
    """Weight-for-weight equality of two saved students and their test accuracies."""
    import slimformer

    one = slimformer.load(a, runtime="eager", progress=False).model.state_dict()
    two = slimformer.load(b, runtime="eager", progress=False).model.state_dict()
    equal = one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    accuracy = [_accuracy(folder) for folder in (a, b)]
    return {"tensors": len(one), "identical": equal, "accuracy": accuracy}


def _accuracy(out: Path) -> float:
    report = json.loads((out / "report.json").read_text())
    return report["after"]["eval"]["value"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    for name in ("whole", "killed"):
        (WORK / name).mkdir(parents=True)
    whole_s = run_to_end("whole", args.threads)
    kept_step = run_and_kill("killed", args.threads)
    resumed_s = run_to_end("killed", args.threads)
    found = compare(WORK / "whole" / "out", WORK / "killed" / "out")
    write_report(found, kept_step, whole_s, resumed_s, args.threads)


def write_report(found: dict, kept_step: int, whole_s: float, resumed_s: float, threads: int):
    whole, resumed = found["accuracy"]
    lines = [
        "# Distillation killed and resumed (minilm-intent)",
        "",
        f"Measured by `benchmarks/distill_resume.py`, {threads} threads, "
        f"{time.strftime('%Y-%m-%d %H:%M')}. The 3-layer student on intent alone, a checkpoint "
        f"every {CHECKPOINT_EVERY} steps; the second run was killed with SIGKILL right after "
        f"its checkpoint at step {kept_step} and the same command was run again.",
        "",
        "| run | intent test accuracy | wall time of the last command (s) |",
        "|---|---|---|",
        f"| uninterrupted | {whole:.4f} | {whole_s:.0f} |",
        f"| killed at step {kept_step}, resumed | {resumed:.4f} | {resumed_s:.0f} |",
        "",
        f"Saved students weight for weight: {found['tensors']} tensors, "
        + ("all identical." if found["identical"] else "**NOT identical**."),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill_resume.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not found["identical"] or whole != resumed:
        raise SystemExit("the resumed run differs from the uninterrupted one")


if __name__ == "__main__":
    main()
