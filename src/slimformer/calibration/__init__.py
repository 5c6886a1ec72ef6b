"""Calibration: the data that data-aware methods read, and the engine that feeds it to them.

``windows`` cuts token windows from a dataset, ``spec`` is the recipe's
``calibration:`` setting, ``engine`` walks the model block by block
(``branches`` does it branch by branch where the adapter allows) and
``stats`` gathers what each linear layer reads. ``session`` holds what the
calibrated stages of one run share, and ``run.calibrate`` is the one call a
calibrated method makes.
"""

from slimformer.calibration.engine import BlockContext, run_sequential
from slimformer.calibration.run import calibrate
from slimformer.calibration.session import CalibrationSession
from slimformer.calibration.spec import CalibrationSpec, calibration_tokens
from slimformer.calibration.stats import Collect, LinearStats
from slimformer.calibration.windows import calibration_windows

__all__ = [
    "BlockContext",
    "CalibrationSession",
    "CalibrationSpec",
    "Collect",
    "LinearStats",
    "calibrate",
    "calibration_tokens",
    "calibration_windows",
    "run_sequential",
]
