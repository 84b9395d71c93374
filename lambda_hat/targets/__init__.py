"""Problems with known learning coefficients (each builds loss_fn, w*, data and the exact λ)."""

from lambda_hat.targets.base import Target
from lambda_hat.targets.quadratic import gaussian_expected_llc, linear_regression, pure_potential

__all__ = ["Target", "gaussian_expected_llc", "linear_regression", "pure_potential"]
