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
    (
        "integer params",
        dict(params=np.ones(3, dtype=np.int32)),
        TypeError,
        r"params: every leaf must be a floating-point array",
    ),
    ("NaN in params", dict(params=np.array([1.0, np.nan, 1.0])), ValueError, r"params: w\* contains NaN or Inf"),
    ("empty params", dict(params={}), ValueError, r"params: expected a pytree with at least one float array"),
    (
        "non-finite loss at w*",
        dict(loss_fn=lambda w, b: jnp.log(-jnp.sum(w**2))),
        ValueError,
        r"loss_fn: the loss at w\* .* is nan",
    ),
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


# More bad inputs to sample(): non-finite or uncastable params/data, empty data, bad losses,
# bad keys and counts. Each names the argument and says what was expected.
MORE_BAD = [
    ("Inf in data", dict(data=(X, np.full(20, np.inf))), ValueError, r"data: leaf \[1\] contains NaN or Inf"),
    ("Inf in params", dict(params=np.array([1.0, -np.inf, 1.0])), ValueError, r"params: w\* contains NaN or Inf"),
    ("empty data (n = 0)", dict(data=(X[:0], Y[:0])), ValueError, r"data: expected n >= 2 examples .* got n=0"),
    ("data with no arrays", dict(data={}), ValueError, r"data: expected a pytree of arrays .* got no arrays"),
    ("data None", dict(data=None), ValueError, r"data: expected a pytree of arrays"),
    (
        "object data",
        dict(data=(X, np.array([object()] * 20))),
        TypeError,
        r"data: leaf \[1\] has dtype object; expected numeric",
    ),
    (
        "string data",
        dict(data=(X, np.array(["a"] * 20))),
        TypeError,
        r"data: leaf \[1\] has dtype <U1; expected numeric",
    ),
    ("complex data", dict(data=(X, Y.astype(complex))), TypeError, r"data: leaf \[1\] is complex; expected real"),
    (
        "complex params",
        dict(params=W.astype(complex)),
        TypeError,
        r"params: every leaf must be a floating-point array.*complex",
    ),
    (
        "object params",
        dict(params=np.array([object()] * 3)),
        TypeError,
        r"params: every leaf must be a floating-point array.*object",
    ),
    ("string params", dict(params="abc"), TypeError, r"params: every leaf must be a floating-point array"),
    (
        "bool params",
        dict(params=np.ones(3, bool)),
        TypeError,
        r"params: every leaf must be a floating-point array.*bool",
    ),
    (
        "loss raises",
        dict(loss_fn=lambda w, b: w["x"]),
        ValueError,
        r"loss_fn: calling loss_fn\(params, batch\) .* failed",
    ),
    (
        "integer loss",
        dict(loss_fn=lambda w, b: jnp.sum(w).astype(jnp.int32)),
        ValueError,
        r"loss_fn: expected a floating-point scalar",
    ),
    ("tuple loss", dict(loss_fn=lambda w, b: (mse(w, b), 1.0)), ValueError, r"loss_fn: expected a scalar"),
    (
        "Inf loss at w*",
        dict(loss_fn=lambda w, b: jnp.inf * jnp.sum(w)),
        ValueError,
        r"loss_fn: the loss at w\* .* is inf",
    ),
    ("float key", dict(key=1.5), TypeError, r"key: expected an int seed or a JAX PRNG key"),
    (
        "uint32 key of shape (3,)",
        dict(key=jnp.zeros(3, jnp.uint32)),
        TypeError,
        r"key: expected an int seed .* shape \(3,\)",
    ),
    ("num_draws < 0", dict(num_draws=-5), ValueError, r"num_draws: expected an integer >= 4, got -5"),
    ("num_draws 3", dict(num_draws=3), ValueError, r"num_draws: expected an integer >= 4, got 3"),
    ("num_chains < 0", dict(num_chains=-1), ValueError, r"num_chains: expected an integer >= 1, got -1"),
    ("string num_chains", dict(num_chains="4"), ValueError, r"num_chains: expected an integer"),
    ("float num_draws", dict(num_draws=10.0), ValueError, r"num_draws: expected an integer"),
    ("beta Inf", dict(beta=float("inf")), ValueError, r"beta: expected a finite number > 0"),
    ("nbeta NaN", dict(nbeta=float("nan")), ValueError, r"nbeta: expected a finite number > 0"),
    ("string nbeta", dict(nbeta="100"), TypeError, r"nbeta: expected a finite number > 0, got '100'"),
    ("float batch_size", dict(batch_size=2.5), ValueError, r"batch_size: expected an integer >= 1"),
    ("kernel None", dict(kernel=None), ValueError, r"kernel: unknown kernel None"),
    ("progress not bool", dict(progress="yes"), ValueError, r"progress: expected True or False"),
    ("mask selects nothing", dict(mask=np.zeros(3, bool)), ValueError, r"mask: selects no weights"),
]


