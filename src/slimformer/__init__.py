"""slimformer: make transformer language models smaller and faster, and prove it.

The public API, one verb a family::

    import slimformer
    slim = slimformer.load("minilm-intent")
    slimformer.quantize_(slim, slimformer.Int8Dynamic())
    slimformer.save(slim, "out/")
    slimformer.load("out/")            # the compressed model, reloaded

and the whole pipeline from a recipe::

    slimformer.compress("minilm-intent", "examples/int8.yaml", out="out/", eval="intent")
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"

from slimformer.errors import SlimformerError
from slimformer.methods.pruning import Magnitude, SparseGPT, Wanda, prune_
from slimformer.methods.quantization import (
    AWQ,
    GPTQ,
    RTN,
    W8A8,
    FloatFormat,
    Int8Dynamic,
    Int8Embeddings,
    MixedPrecision,
    SmoothQuant,
    quantize_,
)
from slimformer.methods.structured import DropLayers, PruneHeads, PruneNeurons, prune_structure_
from slimformer.model import SlimModel
from slimformer.zoo import list_models, load


def __getattr__(name: str):
    """Heavier entry points load on first use, so ``import slimformer`` stays quick."""
    lazy = {
        "compress": ("slimformer.pipeline", "compress"),
        "run_recipe": ("slimformer.pipeline", "run_recipe"),
        "assess": ("slimformer.pipeline", "assess"),
        "Assessment": ("slimformer.pipeline", "Assessment"),
        "save_run": ("slimformer.pipeline", "save_run"),
        "save": ("slimformer.pipeline", "save"),
        "Recipe": ("slimformer.recipe", "Recipe"),
        "evaluate": ("slimformer.evaluate", "evaluate"),
        "measure_model": ("slimformer.evaluate.measure", "measure_model"),
        "finetune_classifier": ("slimformer.zoo", "finetune_classifier"),
        # The pipeline's wrapper: it loads models given by name, which methods/ never does.
        "distill": ("slimformer.pipeline", "distill"),
        "Distill": ("slimformer.methods.distillation", "Distill"),
        "select_layers": ("slimformer.methods.students", "select_layers"),
        "narrow": ("slimformer.methods.students", "narrow"),
        "student": ("slimformer.methods.students", "student"),
        "SelectLayers": ("slimformer.methods.students", "SelectLayers"),
        "Narrow": ("slimformer.methods.students", "Narrow"),
        "finetune_": ("slimformer.methods.finetune", "finetune_"),
        "Finetune": ("slimformer.methods.finetune", "Finetune"),
        "Movement": ("slimformer.methods.movement.stage", "Movement"),
        "load_dataset": ("slimformer.data", "load_dataset"),
        "list_datasets": ("slimformer.data", "list_datasets"),
        "calibration_windows": ("slimformer.calibration", "calibration_windows"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'slimformer' has no attribute {name!r}")


__all__ = [
    "AWQ",
    "GPTQ",
    "RTN",
    "W8A8",
    "Assessment",
    "Distill",
    "DropLayers",
    "Finetune",
    "FloatFormat",
    "Int8Dynamic",
    "Int8Embeddings",
    "Magnitude",
    "MixedPrecision",
    "Movement",
    "Narrow",
    "PruneHeads",
    "PruneNeurons",
    "Recipe",
    "SelectLayers",
    "SlimModel",
    "SlimformerError",
    "SmoothQuant",
    "SparseGPT",
    "Wanda",
    "__version__",
    "assess",
    "calibration_windows",
    "compress",
    "distill",
    "evaluate",
    "finetune_",
    "finetune_classifier",
    "list_datasets",
    "list_models",
    "load",
    "load_dataset",
    "measure_model",
    "narrow",
    "prune_",
    "prune_structure_",
    "quantize_",
    "run_recipe",
    "save",
    "save_run",
    "select_layers",
    "student",
]
