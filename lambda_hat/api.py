"""``lambda_hat.sample``: the one entry point. Validates input, builds the posterior, runs the
chosen kernel's jitted program (compile and run timed separately), and assembles LLCResult."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lambda_hat.checks import boolean, positive_int
from lambda_hat.diagnostics import (
    PARETO_K_MAX,
    basin_message,
    basin_statistics,
    below_wstar_message,
    importance_message,
    importance_shift_message,
    importance_statistics,
    invalid_chains_message,
    llc_statistics,
    negative_llc_message,
    observable_statistics,
    rhat_message,
    stationarity_message,
    step_size_bias_message,
    step_size_bias_statistics,
    virial_message,
    virial_statistics,
)
from lambda_hat.kernels import KernelOutput, KernelSpec, get_kernel
from lambda_hat.kernels.base import info_dict
from lambda_hat.models import adapt_model
from lambda_hat.posterior import LocalPosterior
from lambda_hat.progress import close_bars, say
from lambda_hat.refits import refit_message, run_with_refits
from lambda_hat.result import LLCResult
from lambda_hat.sharding import ChainPlan, compile_plan, resolve_devices, run_plan

_COMPILED: dict[Any, Any] = {}
_COMPILED_MAX = 64


class LLCWarning(UserWarning):
    """A problem with an LLC run that the user should look at (the result is still returned)."""


def as_key(key: Any) -> jax.Array:
    """An int seed, a typed JAX key, or a legacy uint32[2] PRNGKey -> typed key.

    Args:
        key: a non-negative int seed, a typed JAX key of shape (), or a legacy uint32[2] key
            (``jax.random.PRNGKey``).

    Returns:
        A typed JAX PRNG key of shape () (``jax.random.key(seed)`` for a seed).

    Raises:
        TypeError: ``key`` is a bool or none of the accepted kinds.
        ValueError: a negative seed, or a typed key array of shape other than ().
    """
    if isinstance(key, bool):
        raise TypeError(f"key: expected an int seed or a JAX PRNG key, got {key!r}")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"key: expected a non-negative int seed, got {key}")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise ValueError(f"key: expected a single key (shape ()), got shape {key.shape}")
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    raise TypeError(
        f"key: expected an int seed or a JAX PRNG key (jax.random.key(seed)), got {type(key).__name__}"
        + (f" with dtype {key.dtype} and shape {key.shape}" if hasattr(key, "dtype") else "")
    )


def _merge_options(spec: KernelSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The kernel's defaults updated with ``given`` (deprecated names mapped to current ones, with
    a DeprecationWarning), checked by the kernel; errors name an option as the caller wrote it."""
    unknown = sorted(set(given) - set(spec.options) - set(spec.aliases))
    if unknown:
        raise ValueError(
            f"{unknown[0]}: not an option of kernel {spec.name!r}; "
            f"it accepts {sorted(spec.options) or 'no options'}"
            + (f" (unknown: {unknown})" if len(unknown) > 1 else "")
        )
    as_given: dict[str, str] = {}
    options = dict(given)
    for old in [name for name in given if name in spec.aliases]:
        new = spec.aliases[old]
        if new in given:
            raise ValueError(f"{old} and {new}: {old} is the old name of {new}; give only {new}")
        warnings.warn(
            f"{old}: renamed to {new} for kernel {spec.name!r}; the old name will be removed in a future release",
            DeprecationWarning,
            stacklevel=4,
        )
        options[new] = options.pop(old)
        as_given[new] = old
    try:
        return spec.check_options({**spec.options, **options})
    except (TypeError, ValueError) as err:
        name, sep, rest = str(err).partition(":")
        if sep and name in as_given:  # report the option under the name it was given as
            raise type(err)(f"{as_given[name]}:{rest}") from None
        raise


def _compiled_run(
    spec: KernelSpec, key: jax.Array, posterior: LocalPosterior, static: dict[str, Any], devices: list[jax.Device]
) -> tuple[ChainPlan, float]:
    """AOT-compile the kernel's run for these shapes, settings and devices, cached across calls
    (one program per device when the chains are split over several; see lambda_hat.sharding)."""
    treedef, avals = _avals(posterior)
    cache_key = (spec.name, tuple(sorted(static.items())), treedef, avals, tuple(d.id for d in devices))
    return _cached(cache_key, lambda: compile_plan(spec.run, static, key, posterior, devices))