@pytest.mark.parametrize("case", MORE_BAD, ids=[c[0] for c in MORE_BAD])
def test_more_bad_inputs_are_rejected(case):
    _, kwargs, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        run(**kwargs)


# LocalPosterior constructed directly: masks, chunk sizes, temperatures, localization.
P2 = {"a": np.ones(2), "b": np.ones((2, 2))}


def mse2(p, batch):
    x, y = batch
    return jnp.mean((y - x[:, :2] @ p["a"] - x[:, :2] @ p["b"] @ p["a"]) ** 2)


POSTERIOR_BAD = [
    (
        "mask of the wrong shape",
        dict(mask=np.array([True, False])),
        ValueError,
        r"mask: leaf <root> has shape \(2,\), not broadcastable to the parameter shape \(3,\)",
    ),
    (
        "integer mask",
        dict(mask=np.array([1, 0, 1])),
        ValueError,
        r"mask: leaf <root> .* dtype int64; expected booleans",
    ),
    ("string mask", dict(mask="abc"), ValueError, r"mask: leaf <root> is 'abc' .* expected booleans"),
    (
        "mask naming a key params lack",
        dict(params=P2, loss_fn=mse2, mask={"a": True, "c": True}),
        ValueError,
        r"mask: \['c'\] at <root> not in params \(its keys there: \['a', 'b'\]\)",
    ),
    (
        "dict mask for non-dict params",
        dict(mask={"a": True}),
        ValueError,
        r"mask: a dict at <root>, where params holds",
    ),
    (
        "mask with a None leaf",
        dict(params=P2, loss_fn=mse2, mask={"a": True, "b": None}),
        ValueError,
        r"mask: leaf \['b'\] is None .* expected booleans",
    ),
    (
        "mask selecting nothing",
        dict(params=P2, loss_fn=mse2, mask={"a": False, "b": np.zeros((2, 2), bool)}),
        ValueError,
        r"mask: selects no weights; expected at least one True",
    ),
    (
        "predicate returning 1",
        dict(mask=lambda path, leaf: 1),
        ValueError,
        r"mask: a predicate must return True or False per leaf, got 1 for <root>",
    ),
    (
        "predicate selecting nothing",
        dict(params=P2, loss_fn=mse2, mask=lambda path, leaf: False),
        ValueError,
        r"mask: selects no weights",
    ),
    ("chunk_size 0", dict(chunk_size=0), ValueError, r"chunk_size: expected a positive integer"),
    ("chunk_size < 0", dict(chunk_size=-8), ValueError, r"chunk_size: expected a positive integer"),
    ("float chunk_size", dict(chunk_size=2.5), TypeError, r"chunk_size: expected a positive integer .* got 2.5"),
    ("string chunk_size", dict(chunk_size="8"), TypeError, r"chunk_size: expected a positive integer .* got '8'"),
    ("bool chunk_size", dict(chunk_size=True), TypeError, r"chunk_size: expected a positive integer .* got True"),
    ("nbeta 0", dict(nbeta=0), ValueError, r"nbeta: expected a finite number > 0, got 0"),
    ("nbeta Inf", dict(nbeta=float("inf")), ValueError, r"nbeta: expected a finite number > 0, got inf"),
    ("nbeta a vector", dict(nbeta=np.array([1.0, 2.0])), TypeError, r"nbeta: expected a finite number > 0"),
    ("nbeta True", dict(nbeta=True), TypeError, r"nbeta: expected a finite number > 0, got True"),
    ("string beta", dict(beta="abc"), TypeError, r"beta: expected a finite number > 0, got 'abc'"),
    ("beta < 0", dict(beta=-0.1), ValueError, r"beta: expected a finite number > 0"),
    ("beta and nbeta", dict(beta=0.1, nbeta=2.0), ValueError, r"beta and nbeta: give at most one"),
    ("gamma NaN", dict(gamma=float("nan")), ValueError, r"gamma: expected a finite number >= 0"),
    ("gamma Inf", dict(gamma=float("inf")), ValueError, r"gamma: expected a finite number >= 0"),
    ("gamma < 0", dict(gamma=-1.0), ValueError, r"gamma: expected a finite number >= 0"),
    ("gamma None", dict(gamma=None), TypeError, r"gamma: expected a finite number >= 0, got None"),
    ("string gamma", dict(gamma="1"), TypeError, r"gamma: expected a finite number >= 0, got '1'"),
    ("loss_fn not callable", dict(loss_fn="mse"), TypeError, r"loss_fn: expected a callable"),
]


