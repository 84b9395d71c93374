"""Tiny tanh MLP teacher–student (flax linen): a realistic target without a closed-form λ.

Teacher: a random tanh MLP f(x; θ₀) with widths (H_1, …, H_{L+1}) (input and output included,
biases on every layer; kernels N(0, 1/fan_in), biases N(0, 0.5²)); data x ~ N(0, I), y = f(x; θ₀) + σ·ε with small label noise σ.
Student: the same architecture from a different random init, trained on
L_n(θ) = (1/n) Σ_i ½‖y_i − f(x_i; θ)‖² (the Gaussian NLL with σ² = 1, up to a constant) by Adam and
then Levenberg–Marquardt to a near-stationary w* (‖∇L_n(w*)‖ is reported in ``info``).

No exact λ is known (``lam=None``); what holds is 0 < λ ≤ d/2 at a local minimum, and every
kernel must agree. ``info["hessian_eigenvalues"]`` (float64, of L_n at w*) gives the quadratic
(Laplace) value ½ Σ nβa/(nβa + γ) over the positive eigenvalues, a useful rough reference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from lambda_hat.flat import float_dtype
from lambda_hat.targets.base import Target

__all__ = ["TanhMLP", "tiny_mlp"]


class TanhMLP(nn.Module):
    """Dense layers of the given output sizes with tanh between them (linear output layer)."""

    features: tuple[int, ...]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the network.

        Args:
            x: inputs of shape (..., H_1).

        Returns:
            The outputs, of shape (..., features[-1]).
        """
        for i, f in enumerate(self.features):
            x = nn.Dense(f, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = jnp.tanh(x)
        return x


def _random_params(rng: np.random.Generator, widths: list[int], dtype, bias_scale: float) -> dict:
    """flax-layout variables {"params": {"dense_i": {"kernel", "bias"}}}: kernel N(0, 1/fan_in)
    (LeCun, as flax's default), bias N(0, bias_scale²). Drawn in numpy (no compilation)."""
    layers = {}
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers[f"dense_{i}"] = {
            "kernel": jnp.asarray((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.dtype(dtype))),
            "bias": jnp.asarray((bias_scale * rng.standard_normal(b)).astype(np.dtype(dtype))),
        }
    return {"params": layers}


def tiny_mlp(
    widths: Sequence[int] = (2, 8, 1),
    *,
    n: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    adam_steps: int = 1000,
    lm_steps: int = 200,
    init: str = "random",
) -> Target:
    """A tanh MLP student trained to near-stationarity on a random teacher's noisy data.

    Args:
        widths: (input, hidden..., output); d = Σ (H_s + 1) H_{s+1} parameters.
        n: data points; x ~ N(0, I_{H_1}), y = teacher(x) + noise·N(0, I).
        noise: label noise σ (> 0 keeps the student from interpolating the teacher exactly).
        seed: teacher, data and student init all derive from it.
        adam_steps, lm_steps: full-batch Adam (lr 1e-2, cosine decay), then Levenberg–Marquardt
            iterations on the Gauss–Newton matrix (d is tiny, so the d×d solve is cheap).
        init: "random" (a fresh LeCun init) or "teacher" (start at the teacher: training then
            only fits the label noise and lands on the nearby, typically well-conditioned minimum).

    Returns:
        A Target with ``lam=None``: params is the flax variables dict {"params": ...} of the
        trained student (run dtype), data (x, y) of shapes (n, H_1) and (n, H_{L+1}).
        info: dim, grad_norm_at_wstar (‖∇L_n(w*)‖ in the run dtype; the student init's for scale in
        grad_norm_at_init), hessian_eigenvalues (float64),
        train_loss, teacher_params, noise, train_seconds.
    """
    hs = list(widths)
    if len(hs) < 2 or not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in hs):
        raise ValueError(f"widths: expected a sequence of >= 2 positive integers, got {widths!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    if not noise >= 0:
        raise ValueError(f"noise: expected a number >= 0, got {noise!r}")
    start = time.perf_counter()
    dtype = float_dtype()
    model = TanhMLP(tuple(int(h) for h in hs[1:]))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, hs[0])).astype(np.dtype(dtype)))
    eps = jnp.asarray((noise * rng.standard_normal((n, hs[-1]))).astype(np.dtype(dtype)))
    teacher = _random_params(rng, hs, dtype, bias_scale=0.5)
    params0 = _random_params(rng, hs, dtype, bias_scale=0.0)
    if init == "teacher":
        params0 = teacher
    elif init != "random":
        raise ValueError(f"init: expected 'random' or 'teacher', got {init!r}")
    y = jax.jit(lambda p, x, e: model.apply(p, x) + e)(teacher, x, eps)

    def loss_fn(params, batch):
        """½ mean_i ‖y_i − f(x_i)‖²."""
        bx, by = batch
        return 0.5 * jnp.mean(jnp.sum((by - model.apply(params, bx)) ** 2, axis=-1))

    data = (x, y)
    flat0, unravel = ravel_pytree(params0)

    def flat_loss(w):
        return loss_fn(unravel(w), data)

    def residuals(w):  # L_n = ½ mean ‖r‖² with r flattened over (n, outputs): L_n = ‖r‖²/(2n)
        return jnp.ravel(y - model.apply(unravel(w), x))

    @jax.jit
    def train(w):
        g0 = jax.grad(flat_loss)(w)
        adam = optax.adam(optax.cosine_decay_schedule(1e-2, max(adam_steps, 1), alpha=1e-2))

        def adam_step(carry, _):
            w, state = carry
            g = jax.grad(flat_loss)(w)
            updates, state = adam.update(g, state, w)
            return (optax.apply_updates(w, updates), state), None

        if adam_steps > 0:
            (w, _), _ = jax.lax.scan(adam_step, (w, adam.init(w)), None, length=adam_steps)

        def lm_step(carry, _):  # Levenberg–Marquardt on the Gauss–Newton matrix JᵀJ/n
            w, mu, value = carry
            r = residuals(w)
            jac = jax.jacfwd(residuals)(w)
            gn = jac.T @ jac / n
            g = jac.T @ r / n
            step = jnp.linalg.solve(gn + mu * jnp.eye(w.size, dtype=w.dtype), g)
            candidate = w - step
            new_value = flat_loss(candidate)
            better = new_value <= value
            w = jnp.where(better, candidate, w)
            mu = jnp.where(better, mu / 3, mu * 4)
            return (w, jnp.clip(mu, 1e-12, 1e6), jnp.where(better, new_value, value)), None

        mu0 = jnp.asarray(1e-3, w.dtype)
        (w, _, _), _ = jax.lax.scan(lm_step, (w, mu0, flat_loss(w)), None, length=lm_steps)
        return w, flat_loss(w), jax.grad(flat_loss)(w), jax.hessian(flat_loss)(w), jnp.linalg.norm(g0)

    w_star, loss_star, grad, hessian, grad_norm_at_init = train(flat0)
    grad_norm = float(jnp.linalg.norm(grad))
    hessian = np.asarray(hessian, np.float64)
    eigs = np.linalg.eigvalsh(0.5 * (hessian + hessian.T))
    elapsed = time.perf_counter() - start
    return Target(
        name="mlp_" + "-".join(map(str, hs)),
        loss_fn=loss_fn,
        params=unravel(w_star),
        data=data,
        n=int(n),
        lam=None,
        m=None,
        info={
            "dim": int(flat0.size),
            "grad_norm_at_wstar": grad_norm,
            "grad_norm_at_init": float(grad_norm_at_init),
            "hessian_eigenvalues": eigs,
            "train_loss": float(loss_star),
            "teacher_params": teacher,
            "noise": float(noise),
            "train_seconds": elapsed,
        },
    )