def _avals(tree: Any) -> tuple[Any, tuple]:
    """(treedef, leaf shapes and dtypes): what a compiled program is specialised to."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


def _cached(cache_key: Any, build: Callable[[], Any]) -> tuple[Any, float]:
    """The compiled program under ``cache_key``, built (and timed) on first use; the cache keeps
    the newest _COMPILED_MAX programs."""
    if cache_key in _COMPILED:
        return _COMPILED[cache_key], 0.0
    start = time.perf_counter()
    program = build()
    elapsed = time.perf_counter() - start
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[cache_key] = program
    return program, elapsed


def clear_cache() -> int:
    """Drop the compiled programs that ``sample`` and ``sample_checkpoints`` keep for reuse.

    A call compiles one XLA program per (kernel, static settings, loss function, parameter and
    data shapes, devices) and keeps the newest 64, so repeating a call, or changing only the key,
    the data values or w*, skips compilation. Each kept program holds its loss function (and what
    that closes over) and its device executable. Call this to release them, e.g. in a long session
    that has sampled many different models; the next call compiles again. JAX's own caches (traced
    and compiled ``jax.jit`` functions) are separate: ``jax.clear_caches()``.

    Returns:
        The number of programs dropped.

    Example:
        >>> import lambda_hat
        >>> n = lambda_hat.clear_cache()  # n programs released
    """
    dropped = len(_COMPILED)
    _COMPILED.clear()
    return dropped


def sample(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    *,
    kernel: str = "sgld",
    key: Any = 0,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_warmup: int | None = None,
    beta: float | None = None,
    nbeta: float | None = None,
    gamma: float = 1.0,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    mask: Any = None,
    observables: Mapping[str, Any] | None = None,
    devices: Any = None,
    progress: bool = False,
    save_positions: bool = False,
    warn_stationarity: bool = True,
    **kernel_options: Any,
) -> LLCResult:
    """Estimate the local learning coefficient λ(w*) of ``params`` = w*.

    Samples p(w) ∝ exp(−nβ (L_n(w) − L_n(w*)) − (γ/2)‖w − w*‖²) with ``kernel`` and returns
    λ̂ = nβ·(E[L_n(w)] − L_n(w*)) over post-warmup draws, with its MCSE.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss (negative log-likelihood) over the batch.
        params: w*, a pytree of float arrays (flax linen params, an nnx State, a flat array, ...)
            or a flax nnx Module (its nnx.Param variables are sampled, ``loss_fn`` gets the module);
            cast to the run dtype.
        data: a pytree of arrays with a shared leading axis of length n (float leaves cast to
            the run dtype).
        kernel: one of ``lambda_hat.KERNELS`` ("sgld", ...).
        key: an int seed or a JAX PRNG key. The same key gives the same result.
        num_chains: independent chains (run vectorized). Chain c draws its random numbers from
            fold_in(key, c) whatever num_chains is; whether its draws are then bit-identical when
            chains are added depends on the kernel (docs/kernels.md, "Keys, chains and devices").
        num_draws, num_warmup: kept draws and dropped warmup/burn-in steps per chain (kernel
            defaults when None).
        beta / nbeta: inverse temperature β or nβ directly (default β = 1/log n); not both.
        gamma: localization strength γ >= 0.
        batch_size: minibatch size for stochastic-gradient kernels (None = full batch).
        chunk_size: examples per chunk when evaluating the full-batch loss.
        mask: sample only some weights (weight-restricted LLC): a pytree of booleans shaped like
            ``params`` or a predicate ``mask(path, leaf) -> bool``; see LocalPosterior.
        observables: ``{name: dataset}``, other datasets shaped like ``data`` on which the mean
            loss is recorded at every kept draw (one pass over each per draw). Each gives a
            data-refined LLC λ̂_k = nβ·(E_p[L_k(w)] − L_k(w*)) at the same posterior, in
            ``diagnostics["observables"][name]`` with its MCSE and the covariance of L_k with
            the sampling loss.
        devices: where to run the chains: None = all of ``jax.devices()``, an int k = the first k,
            or a list of devices. With several devices the chains are split evenly over them (each
            device runs a block; ``num_chains`` is padded up to a multiple of the device count with
            extra chains that are dropped); chain c gets the same random numbers as on one device
            (bit-identical draws for the SGLD family; see docs/kernels.md).
        progress: show progress on stderr: stage lines (compiling, sampling, done) and a tqdm
            bar with steps done, steps/s and the time left, advanced from inside the compiled
            loop by an asynchronous jax.debug.callback (SGLD family: warmup and draws; HMC and
            NUTS: warmup, then draws; MCLMC and adjusted MCLMC: the draws, after BlackJAX's
            tuning, which has no hook; VI: the optimisation steps up to the cap).
            Quiet by default.
        save_positions: also return the sampled parameters as ``result.positions`` (a pytree like
            ``params`` with leaves of shape (num_chains, num_draws, leaf shape…): the points whose
            losses are ``result.loss_trace``). Off by default: it takes num_chains × num_draws × d
            numbers of memory, where the loss trace alone takes num_chains × num_draws.
        warn_stationarity: warn when ‖∇L_n(w*)‖ shifts E[λ̂] noticeably (w* is not a minimum).
            Turn it off for checkpoints known not to be minima (early in training); the shift is
            still reported in ``diagnostics["stationarity_shift"]``.
        **kernel_options: options of the chosen kernel (e.g. ``step_size`` = ε for SGLD).

    Returns:
        An :class:`LLCResult`: ``llc`` ± ``llc_se``, the loss and λ̂ traces, ``diagnostics``
        (ESS, R-hat, the virial self-check, the kernel's own), ``warnings`` (each also raised
        as an :class:`LLCWarning`), timings and gradient counts.

    Example:
        A regular model (linear regression, d = 5) has λ = d/2; the finite-n oracle of the
        target gives the exact E[λ̂] at this nβ and γ:

        >>> import lambda_hat
        >>> from lambda_hat.targets import linear_regression
        >>> t = linear_regression(d=5, seed=0)
        >>> r = lambda_hat.sample(t.loss_fn, t.params, t.data, kernel="nuts", key=0)
        >>> exact = t.expected_llc(r.nbeta, r.gamma)
        >>> bool(abs(r.llc - exact) < 4 * r.llc_se), r.diagnostics["virial"]["ratio"] > 0.9
        (True, True)
    """
    if "masks" in kernel_options:
        raise TypeError(
            "masks: sample estimates one λ̂ (use mask= for one group of weights); for one λ̂ per group of "
            "weights from one compilation use lambda_hat.sample_masks(loss_fn, params, data, masks, ...)"
        )
    spec = get_kernel(kernel)
    options = _merge_options(spec, kernel_options)
    rng_key = as_key(key)
    devices = resolve_devices(devices)
    warn_stationarity = boolean("warn_stationarity", warn_stationarity)
    loss_fn, params = adapt_model(loss_fn, params)
    posterior = LocalPosterior(
        loss_fn, params, data, beta=beta, nbeta=nbeta, gamma=gamma, chunk_size=chunk_size, mask=mask,
        observables=observables,
    )  # fmt: skip
    run = _run_settings(
        spec, posterior, options, num_chains, num_draws, num_warmup, batch_size, progress, save_positions
    )
    if progress:
        say(
            f"{spec.name}: d = {posterior.dim}, n = {posterior.n}, {run.num_chains} chains × "
            f"({run.num_warmup} warmup + {run.num_draws} draws)"
            + (f" on {len(devices)} devices" if len(devices) > 1 else "")
            + "; compiling ..."
        )

    def execute(attempt: _RunSettings) -> tuple[list[KernelOutput], float, float]:
        plan, compile_s = _compiled_run(spec, rng_key, posterior, attempt.static, devices)
        if progress:
            say(f"{spec.name}: compiled in {compile_s:.1f} s; sampling ...")
        start = time.perf_counter()
        out: KernelOutput = run_plan(plan, rng_key, posterior)
        run_s = time.perf_counter() - start
        if progress:
            close_bars()
            say(f"{spec.name}: sampled in {run_s:.1f} s")
        return [out], compile_s, run_s

    (out,), run, compile_s, run_s, refits = run_with_refits(
        run, execute, posterior.num_sampled, posterior, say if progress else None
    )
    grad_norm, stationarity_shift = (float(x) for x in posterior.stationarity())
    config = run.config(key=repr(key), beta=beta, posterior=posterior, masked=mask is not None, devices=len(devices))
    return _assemble(
        spec, posterior, out, config, compile_s, run_s, grad_norm, stationarity_shift, run.exact_trace,
        warn_stationarity=warn_stationarity, refits=refits,
    )  # fmt: skip


class _RunSettings(NamedTuple):
    """A kernel run's validated settings: the static arguments of its program and its config."""

    spec: KernelSpec
    options: dict[str, Any]
    num_chains: int
    num_draws: int
    num_warmup: int
    batch_size: int | None  # None: the full batch
    save_positions: bool
    static: dict[str, Any]

    @property
    def exact_trace(self) -> bool:
        """The loss trace holds full-batch losses (not minibatch estimates)."""
        return self.batch_size is None or not self.spec.minibatch

    def with_options(self, options: dict[str, Any], posterior: LocalPosterior) -> _RunSettings:
        """The same run with other (already checked) kernel options: a refit's next attempt."""
        return _run_settings(
            self.spec,
            posterior,
            options,
            self.num_chains,
            self.num_draws,
            self.num_warmup,
            self.batch_size,
            "progress" in self.static,
            self.save_positions,
        )

    def config(self, *, key: str, beta: float | None, posterior: LocalPosterior, masked: bool, devices: int):
        return dict(
            kernel=self.spec.name,
            key=key,
            num_chains=self.num_chains,
            num_draws=self.num_draws,
            num_warmup=self.num_warmup,
            beta=beta,
            nbeta=float(posterior.nbeta),
            gamma=float(posterior.gamma),
            batch_size=self.batch_size,
            n=posterior.n,
            dim=posterior.num_sampled,
            masked=masked,
            observables=list(posterior.observable_names),
            dtype=str(posterior.dtype),
            devices=devices,
            chunk_size=posterior.chunk_size,
            save_positions=self.save_positions,
            **self.options,
        )


