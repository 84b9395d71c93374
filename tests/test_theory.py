"""Tests for exact learning coefficients in ``lambda_hat.theory``."""

from __future__ import annotations

import random
from fractions import Fraction as F

import pytest

from lambda_hat.theory import (
    LearningCoefficient,
    deep_linear_network,
    disjoint_sum,
    normal_crossing,
    num_parameters,
    quadratic,
    reduced_rank_regression,
    regular,
)

# ---------------------------------------------------------------------------
# simple cases
# ---------------------------------------------------------------------------


def test_learning_coefficient_value_and_types() -> None:
    lc = regular(3)
    assert lc == LearningCoefficient(F(3, 2), 1)
    assert isinstance(lc.lam, F)
    assert isinstance(lc.m, int)
    assert lc.value == 1.5
    assert isinstance(lc.value, float)


@pytest.mark.parametrize("d", [0, 1, 2, 7, 100])
def test_regular(d: int) -> None:
    assert regular(d) == (F(d, 2), 1)


@pytest.mark.parametrize("rank", [0, 1, 4, 9])
def test_quadratic(rank: int) -> None:
    assert quadratic(rank) == (F(rank, 2), 1)


@pytest.mark.parametrize(
    "exponents, lam, m",
    [
        ((1,), F(1, 2), 1),  # w²
        ((2,), F(1, 4), 1),  # w⁴
        ((1, 1), F(1, 2), 2),  # w1² w2²
        ((1, 2), F(1, 4), 1),  # w1² w2⁴
        ((2, 2), F(1, 4), 2),  # w1⁴ w2⁴
        ((3, 3), F(1, 6), 2),  # w1⁶ w2⁶
        ((1, 3), F(1, 6), 1),  # w1² w2⁶
        ((0, 1, 0), F(1, 2), 1),  # k_j = 0 coordinates are ignored
        ((2, 0, 2, 2), F(1, 4), 3),
    ],
)
def test_normal_crossing(exponents: tuple[int, ...], lam: F, m: int) -> None:
    assert normal_crossing(exponents) == (lam, m)
    # an explicit flat prior is the same as no prior
    assert normal_crossing(exponents, [0] * len(exponents)) == (lam, m)


def test_normal_crossing_with_prior() -> None:
    # K = w1² w2⁶, prior ∝ |w1|: λ = min(2/2, 1/6)
    assert normal_crossing((1, 3), prior_exponents=(1, 0)) == (F(1, 6), 1)
    # prior can shift the minimiser: K = w1² w2⁴, prior ∝ |w2|³ -> min(1/2, 4/4)
    assert normal_crossing((1, 2), prior_exponents=(0, 3)) == (F(1, 2), 1)
    # prior can create a tie: K = w1² w2⁴, prior ∝ |w2| -> min(1/2, 2/4), m = 2
    assert normal_crossing((1, 2), prior_exponents=(0, 1)) == (F(1, 2), 2)
    # prior exponents on k_j = 0 coordinates do not matter
    assert normal_crossing((0, 1), prior_exponents=(0, 0)) == (F(1, 2), 1)


def test_disjoint_sum() -> None:
    # w1² + w2⁴
    assert disjoint_sum(normal_crossing([1]), normal_crossing([2])) == (F(3, 4), 1)
    # w1² w2² + w3²
    assert disjoint_sum(normal_crossing([1, 1]), normal_crossing([1])) == (F(1), 2)
    # a single part is returned unchanged
    assert disjoint_sum(normal_crossing([2, 2])) == (F(1, 4), 2)
    # multiplicities: Σ m_i − (count − 1)
    nc = normal_crossing([1, 1, 1])
    assert disjoint_sum(nc, nc, nc) == (F(3, 2), 7)
    # regular blocks add dimensions
    assert disjoint_sum(regular(3), regular(4), quadratic(0)) == regular(7)


# ---------------------------------------------------------------------------
# reduced rank regression and deep linear networks
# ---------------------------------------------------------------------------


WORKED_DLN = [
    ((1, 1, 1), 0, F(1, 2), 2),
    ((1, 1, 1, 1), 0, F(1, 2), 3),
    ((2, 1, 2), 1, F(3, 2), 1),
    ((5, 3, 5), 0, F(13, 2), 2),
    ((5, 4, 5), 0, F(8), 1),
    ((4, 3, 8), 0, F(6), 1),
    ((8, 3, 4), 0, F(6), 1),
    ((3, 8, 4), 0, F(6), 1),
    ((10, 5, 10), 2, F(29), 2),
    ((10, 10, 10, 10), 0, F(67, 2), 3),
    ((10, 10, 10, 10), 5, F(46), 3),
    ((5, 10, 10, 10, 5), 3, F(25, 2), 1),
    ((100, 100, 100), 0, F(3750), 1),
    ((100, 100, 100, 100, 100), 0, F(3125), 1),
    ((100, 100, 100, 100, 100), 50, F(9063, 2), 5),
    ((185, 259, 286, 885, 235, 204, 274, 252), 50, F(18464), 4),
]


@pytest.mark.parametrize("widths, r, lam, m", WORKED_DLN)
def test_deep_linear_network_worked_values(widths: tuple[int, ...], r: int, lam: F, m: int) -> None:
    assert deep_linear_network(widths, r) == (lam, m)
    if len(widths) == 3:
        M, H, N = widths
        assert reduced_rank_regression(M, H, N, r) == (lam, m)


