"""Problems with known learning coefficients (each builds loss_fn, w*, data and the exact λ)."""

from lambda_hat.targets.base import Target
from lambda_hat.targets.dln import (
    DLN_BUCKETS,
    deep_linear_network,
    dln_local_lam,
    dln_origin_expected_llc,
    generic_product_jacobian_rank,
    product_jacobian_rank,
    random_deep_linear_network,
    random_dln_teacher,
    sample_dln_architecture,
)
from lambda_hat.targets.dln_two_layer import TwoLayerExpectedLLC, dln_two_layer_expected_llc
from lambda_hat.targets.mlp import tiny_mlp
from lambda_hat.targets.normal_crossing import normal_crossing, normal_crossing_expected_llc
from lambda_hat.targets.quadratic import gaussian_expected_llc, linear_regression, pure_potential

__all__ = [
    "DLN_BUCKETS",
    "Target",
    "TwoLayerExpectedLLC",
    "deep_linear_network",
    "dln_local_lam",
    "dln_origin_expected_llc",
    "dln_two_layer_expected_llc",
    "gaussian_expected_llc",
    "generic_product_jacobian_rank",
    "linear_regression",
    "normal_crossing",
    "normal_crossing_expected_llc",
    "product_jacobian_rank",
    "pure_potential",
    "random_deep_linear_network",
    "random_dln_teacher",
    "sample_dln_architecture",
    "tiny_mlp",
]