def _run_settings(
    spec: KernelSpec,
    posterior: LocalPosterior,
    options: dict[str, Any],
    num_chains: Any,
    num_draws: Any,
    num_warmup: Any,
    batch_size: Any,
    progress: Any,
    save_positions: Any,
) -> _RunSettings:
    """Check the run arguments of ``sample`` against the kernel and the posterior."""
    num_chains = positive_int("num_chains", num_chains)
    num_draws = positive_int("num_draws", spec.default_num_draws if num_draws is None else num_draws, minimum=4)
    num_warmup = positive_int("num_warmup", spec.default_num_warmup if num_warmup is None else num_warmup, minimum=0)
    spec.check_posterior(posterior)
    if batch_size is not None:
        if not spec.minibatch:
            raise ValueError(
                f"batch_size: kernel {spec.name!r} uses the full batch; leave batch_size=None "
                "or choose a stochastic-gradient kernel"
            )
        batch_size = positive_int("batch_size", batch_size)
        if batch_size > posterior.n:
            raise ValueError(f"batch_size: expected 1 <= batch_size <= n = {posterior.n}, got {batch_size}")
        if batch_size == posterior.n:
            batch_size = None  # the full batch, exactly, without resampling
    progress = boolean("progress", progress)
    save_positions = boolean("save_positions", save_positions)
    static = dict(
        num_chains=num_chains,
        num_draws=num_draws,
        num_warmup=num_warmup,
        batch_size=batch_size,
        **spec.program_options(options),
    )
    if progress and spec.progress:
        static["progress"] = True
    if save_positions:
        static["save_positions"] = True
    return _RunSettings(spec, options, num_chains, num_draws, num_warmup, batch_size, save_positions, static)