def posterior(**kw):
    args = dict(loss_fn=mse, params=W, data=DATA)
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    return LocalPosterior(args["loss_fn"], args["params"], args["data"], **kw)


@pytest.mark.parametrize("case", POSTERIOR_BAD, ids=[c[0] for c in POSTERIOR_BAD])
def test_local_posterior_bad_input(case):
    _, kwargs, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        posterior(**kwargs)


# Kernel options, for every kernel: option checks run before anything is compiled (those that
# need d, like the length of inverse_mass_matrix, fail while the program is traced).
KERNEL_BAD = [
    ("sgld", dict(mala_acceptance=1), r"mala_acceptance: expected True or False, got 1"),
    ("sgld", dict(step_size=float("inf")), r"step_size: expected a finite number > 0"),
    ("sgld", dict(step_size="big"), r"step_size: expected a number > 0, got 'big'"),
    ("rmsprop_sgld", dict(alpha=0.0), r"alpha: expected a number in \(0, 1\)"),
    ("rmsprop_sgld", dict(stabilizer=-1.0), r"stabilizer: expected a finite number > 0"),
    ("rmsprop_sgld", dict(freeze=1), r"freeze: expected True or False"),
    ("rmsprop_sgld", dict(mala_acceptance=True), r"mala_acceptance: not an option of kernel 'rmsprop_sgld'"),
    ("adam_sgld", dict(beta1=1.0), r"beta1: expected a number in \(0, 1\)"),
    ("adam_sgld", dict(alpha=-0.5), r"alpha: expected a number in \(0, 1\)"),
    ("adam_sgld", dict(step_size=None), r"step_size: expected a number > 0, got None"),
    ("hmc", dict(num_integration_steps=-3), r"num_integration_steps: expected an integer >= 1, got -3"),
    ("hmc", dict(jitter=-0.1), r"jitter: expected a number in \[0, 1\)"),
    ("hmc", dict(jitter="wide"), r"jitter: expected a number in \[0, 1\)"),
    ("hmc", dict(target_acceptance_rate=1.0), r"target_acceptance_rate: expected a number in \(0, 1\)"),
    (
        "hmc",
        dict(inverse_mass_matrix=[1.0, 1.0], num_warmup=10),
        r"inverse_mass_matrix: expected .* length d = 3 .* got length 2",
    ),
    ("hmc", dict(inverse_mass_matrix=[1.0, 0.0, 1.0]), r"inverse_mass_matrix: expected finite entries > 0"),
    ("hmc", dict(batch_size=5), r"batch_size: kernel 'hmc' uses the full batch"),
    ("nuts", dict(max_num_doublings=-1), r"max_num_doublings: expected an integer >= 1"),
    ("nuts", dict(target_acceptance_rate=0.0), r"target_acceptance_rate: expected a number in \(0, 1\)"),
    ("nuts", dict(step_size=0.0), r"step_size: expected a finite number > 0"),
    ("nuts", dict(jitter=0.5), r"jitter: not an option of kernel 'nuts'"),
    ("mclmc", dict(desired_energy_var=-1.0), r"desired_energy_var: expected a finite number > 0"),
    ("mclmc", dict(L=0.0, step_size=0.1), r"L: expected a finite number > 0"),
    (
        "mclmc",
        dict(L=1.0, step_size=0.1, inverse_mass_matrix=[1.0, 1.0]),
        r"inverse_mass_matrix: expected .* length d = 3",
    ),
    ("mclmc", dict(batch_size=5), r"batch_size: kernel 'mclmc' uses the full batch"),
    ("vi", dict(rank=0), r"rank: expected an integer >= 1, got 0"),
    ("vi", dict(num_components=0), r"num_components: expected an integer >= 1, got 0"),
    ("vi", dict(num_samples=0), r"num_samples: expected an integer >= 1, got 0"),
    ("vi", dict(final_lr_fraction=1.0), r"final_lr_fraction: expected a number in \(0, 1\)"),
    ("vi", dict(exact_trace_max_dim=-1), r"exact_trace_max_dim: expected an integer >= 0"),
    ("vi", dict(loading_learning_rate=0.0), r"loading_learning_rate: expected a finite number > 0"),
    ("vi", dict(batch_size=50), r"batch_size: expected 1 <= batch_size <= n = 20, got 50"),
]


