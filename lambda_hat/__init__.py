"""lambda_hat: Local Learning Coefficient (LLC) estimation in JAX.

    result = lambda_hat.sample(loss_fn, params, data, kernel="sgld")
    print(result.summary())
"""

from lambda_hat import targets, theory
from lambda_hat.api import LLCWarning, sample
from lambda_hat.calibrate import CalibrationResult, calibrate
from lambda_hat.kernels import KERNELS
from lambda_hat.posterior import LocalPosterior
from lambda_hat.result import LLCResult

__version__ = "0.1.0"

__all__ = ["CalibrationResult", "KERNELS", "calibrate", "LLCResult", "LLCWarning", "LocalPosterior", "sample", "targets", "theory", "__version__"]