def _assemble(
    spec: KernelSpec,
    posterior: LocalPosterior,
    out: KernelOutput,
    config: dict[str, Any],
    compile_s: float,
    run_s: float,
    grad_norm: float,
    stationarity_shift: float,
    exact_trace: bool,
    emit: bool = True,
    warn_stationarity: bool = True,
    refits: list[dict[str, Any]] | None = None,
) -> LLCResult:
    """The LLCResult of one run (emit=False: its warnings are only recorded in ``warnings``;
    ``refits``: the kernel's records of a search over its settings, see lambda_hat.refits)."""
    nbeta = float(posterior.nbeta)
    loss_star = float(posterior.loss_at_wstar)
    excess = np.asarray(out.excess_loss, dtype=np.float64)
    llc_trace = nbeta * excess
    info = info_dict(out.info)
    finite = np.isfinite(llc_trace)
    valid = np.all(finite, axis=1) & np.asarray(out.valid, bool)
    if not valid.any():
        raise FloatingPointError(
            f"kernel {spec.name!r}: every chain produced non-finite losses or diverged; "
            "reduce the step size or check loss_fn near w*"
        )
    messages: list[str | None] = [invalid_chains_message(valid, finite, lambda c: spec.explain_invalid(info, c))]
    stats = llc_statistics(llc_trace[valid], spec.mcse_block)
    importance: dict[str, Any] = {}
    if out.log_weights is not None:  # draws from a proposal q: certify with the importance weights
        stats, importance, message = _importance_weighted(spec, out, llc_trace, valid, stats)
        messages.append(message)
    step_bias: dict[str, Any] | None = None
    if out.step_bias_terms is not None:  # a Langevin kernel's first-order step-size bias estimate
        stats, step_bias, message, corrected = _step_size_corrected(spec, out, llc_trace, valid, stats)
        messages.append(message)
        if step_bias["applied"]:  # the reported per-draw trace is the corrected one: λ̂ = its mean
            llc_trace = llc_trace.copy()
            llc_trace[valid] = corrected
    extra = {k: np.asarray(v) for k, v in (out.traces or {}).items()}
    if out.excess_loss_cv is not None:  # a control-variate version of the same draws
        extra["excess_loss_cv"] = np.asarray(out.excess_loss_cv)
        cv = llc_statistics(nbeta * np.asarray(out.excess_loss_cv, np.float64)[valid], spec.mcse_block)
        info["llc_cv"], info["llc_cv_se"] = cv["llc"], cv["llc_se"]
    per_chain = np.full(len(valid), np.nan)
    per_chain[valid] = stats["llc_per_chain"]
    ess_per_chain = np.full(len(valid), np.nan)
    ess_per_chain[valid] = stats["ess_per_chain"]
    diagnostics = {
        "ess": stats["ess"],
        "rhat": stats["rhat"],
        "ess_per_chain": ess_per_chain,
        "llc_sd": stats["llc_sd"],
        "grad_norm_at_wstar": grad_norm,
        "stationarity_shift": stationarity_shift,
        **importance,
        **info,
    }
    if step_bias is not None:
        diagnostics["step_size_bias"] = step_bias
    messages.extend(spec.messages(info, valid))
    if refits:
        diagnostics["refits"] = refits
        messages.append(refit_message(refits))
    terms = out.draw_terms
    if terms is not None:
        sizes = np.asarray(posterior.group_sizes)
        used = sizes > 0  # (a padded posterior's union of groups may hold empty ones)
        names = tuple(name for name, u in zip(posterior.group_names, used) if u)
        virial = virial_statistics(np.asarray(terms.virial)[valid][..., used], sizes[used], names, spec.mcse_block)
        diagnostics["virial"] = virial
        advice = spec.bias_advice if virial["ratio"] >= 1 else spec.narrow_advice
        if step_bias is not None and step_bias["applied"] and virial["ratio"] >= 1:
            advice += (
                f" (λ̂ is already corrected by the first-order step-size bias estimate, {step_bias['relative']:+.1%};"
                " what remains is of order step_size²)"
            )
        messages.append(virial_message(virial, spec.name, advice, spec.virial_tolerance))
        basin = basin_statistics(
            np.asarray(terms.distance_sq)[valid],
            llc_trace[valid],
            posterior.num_sampled,
            float(posterior.gamma),
            spec.mcse_block,
        )
        diagnostics["basin"] = basin
        messages.append(basin_message(basin, float(posterior.gamma)))
        if terms.observables is not None:
            weighted = importance.get("llc_source") == "importance-weighted"
            diagnostics["observables"] = observable_statistics(
                np.asarray(terms.observables)[valid],
                excess[valid],
                posterior.observable_names,
                np.asarray(posterior.observable_loss_at_wstar),
                nbeta,
                np.asarray(out.log_weights)[valid] if weighted else None,
                spec.mcse_block,
            )
    if warn_stationarity:
        messages.append(stationarity_message(grad_norm, stationarity_shift, stats["llc"], stats["llc_se"]))
    if exact_trace:
        below = float(np.mean(excess[valid] < -1e-6 * max(abs(loss_star), 1e-12)))
        diagnostics["frac_draws_below_wstar"] = below
        messages.append(below_wstar_message(below))
    messages.append(rhat_message(stats["rhat"], int(valid.sum())))
    messages.append(negative_llc_message(stats["llc"]))
    shown = [m for m in messages if m]
    for message in shown if emit else ():
        warnings.warn(message, LLCWarning, stacklevel=3)
    return LLCResult(
        llc=stats["llc"],
        llc_se=stats["llc_se"],
        llc_per_chain=per_chain,
        loss_trace=loss_star + excess,
        llc_trace=llc_trace,
        loss_at_wstar=loss_star,
        nbeta=nbeta,
        gamma=float(posterior.gamma),
        kernel=spec.name,
        config=config,
        diagnostics=diagnostics,
        timings={"compile_s": compile_s, "run_s": run_s, "total_s": compile_s + run_s},
        grad_evals=int(np.sum(np.asarray(out.grad_evals))),
        data_passes=float(np.sum(np.asarray(out.data_passes))),
        valid_chains=valid,
        warnings=shown,
        extra=extra,
        positions=None if out.positions is None else posterior.positions_tree(out.positions),
    )


