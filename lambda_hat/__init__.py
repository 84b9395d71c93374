"""lambda_hat: Local Learning Coefficient (LLC) estimation in JAX.

result = lambda_hat.sample(loss_fn, params, data, kernel="sgld")
print(result.summary())
"""

from importlib import metadata as _metadata

from lambda_hat import targets, theory
from lambda_hat.api import LLCWarning, clear_cache, sample
from lambda_hat.calibrate import CalibrationResult, calibrate
from lambda_hat.checkpoints import CheckpointResults, sample_checkpoints
from lambda_hat.kernels import KERNELS
from lambda_hat.posterior import LocalPosterior
from lambda_hat.result import LLCResult
from lambda_hat.weight_groups import sample_masks

try:  # the version is written once, in pyproject.toml
    __version__ = _metadata.version("lambda_hat")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CalibrationResult",
    "CheckpointResults",
    "KERNELS",
    "calibrate",
    "clear_cache",
    "LLCResult",
    "LLCWarning",
    "LocalPosterior",
    "sample",
    "sample_checkpoints",
    "sample_masks",
    "targets",
    "theory",
    "__version__",
]
