"""MCLMC (microcanonical Langevin Monte Carlo) on the full-batch localized posterior.

Built on ``blackjax.mclmc`` (unadjusted: no Metropolis step) with the isokinetic McLachlan
integrator and partial momentum refresh, tuned per chain by ``blackjax.mclmc_find_L_and_step_size``.
Target: log p(w) = −nβ (L_n(w) − L_n(w*)) − (γ/2)‖w − w*‖², full batch (the tuner controls the
energy error, which a minibatch log-density would corrupt, so ``batch_size`` is rejected).

Conventions (BlackJAX's): ``step_size`` ε is the integrator step in the preconditioned
coordinates (diagonal inverse mass matrix M⁻¹, positions move as √M⁻¹ ⊙ unit-speed velocity);
``L`` is the momentum decoherence length (the expected distance before the velocity is refreshed),
in the same units. The tuner aims at Var[ΔE]/d = ``desired_energy_var`` per step (ΔE the energy
error of one step, d the dimension); since MCLMC is unadjusted, that energy error is also the
size of its bias. Measured on the quadratic targets: λ̂ is about 2% low at BlackJAX's 5e-4,
about 1% low at 1e-4, and 0.5–0.7% low at 2e-5, the default (100 seeds of the 5-dimensional
full-rank and the 10-dimensional rank-4 validation quadratics: −1.03% and −0.80% at 1e-4, −0.70%
and −0.48% at 2e-5, for 10% and 6% more variance of λ̂ at the same number of steps). The bias
does not vanish with the energy error (−0.50% / −0.68% at 1e-5) and is not in the MCSE: use
``adjusted_mclmc`` where it matters.

λ̂'s MCSE comes from the means of blocks of 10 draws (``KernelSpec.mcse_block``): MCLMC is not
reversible, and its λ̂ autocorrelation oscillates (0.33, 0.06, 0.19, 0.14 at lags 1, 2, 5 and 10
on the rank-4 quadratic), which Geyer's initial monotone sequence truncates (MCSE 1.27× too small
over 100 seeds; 1.07× with the blocks).

``num_warmup`` is the tuning budget: the tuner is called with ``num_steps = 3·num_warmup`` and its
default fractions (0.1, 0.1, 0.1), so it runs 0.3·W steps of step-size adaptation, 0.3·W more
while estimating the diagonal M⁻¹ (plus 0.1·W re-tuning ε after it, when
``diagonal_preconditioning``) and 0.3·W to set L from the autocorrelation: ≈ W steps in all
(0.9·W without preconditioning). The exact count is reported as ``tuning_steps``. With both
``L`` and ``step_size`` given nothing is tuned (M⁻¹ = ``inverse_mass_matrix`` or the identity)
and the ``num_warmup`` steps are plain burn-in. Tuning and burn-in draws are dropped.

Gradient evaluations: the McLachlan integrator updates the position twice per step, with one
log-density gradient after each (BlackJAX keeps the last one in the state), so a step costs 2;
plus 1 at initialisation. ``grad_evals`` = 1 + 2·(tuning or burn-in steps) + 2·num_draws.

MCLMC needs d >= 2 (the isokinetic momentum lives on a sphere). For d = 1 an independent
standard-normal dummy coordinate z is appended: the sampled density is p(w)·N(z; 0, 1), the loss
never sees z, so λ̂ is unchanged; the energy diagnostic is then per 2 dimensions.

Diagnostics per chain: energy_var_per_dim (Var[ΔE]/d over the draws; the tuner's target is
``desired_energy_var``), L, step_size, tuning_steps, nan_steps (steps BlackJAX reverted because the
log-density or the state went non-finite) and ``valid``: False when a loss is non-finite, any
sampling step hit a NaN, the tuned parameters are not finite and positive, or the chain never
moved.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp

from lambda_hat.checks import boolean, positive_float
from lambda_hat.kernels.base import KernelOutput, KernelSpec
from lambda_hat.kernels.chains import chain_keys
from lambda_hat.kernels.isokinetic import MIN_TUNING_WARMUP, check_tuning_options, pad_to_two_dimensions
from lambda_hat.kernels.mass_matrix import inverse_mass_matrix_vector
from lambda_hat.posterior import LocalPosterior
from lambda_hat.progress import tick

_FRAC = 0.1  # BlackJAX's default frac_tune1 = frac_tune2 = frac_tune3


class MCLMCInfo(NamedTuple):
    """Per-chain diagnostics of an MCLMC run.

    Attributes:
        energy_var_per_dim: Var[ΔE]/d over the draws (the tuner's target is ``desired_energy_var``).
        L: the momentum decoherence length in use.
        step_size: the integrator step ε in use.
        tuning_steps: MCLMC steps the tuner ran (0 when L and step_size were given).
        nan_steps: sampling steps BlackJAX reverted because the log-density or the state went
            non-finite (such a chain is invalid).
    """

    energy_var_per_dim: jax.Array
    L: jax.Array
    step_size: jax.Array
    tuning_steps: jax.Array
    nan_steps: jax.Array


def tuning_steps(num_warmup: int, diagonal_preconditioning: bool) -> int:
    """MCLMC steps that ``mclmc_find_L_and_step_size(num_steps=3·num_warmup)`` runs.

    Mirrors BlackJAX 1.7.1's schedule exactly (its own returned count misses part of the
    ε re-tuning after the preconditioner is estimated).

    Args:
        num_warmup: W, the tuning budget.
        diagonal_preconditioning: whether the tuner estimates a diagonal M⁻¹ (and re-tunes ε).

    Returns:
        The number of MCLMC steps of the tuning run.
    """
    num_steps = 3 * num_warmup
    n1, n2 = round(num_steps * _FRAC), round(num_steps * _FRAC)
    total = n1 + n2
    if n2 > 1 and diagonal_preconditioning:
        total += round(n2 / 3)
    n3 = round(num_steps * _FRAC)
    if n3 >= 2:
        total += n3
    return total


def run_mclmc(
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
    desired_energy_var: float,
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
        num_warmup: W, the tuning budget (the tuner runs ≈ W steps; >= 10 when tuning) or, with
            ``L`` and ``step_size`` given, burn-in steps; dropped.
        batch_size: ignored (full batch only; the spec rejects a batch size).
        L: the momentum decoherence length (BlackJAX's ``L``, in the units set by M⁻¹); None
            tunes it (give both ``L`` and ``step_size`` or neither).
        step_size: the integrator step ε (BlackJAX's ``step_size``, same units); None tunes it.
        inverse_mass_matrix: the diagonal M⁻¹ (a scalar or a length-d tuple), as checked by
            :func:`~lambda_hat.kernels.mass_matrix.check_inverse_mass_matrix`; used only with ``L``
            and ``step_size`` given (None = the identity).
        desired_energy_var: the tuner's target Var[ΔE]/d per step.
        diagonal_preconditioning: let the tuner estimate a diagonal M⁻¹.
        save_positions: also return the sampled positions.
        progress: advance a progress bar over the draws (the tuning runs before it starts).

    Returns:
        A :class:`KernelOutput` with an :class:`MCLMCInfo`; ``valid`` is False for a chain with a
        non-finite loss, a NaN step, non-finite or non-positive tuned parameters, or no move.
    """
    del batch_size  # full batch only (KernelSpec.minibatch=False)
    dtype = posterior.dtype
    d = posterior.dim
    tune = L is None
    if tune and num_warmup < MIN_TUNING_WARMUP:
        raise ValueError(
            f"num_warmup: MCLMC tunes L and step_size during warmup and needs num_warmup >= "
            f"{MIN_TUNING_WARMUP}, got {num_warmup} (or give both L and step_size to skip tuning)"
        )
    padded = pad_to_two_dimensions(posterior)
    dim, logdensity, excess_loss, w0 = padded.dim, padded.logdensity, padded.excess_loss, padded.w0
    imm_fixed = padded.pad_vector(inverse_mass_matrix_vector(inverse_mass_matrix, d, dtype))

    kernel = blackjax.mcmc.mclmc.build_kernel(integrator=blackjax.mcmc.integrators.isokinetic_mclachlan)
    warm_steps = tuning_steps(num_warmup, diagonal_preconditioning) if tune else num_warmup

    def one_chain(chain_key):
        k_init, k_tune, k_draw = jax.random.split(chain_key, 3)
        state = blackjax.mcmc.mclmc.init(w0, logdensity, k_init)
        if tune:
            state, params, _ = blackjax.mclmc_find_L_and_step_size(
                mclmc_kernel=kernel,
                num_steps=3 * num_warmup,
                state=state,
                rng_key=k_tune,
                logdensity_fn=logdensity,
                frac_tune1=_FRAC,
                frac_tune2=_FRAC,
                frac_tune3=_FRAC,
                desired_energy_var=desired_energy_var,
                diagonal_preconditioning=diagonal_preconditioning,
            )
            ell = jnp.asarray(params.L, dtype)
            eps = jnp.asarray(params.step_size, dtype)
            imm = jnp.broadcast_to(jnp.asarray(params.inverse_mass_matrix, dtype), (dim,))
        else:
            ell, eps, imm = jnp.asarray(L, dtype), jnp.asarray(step_size, dtype), imm_fixed

            def burn(state, k):
                state, _ = kernel(k, state, logdensity, imm, ell, eps)
                return state, None

            state, _ = jax.lax.scan(burn, state, jax.random.split(k_tune, num_warmup))

        def draw(carry, xs):
            i, k = xs
            if progress:
                tick(i, num_draws, "mclmc draws (after tuning)", True, first_chain == 0)
            state, nan_steps, moves = carry
            new, info = kernel(k, state, logdensity, imm, ell, eps)
            excess = excess_loss(new.position, new.logdensity)
            nan_steps = nan_steps + jnp.logical_not(info.nonans).astype(jnp.int32)
            moves = moves + jnp.any(new.position != state.position).astype(jnp.int32)
            position = padded.unpad(new.position) if save_positions else None
            grad_u = -padded.unpad(new.logdensity_grad)
            terms = posterior.draw_terms(padded.unpad(new.position), grad_u)
            return (new, nan_steps, moves), (excess, jnp.asarray(info.energy_change, dtype), position, terms)

        zero_i = jnp.zeros((), jnp.int32)
        (_, nan_steps, moves), (excess, energy_change, positions, terms) = jax.lax.scan(
            draw, (state, zero_i, zero_i), (jnp.arange(num_draws), jax.random.split(k_draw, num_draws))
        )
        params_ok = jnp.isfinite(ell) & (ell > 0) & jnp.isfinite(eps) & (eps > 0)
        params_ok &= jnp.all(jnp.isfinite(imm) & (imm > 0))
        valid = jnp.all(jnp.isfinite(excess)) & (nan_steps == 0) & params_ok & (moves > 0)
        info = MCLMCInfo(
            energy_var_per_dim=jnp.var(energy_change) / dim,
            L=ell,
            step_size=eps,
            tuning_steps=jnp.asarray(warm_steps if tune else 0, jnp.int32),
            nan_steps=nan_steps,
        )
        return excess, valid, info, positions, terms

    excess, valid, info, positions, terms = jax.vmap(one_chain)(chain_keys(key, num_chains, first_chain))
    evals = jnp.full((num_chains,), 1 + 2 * (warm_steps + num_draws), jnp.int32)
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
    options["desired_energy_var"] = positive_float("desired_energy_var", options["desired_energy_var"])
    options["diagonal_preconditioning"] = boolean("diagonal_preconditioning", options["diagonal_preconditioning"])
    return options


def _explain_invalid(info: dict[str, Any], chain: int) -> str | None:
    steps = int(info["nan_steps"][chain])
    return f"chain {chain}: {steps} steps hit a non-finite log-density" if steps > 0 else None


MCLMC = KernelSpec(
    name="mclmc",
    run=run_mclmc,
    options={
        "L": None,
        "step_size": None,
        "inverse_mass_matrix": None,
        "desired_energy_var": 2e-5,
        "diagonal_preconditioning": True,
    },
    default_num_draws=2000,
    default_num_warmup=1000,
    minibatch=False,
    progress=True,
    check_options=_check,
    explain_invalid=_explain_invalid,
    bias_advice="MCLMC is unadjusted: lower desired_energy_var (its bias scales with the energy error) "
    "or raise num_warmup",
    mcse_block=10,  # not reversible: its λ̂ autocorrelation oscillates (see diagnostics.llc_statistics)
)