def _step_size_corrected(
    spec: KernelSpec, out: KernelOutput, llc_trace: np.ndarray, valid: np.ndarray, stats: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], str | None, np.ndarray]:
    """(the λ̂ statistics to report, ``diagnostics["step_size_bias"]``, a warning or None, the
    corrected trace of the valid chains) for a run whose kernel returned the first-order
    step-size bias terms: the corrected statistics when the kernel's ``step_size_correction`` is
    on, the uncorrected ones otherwise."""
    corrected, bias, trace = step_size_bias_statistics(llc_trace[valid], np.asarray(out.step_bias_terms)[valid])
    applied = bool(np.all(np.asarray(out.step_bias_correction)[valid]))
    bias["applied"] = applied
    reported = corrected if applied else stats
    return reported, bias, step_size_bias_message(bias, applied, reported["llc_se"], spec.name), trace


def _importance_weighted(
    spec: KernelSpec, out: KernelOutput, llc_trace: np.ndarray, valid: np.ndarray, stats: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(the λ̂ statistics to report, the importance diagnostics, a warning or None) for draws from
    a proposal q with log importance weights: the weighted estimate when every valid chain's
    Pareto k̂ is below PARETO_K_MAX, else q's raw mean with a warning."""
    pareto_k = np.asarray(out.pareto_k, np.float64)
    is_stats = importance_statistics(llc_trace[valid], np.asarray(out.log_weights)[valid])
    importance = {
        "pareto_k": pareto_k,
        "llc_raw": stats["llc"],
        "llc_raw_se": stats["llc_se"],
        "llc_is": is_stats["llc"],
        "llc_is_se": is_stats["llc_se"],
        "is_ess_per_chain": np.where(valid, 0.0, np.nan),
    }
    importance["is_ess_per_chain"][valid] = is_stats["ess_per_chain"]
    worst_k = float(np.max(pareto_k[valid]))
    if worst_k >= PARETO_K_MAX:
        importance["llc_source"] = "raw"
        return stats, importance, importance_message(pareto_k, valid, spec.name)
    importance["llc_source"] = "importance-weighted"
    message = importance_shift_message(stats["llc"], stats["llc_se"], is_stats["llc"], spec.name)
    weighted = {
        **stats,
        "llc": is_stats["llc"],
        "llc_se": is_stats["llc_se"],
        "llc_per_chain": is_stats["llc_per_chain"],
    }
    return weighted, importance, message