@pytest.mark.parametrize(
    "kernel,options,pattern", KERNEL_BAD, ids=[f"{k}-{next(iter(o))}={o[next(iter(o))]!r}" for k, o, _ in KERNEL_BAD]
)
def test_bad_kernel_options(kernel, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        run(kernel=kernel, **options)


def test_params_and_data_are_cast_to_the_run_dtype():
    """The project rule: params and floating data are cast to the run dtype (float64 under
    JAX_ENABLE_X64, else float32) at the API boundary, whatever mix of float dtypes comes in;
    integer and bool data leaves (labels, indices) are kept; what cannot be cast is rejected
    (complex, object and string leaves: see MORE_BAD)."""
    run_dtype = jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    params = {"w": W.astype(np.float32), "b": jnp.zeros((), jnp.bfloat16)}
    labels = np.arange(20, dtype=np.int32) % 2
    data = {"x": X.astype(np.float64), "y": Y.astype(np.float16), "labels": labels, "keep": np.ones(20, bool)}

    def loss(p, batch):
        pred = batch["x"] @ p["w"] + p["b"]
        return 0.5 * jnp.mean((batch["y"] - pred) ** 2) + 0.0 * jnp.mean(batch["labels"])

    post = LocalPosterior(loss, params, data)
    assert post.dtype == run_dtype and post.w_star.dtype == run_dtype
    assert post.data["x"].dtype == run_dtype and post.data["y"].dtype == run_dtype
    assert post.data["labels"].dtype == jnp.int32 and post.data["keep"].dtype == jnp.bool_
    for leaf in jax.tree.leaves(post.unravel(post.w_star)):
        assert leaf.dtype == run_dtype
    np.testing.assert_array_equal(np.asarray(post.unravel(post.w_star)["w"]), W.astype(np.float32))
    result = run(loss_fn=loss, params=params, data=data, num_chains=1, step_size=1e-5)
    assert result.config["dtype"] == str(run_dtype) and np.isfinite(result.llc)


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="float64 values overflow only when cast to float32")
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_data_that_overflows_the_run_dtype_is_rejected():
    with pytest.raises(ValueError, match=r"data: leaf \[0\] contains NaN or Inf \(as float32\)"):
        run(data=(X * 1e300, Y))
    with pytest.raises(ValueError, match=r"params: w\* contains NaN or Inf \(as float32\)"):
        run(params=W * 1e300)


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
