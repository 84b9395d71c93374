"""Metropolis-adjusted MCLMC (MAMS) on the full-batch localized posterior.

Built on ``blackjax.adjusted_mclmc_dynamic`` (isokinetic McLachlan trajectories of a random number
of steps, each proposal accepted or rejected by Metropolis–Hastings on its energy error) and tuned
per chain by ``blackjax.adjusted_mclmc_find_L_and_step_size``. Target: log p(w) = −nβ (L_n(w) −
L_n(w*)) − (γ/2)‖w − w*‖², full batch (``batch_size`` is rejected: the accept step needs the exact
log-density).

Why it exists next to ``mclmc``: unadjusted MCLMC has a bias that does not vanish with more draws
(measured λ̂ 1.0–1.2% low on the validation quadratics at ``desired_energy_var`` = 1e-4, still
0.4–0.6% low at 5e-6, and the same with four times the warmup and draws), which an MCSE cannot
include. The Metropolis step removes it: the chain's stationary law is the posterior exactly, so
λ̂'s only error is Monte Carlo error.

Conventions (BlackJAX's): ``step_size`` ε is the integrator step in the preconditioned coordinates
(diagonal inverse mass matrix M⁻¹, positions move as √M⁻¹ ⊙ unit-speed velocity); ``L`` is the
mean trajectory length in the same units, so a proposal integrates on average L/ε steps (the
count is drawn per proposal, uniformly with that mean, at least 1 and at most
``MAX_INTEGRATION_STEPS`` = 64). The tuner runs dual averaging
of ε towards ``target_acceptance_rate`` at L/ε = 2 (BlackJAX's default, its most robust setting),
estimates M⁻¹ (``diagonal_preconditioning``) and tunes ε again.

``num_warmup`` is the tuning budget in MH steps: the tuner is called with ``num_steps`` = 10·⌈W/3⌉
and fractions (0.1, 0.1, 0), so it runs 3·⌈W/3⌉ ≈ W MH steps (reported as ``tuning_steps``). With
both ``L`` and ``step_size`` given nothing is tuned (M⁻¹ = ``inverse_mass_matrix`` or the
identity) and the ``num_warmup`` steps are plain burn-in. Tuning and burn-in draws are dropped.

Gradient evaluations: two per integration step (the McLachlan integrator's two position updates),
counted exactly from every proposal's drawn length, tuning included, plus 1 at initialisation.

d = 1 runs on the padded target of ``mclmc`` (an independent N(0, 1) coordinate appended).

Diagnostics per chain: acceptance_rate (mean MH acceptance probability over the draws),
divergences (draws whose energy error exceeded 1000), step_size, L, num_integration_steps (mean
per draw), tuning_steps, warmup_grad_evals (initialisation + tuning or burn-in) and ``valid``:
False when a loss is non-finite, the tuned parameters are not finite and positive, or the chain
never moved.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.mcmc.adjusted_mclmc_dynamic import make_random_trajectory_length_fn

from lambda_hat.checks import boolean, probability
from lambda_hat.diagnostics import divergence_messages
from lambda_hat.kernels.base import KernelOutput, KernelSpec
from lambda_hat.kernels.chains import chain_keys
from lambda_hat.kernels.isokinetic import MIN_TUNING_WARMUP, check_tuning_options, pad_to_two_dimensions
from lambda_hat.kernels.mass_matrix import inverse_mass_matrix_vector
from lambda_hat.posterior import LocalPosterior
from lambda_hat.progress import tick


class AdjustedMCLMCInfo(NamedTuple):
    """Per-chain diagnostics of an adjusted MCLMC run.

    Attributes:
        acceptance_rate: mean MH acceptance probability over the draws.
        divergences: draws whose energy error exceeded 1000.
        step_size: the integrator step ε in use.
        L: the mean trajectory length in use.
        num_integration_steps: mean integration steps per draw.
        tuning_steps: MH steps the tuner ran (0 when L and step_size were given).
        warmup_grad_evals: gradient evaluations of initialisation and tuning or burn-in.
    """

    acceptance_rate: jax.Array
    divergences: jax.Array
    step_size: jax.Array
    L: jax.Array
    num_integration_steps: jax.Array
    tuning_steps: jax.Array
    warmup_grad_evals: jax.Array


_FRAC = 0.1  # frac_tune1 = frac_tune2; frac_tune3 = 0 (BlackJAX's defaults for the adjusted tuner)
MAX_INTEGRATION_STEPS = 64  # per proposal; the tuned mean is 2


def _integration_steps_fn():
    """BlackJAX's random trajectory length (uniform, mean L/ε), capped at MAX_INTEGRATION_STEPS.

    The cap keeps a proposal's cost bounded when tuning shrinks ε while L lags behind (measured: a
    loss that is NaN on half the posterior drove L/ε into the thousands and one 4-chain run took
    290 s instead of 0.1 s). A length drawn independently of the state keeps MH exact, capped or not.
    """
    draw = make_random_trajectory_length_fn(True)

    def integration_steps_fn(key, avg_num_integration_steps):
        return jnp.minimum(draw(key, avg_num_integration_steps), MAX_INTEGRATION_STEPS)

    return integration_steps_fn


def tuning_steps(num_warmup: int) -> int:
    """MH steps that the adjusted tuner runs for ``num_warmup`` (3·⌈W/3⌉: two passes of
    ``int(0.1·num_steps)`` steps before M⁻¹ is estimated, one after).

    Args:
        num_warmup: W, the tuning budget in MH steps.

    Returns:
        The number of MH steps of the tuning run.
    """
    return 3 * int(tuner_num_steps(num_warmup) * _FRAC)


def tuner_num_steps(num_warmup: int) -> int:
    """The ``num_steps`` given to ``adjusted_mclmc_find_L_and_step_size`` (10·⌈W/3⌉).

    Args:
        num_warmup: W, the tuning budget in MH steps.

    Returns:
        10·⌈W/3⌉.
    """
    return 10 * -(-num_warmup // 3)


def run_adjusted_mclmc(
    key: jax.Array,
    posterior: LocalPosterior,
    *,
    first_chain: jax.Array | int = 0,
    num_chains: int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    L: float | None,
    step_size: float | None,
    inverse_mass_matrix: float | tuple[float, ...] | None,
    target_acceptance_rate: float,
    diagonal_preconditioning: bool,
    save_positions: bool = False,
    progress: bool = False,
) -> KernelOutput:
    """Tune (or burn in), then sample; all chains vmapped in one program.

    Args:
        key: the run's PRNG key; chain c's randomness derives from fold_in(key, c).
        posterior: the localized posterior (full batch); every chain starts at w*.
        first_chain: global index of this program's first chain (an int or a traced integer).
        num_chains: chains run by this program (vmapped).
        num_draws: kept draws per chain.
        num_warmup: W, the tuning budget in MH steps (>= 10 when tuning) or, with ``L`` and
            ``step_size`` given, burn-in MH steps; dropped.
        batch_size: ignored (full batch only; the spec rejects a batch size).
        L: the mean trajectory length (BlackJAX's ``L``, in the units set by M⁻¹; a proposal
            integrates on average L/ε steps, at most ``MAX_INTEGRATION_STEPS``); None tunes it
            (give both ``L`` and ``step_size`` or neither).
        step_size: the integrator step ε (BlackJAX's ``step_size``, same units); None tunes it.
        inverse_mass_matrix: the diagonal M⁻¹ (a scalar or a length-d tuple), as checked by
            :func:`~lambda_hat.kernels.mass_matrix.check_inverse_mass_matrix`; used only with ``L``
            and ``step_size`` given (None = the identity).
        target_acceptance_rate: the acceptance rate the tuner's dual averaging of ε aims at.
        diagonal_preconditioning: let the tuner estimate a diagonal M⁻¹.
        save_positions: also return the sampled positions.
        progress: advance a progress bar over the draws (the tuning runs before it starts).

    Returns:
        A :class:`KernelOutput` with an :class:`AdjustedMCLMCInfo`; ``valid`` is False for a chain
        with a non-finite loss, non-finite or non-positive tuned parameters, or no move.
    """
    del batch_size  # full batch only (KernelSpec.minibatch=False)
    dtype = posterior.dtype
    tune = L is None
    if tune and num_warmup < MIN_TUNING_WARMUP:
        raise ValueError(
            f"num_warmup: adjusted MCLMC tunes L and step_size during warmup and needs num_warmup >= "
            f"{MIN_TUNING_WARMUP}, got {num_warmup} (or give both L and step_size to skip tuning)"
        )
    padded = pad_to_two_dimensions(posterior)
    imm_fixed = padded.pad_vector(inverse_mass_matrix_vector(inverse_mass_matrix, posterior.dim, dtype))
    kernel = blackjax.adjusted_mclmc_dynamic.build_kernel(
        integration_steps_fn=_integration_steps_fn(),
        integrator=blackjax.mcmc.integrators.isokinetic_mclachlan,
    )
    logdensity = padded.logdensity

    def one_chain(chain_key):
        k_init, k_tune, k_draw = jax.random.split(chain_key, 3)
        k_init, k_steps = jax.random.split(k_init)
        state = blackjax.adjusted_mclmc_dynamic.init(padded.w0, logdensity, k_steps)
        if tune:
            state, params, tuning_integration_steps = blackjax.adjusted_mclmc_find_L_and_step_size(
                mclmc_kernel=kernel,
                logdensity_fn=logdensity,
                num_steps=tuner_num_steps(num_warmup),
                state=state,
                rng_key=k_tune,
                target=target_acceptance_rate,
                frac_tune1=_FRAC,
                frac_tune2=_FRAC,
                frac_tune3=0.0,
                diagonal_preconditioning=diagonal_preconditioning,
            )
            ell = jnp.asarray(params.L, dtype)
            eps = jnp.asarray(params.step_size, dtype)
            imm = jnp.broadcast_to(jnp.asarray(params.inverse_mass_matrix, dtype), (padded.dim,))
            warm_integration_steps = jnp.asarray(tuning_integration_steps, jnp.int32)
        else:
            ell, eps, imm = jnp.asarray(L, dtype), jnp.asarray(step_size, dtype), imm_fixed

            def burn(carry, k):
                state, steps = carry
                state, info = kernel(k, state, logdensity, eps, jnp.inf, imm, (ell / eps,))
                return (state, steps + jnp.asarray(info.num_integration_steps, jnp.int32)), None

            (state, warm_integration_steps), _ = jax.lax.scan(
                burn, (state, jnp.zeros((), jnp.int32)), jax.random.split(k_tune, num_warmup)
            )

        def draw(carry, xs):
            i, k = xs
            if progress:
                tick(i, num_draws, "adjusted_mclmc draws (after tuning)", True, first_chain == 0)
            state, acc, div, steps, moves = carry
            new, info = kernel(k, state, logdensity, eps, jnp.inf, imm, (ell / eps,))
            excess = padded.excess_loss(new.position, new.logdensity)
            acc = acc + jnp.asarray(info.acceptance_rate, dtype)
            div = div + jnp.asarray(info.is_divergent, jnp.int32)
            steps = steps + jnp.asarray(info.num_integration_steps, jnp.int32)
            moves = moves + jnp.any(new.position != state.position).astype(jnp.int32)
            position = padded.unpad(new.position) if save_positions else None
            terms = posterior.draw_terms(padded.unpad(new.position), -padded.unpad(new.logdensity_grad))
            return (new, acc, div, steps, moves), (excess, position, terms)

        zero_i = jnp.zeros((), jnp.int32)
        (_, acc, div, steps, moves), (excess, positions, terms) = jax.lax.scan(
            draw,
            (state, jnp.zeros((), dtype), zero_i, zero_i, zero_i),
            (jnp.arange(num_draws), jax.random.split(k_draw, num_draws)),
        )
        params_ok = jnp.isfinite(ell) & (ell > 0) & jnp.isfinite(eps) & (eps > 0)
        params_ok &= jnp.all(jnp.isfinite(imm) & (imm > 0))
        valid = jnp.all(jnp.isfinite(excess)) & params_ok & (moves > 0)
        info = AdjustedMCLMCInfo(
            acceptance_rate=acc / num_draws,
            divergences=div,
            step_size=eps,
            L=ell,
            num_integration_steps=steps.astype(dtype) / num_draws,
            tuning_steps=jnp.asarray(tuning_steps(num_warmup) if tune else 0, jnp.int32),
            warmup_grad_evals=1 + 2 * warm_integration_steps,
        )
        return excess, valid, info, positions, terms, 1 + 2 * (warm_integration_steps + steps)

    excess, valid, info, positions, terms, evals = jax.vmap(one_chain)(chain_keys(key, num_chains, first_chain))
    return KernelOutput(
        excess_loss=excess,
        valid=valid,
        info=info,
        grad_evals=evals,
        data_passes=evals.astype(dtype),
        positions=positions,
        draw_terms=terms,
    )


def _check(options: dict[str, Any]) -> dict[str, Any]:
    options = check_tuning_options(options)
    options["target_acceptance_rate"] = probability("target_acceptance_rate", options["target_acceptance_rate"])
    options["diagonal_preconditioning"] = boolean("diagonal_preconditioning", options["diagonal_preconditioning"])
    return options


ADJUSTED_MCLMC = KernelSpec(
    name="adjusted_mclmc",
    run=run_adjusted_mclmc,
    options={
        "L": None,
        "step_size": None,
        "inverse_mass_matrix": None,
        "target_acceptance_rate": 0.9,
        "diagonal_preconditioning": True,
    },
    default_num_draws=2000,
    default_num_warmup=1000,
    minibatch=False,
    progress=True,
    check_options=_check,
    messages=divergence_messages,
    bias_advice="adjusted MCLMC is exact in the limit: raise num_warmup or num_draws, or check R-hat "
    "for chains that have not mixed",
)
