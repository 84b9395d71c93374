"""Benchmark problems shared by the benchmark scripts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def tanh_mlp_apply(params, x):
    """A tanh MLP given as [(kernel, bias), ...]: tanh on every layer but the last."""
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return h


def tanh_mlp_problem(n: int = 1000, seed: int = 0):
    """The devinterp comparison problem: a 2→16→16→1 tanh MLP (d = 337), x ~ N(0, I₂),
    a random teacher with weights ×2, label noise 0.1, student trained with Adam to near a minimum."""
    rng = np.random.default_rng(seed)
    sizes = [(2, 16), (16, 16), (16, 1)]

    def init(scale):
        return [(scale * rng.standard_normal(s) / np.sqrt(s[0]), np.zeros(s[1])) for s in sizes]

    teacher = init(2.0)
    x = rng.standard_normal((n, 2))
    y = np.asarray(tanh_mlp_apply(teacher, x)) + 0.1 * rng.standard_normal((n, 1))
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), init(1.0))

    def loss_fn(params, batch):
        xb, yb = batch
        return jnp.mean((tanh_mlp_apply(params, xb) - yb) ** 2)

    sched = optax.cosine_decay_schedule(1e-2, 5000, alpha=1e-3)
    opt = optax.adam(sched)

    @jax.jit
    def train(params):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss_fn)(p, (x, y))
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=5000)
        return p

    params = train(params)
    return loss_fn, params, (x, y)
