"""Prototype: SGLD with a Kronecker-factored preconditioner from Hessian probes, on random DLNs.

    python -m benchmarks.kronecker_sgld --bucket 10000 --seeds 11 22 58 74 96
    python -m benchmarks.kronecker_sgld --bucket 10000 --seeds 22 58 --adapt-step --nbeta-scale 10

This is a measurement script, not a lambda_hat kernel: it runs its own chains on the targets of
``benchmarks.dln_accuracy`` (same networks, batch 500, γ = 1, nβ = n/log n, 4 chains) to see
whether a curvature-matched preconditioner removes the slow mixing that keeps SGLD and
RMSProp-SGLD short of the local λ in the 1e4 bucket.

The preconditioner. For a weight matrix W (m × n) of the network, the block of the Hessian of the
loss L at w* that couples W with itself maps a direction D to B D A, exactly for a deep linear
network at a noiseless teacher (B the covariance of the layer's input, A the Gram matrix of the
layers after it) and approximately for other networks (K-FAC's approximation). The factors are
read off Hessian-vector products with directions inside that block only, with fixed random
u ∈ Rᵐ, v ∈ Rⁿ:

    H(e_i vᵀ) v = (vᵀAv)·B e_i,   uᵀ H(u e_jᵀ) = (uᵀBu)·(A e_j)ᵀ,   ⟨u vᵀ, H(u vᵀ)⟩ = (uᵀBu)(vᵀAv),

so m + n + 1 products give B ⊗ A exactly, without squaring its condition number (the
second-moment estimates of gradient statistics square it, which float32 cannot hold). With
B = U_B diag(b) U_Bᵀ and A = U_A diag(a) U_Aᵀ, the curvature of nβL in the direction u_B,i ⊗ u_A,j
is κ_ij = nβ·b_i a_j (that of the tempered potential U = nβL + γ/2‖w − w*‖² is κ_ij + γ), and

    P = (U_B ⊗ U_A) diag(1/p_ij) (U_B ⊗ U_A)ᵀ,  p_ij = max(κ_ij + γ, floor) if κ_ij > γ, else p_null,

with p_null the largest p of the network: directions the factors call flat (their curvature is the
localizer's alone) are moved as slowly as the stiffest, because the chain's drift along the
teacher's fibre makes a w*-fixed preconditioner unstable there. ``floor`` caps P in the soft
directions for the same reason (without it the chains diverge within ten steps at any useful ε).
Each chain then runs preconditioned SGLD with a constant P (so its stationary law is the tempered
posterior as ε → 0):

    w ← w − (ε/2)·P(nβ∇L_B(w) + γ(w − w*)) + √ε·P^½ ξ,   ε = c₀ / λ_max(P^½ (nβH + γ) P^½),

λ_max from power iteration at w* (for a DLN it is about the number of layers: the blocks of the
preconditioned Hessian's diagonal blocks are identities). The first fifth of the steps is warmup. With
``--adapt-step`` the draws run at ε = c₀ / max(λ_max at w*, λ_max at each chain's position after
the warmup): the soft directions couple (moving one by its posterior width makes others stiff),
so λ_max(PH) at the posterior's typical points is 10–200 times its value at w*, and an ε set at
w* is far past the stability limit there. λ̂ = nβ·(mean minibatch loss over the draws − L(w*)).

Cost: Σ (m + n + 1) Hessian-vector products on a 500-sample batch plus 40 per λ_max (at w*, at
each chain after the warmup, at chain 0's end), reported as ``probe_hvps`` beside the chains'
gradients. Writes benchmarks/results/kronecker_sgld.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.dln_accuracy import screen
from benchmarks.meta import run_metadata
from lambda_hat import targets

RESULTS = Path(__file__).parent / "results"


def block_factors(loss, params: list[jax.Array], batch, key: jax.Array) -> list[tuple[jax.Array, ...]]:
    """Per weight matrix: (U_B, U_A, curvature b_i·a_j of L) of its Kronecker-factored Hessian block."""

    def hvp(tangent):
        return jax.jvp(lambda p: jax.grad(loss)(p, batch), (params,), (tangent,))[1]

    factors = []
    for index, weight in enumerate(params):
        m, n = weight.shape
        ku, kv = jax.random.split(jax.random.fold_in(key, index))
        u, v = jax.random.normal(ku, (m,), weight.dtype), jax.random.normal(kv, (n,), weight.dtype)

        def block_hvp(direction, index=index):
            tangent = [jnp.zeros_like(p) for p in params]
            tangent[index] = direction
            return hvp(tangent)[index]

        rows = jnp.eye(m, dtype=weight.dtype)
        cols = jnp.eye(n, dtype=weight.dtype)
        b = jax.lax.map(lambda e, v=v: block_hvp(jnp.outer(e, v)) @ v, rows, batch_size=64).T  # (vᵀAv)·B
        a = jax.lax.map(lambda e, u=u: u @ block_hvp(jnp.outer(u, e)), cols, batch_size=64).T  # (uᵀBu)·A
        scale = jnp.vdot(jnp.outer(u, v), block_hvp(jnp.outer(u, v)))  # (uᵀBu)(vᵀAv)
        eig_b, vec_b = jnp.linalg.eigh(0.5 * (b + b.T))
        eig_a, vec_a = jnp.linalg.eigh(0.5 * (a + a.T))
        curvature = jnp.clip(eig_b, 0)[:, None] * jnp.clip(eig_a, 0)[None, :] / jnp.maximum(scale, 1e-30)
        factors.append((vec_b, vec_a, curvature))
    return factors


def precisions(factors, nbeta: float, gamma: float, floor: float) -> tuple[list, float, int]:
    """(U_B, U_A, p) per block with p as in the module docstring, p_null, and the flat count."""
    stiffest = max(float(c.max()) for _, _, c in factors) * nbeta + gamma
    out, flat = [], 0
    for vec_b, vec_a, curvature in factors:
        kappa = nbeta * curvature
        out.append((vec_b, vec_a, jnp.where(kappa > gamma, jnp.maximum(kappa + gamma, floor), stiffest)))
        flat += int(jnp.sum(kappa <= gamma))
    return out, stiffest, flat


def apply(blocks, tree: list[jax.Array], power: float) -> list[jax.Array]:
    """P^power applied to each block's matrix."""
    return [vb @ ((vb.T @ x @ va) / p**power) @ va.T for x, (vb, va, p) in zip(tree, blocks)]