def test_dln_matches_rrr_exhaustively() -> None:
    count = 0
    for M in range(1, 9):
        for H in range(1, 9):
            for N in range(1, 9):
                for r in range(min(M, H, N) + 1):
                    dln = deep_linear_network((M, H, N), r)
                    rrr = reduced_rank_regression(M, H, N, r)
                    assert dln == rrr, (M, H, N, r, dln, rrr)
                    count += 1
    assert count > 1700


def test_dln_orientation_invariance() -> None:
    rng = random.Random(0)
    for _ in range(300):
        widths = [rng.randint(1, 15) for _ in range(rng.randint(2, 7))]
        r = rng.randint(0, min(widths))
        assert deep_linear_network(widths, r) == deep_linear_network(widths[::-1], r)


def test_dln_bounded_by_half_dimension() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        widths = [rng.randint(1, 20) for _ in range(rng.randint(2, 8))]
        r = rng.randint(0, min(widths))
        lc = deep_linear_network(widths, r)
        assert 0 <= lc.lam <= F(num_parameters(widths), 2), (widths, r, lc)
        assert lc.m >= 1


def test_dln_width_equal_to_rank() -> None:
    """If some width equals r, λ = [−r² + r(H_1 + H_{L+1})]/2 and m = 1."""
    rng = random.Random(7)
    for _ in range(300):
        r = rng.randint(1, 6)  # widths must be >= 1, so r >= 1 here
        widths = [rng.randint(r, r + 10) for _ in range(rng.randint(2, 7))]
        widths[rng.randrange(len(widths))] = r
        expected = F(-r * r + r * (widths[0] + widths[-1]), 2)
        assert deep_linear_network(widths, r) == (expected, 1), (widths, r)
    # bottleneck of width r in the middle and at the end
    assert deep_linear_network((2, 1, 2), 1) == (F(3, 2), 1)
    assert deep_linear_network((3, 5, 3, 3), 3) == (F(9, 2), 1)


def test_dln_single_layer_is_regular() -> None:
    # one weight matrix (no hidden layer) is regular: λ = d/2 whatever the rank
    for H1 in range(1, 6):
        for H2 in range(1, 6):
            for r in range(min(H1, H2) + 1):
                assert deep_linear_network((H1, H2), r) == regular(H1 * H2)


def test_num_parameters() -> None:
    assert num_parameters((3, 4)) == 12
    assert num_parameters((3, 4, 5)) == 12 + 20
    assert num_parameters([1, 1, 1, 1]) == 3


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: regular(-1), r"\bd\b.*>= 0"),
        (lambda: regular(1.5), r"\bd\b.*integer"),
        (lambda: regular(True), r"\bd\b.*integer"),
        (lambda: quadratic(-2), r"rank.*>= 0"),
        (lambda: quadratic(2.0), r"rank.*integer"),
        (lambda: normal_crossing([]), r"exponents.*at least 1"),
        (lambda: normal_crossing([0, 0]), r"exponents.*positive"),
        (lambda: normal_crossing([1, -1]), r"exponents\[1\].*>= 0"),
        (lambda: normal_crossing([1, 0.5]), r"exponents\[1\].*integer"),
        (lambda: normal_crossing(3), r"exponents.*sequence"),
        (lambda: normal_crossing([1, 2], [0]), r"prior_exponents.*same length"),
        (lambda: normal_crossing([1, 2], [0, -1]), r"prior_exponents\[1\].*>= 0"),
        (lambda: disjoint_sum(), r"parts.*at least one"),
        (lambda: disjoint_sum(regular(1), (F(1), 1)), r"parts\[1\].*LearningCoefficient"),
        (lambda: reduced_rank_regression(0, 2, 2, 0), r"\bM\b.*>= 1"),
        (lambda: reduced_rank_regression(2, -1, 2, 0), r"\bH\b.*>= 1"),
        (lambda: reduced_rank_regression(2, 2, 2.0, 0), r"\bN\b.*integer"),
        (lambda: reduced_rank_regression(2, 2, 2, -1), r"\br\b.*>= 0"),
        (lambda: reduced_rank_regression(3, 2, 4, 3), r"\br\b.*min\(M, H, N\)"),
        (lambda: deep_linear_network([3], 0), r"widths.*at least 2"),
        (lambda: deep_linear_network([], 0), r"widths.*at least 2"),
        (lambda: deep_linear_network([3, -1, 2], 0), r"widths\[1\].*>= 1"),
        (lambda: deep_linear_network([3, 0, 2], 0), r"widths\[1\].*>= 1"),
        (lambda: deep_linear_network([3, 2.5, 2], 0), r"widths\[1\].*integer"),
        (lambda: deep_linear_network([3, 2, 4], 3), r"rank.*min\(widths\)"),
        (lambda: deep_linear_network([3, 2, 4], -1), r"rank.*>= 0"),
        (lambda: deep_linear_network([3, 2, 4], 1.0), r"rank.*integer"),
        (lambda: num_parameters([4]), r"widths.*at least 2"),
        (lambda: num_parameters([4, -3]), r"widths\[1\].*>= 1"),
    ],
)
def test_bad_inputs_raise_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
