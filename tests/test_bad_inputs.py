"""Every bad input is a ValueError/TypeError that names the argument and says what was expected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat import LocalPosterior


def mse(w, batch):
    x, y = batch
    return 0.5 * jnp.mean((y - x @ w) ** 2)


X = np.random.default_rng(0).normal(size=(20, 3))
Y = X @ np.ones(3)
W = np.ones(3)
DATA = (X, Y)


def run(**kw):
    args = dict(loss_fn=mse, params=W, data=DATA)
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    kw.setdefault("num_draws", 10)
    kw.setdefault("num_warmup", 0)
    return lh.sample(args["loss_fn"], args["params"], args["data"], **kw)


BAD = [
    ("unknown kernel", dict(kernel="langevin"), ValueError, r"kernel: unknown kernel 'langevin'; expected one of"),
    ("unknown option", dict(step_sise=1e-3), ValueError, r"step_sise: not an option of kernel 'sgld'.*step_size"),
    ("beta and nbeta", dict(beta=0.1, nbeta=10.0), ValueError, r"beta and nbeta: give at most one"),
    ("beta <= 0", dict(beta=0.0), ValueError, r"beta: expected a finite number > 0"),
    ("nbeta <= 0", dict(nbeta=-1.0), ValueError, r"nbeta: expected a finite number > 0"),
    ("gamma < 0", dict(gamma=-0.5), ValueError, r"gamma: expected a finite number >= 0"),
    ("step size 0", dict(step_size=0.0), ValueError, r"step_size: expected a finite number > 0"),
    ("step size < 0", dict(step_size=-1e-3), ValueError, r"step_size: expected a finite number > 0"),
    ("batch_size > n", dict(batch_size=21), ValueError, r"batch_size: expected 1 <= batch_size <= n = 20"),
    ("batch_size 0", dict(batch_size=0), ValueError, r"batch_size: expected an integer >= 1"),
    ("num_chains 0", dict(num_chains=0), ValueError, r"num_chains: expected an integer >= 1"),
    ("num_draws 0", dict(num_draws=0), ValueError, r"num_draws: expected an integer >= 4"),
    ("num_warmup < 0", dict(num_warmup=-1), ValueError, r"num_warmup: expected an integer >= 0"),
    ("float num_chains", dict(num_chains=2.5), ValueError, r"num_chains: expected an integer"),
    ("mismatched data", dict(data=(X, Y[:10])), ValueError, r"data: all leaves must share the same leading length"),
    ("n < 2", dict(data=(X[:1], Y[:1])), ValueError, r"data: expected n >= 2"),
    ("scalar data leaf", dict(data=(X, 1.0)), ValueError, r"data: leaf .* is a scalar"),
    ("NaN in data", dict(data=(X, np.full(20, np.nan))), ValueError, r"data: leaf .* contains NaN or Inf"),
    ("integer params", dict(params=np.ones(3, dtype=np.int32)), TypeError, r"params: every leaf must be a floating-point array"),
    ("NaN in params", dict(params=np.array([1.0, np.nan, 1.0])), ValueError, r"params: w\* contains NaN or Inf"),
    ("empty params", dict(params={}), ValueError, r"params: expected a pytree with at least one float array"),
    ("non-finite loss at w*", dict(loss_fn=lambda w, b: jnp.log(-jnp.sum(w ** 2))), ValueError, r"loss_fn: the loss at w\* .* is nan"),
    ("vector loss", dict(loss_fn=lambda w, b: (b[1] - b[0] @ w) ** 2), ValueError, r"loss_fn: expected a scalar"),
    ("loss not callable", dict(loss_fn=3.0), TypeError, r"loss_fn: expected a callable"),
    ("wrong key type", dict(key="seed"), TypeError, r"key: expected an int seed or a JAX PRNG key"),
    ("negative seed", dict(key=-3), ValueError, r"key: expected a non-negative int seed"),
    ("batched key", dict(key=jax.random.split(jax.random.key(0), 2)), ValueError, r"key: expected a single key"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_rejected_with_a_clear_message(case):
    _, kwargs, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        run(**kwargs)


def test_local_posterior_validates_too():
    with pytest.raises(ValueError, match=r"gamma: expected a finite number >= 0"):
        LocalPosterior(mse, W, DATA, gamma=float("nan"))
    with pytest.raises(ValueError, match=r"chunk_size: expected a positive integer"):
        LocalPosterior(mse, W, DATA, chunk_size=0)


def test_good_key_types_are_accepted():
    a = run(key=jax.random.key(3))
    b = run(key=jax.random.PRNGKey(3))
    c = run(key=np.int64(3))
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)
    np.testing.assert_array_equal(a.loss_trace, c.loss_trace)
