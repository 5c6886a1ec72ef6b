"""The ``slimformer`` command: a thin layer over the Python API.

Every user error surfaces as one line, ``error: <problem>; <fix>``, and exit
code 2; nothing here holds logic the Python API lacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence

from slimformer.errors import SlimformerError


def main(argv: Sequence[str] | None = None) -> int:
    # Python hides library deprecations by default; a command-line user should see them.
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"slimformer(\.|$)")
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        args.handler(args)
    except SlimformerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimformer",
        description="Make transformer models smaller and faster, and measure it.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(metavar="COMMAND")
    _command(sub, "models", "list the named offline models", _models)
    _command(sub, "datasets", "list the built-in datasets", _datasets)
    _command(sub, "methods", "list the compression methods and their settings", _methods)
    _compress_parser(sub)
    _evaluate_parser(sub)
    _measure_parser(sub)
    _distill_parser(sub)
    demo = _command(sub, "demo", "fine-tune MiniLM on intent, quantize to int8, report", _demo)
    demo.add_argument("--out", default="out/demo", help="report folder (default out/demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    demo.add_argument("--runs", type=int, default=20, help="timed runs per shape")
    return parser


def _command(sub, name: str, help_text: str, handler: Callable) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=help_text, description=help_text)
    command.set_defaults(handler=handler)
    return command


def _add_runtime_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "eager", "compile"),
        help="how the model runs: auto (compiled for int8 models), eager or compile",
    )


def _add_measure_flags(command: argparse.ArgumentParser, warmup_flag: str = "--warmup") -> None:
    command.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    command.add_argument("--runs", type=int, default=20, help="timed runs per shape")
    command.add_argument(warmup_flag, dest="warmup", type=int, default=3, help="untimed runs first")
    command.add_argument(
        "--shapes", default="1x64,32x128", help="batch x sequence shapes to time (1x64,32x128)"
    )


def _compress_parser(sub) -> None:
    command = _command(sub, "compress", "run a recipe on a model and report", _compress)
    command.add_argument("model", help="zoo name, model folder, .gguf file or hub id")
    command.add_argument("--recipe", required=True, help="YAML recipe file")
    command.add_argument("--out", required=True, help="folder for the compressed model")
    command.add_argument("--eval", help="dataset to evaluate on before and after")
    command.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    command.add_argument("--no-measure", action="store_true", help="skip size/speed/energy")
    command.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    _add_runtime_flag(command)
    _add_measure_flags(command)


def _evaluate_parser(sub) -> None:
    command = _command(sub, "evaluate", "evaluate a model on a dataset", _evaluate)
    command.add_argument("model", help="zoo name, model folder, .gguf file or hub id")
    command.add_argument("--eval", required=True, help="dataset name or file")
    command.add_argument("--split", default="test")
    command.add_argument("--max-tokens", type=int, default=16384, help="perplexity: tokens")
    command.add_argument("--window", type=int, default=512, help="perplexity: window length")
    command.add_argument("--json", action="store_true", help="print JSON")
    _add_runtime_flag(command)


def _measure_parser(sub) -> None:
    command = _command(sub, "measure", "measure size, latency, memory and energy", _measure)
    command.add_argument("model", help="zoo name, model folder, .gguf file or hub id")
    command.add_argument("--json", action="store_true", help="print JSON")
    _add_runtime_flag(command)
    _add_measure_flags(command)


def _distill_parser(sub) -> None:
    command = _command(sub, "distill", "distil a teacher into a smaller student", _distill)
    command.add_argument("teacher", help="zoo name or model folder of the teacher")
    command.add_argument("--data", required=True, help="task dataset (labelled; text for LMs)")
    command.add_argument("--out", required=True, help="folder for the trained student")
    student = command.add_mutually_exclusive_group()
    student.add_argument("--student", help="a student model (default: cut from the teacher)")
    student.add_argument("--layers", help="teacher layers the student keeps, e.g. 0,2,4")
    student.add_argument("--every", type=int, help="keep one teacher layer in every N")
    command.add_argument("--losses", default="logits", help="comma-separated loss kinds")
    command.add_argument("--transfer", help="unlabelled text the teacher labels (e.g. wiki)")
    command.add_argument("--transfer-limit", type=int, help="at most this many transfer texts")
    command.add_argument(
        "--augment", type=int, help="perturbed copies of each train text for the teacher to label"
    )
    command.add_argument("--max-length", type=int, default=64)
    command.add_argument(
        "--holdout", type=float, default=0.1, help="train fraction held out to score checkpoints"
    )
    command.add_argument(
        "--keep-last", action="store_true", help="end with the last weights, not the best scored"
    )
    _add_train_flags(command, "distill")
    command.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    command.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    command.add_argument("--eval", help="dataset to evaluate on before and after")
    command.add_argument("--no-measure", action="store_true", help="skip size/speed/energy")
    _add_runtime_flag(command)
    _add_measure_flags(command, warmup_flag="--measure-warmup")  # --warmup: the training's


# -- handlers --------------------------------------------------------------------


def _models(args) -> None:
    from slimformer.zoo import list_models

    rows = [
        (
            m["name"],
            m["architecture"],
            m["params"],
            "yes" if m["installed"] else f"no: {m['install']}",
            "yes" if m["cached"] else "no (built on first use)",
            m["description"],
        )
        for m in list_models()
    ]
    _table(("name", "architecture", "params", "installed", "ready", "description"), rows)


def _datasets(args) -> None:
    from slimformer.data import list_datasets

    rows = [
        (
            d["name"],
            d["task"],
            ", ".join(f"{k} {v}" for k, v in (d.get("splits") or {}).items()),
            "yes" if d["available"] else f"no: {d.get('hint', '')}",
            d["description"],
        )
        for d in list_datasets()
    ]
    _table(("name", "task", "splits", "available", "description"), rows)


def _methods(args) -> None:
    from slimformer.methods.catalog import registered_methods

    rows = []
    for name, entry in sorted(registered_methods().items()):
        fields = ", ".join(
            f"{key}={_default_text(field)}" if not field.is_required() else f"{key} (required)"
            for key, field in entry.config.model_fields.items()
            if key != "version"
        )
        rows.append((name, entry.family, entry.summary, fields))
    _table(("method", "family", "what it does", "settings"), rows)


def _compress(args) -> None:
    _run_compress(args, args.model, args.recipe, "saved")


def _run_compress(args, model, recipe, saved: str) -> None:
    """compress with the command's shared options, then the table and where it went."""
    from slimformer.pipeline import compress
    from slimformer.report import print_table

    report = compress(
        model,
        recipe,
        args.out,
        eval=args.eval,
        measure=_measure_options(args, enabled=not args.no_measure),
        overwrite=args.overwrite,
        device=args.device,
        runtime=args.runtime,
    )
    print_table(report)
    print(f"{saved} to {args.out} (model, recipe.yaml, report.json, report.md)")