def run(
    bucket: int,
    seed: int,
    c0: float,
    floor: float,
    steps: int,
    *,
    chains: int = 4,
    batch: int = 500,
    gamma: float = 1.0,
    nbeta_scale: float = 1.0,
    probe_batch: int = 500,
    adapt_step: bool = False,
) -> dict[str, Any]:
    target = targets.random_deep_linear_network(bucket, seed=seed)
    x, y = target.data
    wstar = [jnp.asarray(w) for w in target.params]
    loss = target.loss_fn
    nbeta = target.n / math.log(target.n) * nbeta_scale
    key = jax.random.PRNGKey(seed)
    start = time.perf_counter()
    probe = (x[:probe_batch], y[:probe_batch])
    blocks, stiffest, flat = precisions(block_factors(loss, wstar, probe, key), nbeta, gamma, floor)

    def precond_hessian(vec, at):
        half = apply(blocks, vec, 0.5)
        hv = jax.jvp(lambda p: jax.grad(loss)(p, probe), (at,), (half,))[1]
        return apply(blocks, [nbeta * h + gamma * q for h, q in zip(hv, half)], 0.5)

    @jax.jit
    def power_step(vec, at):
        out = precond_hessian(vec, at)
        rayleigh = sum(jnp.vdot(o, q) for o, q in zip(out, vec)) / sum(jnp.vdot(q, q) for q in vec)
        norm = jnp.sqrt(sum(jnp.vdot(o, o) for o in out))
        return [o / norm for o in out], rayleigh

    def top_eigenvalue(at):
        vec = [jax.random.normal(jax.random.fold_in(key, 1000 + i), w.shape) for i, w in enumerate(wstar)]
        for _ in range(40):
            vec, lam = power_step(vec, at)
        return float(lam)

    lam_max = top_eigenvalue(wstar)
    step_size = c0 / lam_max
    setup_s = time.perf_counter() - start

    def step(position, k, eps):
        k_batch, k_noise = jax.random.split(k)
        idx = jax.random.randint(k_batch, (batch,), 0, target.n)
        value, grad = jax.value_and_grad(loss)(position, (x[idx], y[idx]))
        drift = apply(blocks, [nbeta * g + gamma * (w - s) for g, w, s in zip(grad, position, wstar)], 1.0)
        noise = [jax.random.normal(kk, w.shape) for kk, w in zip(jax.random.split(k_noise, len(position)), position)]
        noise = apply(blocks, noise, 0.5)
        return [w - 0.5 * eps * d + jnp.sqrt(eps) * z for w, d, z in zip(position, drift, noise)], value

    @functools.partial(jax.jit, static_argnums=3)
    def segment(positions, keys, eps, length):
        def one_chain(position, k):
            return jax.lax.scan(lambda c, kk: step(c, kk, eps), position, jax.random.split(k, length))

        return jax.vmap(one_chain)(positions, keys)

    warmup = steps // 5
    start = time.perf_counter()
    positions = [jnp.broadcast_to(w, (chains, *w.shape)) for w in wstar]
    chain_keys = jax.random.split(key, chains)
    pieces, step_sizes = [], []
    for length, tag, eps in ((warmup, 0, step_size), (steps - warmup, 1, None)):
        if eps is None:  # the draws: ε from λ_max(PH) at the chains' positions after the warmup
            at_chains = max(top_eigenvalue([w[c] for w in positions]) for c in range(chains))
            eps = c0 / max(lam_max, at_chains) if adapt_step else step_size
        segment_keys = jax.vmap(lambda k, tag=tag: jax.random.fold_in(k, tag))(chain_keys)
        positions, losses = segment(positions, segment_keys, eps, length)
        pieces.append(np.asarray(losses, np.float64))
        step_sizes.append(float(eps))
    losses = np.concatenate(pieces, axis=1)
    run_s = time.perf_counter() - start
    lam_max_end = top_eigenvalue([w[0] for w in positions])  # at chain 0's last position, same P
    l_star = float(loss(wstar, (x, y)))
    per_chain = nbeta * (losses[:, warmup:].mean(axis=1) - l_star)
    llc = float(per_chain.mean())
    local = float(target.info["local_lam"])
    blocks_trace = nbeta * (losses.reshape(chains, 20, -1).mean(axis=(0, 2)) - l_star) / local
    return dict(
        bucket=bucket,
        seed=seed,
        batch=batch,
        dim=target.dim,
        lam_local=local,
        c0=c0,
        floor=floor,
        steps=steps,
        gamma=gamma,
        nbeta_scale=nbeta_scale,
        lam_max_PH=lam_max,
        lam_max_PH_after_warmup=at_chains,
        lam_max_PH_end=lam_max_end,
        adapt_step=adapt_step,
        step_sizes=step_sizes,  # warmup, draws
        flat_directions=flat,
        p_null=stiffest,
        llc=llc if math.isfinite(llc) else None,
        rel_error=(llc - local) / local if math.isfinite(llc) else None,
        per_chain=per_chain.tolist(),
        trace_over_local=[float(v) for v in blocks_trace],
        setup_s=setup_s,
        run_s=run_s,
        probe_hvps=sum(w.shape[0] + w.shape[1] + 1 for w in wstar) + 40 * (2 + chains),
        grad_evals=chains * steps,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 22, 58, 74, 96])
    parser.add_argument("--networks", type=int, default=None, help="instead of --seeds: dln_accuracy's first N")
    parser.add_argument("--c0", type=float, default=0.05, help="ε·λ_max(PH)")
    parser.add_argument("--floor", type=float, default=30.0, help="smallest precision of a curved direction")
    parser.add_argument("--steps", type=int, default=10_000, help="per chain; the first fifth is warmup")
    parser.add_argument("--batch", type=int, default=500, help="minibatch size of the chains")
    parser.add_argument(
        "--adapt-step", action="store_true", help="after the warmup, ε = c0 / max λ_max(PH) over w* and the chains"
    )
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--nbeta-scale", type=float, default=1.0, help="multiply nβ = n/log n")
    parser.add_argument("--out", type=Path, default=RESULTS / "kronecker_sgld.json")
    args = parser.parse_args(argv)
    doc: dict[str, Any] = {"meta": run_metadata(**{k: str(v) for k, v in vars(args).items()}), "runs": []}
    seeds = screen(args.bucket, args.networks)["seeds"] if args.networks else args.seeds
    for seed in seeds:
        row = run(
            args.bucket,
            seed,
            args.c0,
            args.floor,
            args.steps,
            batch=args.batch,
            gamma=args.gamma,
            nbeta_scale=args.nbeta_scale,
            adapt_step=args.adapt_step,
        )
        doc["runs"].append(row)
        shown = "diverged" if row["llc"] is None else f"λ̂ = {row['llc']:9.2f} ({row['rel_error']:+7.2%})"
        print(
            f"seed {seed:3d} d = {row['dim']:6d} λ_local = {row['lam_local']:8.1f} {shown} "
            f"λ_max(PH) = {row['lam_max_PH']:.2f} at w*, {row['lam_max_PH_end']:.2f} at the end; setup {row['setup_s']:.0f}s run {row['run_s']:.0f}s",
            flush=True,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