def _evaluate(args) -> None:
    from slimformer.evaluate import evaluate
    from slimformer.zoo import load

    slim = load(args.model, runtime=args.runtime)
    options = {}
    if slim.task == "causal-lm":
        options = {"max_tokens": args.max_tokens, "window": args.window}
    result = evaluate(slim, args.eval, split=args.split, **options)
    metrics = {k: v for k, v in result["metrics"].items() if not isinstance(v, list)}
    if args.json:
        print(json.dumps({**result, "metrics": metrics}, indent=2, default=str))
        return
    print(
        f"{slim.name} on {result['dataset']} ({result['split']}): "
        f"{result['metric']} = {result['value']:.4f}"
    )
    for key, value in metrics.items():
        print(f"  {key}: {value}")


def _measure(args) -> None:
    from slimformer.evaluate.measure import check_positions, measure_model
    from slimformer.pipeline import warm_up
    from slimformer.zoo import load

    options = _measure_options(args)
    slim = load(args.model, runtime=args.runtime)
    check_positions(slim.model, options.shapes)
    warm_up(slim, options.shapes, options.threads)
    result = measure_model(
        slim.runner,
        shapes=options.shapes,
        threads=options.threads,
        runs=options.runs,
        warmup=options.warmup,
    )
    if args.json:
        print(result.to_json())
        return
    size = result.size
    print(
        f"{slim.name}: {size.params_total:,} parameters, "
        f"{size.weight_bytes_in_memory / 1e6:.1f} MB of weights in memory"
    )
    for lat in result.latency:
        print(
            f"  batch {lat.batch} x seq {lat.seq_len}: median {lat.median_ms:.1f} ms "
            f"(p10-p90 {lat.p10_ms:.1f}-{lat.p90_ms:.1f}), {lat.sequences_per_s:.1f} seq/s"
        )
    if result.memory:
        print(f"  peak RSS {result.memory.peak_rss_bytes / 1e6:.0f} MB")
    if result.energy:
        print(
            f"  energy {result.energy.joules_per_sequence:.3f} J/sequence ({result.energy.method})"
        )


def _distill(args) -> None:
    """One ``distill`` stage run like ``compress``: model, recipe.yaml and report in --out."""
    from slimformer.paths import check_output_dir
    from slimformer.runtime import check_device

    train = _train_settings(args, "distill", dataset=args.data)  # bad flags fail before loading
    check_output_dir(args.out, args.overwrite)
    check_device(args.device)
    model, recipe = _distill_run(args, train)
    _run_compress(args, model, recipe, "saved the student")


def _distill_run(args, train):
    """(the model the recipe starts from, the one-stage recipe) for ``slimformer distill``.

    With --student the recipe starts from the student and names the teacher;
    otherwise it starts from the teacher, whose kept original teaches the
    layers the stage cuts it down to (--layers, or one in every --every).
    """
    from slimformer.methods.catalog import make_config
    from slimformer.methods.distillation import parse_losses
    from slimformer.methods.students import choose_layers
    from slimformer.recipe import Recipe
    from slimformer.zoo import load

    losses = parse_losses([name.strip() for name in args.losses.split(",") if name.strip()])
    settings = {
        "dataset": args.data,
        "losses": [loss.model_dump(mode="json") for loss in losses],
        "transfer": args.transfer,
        "transfer_limit": args.transfer_limit,
        "augment": args.augment,
        "max_length": args.max_length,
        "holdout_fraction": args.holdout,
        "train": train,
    }
    if args.student:
        model, settings["teacher"] = args.student, args.teacher
    else:
        model = load(args.teacher)
        layers = [int(x) for x in args.layers.split(",")] if args.layers else None
        every = None if layers else (args.every or 2)
        settings["layers"] = choose_layers(len(model.adapter.layers()), layers, every)
    config = make_config("distill", settings, where="slimformer distill: ")
    return model, Recipe(stages=[config], name="distill")


def _demo(args) -> None:
    from slimformer.demo import run_demo

    run_demo(out=args.out, overwrite=args.overwrite, runs=args.runs)


# -- helpers ---------------------------------------------------------------------


def _default_text(field) -> str:
    """A setting's default as the methods table shows it (built, where a factory makes it)."""
    return repr(field.get_default(call_default_factory=True))


def _add_train_flags(command: argparse.ArgumentParser, method: str) -> None:
    """One flag per training setting, as :class:`TrainSettings` lists them; unset: the method's."""
    from slimformer.methods.catalog import method_entry
    from slimformer.training.settings import TrainSettings

    defaults = (
        method_entry(method).config.model_fields["train"].get_default(call_default_factory=True)
    )
    group = command.add_argument_group(f"training (the {method} stage's train: settings)")
    for name, field in TrainSettings.model_fields.items():
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"train_{name}",
            metavar=name.upper(),
            help=f"{field.description} (default: {getattr(defaults, name)})",
        )


def _train_settings(args, method: str, **required):
    """The ``train:`` settings the flags give, the method's defaults for the rest (validated)."""
    from slimformer.methods.catalog import make_config
    from slimformer.training.settings import TrainSettings

    given = {name: getattr(args, f"train_{name}") for name in TrainSettings.model_fields}
    train = {name: value for name, value in given.items() if value is not None}
    if getattr(args, "keep_last", False):
        train["load_best"] = False
    return make_config(method, {**required, "train": train}, where="").train


def _measure_options(args, enabled: bool = True):
    from slimformer.pipeline import MeasureOptions

    return MeasureOptions(
        shapes=_shapes(args.shapes),
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        enabled=enabled,
    )


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        shapes = tuple(
            (int(b), int(s)) for b, s in (part.lower().split("x") for part in text.split(","))
        )
    except ValueError:
        raise SlimformerError(
            f"cannot read --shapes {text!r}", "write BATCHxSEQ pairs, e.g. 1x64,32x128"
        ) from None
    if any(b < 1 or s < 1 for b, s in shapes):
        raise SlimformerError(f"--shapes {text!r} has a zero size", "use positive sizes")
    return shapes


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for index, column in enumerate(header):
        # The first column is the name users type next: never wrap it; fold, never cut, the rest.
        table.add_column(column, no_wrap=index == 0, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console().print(table)


def _version() -> str:
    from slimformer import __version__

    return f"slimformer {__version__}"


if __name__ == "__main__":
    raise SystemExit(main())
